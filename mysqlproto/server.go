// Package mysqlproto serves CometQL over the MySQL wire protocol, on
// go-mysql's server package: the listener, connection limits and timeouts,
// the handshake and auth adapter (mysql_native_password and
// caching_sha2_password), one handler per connection holding a sqlengine
// session, and the encoding of results and errors.
//
// What it adds to go-mysql:
//
//   - A guard between the socket and go-mysql (guard.go): command packets
//     over MaxQueryBytes are dropped as they stream in and answered with
//     1153 (the connection stays usable); pre-auth packets are capped at
//     64 KiB; responses are written once per command, not once per packet;
//     idle connections hold no read buffer.
//   - Auth: users root (tenant 0) and N (tenant N), passwords from the auth
//     service. The greeting proposes Config.AuthPlugin; a client that
//     answers with the other supported plugin is served with it, without a
//     switch. Every failure, unknown users included, is 1045.
//   - Responses are written by the handler itself: OK packets carry the info
//     string ("Delivered: N"), prepared statements answer with binary rows,
//     and errors keep their code and SQLSTATE (go-mysql would turn errors of
//     prepared statements into 1105).
//   - Multi-statements (advertised in the greeting, enabled by the client's
//     CLIENT_MULTI_STATEMENTS or COM_SET_OPTION), COM_CHANGE_USER (PHP's
//     persistent connections), COM_RESET_CONNECTION.
//   - Connection limit (1040), handshake and idle timeouts (4031 like MySQL
//     8), a timeout for a command packet left unfinished (slowloris),
//     accept errors (out of file descriptors) waited out with one log line
//     a second at most, counters for metrics (Stats), graceful Shutdown.
package mysqlproto

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/server"

	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/sqlengine"
)

// Config configures the CometQL listener. A zero field takes the default its
// comment names.
type Config struct {
	// TLS enables TLS (CLIENT_SSL is advertised only when set).
	TLS *tls.Config
	// MaxConnections caps open connections (default 1000); one more gets
	// error 1040 and is closed.
	MaxConnections int
	// HandshakeTimeout bounds the handshake and authentication, and how
	// long a client that started sending a command packet may leave it
	// unfinished without sending more (slowloris protection; not over TLS,
	// whose records the guard does not see) (default 10s).
	HandshakeTimeout time.Duration
	// IdleTimeout closes connections idle for this long (default 8h, like
	// MySQL's wait_timeout).
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one response (default 60s, like MySQL's
	// net_write_timeout).
	WriteTimeout time.Duration
	// MaxQueryBytes caps a command packet (a query with its arguments):
	// larger ones get 1153 and the connection stays usable. Default and
	// maximum 16 MiB - 2 (one protocol packet).
	MaxQueryBytes int
	// ServerVersion is the version announced in the greeting (default
	// sqlengine.ServerVersion(): 8.0.36-cometql-<version>).
	ServerVersion string
	// AuthPlugin is the auth plugin the greeting proposes:
	// mysql_native_password (default) or caching_sha2_password. Clients
	// answering with the other plugin are served with it without a switch.
	AuthPlugin string
}

func (c *Config) setDefaults() {
	if c.MaxConnections <= 0 {
		c.MaxConnections = 1000
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 8 * time.Hour
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 60 * time.Second
	}
	if c.MaxQueryBytes <= 0 || c.MaxQueryBytes > maxPayload-1 {
		c.MaxQueryBytes = maxPayload - 1
	}
	if c.ServerVersion == "" {
		c.ServerVersion = sqlengine.ServerVersion()
	}
	if c.AuthPlugin == "" {
		c.AuthPlugin = mysql.AUTH_NATIVE_PASSWORD
	}
}

// passwords gives the CometQL password of each tenant (the auth service).
type passwords interface {
	// Password is the password of tenant dev ("root" is dev 0).
	Password(dev int64) string
}

// Server is the CometQL listener. It implements sqlengine.Frontend.
type Server struct {
	cfg  Config
	eng  *sqlengine.Engine
	pw   passwords
	log  *slog.Logger
	my   *server.Server
	base context.Context
	stop context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   atomic.Bool
	wg        sync.WaitGroup
	open      atomic.Int64

	stats counters
}

var _ sqlengine.Frontend = (*Server)(nil)

// newServer builds the server; the go-mysql server object (with its RSA key
// for caching_sha2_password) is built once here.
func newServer(cfg Config, eng *sqlengine.Engine, pw passwords, log *slog.Logger) (*Server, error) {
	cfg.setDefaults()
	if cfg.AuthPlugin != mysql.AUTH_NATIVE_PASSWORD && cfg.AuthPlugin != mysql.AUTH_CACHING_SHA2_PASSWORD {
		return nil, fmt.Errorf("mysqlproto: unsupported auth plugin %q", cfg.AuthPlugin)
	}
	if log == nil {
		log = slog.Default()
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("mysqlproto: RSA key: %w", err)
	}
	my := server.NewServerWithAuth(cfg.ServerVersion, utf8mb4GeneralCI, cfg.AuthPlugin, key, cfg.TLS, &authProvider{})
	base, stop := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, eng: eng, pw: pw, log: log, my: my, base: base, stop: stop,
		listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{},
	}
	eng.SetFrontend(s)
	return s, nil
}

// authProvider is go-mysql's authentication with one change: every failure
// is "access denied" (1045). A client that sends something undecryptable
// during caching_sha2_password's full authentication (the MariaDB client
// sends the password in clear over plain TCP, which MySQL refuses too) gets
// 1045, not go-mysql's 1105 with a crypto error.
type authProvider struct {
	server.DefaultAuthenticationProvider
}

func (p *authProvider) Authenticate(c *server.Conn, plugin string, data []byte) error {
	err := p.DefaultAuthenticationProvider.Authenticate(c, plugin, data)
	if err == nil || errors.Is(err, server.ErrAccessDenied) {
		return err
	}
	var me *mysql.MyError
	if errors.As(err, &me) {
		return err
	}
	if errors.Is(err, mysql.ErrBadConn) {
		return err
	}
	return fmt.Errorf("%w: %v", server.ErrAccessDenied, err)
}

// utf8mb4GeneralCI is the collation announced in the greeting and used for
// text columns unless the client asked for another utf8mb4 collation.
const utf8mb4GeneralCI = 45

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("mysqlproto: server closed")

// Serve accepts connections on ln until Shutdown. It returns
// ErrServerClosed after Shutdown, or the listener's error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var (
		delay   time.Duration
		lastLog time.Time
	)
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			if !temporary(err) {
				return err
			}
			// Out of file descriptors (or another passing failure): wait,
			// 5 ms doubling to 1 s, and say so at most once a second.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.stats.acceptErrors.Add(1)
			if time.Since(lastLog) >= time.Second {
				lastLog = time.Now()
				s.log.Error("CometQL accept failed: accepting paused", "err", err, "retry_in", delay)
			}
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.wg.Add(1)
		go s.serveConn(nc)
	}
}

// temporary reports whether an accept error is worth retrying (EMFILE,
// ECONNABORTED and the like).
func temporary(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops accepting, lets running statements finish, closes idle
// connections and waits for every connection to end. When ctx ends first the
// remaining connections are closed and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	for ln := range s.listeners {
		_ = ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.g.closeIfIdle()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.stop()
		return nil
	case <-ctx.Done():
		s.stop()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.g.Conn.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// Limits reports the limits the front end enforces, which the engine shows
// as @@max_allowed_packet, @@wait_timeout, @@max_connections and @@have_ssl.
func (s *Server) Limits() sqlengine.Limits {
	return sqlengine.Limits{
		MaxAllowedPacket: int64(s.cfg.MaxQueryBytes),
		IdleTimeout:      s.cfg.IdleTimeout,
		MaxConnections:   s.cfg.MaxConnections,
		TLS:              s.cfg.TLS != nil,
	}
}

// ConnectionCount implements sqlengine.Frontend: open CometQL connections.
func (s *Server) ConnectionCount() int { return int(s.open.Load()) }

// Processes implements sqlengine.Frontend: the authenticated connections of
// a tenant.
func (s *Server) Processes(dev int64) []sqlengine.Process {
	s.mu.Lock()
	list := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		list = append(list, c)
	}
	s.mu.Unlock()
	now := time.Now()
	var out []sqlengine.Process
	for _, c := range list {
		c.mu.Lock()
		if c.authed && c.dev == dev {
			p := sqlengine.Process{ID: c.id, User: c.user, Host: c.host, DB: c.db, Command: "Sleep",
				Time: int64(now.Sub(c.since) / time.Second), Info: c.query}
			if c.query != "" {
				p.Command = "Query"
			}
			out = append(out, p)
		}
		c.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b sqlengine.Process) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// reject answers a connection that cannot be served (over the limit,
// shutting down): an error packet in place of the greeting, then close.
func (s *Server) reject(nc net.Conn, e *mysql.MyError) {
	s.stats.countCode(e.Code)
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
	b := errPacket([]byte{0, 0, 0, 0}, e)
	n := len(b) - 4
	b[0], b[1], b[2], b[3] = byte(n), byte(n>>8), byte(n>>16), 0
	_, _ = nc.Write(b)
	_ = nc.Close()
}

// New builds the CometQL server: passwords come from the auth service
// ("root" is tenant 0, a numeric user N is tenant N), statements go to eng.
// The go-mysql server object, with its RSA key for caching_sha2_password,
// is built once here. New makes the server eng's front end (SHOW
// PROCESSLIST, connection counts).
func New(cfg Config, eng *sqlengine.Engine, authSvc *auth.Service, log *slog.Logger) (*Server, error) {
	return newServer(cfg, eng, authSvc, log)
}
