// Package store is cometql's SQLite persistence: message history, log
// settings, offline queues, users_time (what pipes.Store asks for) and
// users_auth, users_data, revoked_tokens (what auth.Store asks for).
//
// # Durability
//
// The database is <Dir>/cometql.db in WAL mode. Every write goes to one
// writer goroutine that runs the writes of all callers in one transaction
// and commits them together (group commit); a caller is answered only once
// its write is committed, so a write that returned nil survives kill -9 of
// the process right after (the commit has written the WAL, which the OS
// keeps). With the default SyncFull the caller is answered only after an
// fsync of the WAL too, so the write also survives a power loss or an OS
// crash; with SyncNormal (WAL with synchronous=NORMAL) it survives the death
// of the process, not of the machine. See writer.go for how SyncFull keeps
// the fsync out of the writer's way.
//
// Reads go to a pool of read-only connections and run concurrently with the
// writer; a read that starts after a write returned sees it.
//
// # Errors
//
// Every failure of the database wraps pipes.ErrStore, so the hub and the
// front ends can classify it with errors.Is. Failures that need an operator
// also wrap ErrDiskFull or ErrReadOnly; after Close every call fails with an
// error wrapping ErrClosed. When the disk is full or read-only, writes fail
// and reads keep working.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/pipes"
)

// The Store implements what the hub and auth persist.
var (
	_ pipes.Store = (*Store)(nil)
	_ auth.Store  = (*Store)(nil)
)

// FileName is the name of the database file inside Config.Dir.
const FileName = "cometql.db"

// Sync says when a write is acknowledged.
type Sync uint8

const (
	// SyncFull acknowledges a write once the WAL holding its commit has
	// been fsynced: it survives kill -9, an OS crash and a power loss. The
	// default; one fsync covers a whole batch, and the writer keeps running
	// the next writes while the disk works.
	SyncFull Sync = iota
	// SyncNormal acknowledges a write once committed, without fsync (SQLite
	// WAL with synchronous=NORMAL): it survives kill -9 of the process (the
	// OS holds the WAL) but the last commits may be lost in a power loss or
	// an OS crash.
	SyncNormal
)

// String returns the name of s as SQLite's synchronous pragma spells it.
func (s Sync) String() string {
	if s == SyncNormal {
		return "NORMAL"
	}
	return "FULL"
}

// Config configures a Store. The zero value of every field but Dir is a
// usable default.
type Config struct {
	// Dir is the data directory, created (with parents) when missing. The
	// database is Dir/cometql.db. Required.
	Dir string
	// Sync is the commit durability; the zero value is SyncFull.
	Sync Sync
	// QueueTTL is how long a private message may wait in an offline queue:
	// Enqueue drops messages queued before now-QueueTTL. Zero means 24h;
	// negative means messages never expire.
	QueueTTL time.Duration
	// Readers is the size of the read connection pool. Zero means 4.
	Readers int
	// MaxBatch is the most writes committed in one transaction. Zero means
	// 512.
	MaxBatch int
	// BusyTimeout is how long a connection waits for a lock held by another
	// process before failing. Zero means 5s.
	BusyTimeout time.Duration
	// Now returns the current time (Enqueue's expiry); nil means time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.QueueTTL == 0 {
		c.QueueTTL = 24 * time.Hour
	}
	if c.Readers <= 0 {
		c.Readers = 4
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 512
	}
	if c.BusyTimeout <= 0 {
		c.BusyTimeout = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Sentinel errors. Each error the Store returns for them also wraps
// pipes.ErrStore.
var (
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("store: closed")
	// ErrDiskFull means the disk (or the database size limit) is full.
	ErrDiskFull = errors.New("store: disk full")
	// ErrReadOnly means the database or its file system is read-only.
	ErrReadOnly = errors.New("store: read-only")
)

// Store is the SQLite store. Every method is safe for concurrent use.
type Store struct {
	cfg  Config
	path string

	wdb *sql.DB // one connection, used only by the writer goroutine
	rdb *sql.DB // read-only pool
	cdb *sql.DB // one connection, used only by the checkpointer goroutine

	mu        sync.RWMutex // guards closed and sends on reqs
	closed    bool
	reqs      chan *request
	syncq     chan []*request // committed batches awaiting an fsync (SyncFull)
	syncSlots chan struct{}   // a token per commit awaiting its fsync: taken by the writer, freed by a sync worker
	done      chan struct{}   // closed when every request has been answered
	lock      *os.File        // holds the data directory's flock until Close

	pipes pipeCache // pipe_seq rows: the writer goroutine's only

	checkpoints     chan struct{} // wakes the checkpointer
	sinceCheckpoint atomic.Int64  // commits since the last checkpoint

	stats writerStats
}

// Open opens (creating when missing) the database in cfg.Dir, applies the
// pending migrations in one transaction and starts the writer.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("store: no data directory configured")
	}
	cfg.defaults()
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("store: data directory %q: %w", cfg.Dir, err)
	}
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	opened := false
	defer func() {
		if !opened {
			lock.Close()
		}
	}()
	s := &Store{
		lock:      lock,
		cfg:       cfg,
		path:      filepath.Join(dir, FileName),
		reqs:      make(chan *request, cfg.MaxBatch),
		syncq:     make(chan []*request, maxSyncs),
		syncSlots: make(chan struct{}, maxSyncs),
		done:      make(chan struct{}),

		checkpoints: make(chan struct{}, 1),
	}
	s.pipes.init()

	s.wdb = sql.OpenDB(newConnector(s.dsn(false),
		// Keep the WAL file from growing without bound after a burst.
		"PRAGMA journal_size_limit = 67108864",
		// Temporary b-trees (sorting, IN lists) in memory, not in files.
		"PRAGMA temp_store = MEMORY",
		// The checkpointer checkpoints; this is the backstop.
		"PRAGMA wal_autocheckpoint = "+strconv.Itoa(backstopCheckpointPages)))
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wdb.SetConnMaxIdleTime(0)
	if err := s.wdb.PingContext(ctx); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("store: open %s: %w", s.path, classify(err))
	}
	var mode string
	if err := s.wdb.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		s.wdb.Close()
		if err == nil {
			err = fmt.Errorf("journal_mode is %q, not wal", mode)
		}
		return nil, fmt.Errorf("store: open %s: %w", s.path, classify(err))
	}
	if err := migrate(ctx, s.wdb); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("store: migrate %s: %w", s.path, classify(err))
	}

	s.rdb = sql.OpenDB(newConnector(s.dsn(true)))
	s.rdb.SetMaxOpenConns(cfg.Readers)
	s.rdb.SetMaxIdleConns(cfg.Readers)
	if err := s.rdb.PingContext(ctx); err != nil {
		s.rdb.Close()
		s.wdb.Close()
		return nil, fmt.Errorf("store: open %s for reading: %w", s.path, classify(err))
	}

	s.cdb = sql.OpenDB(newConnector(s.dsn(false)))
	s.cdb.SetMaxOpenConns(1)
	s.cdb.SetMaxIdleConns(1)

	go s.run()
	opened = true
	return s, nil
}

// checkDir creates dir when missing and proves it writable, so a bad data
// directory fails at start-up with a message naming it.
func checkDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("store: cannot create data directory %q: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".cometql-probe-*")
	if err != nil {
		return fmt.Errorf("store: data directory %q is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("store: data directory %q is not writable: %w", dir, err)
	}
	return nil
}

// dsn is the go-sqlite3 data source name of the database file.
func (s *Store) dsn(readOnly bool) string {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(s.cfg.BusyTimeout.Milliseconds(), 10))
	q.Set("_foreign_keys", "0")
	q.Set("_stmt_cache_size", "64")
	q.Set("_mutex", "no")
	if readOnly {
		q.Set("mode", "ro")
	} else {
		q.Set("_journal_mode", "WAL")
		// The writer commits without fsync; with SyncFull the syncer
		// fsyncs the WAL before acknowledging (see writer.go).
		q.Set("_synchronous", "NORMAL")
		q.Set("_txlock", "immediate")
	}
	return "file:" + (&url.URL{Path: s.path}).EscapedPath() + "?" + q.Encode()
}

// connector opens go-sqlite3 connections without registering a driver
// name, running pragmas on each new connection.
type connector struct {
	dsn string
	drv *sqlite3.SQLiteDriver
}

func newConnector(dsn string, pragmas ...string) connector {
	return connector{dsn: dsn, drv: &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			for _, p := range pragmas {
				if _, err := c.Exec(p, nil); err != nil {
					return err
				}
			}
			return nil
		},
	}}
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.drv }

// Path is the database file's path.
func (s *Store) Path() string { return s.path }

// Ready returns nil while the store is open, else an error wrapping
// ErrClosed.
func (s *Store) Ready() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errClosed()
	}
	return nil
}

// Close waits for the writes already submitted to commit (and answers
// them), then closes the database. Every later call, Close included,
// returns an error wrapping ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed()
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.done
	// The writer's connection last: closing the last connection
	// checkpoints the whole WAL into the database file.
	cerr := s.cdb.Close()
	rerr := s.rdb.Close()
	werr := s.wdb.Close()
	s.lock.Close() // releases the data directory
	if err := errors.Join(cerr, rerr, werr); err != nil {
		return fmt.Errorf("store: close: %w", classify(err))
	}
	return nil
}

// kindError is a database failure: it wraps pipes.ErrStore, an optional
// kind (ErrDiskFull, ErrReadOnly, ErrClosed, ...) and the cause.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string {
	if e.kind == nil || e.err == nil {
		if e.err != nil {
			return e.err.Error()
		}
		return e.kind.Error()
	}
	return e.kind.Error() + ": " + e.err.Error()
}

func (e *kindError) Unwrap() []error {
	errs := []error{pipes.ErrStore}
	if e.kind != nil {
		errs = append(errs, e.kind)
	}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

func errClosed() error { return &kindError{kind: ErrClosed} }

// classify wraps a database error so it matches pipes.ErrStore and, when it
// applies, ErrDiskFull or ErrReadOnly. Context errors and errors already
// classified pass through unchanged.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ke *kindError
	if errors.As(err, &ke) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch {
		case se.Code == sqlite3.ErrFull || se.SystemErrno == syscall.ENOSPC || se.SystemErrno == syscall.EDQUOT:
			return &kindError{kind: ErrDiskFull, err: err}
		case se.Code == sqlite3.ErrReadonly || se.SystemErrno == syscall.EROFS ||
			// A write refused on a file made immutable (chattr +i) or
			// whose permissions were taken away under the running server.
			se.SystemErrno == syscall.EPERM || se.SystemErrno == syscall.EACCES:
			return &kindError{kind: ErrReadOnly, err: err}
		}
	}
	if errors.Is(err, sql.ErrConnDone) || err.Error() == "sql: database is closed" {
		return &kindError{kind: ErrClosed, err: err}
	}
	return &kindError{err: err}
}

// wrap names the operation that failed.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("store: %s: %w", op, classify(err))
}

// readable returns an error when the store is closed.
func (s *Store) readable() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errClosed()
	}
	return nil
}
