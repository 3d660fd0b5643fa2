package mysqlproto

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/packet"
	"github.com/go-mysql-org/go-mysql/server"
	"github.com/go-mysql-org/go-mysql/stmt"

	"github.com/cometql/cometql/sqlengine"
)

// conn is one CometQL connection: the go-mysql connection, its guard, the
// sqlengine session and what SHOW PROCESSLIST shows. It implements
// go-mysql's Handler (commands) and AuthenticationHandler (credentials).
type conn struct {
	srv  *Server
	g    *guardConn
	c    *server.Conn
	sess *sqlengine.Session
	w    packetWriter

	pendingDB  string // database named in the handshake, checked after auth
	authFailed bool   // the handshake ended with access denied
	cs         uint16 // collation of text columns
	multi      bool   // multi-statements enabled
	stmts      map[*stmt.PreparedStmt]*sqlengine.Stmt
	closeNow   bool // close after the current command

	mu     sync.Mutex // guards the fields below (read by Processes)
	id     uint32
	authed bool
	dev    int64
	user   string
	host   string
	db     string
	since  time.Time
	query  string
}

var (
	_ server.Handler               = (*conn)(nil)
	_ server.AuthenticationHandler = (*conn)(nil)
)

func (s *Server) serveConn(nc net.Conn) {
	defer s.wg.Done()
	if n := s.open.Add(1); n > int64(s.cfg.MaxConnections) || s.closing.Load() {
		s.open.Add(-1)
		if s.closing.Load() {
			s.reject(nc, sqlengine.NewError(sqlengine.ErrCodeShutdown, "Server shutdown in progress"))
		} else {
			s.reject(nc, sqlengine.NewError(sqlengine.ErrCodeTooManyConns, "Too many connections"))
		}
		return
	}
	defer s.open.Add(-1)
	g := newGuardConn(nc, s.cfg.MaxQueryBytes, s.cfg.WriteTimeout)
	g.stallTimeout = s.cfg.HandshakeTimeout
	g.idlePacket = idleTimeoutPacket
	c := &conn{srv: s, g: g, stmts: map[*stmt.PreparedStmt]*sqlengine.Stmt{}, since: time.Now(), host: hostOf(nc.RemoteAddr())}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = g.Close()
	}()

	_ = nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	mc, err := s.my.NewCustomizedConn(g, c, c)
	if err != nil {
		switch {
		case c.authFailed:
		case errors.Is(g.readErr, os.ErrDeadlineExceeded):
			s.stats.handshakeTimeouts.Add(1)
		default:
			s.stats.handshakeErrors.Add(1)
		}
		s.log.Debug("CometQL handshake failed", "remote", c.host, "err", err)
		return
	}
	_ = nc.SetDeadline(time.Time{})
	c.c = mc
	if g.phase == phaseHandshake {
		g.phase = phaseCommand
		// go-mysql reads through a 64 KiB buffer per connection; the guard
		// already reads the socket through a pooled buffer, so the command
		// phase reads it unbuffered (clients send nothing before the
		// handshake's OK, so the buffer holds nothing now).
		mc.Conn = packet.NewTLSConn(g)
	}
	mc.SetStatus(mysql.SERVER_STATUS_AUTOCOMMIT)
	c.multi = mc.HasCapability(mysql.CLIENT_MULTI_STATEMENTS)
	c.cs = utf8mb4GeneralCI
	if cs := uint16(mc.Charset()); isUTF8MB4(cs) {
		c.cs = cs
	}

	for !mc.Closed() && !c.closeNow {
		// The idle deadline is set before going idle, so that a shutdown's
		// closeIfIdle (which moves the deadline to the past) always wins.
		_ = nc.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if !g.setIdle() {
			break // shutting down
		}
		err := mc.HandleCommand()
		c.setQuery("")
		if ferr := g.flush(); err == nil {
			err = ferr
		}
		if err != nil {
			if errors.Is(g.readErr, os.ErrDeadlineExceeded) && !g.closingNow() {
				switch {
				case g.stalled:
					s.stats.readTimeouts.Add(1)
					s.log.Debug("CometQL client stopped sending a command packet: closing", "remote", c.host, "after", s.cfg.HandshakeTimeout)
				default:
					s.stats.idleTimeouts.Add(1)
					if g.idleSent {
						s.stats.countCode(4031)
					}
				}
			}
			return
		}
	}
}

// idleTimeoutPacket tells an idle client why it is disconnected, as MySQL 8
// does; the guard queues it when the wait for a command times out (not
// over TLS: the packet would have to go through the TLS session).
var idleTimeoutPacket = func() []byte {
	e := &mysql.MyError{Code: 4031, State: "HY000", Message: "The client was disconnected by the server because of inactivity. See wait_timeout and interactive_timeout for configuring this behavior."}
	b := errPacket([]byte{0, 0, 0, 0}, e)
	n := len(b) - 4
	b[0], b[1], b[2], b[3] = byte(n), byte(n>>8), byte(n>>16), 0
	return b
}()

func (g *guardConn) closingNow() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closing
}

func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// isUTF8MB4 reports whether a collation id is a utf8mb4 collation.
func isUTF8MB4(id uint16) bool {
	return id == 45 || id == 46 || id >= 224 && id <= 247 || id >= 255 && id <= 323
}

func (c *conn) setQuery(q string) {
	c.mu.Lock()
	c.query = q
	c.since = time.Now()
	c.mu.Unlock()
}

// --- AuthenticationHandler ---

// parseUser maps a user name to a tenant: root is dev 0, a decimal number N
// is dev N.
func parseUser(name string) (int64, bool) {
	if name == "root" {
		return 0, true
	}
	if name == "" || len(name) > 18 {
		return 0, false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(name, 10, 64)
	return n, err == nil
}

// GetCredential implements server.AuthenticationHandler. Unknown users get
// a random password, so that they fail exactly like a wrong password (1045).
func (c *conn) GetCredential(username string) (server.Credential, bool, error) {
	plugin := c.srv.cfg.AuthPlugin
	if p := c.g.plugin; p == mysql.AUTH_NATIVE_PASSWORD || p == mysql.AUTH_CACHING_SHA2_PASSWORD {
		plugin = p
	}
	pw := ""
	if dev, ok := parseUser(username); ok {
		pw = c.srv.pw.Password(dev)
	}
	if pw == "" {
		var b [24]byte
		_, _ = rand.Read(b[:])
		pw = hex.EncodeToString(b[:])
	}
	c.srv.log.Debug("CometQL login", "user", username, "client_plugin", c.g.plugin, "plugin", plugin, "remote", c.host)
	return server.Credential{Passwords: []string{pw}, AuthPluginName: plugin}, true, nil
}

// OnAuthSuccess implements server.AuthenticationHandler: the session starts
// and the database named in the handshake is checked (1049 for an unknown
// one).
func (c *conn) OnAuthSuccess(mc *server.Conn) error {
	dev, _ := parseUser(mc.GetUser())
	c.sess = c.srv.eng.NewSession(dev, mc.GetUser(), mc.ConnectionID())
	c.sess.SetClientHost(c.host)
	if c.pendingDB != "" {
		if err := c.sess.UseDB(c.pendingDB); err != nil {
			return c.srv.stats.countErr(err)
		}
	}
	c.mu.Lock()
	c.authed, c.dev, c.user, c.id, c.db = true, dev, mc.GetUser(), mc.ConnectionID(), c.sess.DB()
	c.since = time.Now()
	c.mu.Unlock()
	return nil
}

// OnAuthFailure implements server.AuthenticationHandler.
// go-mysql calls it for every failed handshake; only a wrong user or
// password is "access denied" (timeouts and malformed packets are counted
// and logged by serveConn).
func (c *conn) OnAuthFailure(mc *server.Conn, err error) {
	var me *mysql.MyError
	if !errors.As(err, &me) || me.Code != mysql.ER_ACCESS_DENIED_ERROR {
		return
	}
	c.authFailed = true
	c.srv.stats.countCode(mysql.ER_ACCESS_DENIED_ERROR)
	c.srv.log.Info("CometQL access denied", "user", mc.GetUser(), "remote", c.host)
}

// --- Handler ---

// UseDB implements server.Handler (COM_INIT_DB, and the database of the
// handshake, which comes before the password check: it is only noted then).
func (c *conn) UseDB(db string) error {
	if c.sess == nil {
		c.pendingDB = db
		return nil
	}
	if err := c.sess.UseDB(db); err != nil {
		return err
	}
	c.mu.Lock()
	c.db = c.sess.DB()
	c.mu.Unlock()
	return nil
}

func (c *conn) ctx() context.Context { return c.srv.base }

// HandleQuery implements server.Handler (COM_QUERY).
func (c *conn) HandleQuery(query string) (*mysql.Result, error) {
	c.g.setBusy()
	if len(query) > c.srv.cfg.MaxQueryBytes {
		return nil, c.srv.stats.countErr(tooLarge())
	}
	c.setQuery(query)
	if c.multi {
		rs, err := c.sess.ExecuteMulti(c.ctx(), query)
		c.syncDB()
		for i, r := range rs {
			more := i < len(rs)-1 || err != nil
			if werr := c.writeResult(r, false, more); werr != nil {
				return nil, werr
			}
		}
		if err != nil {
			return done(c.writeError(err))
		}
		return written, nil
	}
	r, err := c.sess.Execute(c.ctx(), query)
	c.syncDB()
	if err != nil {
		return done(c.writeError(err))
	}
	return done(c.writeResult(r, false, false))
}

// done is what a handler returns after writing its response itself: the
// write error, or the result for which go-mysql writes nothing.
func done(werr error) (*mysql.Result, error) {
	if werr != nil {
		return nil, werr
	}
	return written, nil
}

// syncDB copies the selected database for SHOW PROCESSLIST.
func (c *conn) syncDB() {
	if db := c.sess.DB(); db != c.db {
		c.mu.Lock()
		c.db = db
		c.mu.Unlock()
	}
}

func tooLarge() *mysql.MyError {
	return sqlengine.NewError(sqlengine.ErrCodeQueryTooLarge, "Got a packet bigger than 'max_allowed_packet' bytes")
}

// HandleFieldList implements server.Handler (COM_FIELD_LIST).
func (c *conn) HandleFieldList(table string, wildcard string) ([]*mysql.Field, error) {
	cols, err := c.sess.FieldList(table, wildcard)
	if err != nil {
		return nil, c.srv.stats.countErr(err)
	}
	out := make([]*mysql.Field, len(cols))
	for i, col := range cols {
		// COM_FIELD_LIST rows end with the default value.
		out[i] = &mysql.Field{Data: append(fieldData(col, c.cs), 0xfb)}
	}
	return out, nil
}

// HandleStmtPrepare implements server.Handler (COM_STMT_PREPARE).
func (c *conn) HandleStmtPrepare(query string) (int, int, any, error) {
	c.g.setBusy()
	st, err := c.sess.Prepare(query)
	if err != nil {
		return 0, 0, nil, c.srv.stats.countErr(toMyError(err))
	}
	ps := &stmt.PreparedStmt{Params: st.ParamCount(), Columns: len(st.Columns())}
	for range ps.Params {
		ps.RawParamFields = append(ps.RawParamFields, paramDef)
	}
	for _, col := range st.Columns() {
		ps.RawColumnFields = append(ps.RawColumnFields, fieldData(col, c.cs))
	}
	c.stmts[ps] = st
	return ps.Params, ps.Columns, ps, nil
}

// HandleStmtExecute implements server.Handler (COM_STMT_EXECUTE). Errors
// are written here: go-mysql would re-wrap them into 1105.
func (c *conn) HandleStmtExecute(ctx any, query string, args []any) (*mysql.Result, error) {
	c.g.setBusy()
	ps, _ := ctx.(*stmt.PreparedStmt)
	st := c.stmts[ps]
	if st == nil {
		return done(c.writeError(sqlengine.NewError(1243, "Unknown prepared statement handler given to EXECUTE")))
	}
	c.setQuery(query)
	vals := make([]any, len(args))
	for i, a := range args {
		switch x := a.(type) {
		case mysql.TypedBytes:
			vals[i] = string(x.Bytes)
		case []byte:
			vals[i] = string(x)
		default:
			vals[i] = a
		}
	}
	r, err := c.sess.ExecuteStmt(c.ctx(), st, vals)
	if err != nil {
		return done(c.writeError(err))
	}
	return done(c.writeResult(r, true, false))
}

// HandleStmtClose implements server.Handler (COM_STMT_CLOSE).
func (c *conn) HandleStmtClose(ctx any) error {
	if ps, ok := ctx.(*stmt.PreparedStmt); ok {
		delete(c.stmts, ps)
	}
	return nil
}

// Commands go-mysql leaves to the handler.
const (
	comSetOption       = 0x1b
	comResetConnection = 0x1f
)

// HandleOtherCommand implements server.Handler: COM_SET_OPTION (multi
// statements on/off), COM_CHANGE_USER, COM_RESET_CONNECTION, and the
// stand-in of a dropped oversized packet.
func (c *conn) HandleOtherCommand(cmd byte, data []byte) error {
	return c.srv.stats.countErr(c.otherCommand(cmd, data))
}

func (c *conn) otherCommand(cmd byte, data []byte) error {
	switch cmd {
	case cmdTooLarge:
		if tl, longData := c.g.takeTooLarge(); tl {
			if longData {
				c.closeNow = true
			}
			return tooLarge()
		}
	case comSetOption:
		if len(data) >= 2 {
			switch uint16(data[0]) | uint16(data[1])<<8 {
			case 0:
				c.multi = true
				return nil
			case 1:
				c.multi = false
				return nil
			}
		}
		return sqlengine.NewError(sqlengine.ErrCodeUnknownError, "Unknown COM_SET_OPTION option")
	case mysql.COM_CHANGE_USER:
		return c.changeUser(data)
	case comResetConnection:
		db := c.sess.DB()
		c.sess = c.srv.eng.NewSession(c.sess.Dev(), c.c.GetUser(), c.c.ConnectionID())
		c.sess.SetClientHost(c.host)
		if db != "" {
			_ = c.sess.UseDB(db)
		}
		return nil
	}
	return sqlengine.NewError(1047, "Unknown command %d", cmd)
}

// changeUser answers COM_CHANGE_USER (PHP's persistent connections send it
// when they reuse a connection): the client is switched to
// mysql_native_password with a fresh scramble and authenticated again; on
// success the connection starts a new session (user variables and prepared
// statements are gone), on failure it gets 1045 and is closed.
func (c *conn) changeUser(data []byte) error {
	malformed := sqlengine.NewError(sqlengine.ErrCodeUnknownError, "Malformed COM_CHANGE_USER packet")
	i := bytes.IndexByte(data, 0)
	if i < 0 {
		return malformed
	}
	user, pos := string(data[:i]), i+1
	if pos >= len(data) {
		return malformed
	}
	if c.c.HasCapability(mysql.CLIENT_SECURE_CONNECTION) {
		pos += 1 + int(data[pos])
	} else if j := bytes.IndexByte(data[pos:], 0); j >= 0 {
		pos += j + 1
	}
	db := ""
	if pos < len(data) {
		if j := bytes.IndexByte(data[pos:], 0); j >= 0 {
			db = string(data[pos : pos+j])
		}
	}
	var salt [20]byte
	_, _ = rand.Read(salt[:])
	for i := range salt {
		salt[i] = 30 + salt[i]%97 // printable, never NUL, as MySQL's scrambles
	}
	b := append(c.w.begin(), 0xfe)
	b = append(b, mysql.AUTH_NATIVE_PASSWORD...)
	b = append(b, 0)
	b = append(b, salt[:]...)
	b = append(b, 0)
	if err := c.c.WritePacket(b); err != nil {
		return err
	}
	reply, err := c.c.ReadPacket()
	if err != nil {
		return err
	}
	pw := ""
	dev, known := parseUser(user)
	if known {
		pw = c.srv.pw.Password(dev)
	}
	if pw == "" || !mysql.CompareNativePassword(reply, mysql.NativePasswordHash([]byte(pw)), salt[:]) {
		c.closeNow = true
		using := "YES"
		if len(reply) == 0 {
			using = "NO"
		}
		c.srv.log.Info("CometQL access denied", "user", user, "remote", c.host, "command", "change user")
		return sqlengine.NewError(sqlengine.ErrCodeAccessDenied, "Access denied for user '%s'@'%s' (using password: %s)", user, c.host, using)
	}
	sess := c.srv.eng.NewSession(dev, user, c.c.ConnectionID())
	sess.SetClientHost(c.host)
	if db != "" {
		if err := sess.UseDB(db); err != nil {
			c.closeNow = true
			return err
		}
	}
	c.sess = sess
	c.stmts = map[*stmt.PreparedStmt]*sqlengine.Stmt{}
	c.mu.Lock()
	c.dev, c.user, c.db = dev, user, sess.DB()
	c.mu.Unlock()
	return nil
}

// --- responses ---

func toMyError(err error) *mysql.MyError {
	var me *mysql.MyError
	if errors.As(err, &me) {
		return me
	}
	return sqlengine.NewError(sqlengine.ErrCodeUnknownError, "%v", err)
}

func (c *conn) status(more bool) uint16 {
	st := uint16(mysql.SERVER_STATUS_AUTOCOMMIT)
	if more {
		st |= mysql.SERVER_MORE_RESULTS_EXISTS
	}
	return st
}

// writeError writes an error packet; it returns an error only when the
// write failed.
func (c *conn) writeError(err error) error {
	me := toMyError(err)
	c.srv.stats.countCode(me.Code)
	return c.c.WritePacket(errPacket(c.w.begin(), me))
}

// writeResult writes an OK packet or a result set (binary rows for
// prepared statements). more sets SERVER_MORE_RESULTS_EXISTS.
func (c *conn) writeResult(r *sqlengine.Result, bin, more bool) error {
	capab := c.c.Capability()
	if !r.IsResultSet() {
		return c.c.WritePacket(okPacket(c.w.begin(), r, c.status(more), capab))
	}
	b := appendLenEncInt(c.w.begin(), uint64(len(r.Columns)))
	if err := c.c.WritePacket(b); err != nil {
		return err
	}
	for _, col := range r.Columns {
		if err := c.c.WritePacket(columnDef(c.w.begin(), col, c.cs)); err != nil {
			return err
		}
	}
	if err := c.c.WritePacket(eofPacket(c.w.begin(), c.status(false))); err != nil {
		return err
	}
	for _, row := range r.Rows {
		var b []byte
		if bin {
			b = binaryRow(c.w.begin(), r.Columns, row)
		} else {
			b = textRow(c.w.begin(), r.Columns, row)
		}
		if err := c.c.WritePacket(b); err != nil {
			return err
		}
	}
	return c.c.WritePacket(eofPacket(c.w.begin(), c.status(more)))
}
