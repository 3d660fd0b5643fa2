package sqlengine

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"

	// The test driver provides the literal and placeholder node types the
	// parser builds.
	_ "github.com/pingcap/tidb/pkg/parser/test_driver"

	"github.com/cometql/cometql/internal/version"
	"github.com/cometql/cometql/pipes"
)

// Config configures the engine. A zero field takes the default its comment
// names.
type Config struct {
	// MaxMessageBytes caps pipes_messages.message, users_messages.message
	// and users_data.data (default: the hub's limit, 64 KiB).
	MaxMessageBytes int
	// MaxAllowedPacket is what @@max_allowed_packet reports (default
	// 64 MiB); the front end enforces it.
	MaxAllowedPacket int64
	// IdleTimeout is what @@wait_timeout reports (default 8h); the front end
	// enforces it.
	IdleTimeout time.Duration
	// MaxConnections is what @@max_connections reports (default 1000).
	MaxConnections int
	// NodeName is shown as @@hostname and in SHOW STATUS (default: the
	// hub engine's node name).
	NodeName string
	// TLS reports whether the front end offers TLS (@@have_ssl).
	TLS bool
}

// ServerVersion is the version string the CometQL port announces and
// VERSION() returns.
func ServerVersion() string { return version.MySQLVersion() }

// Engine executes CometQL statements against the hub and auth. It is safe for
// concurrent use; each connection works through its own Session.
type Engine struct {
	cfg   Config
	hub   *pipes.Hub
	auth  authBackend
	fe    Frontend
	start time.Time

	statements atomic.Uint64
	errors     atomic.Uint64
}

// newEngine builds an engine over any auth backend (New uses the auth
// service).
func newEngine(cfg Config, hub *pipes.Hub, ab authBackend, fe Frontend) *Engine {
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = hub.Config().MaxMessageBytes
	}
	if cfg.MaxAllowedPacket <= 0 {
		cfg.MaxAllowedPacket = 64 << 20
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 8 * time.Hour
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 1000
	}
	if cfg.NodeName == "" {
		cfg.NodeName = hub.Engine().NodeName()
	}
	return &Engine{cfg: cfg, hub: hub, auth: ab, fe: fe, start: time.Now()}
}

// SetFrontend sets the front end asked for SHOW PROCESSLIST and connection
// counts, for when the front end is built after the engine. Call it before
// serving.
func (e *Engine) SetFrontend(fe Frontend) { e.fe = fe }

// Statements is the number of statements executed and the number that
// failed.
func (e *Engine) Statements() (total, failed uint64) {
	return e.statements.Load(), e.errors.Load()
}

// Session is one CometQL connection's state: its tenant, the selected
// database and user variables. A Session is used by one goroutine at a time.
// While it parses and translates a query it holds a TiDB parser (which is
// not safe for concurrent use) taken from a pool: a parser costs ~16 KiB, and
// idle connections hold none.
type Session struct {
	eng      *Engine
	dev      int64
	user     string
	host     string
	connID   uint32
	db       string
	p        *parser.Parser // held during a call, nil between calls
	userVars map[string]any
}

// NewSession starts a session for a connection authenticated as user in
// tenant dev.
func (e *Engine) NewSession(dev int64, user string, connID uint32) *Session {
	return &Session{eng: e, dev: dev, user: user, host: "localhost", connID: connID, userVars: map[string]any{}}
}

// SetClientHost records the client's host, as USER() shows it.
func (s *Session) SetClientHost(host string) { s.host = host }

// Dev is the session's tenant.
func (s *Session) Dev() int64 { return s.dev }

// DB is the selected database, "" when none.
func (s *Session) DB() string { return s.db }

// UseDB selects a database (COM_INIT_DB, USE): CometQL_v1 is the only one;
// any other name gives 1049.
func (s *Session) UseDB(name string) error {
	if !strings.EqualFold(name, DatabaseName) {
		return errUnknownDB(name)
	}
	s.db = DatabaseName
	return nil
}

func init() {
	// The parser builds DECIMAL literals (and integers beyond uint64)
	// through this hook; the test driver's decimal panics on literals with
	// many digits. Such literals become float64 values here.
	ast.NewDecimal = func(lit string) (any, error) {
		f, err := strconv.ParseFloat(lit, 64)
		if err != nil {
			return nil, fmt.Errorf("number %.40q out of range", lit)
		}
		return f, nil
	}
}

var parsers = sync.Pool{New: func() any { return parser.New() }}

// releaseParser returns the session's parser to the pool once the ASTs it
// built are translated.
func (s *Session) releaseParser() {
	if s.p != nil {
		parsers.Put(s.p)
		s.p = nil
	}
}

// parserPanics counts panics of the TiDB parser turned into syntax errors
// (the fuzz test fails when it grows).
var parserPanics atomic.Uint64

// parse parses a query into statements; errors are 1064 (or 1065 for an
// empty query). A panic inside the third-party parser becomes a syntax
// error: hostile input must never take the server down.
func (s *Session) parse(query string) (stmts []ast.StmtNode, err error) {
	defer func() {
		if r := recover(); r != nil {
			parserPanics.Add(1)
			s.p = nil // its state is unknown now: not returned to the pool
			stmts, err = nil, errSyntax(fmt.Sprintf("the statement could not be parsed (%v)", r))
		}
	}()
	if s.p == nil {
		s.p = parsers.Get().(*parser.Parser)
	}
	stmts, _, err = s.p.ParseSQL(query)
	if err != nil {
		// CppComet's spellings MySQL refuses (see compatRewrite); the
		// error stays the one about the query as sent.
		if alt, ok := compatRewrite(query); ok {
			if altStmts, _, altErr := s.p.ParseSQL(alt); altErr == nil {
				stmts, err = altStmts, nil
			}
		}
	}
	if err != nil {
		return nil, errSyntax(syntaxDetail(err))
	}
	if len(stmts) == 0 {
		return nil, NewError(ErrCodeEmptyQuery, "Query was empty")
	}
	return stmts, nil
}

// syntaxDetail shortens the parser's error text.
func syntaxDetail(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "line "); i >= 0 {
		msg = msg[i:]
	}
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return strings.ToValidUTF8(msg, "?")
}

// Execute runs one statement. Several statements in one query are refused
// with 1064 (clients enable multi-statements explicitly: ExecuteMulti).
// Every error is a *mysql.MyError.
func (s *Session) Execute(ctx context.Context, query string) (*Result, error) {
	if st, ok := fastInsert(query); ok {
		return s.exec(ctx, st, nil)
	}
	defer s.releaseParser()
	stmts, err := s.parse(query)
	if err != nil {
		s.eng.errors.Add(1)
		return nil, err
	}
	if len(stmts) > 1 {
		s.eng.errors.Add(1)
		return nil, errSyntax("several statements in one query, but multi-statements are not enabled")
	}
	return s.run(ctx, stmts[0], nil)
}

// ExecuteMulti runs the statements of a query in order and stops at the
// first error: it returns the results of the statements before it and the
// error (a *mysql.MyError), as the MySQL multi-statement protocol reports
// them.
func (s *Session) ExecuteMulti(ctx context.Context, query string) ([]*Result, error) {
	if st, ok := fastInsert(query); ok {
		r, err := s.exec(ctx, st, nil)
		if err != nil {
			return nil, err
		}
		return []*Result{r}, nil
	}
	defer s.releaseParser()
	stmts, err := s.parse(query)
	if err != nil {
		s.eng.errors.Add(1)
		return nil, err
	}
	out := make([]*Result, 0, len(stmts))
	for _, n := range stmts {
		r, err := s.run(ctx, n, nil)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Stmt is a prepared statement: translated once, executed with arguments
// many times. It belongs to the session that prepared it.
type Stmt struct {
	st      any
	params  int
	columns []Column
	query   string
}

// ParamCount is the number of ? placeholders.
func (st *Stmt) ParamCount() int { return st.params }

// Columns are the result columns when the statement returns rows and they
// are known before execution, else nil.
func (st *Stmt) Columns() []Column { return st.columns }

// Query is the statement's text.
func (st *Stmt) Query() string { return st.query }

// Prepare parses and translates one statement with ? placeholders.
func (s *Session) Prepare(query string) (*Stmt, error) {
	defer s.releaseParser()
	stmts, err := s.parse(query)
	if err != nil {
		return nil, err
	}
	if len(stmts) > 1 {
		return nil, errSyntax("a prepared statement holds one statement")
	}
	tr := &translator{}
	st, err := tr.statement(stmts[0])
	if err != nil {
		return nil, err
	}
	out := &Stmt{st: st, params: tr.params, query: query}
	switch x := st.(type) {
	case *selectStmt:
		out.columns = selectColumns(x)
	case *showStmt:
		out.columns = x.schema
	}
	return out, nil
}

// ExecuteStmt runs a prepared statement with its arguments: nil, integers,
// floats, strings or []byte (anything else is NULL). Arguments are values,
// never SQL text.
func (s *Session) ExecuteStmt(ctx context.Context, st *Stmt, args []any) (*Result, error) {
	if len(args) != st.params {
		s.eng.errors.Add(1)
		return nil, NewError(ErrCodeWrongArguments, "Incorrect arguments to EXECUTE: %d placeholders, %d arguments", st.params, len(args))
	}
	norm := make([]any, len(args))
	for i, a := range args {
		norm[i] = normalize(a)
	}
	return s.exec(ctx, st.st, norm)
}

// run translates and executes one parsed statement.
func (s *Session) run(ctx context.Context, n ast.StmtNode, args []any) (*Result, error) {
	tr := &translator{}
	st, err := tr.statement(n)
	if err != nil {
		s.eng.statements.Add(1)
		s.eng.errors.Add(1)
		return nil, err
	}
	if tr.params > 0 {
		s.eng.statements.Add(1)
		s.eng.errors.Add(1)
		return nil, errSyntax("placeholders (?) are only allowed in prepared statements")
	}
	return s.exec(ctx, st, args)
}

func (s *Session) exec(ctx context.Context, st any, args []any) (*Result, error) {
	s.eng.statements.Add(1)
	r, err := s.dispatch(ctx, st, args)
	if err != nil {
		s.eng.errors.Add(1)
		return nil, mapError(err)
	}
	return r, nil
}

func (s *Session) dispatch(ctx context.Context, st any, args []any) (*Result, error) {
	e := &env{args: args, sess: s}
	switch x := st.(type) {
	case *selectStmt:
		return s.execSelect(ctx, x, e)
	case *insertStmt:
		return s.execInsert(ctx, x, e)
	case *deleteStmt:
		return s.execDelete(ctx, x, e)
	case *showStmt:
		return s.execShow(ctx, x, e)
	case *setStmt:
		for _, a := range x.vars {
			s.userVars[a.name] = a.e.eval(e)
		}
		return &Result{}, nil
	case *useStmt:
		if err := s.UseDB(x.db); err != nil {
			return nil, err
		}
		return &Result{}, nil
	case *noopStmt:
		return &Result{}, nil
	}
	return nil, errUnsupported("this statement")
}

// FieldList answers COM_FIELD_LIST: the columns of a table whose names match
// a LIKE wildcard ("" for all).
func (s *Session) FieldList(table, wildcard string) ([]Column, error) {
	t := lookupTable(table)
	if t == nil {
		return nil, errUnknownTable(table)
	}
	var out []Column
	for _, c := range t.columns() {
		if wildcard == "" || likeMatch(c.Name, wildcard, '\\') {
			out = append(out, c)
		}
	}
	return out, nil
}
