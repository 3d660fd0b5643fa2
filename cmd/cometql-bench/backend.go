package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// backend is the CometQL side of a run: publishers and a few queries.
// The MySQL implementation is the real one; tests swap in a fake.
type backend interface {
	// publisher opens one publisher connection.
	publisher(ctx context.Context) (publisherConn, error)
	// exec runs one statement (literal SQL).
	exec(ctx context.Context, query string) error
	// pipeUsers sums the users column of the pipes whose name starts with
	// prefix (SELECT name, users FROM pipes WHERE name LIKE 'prefix%').
	pipeUsers(ctx context.Context, prefix string) (int, error)
	close() error
}

// publisherConn publishes messages over one connection, one at a time.
type publisherConn interface {
	publish(ctx context.Context, pipe, event, message string) error
	close() error
}

// SQL modes of the publishers.
const (
	sqlPrepared = "prepared" // INSERT ... VALUES (?, ?, ?) prepared once per connection (binary protocol)
	sqlInterp   = "interp"   // the same text with interpolateParams=true: the driver sends literal SQL
	sqlLiteral  = "literal"  // SQL built by the tool with quoted literals, no placeholders
)

const insertSQL = "INSERT INTO pipes_messages (name, event, message) VALUES (?, ?, ?)"

// openBackend opens the backend of a run; a variable so tests can fake it.
var openBackend = openSQLBackend

type sqlBackend struct {
	db   *sql.DB
	mode string
}

func openSQLBackend(o *options) (backend, error) {
	cfg := mysql.NewConfig()
	cfg.User = o.User
	cfg.Passwd = o.Password
	cfg.Net = "tcp"
	cfg.Addr = o.QLAddr
	cfg.InterpolateParams = o.SQLMode == sqlInterp
	cfg.Timeout = 10 * time.Second
	cfg.ReadTimeout = 60 * time.Second
	cfg.WriteTimeout = 60 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	n := max(o.Publishers, 1) + 2
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("CometQL %s: %w", o.QLAddr, err)
	}
	return &sqlBackend{db: db, mode: o.SQLMode}, nil
}

func (b *sqlBackend) close() error { return b.db.Close() }

func (b *sqlBackend) exec(ctx context.Context, query string) error {
	_, err := b.db.ExecContext(ctx, query)
	return err
}

func (b *sqlBackend) pipeUsers(ctx context.Context, prefix string) (int, error) {
	rows, err := b.db.QueryContext(ctx, "SELECT name, users FROM pipes WHERE name LIKE "+quoteSQL(prefix+"%"))
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	total := 0
	for rows.Next() {
		var name string
		var users int
		if err := rows.Scan(&name, &users); err != nil {
			return 0, err
		}
		if strings.HasPrefix(name, prefix) {
			total += users
		}
	}
	return total, rows.Err()
}

func (b *sqlBackend) publisher(ctx context.Context) (publisherConn, error) {
	c, err := b.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	p := &sqlPublisher{c: c, mode: b.mode}
	if b.mode == sqlPrepared {
		if p.stmt, err = c.PrepareContext(ctx, insertSQL); err != nil {
			c.Close()
			return nil, fmt.Errorf("prepare: %w", err)
		}
	}
	return p, nil
}

// sqlPublisher is one pinned CometQL connection.
type sqlPublisher struct {
	c      *sql.Conn
	stmt   *sql.Stmt
	mode   string
	buf    []byte
	multi  *sql.Stmt // prepared multi-row INSERT of multiN rows
	multiN int
	args   []any
}

// multiInsertSQL is the INSERT of n rows with placeholders.
func multiInsertSQL(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO pipes_messages (name, event, message) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?)")
	}
	return b.String()
}

// publishRows publishes rows with one multi-row INSERT, as a backend
// sending many messages at once does.
func (p *sqlPublisher) publishRows(ctx context.Context, rows []pubRow) error {
	switch p.mode {
	case sqlPrepared, sqlInterp:
		p.args = p.args[:0]
		for _, r := range rows {
			p.args = append(p.args, r.pipe, r.event, r.message)
		}
		if p.mode == sqlInterp {
			_, err := p.c.ExecContext(ctx, multiInsertSQL(len(rows)), p.args...)
			return err
		}
		if p.multi == nil || p.multiN != len(rows) {
			if p.multi != nil {
				p.multi.Close()
			}
			st, err := p.c.PrepareContext(ctx, multiInsertSQL(len(rows)))
			if err != nil {
				p.multi = nil
				return fmt.Errorf("prepare: %w", err)
			}
			p.multi, p.multiN = st, len(rows)
		}
		_, err := p.multi.ExecContext(ctx, p.args...)
		return err
	}
	p.buf = append(p.buf[:0], "INSERT INTO pipes_messages (name, event, message) VALUES "...)
	for i, r := range rows {
		if i > 0 {
			p.buf = append(p.buf, ", "...)
		}
		p.buf = append(p.buf, '(')
		p.buf = appendQuoted(p.buf, r.pipe)
		p.buf = append(p.buf, ", "...)
		p.buf = appendQuoted(p.buf, r.event)
		p.buf = append(p.buf, ", "...)
		p.buf = appendQuoted(p.buf, r.message)
		p.buf = append(p.buf, ')')
	}
	_, err := p.c.ExecContext(ctx, string(p.buf))
	return err
}

func (p *sqlPublisher) publish(ctx context.Context, pipe, event, message string) error {
	var err error
	switch p.mode {
	case sqlPrepared:
		_, err = p.stmt.ExecContext(ctx, pipe, event, message)
	case sqlInterp:
		_, err = p.c.ExecContext(ctx, insertSQL, pipe, event, message)
	default:
		p.buf = append(p.buf[:0], "INSERT INTO pipes_messages (name, event, message) VALUES ("...)
		p.buf = appendQuoted(p.buf, pipe)
		p.buf = append(p.buf, ", "...)
		p.buf = appendQuoted(p.buf, event)
		p.buf = append(p.buf, ", "...)
		p.buf = appendQuoted(p.buf, message)
		p.buf = append(p.buf, ')')
		_, err = p.c.ExecContext(ctx, string(p.buf))
	}
	return err
}

func (p *sqlPublisher) close() error {
	if p.stmt != nil {
		p.stmt.Close()
	}
	if p.multi != nil {
		p.multi.Close()
	}
	return p.c.Close()
}

// appendQuoted appends s as a single-quoted MySQL string literal.
func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'':
			dst = append(dst, '\\', '\'')
		case '\\':
			dst = append(dst, '\\', '\\')
		case 0:
			dst = append(dst, '\\', '0')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case 0x1a:
			dst = append(dst, '\\', 'Z')
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '\'')
}

func quoteSQL(s string) string { return string(appendQuoted(nil, s)) }
