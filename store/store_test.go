package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/cometql/cometql/pipes"
)

// openTest opens a store in a fresh temporary directory and closes it when
// the test ends.
func openTest(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		dir  func(t *testing.T) string
	}{
		{"existing directory", func(t *testing.T) string { return t.TempDir() }},
		{"missing nested directory", func(t *testing.T) string { return filepath.Join(t.TempDir(), "a", "b", "data") }},
		{"special characters", func(t *testing.T) string { return filepath.Join(t.TempDir(), "dir with space #?%&=") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir(t)
			for round := range 2 { // the second open finds the schema in place
				s, err := Open(ctx, Config{Dir: dir})
				if err != nil {
					t.Fatalf("Open (round %d): %v", round, err)
				}
				if want := filepath.Join(dir, FileName); s.Path() != want {
					t.Errorf("Path = %q, want %q", s.Path(), want)
				}
				if _, err := os.Stat(s.Path()); err != nil {
					t.Errorf("database file: %v", err)
				}
				var mode string
				if err := s.rdb.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
					t.Errorf("journal_mode = %q, %v; want wal", mode, err)
				}
				var sync int
				if err := s.wdb.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != 1 {
					t.Errorf("synchronous = %d, %v; want 1 (NORMAL: the sync workers fsync)", sync, err)
				}
				var fk int
				if err := s.wdb.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 0 {
					t.Errorf("foreign_keys = %d, %v; want 0", fk, err)
				}
				var version, rows int
				if err := s.rdb.QueryRow("SELECT MAX(version), COUNT(*) FROM schema_version").Scan(&version, &rows); err != nil {
					t.Fatal(err)
				}
				if version != SchemaVersion() || rows != SchemaVersion() || version < 1 {
					t.Errorf("schema_version max %d rows %d, want %d", version, rows, SchemaVersion())
				}
				if err := s.SetHash(ctx, 0, 1, "h"); err != nil {
					t.Errorf("SetHash: %v", err)
				}
				if err := s.Ready(); err != nil {
					t.Errorf("Ready: %v", err)
				}
				if err := s.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			}
		})
	}
}

func TestSyncModes(t *testing.T) {
	for _, mode := range []Sync{SyncFull, SyncNormal} {
		t.Run(mode.String(), func(t *testing.T) {
			s := openTest(t, Config{Sync: mode})
			for i := range 3 {
				if err := s.SetUserTime(context.Background(), 0, 1, int64(i)); err != nil {
					t.Fatal(err)
				}
			}
			st := s.Stats()
			if mode == SyncFull && st.Syncs < 3 {
				t.Errorf("SyncFull: %d fsyncs for 3 sequential writes", st.Syncs)
			}
			if mode == SyncNormal && st.Syncs != 0 {
				t.Errorf("SyncNormal: %d fsyncs", st.Syncs)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	notDB := filepath.Join(base, "notdb")
	if err := os.MkdirAll(notDB, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(notDB, FileName), []byte(strings.Repeat("not a database ", 512)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  string
		want string
	}{
		{"no directory", "", "no data directory"},
		{"directory is a file", file, "cannot create data directory"},
		{"below a file", filepath.Join(file, "sub"), "cannot create data directory"},
		{"not a database", notDB, "store: open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(ctx, Config{Dir: tt.dir})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestOpenReadOnlyDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes to read-only directories")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	_, err := Open(context.Background(), Config{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("Open = %v, want a not writable error", err)
	}
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.wdb.Exec("INSERT INTO schema_version (version, applied_at) VALUES (999, 0)"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(ctx, Config{Dir: dir}); err == nil {
		s.Close()
		t.Fatal("Open accepted a newer schema")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("error %q does not say newer", err)
	}
}

func TestMigrationsEmbedded(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].name != "0001_init.sql" {
		t.Fatalf("migrations = %v", ms)
	}
}

// TestClose checks that Close answers every write already submitted and
// that every call afterwards fails with ErrClosed.
func TestClose(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	var wg sync.WaitGroup
	results := make([]error, n)
	for i := range n {
		wg.Go(func() { results[i] = s.SetUserData(ctx, 0, int64(i+1), fmt.Sprint(i)) })
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()

	s2 := openTest(t, Config{Dir: dir})
	data, err := s2.UserData(ctx, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range results {
		switch {
		case err == nil:
			if data[int64(i+1)] != fmt.Sprint(i) {
				t.Errorf("acknowledged write %d lost", i)
			}
		case !errors.Is(err, ErrClosed) || !errors.Is(err, pipes.ErrStore):
			t.Errorf("write %d: %v, want ErrClosed", i, err)
		}
	}

	calls := map[string]func() error{
		"Close":          s.Close,
		"AppendHistory":  func() error { return s.AppendHistory(ctx, &pipes.Message{Pipe: "p", Seq: 1, ID: "x"}, 10) },
		"History":        func() error { _, err := s.History(ctx, 0, "p", 0); return err },
		"LastSeq":        func() error { _, err := s.LastSeq(ctx, 0, "p"); return err },
		"ClearHistory":   func() error { _, err := s.ClearHistory(ctx, 0, "p"); return err },
		"DeleteMessage":  func() error { _, err := s.DeleteMessage(ctx, 0, "x"); return err },
		"SetLogLength":   func() error { return s.SetLogLength(ctx, 0, "p", 1) },
		"LogSettings":    func() error { _, err := s.LogSettings(ctx); return err },
		"Enqueue":        func() error { _, err := s.Enqueue(ctx, 0, &pipes.QueuedMessage{UserID: 1}, 10); return err },
		"Queue":          func() error { _, err := s.Queue(ctx, 0, 1, 0); return err },
		"AckQueue":       func() error { _, err := s.AckQueue(ctx, 0, 1, 1); return err },
		"ClearQueue":     func() error { _, err := s.ClearQueue(ctx, 0, 1); return err },
		"SetUserTime":    func() error { return s.SetUserTime(ctx, 0, 1, 0) },
		"UserTimes":      func() error { _, err := s.UserTimes(ctx, 0, nil); return err },
		"ResetOnline":    func() error { return s.ResetOnline(ctx, 1) },
		"SetHash":        func() error { return s.SetHash(ctx, 0, 1, "h") },
		"Hashes":         func() error { _, err := s.Hashes(ctx, 0, nil); return err },
		"DeleteHash":     func() error { _, err := s.DeleteHash(ctx, 0, 1); return err },
		"SetUserData":    func() error { return s.SetUserData(ctx, 0, 1, "d") },
		"UserData":       func() error { _, err := s.UserData(ctx, 0, nil); return err },
		"DeleteUserData": func() error { _, err := s.DeleteUserData(ctx, 0, 1); return err },
		"RevokeToken":    func() error { return s.RevokeToken(ctx, 0, "t", 1) },
		"RevokedTokens":  func() error { _, err := s.RevokedTokens(ctx, 0, nil); return err },
		"UnrevokeToken":  func() error { _, err := s.UnrevokeToken(ctx, 0, "t"); return err },
		"Ready":          s.Ready,
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrClosed) || !errors.Is(err, pipes.ErrStore) {
			t.Errorf("%s after Close = %v, want ErrClosed and pipes.ErrStore", name, err)
		}
	}
}

func TestCanceledContext(t *testing.T) {
	s := openTest(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.SetHash(ctx, 0, 1, "h"); !errors.Is(err, context.Canceled) {
		t.Errorf("SetHash = %v, want context.Canceled", err)
	}
	if _, err := s.Hashes(ctx, 0, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Hashes = %v, want context.Canceled", err)
	}
	h, err := s.Hashes(context.Background(), 0, nil)
	if err != nil || len(h) != 0 {
		t.Errorf("Hashes = %v, %v; the cancelled write must not be applied", h, err)
	}
}

// holdWriter blocks the writer goroutine until the returned function is
// called, so that the writes submitted meanwhile form one batch.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	started, hold := make(chan struct{}), make(chan struct{})
	var once sync.Once
	errc := make(chan error, 1)
	go func() {
		errc <- s.write(context.Background(), "hold", func(*sql.Tx) error {
			once.Do(func() { close(started) }) // runs again when its batch is rebuilt
			<-hold
			return nil
		})
	}()
	<-started
	return func() {
		close(hold)
		if err := <-errc; err != nil {
			t.Errorf("hold: %v", err)
		}
	}
}

// waitQueued waits until n requests wait for the writer.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.reqs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", len(s.reqs), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatchIsolation checks that in one group-commit batch a failing write
// fails alone, whether it fails cleanly (its savepoint is rolled back) or
// breaks the whole transaction (the others are run again alone).
func TestBatchIsolation(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		failing func(tx *sql.Tx) error
	}{
		{"failing statement", func(tx *sql.Tx) error {
			if _, err := tx.Exec("INSERT INTO users_data (dev_id, user_id, data) VALUES (0, 999, 'x')"); err != nil {
				return err
			}
			_, err := tx.Exec("INSERT INTO no_such_table VALUES (1)")
			return err
		}},
		{"broken transaction", func(tx *sql.Tx) error {
			if _, err := tx.Exec("ROLLBACK"); err != nil {
				return err
			}
			return errors.New("rolled back the batch")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, Config{})
			release := holdWriter(t, s)
			const n = 10
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				if i == n/2 {
					wg.Go(func() { errs[i] = s.write(ctx, "failing", tt.failing) })
				} else {
					wg.Go(func() { errs[i] = s.SetUserData(ctx, 0, int64(i+1), fmt.Sprint("data ", i)) })
				}
				waitQueued(t, s, i+1)
			}
			commits := s.Stats().Commits
			release()
			wg.Wait()
			data, err := s.UserData(ctx, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, err := range errs {
				if i == n/2 {
					if err == nil || !errors.Is(err, pipes.ErrStore) {
						t.Errorf("failing write = %v, want an error wrapping pipes.ErrStore", err)
					}
					continue
				}
				if err != nil {
					t.Errorf("write %d: %v", i, err)
				}
				if got := data[int64(i+1)]; got != fmt.Sprint("data ", i) {
					t.Errorf("user %d data = %q", i+1, got)
				}
			}
			if _, ok := data[999]; ok {
				t.Error("the failing write's first statement was committed")
			}
			if tt.name == "failing statement" {
				// the hold and the n writes were queued together: one batch
				if got := s.Stats().Commits - commits; got != 1 {
					t.Errorf("%d commits, want 1 (one batch)", got)
				}
			}
		})
	}
}

// TestGroupCommit runs 200 concurrent writers (run it with -race) and checks
// that every write is stored, in order per pipe, in fewer commits than
// writes.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{})
	const writers, perWriter = 200, 20
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			// each writer appends to a pipe of its own: appends are
			// serialized per pipe by the caller
			pipe := fmt.Sprintf("pipe_%d_%d", w%50, w)
			dev := int64(w / 50)
			user := int64(w + 1)
			for i := range perWriter {
				var err error
				switch i % 4 {
				case 0, 1:
					err = s.AppendHistory(ctx, &pipes.Message{
						DevID: dev, Pipe: pipe, Seq: int64(i + 1),
						ID: fmt.Sprintf("m%d_%d", w, i), Data: fmt.Sprint(i), Time: int64(i),
					}, 1000)
				case 2:
					_, err = s.Enqueue(ctx, dev, &pipes.QueuedMessage{UserID: user, Data: fmt.Sprint(i)}, 1000)
				case 3:
					err = s.SetUserTime(ctx, dev, user, int64(i))
				}
				if err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for w := range writers {
		dev := int64(w / 50)
		hist, err := s.History(ctx, dev, fmt.Sprintf("pipe_%d_%d", w%50, w), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != perWriter/2 {
			t.Fatalf("writer %d: %d messages, want %d", w, len(hist), perWriter/2)
		}
		for j := 1; j < len(hist); j++ {
			if hist[j].Seq <= hist[j-1].Seq {
				t.Fatalf("writer %d: history out of order: %v", w, hist)
			}
		}
		q, err := s.Queue(ctx, dev, int64(w+1), 0)
		if err != nil || len(q) != perWriter/4 {
			t.Fatalf("writer %d: queue %d, %v", w, len(q), err)
		}
	}
	st := s.Stats()
	if st.Writes != writers*perWriter || st.Failed != 0 {
		t.Errorf("stats %+v, want %d writes, 0 failed", st, writers*perWriter)
	}
	if st.Commits >= st.Writes {
		t.Errorf("%d commits for %d writes: no group commit", st.Commits, st.Writes)
	}
	t.Logf("%d writes in %d commits (%.1f per commit)", st.Writes, st.Commits, float64(st.Writes)/float64(st.Commits))
}

// TestDiskFull fills the database (through SQLite's page limit) and checks
// that writes fail with ErrDiskFull while reads keep working, and that
// writes work again once there is room.
func TestDiskFull(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{})
	if err := s.SetHash(ctx, 0, 1, "before"); err != nil {
		t.Fatal(err)
	}
	var pages int
	if err := s.wdb.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := s.wdb.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 64<<10)
	var err error
	for i := range 20 {
		if err = s.SetUserData(ctx, 0, int64(i+1), big); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrDiskFull) || !errors.Is(err, pipes.ErrStore) {
		t.Fatalf("write on a full database = %v, want ErrDiskFull and pipes.ErrStore", err)
	}
	// concurrent writes in one batch all fail on their own, none hangs
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := s.SetUserData(ctx, 0, int64(100+i), big); !errors.Is(err, ErrDiskFull) {
				t.Errorf("concurrent write %d = %v, want ErrDiskFull", i, err)
			}
		})
	}
	wg.Wait()
	if h, err := s.Hashes(ctx, 0, []int64{1}); err != nil || h[1] != "before" {
		t.Errorf("read on a full database = %v, %v", h, err)
	}
	if _, err := s.wdb.Exec("PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUserData(ctx, 0, 1, big); err != nil {
		t.Errorf("write after freeing space: %v", err)
	}
}

func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{})
	if err := s.SetHash(ctx, 0, 1, "before"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.wdb.Exec("PRAGMA query_only = 1"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetHash(ctx, 0, 2, "after"); !errors.Is(err, ErrReadOnly) || !errors.Is(err, pipes.ErrStore) {
		t.Fatalf("write on a read-only database = %v, want ErrReadOnly and pipes.ErrStore", err)
	}
	if h, err := s.Hashes(ctx, 0, nil); err != nil || len(h) != 1 || h[1] != "before" {
		t.Errorf("read on a read-only database = %v, %v", h, err)
	}
	if _, err := s.wdb.Exec("PRAGMA query_only = 0"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetHash(ctx, 0, 2, "after"); err != nil {
		t.Errorf("write after read-only: %v", err)
	}
}

// TestBatchManyFailures puts more failing writes in one batch than it
// absorbs by rebuilding (maxRetries), so the rest commit one by one.
func TestBatchManyFailures(t *testing.T) {
	for _, mode := range []Sync{SyncFull, SyncNormal} {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := context.Background()
			s := openTest(t, Config{Sync: mode})
			release := holdWriter(t, s)
			const n = 16
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				if i%3 == 1 {
					wg.Go(func() {
						errs[i] = s.write(ctx, "failing", func(tx *sql.Tx) error {
							_, err := tx.Exec("INSERT INTO no_such_table VALUES (1)")
							return err
						})
					})
				} else {
					wg.Go(func() { errs[i] = s.SetUserData(ctx, 0, int64(i+1), fmt.Sprint(i)) })
				}
				waitQueued(t, s, i+1)
			}
			release()
			wg.Wait()
			data, err := s.UserData(ctx, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, err := range errs {
				if i%3 == 1 {
					if !errors.Is(err, pipes.ErrStore) {
						t.Errorf("failing write %d = %v", i, err)
					}
				} else if err != nil || data[int64(i+1)] != fmt.Sprint(i) {
					t.Errorf("write %d = %v, stored %q", i, err, data[int64(i+1)])
				}
			}
			if st := s.Stats(); st.Failed != 5 {
				t.Errorf("%d writes failed, want 5", st.Failed)
			}
		})
	}
}

// TestClassify: database errors wrap the sentinel that tells an operator
// what to fix, whatever SQLite's own code for them.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		name string
		err  sqlite3.Error
		want error
	}{
		{"SQLITE_FULL", sqlite3.Error{Code: sqlite3.ErrFull}, ErrDiskFull},
		{"write: ENOSPC", sqlite3.Error{Code: sqlite3.ErrIoErr, ExtendedCode: sqlite3.ErrIoErrWrite, SystemErrno: syscall.ENOSPC}, ErrDiskFull},
		{"write: EDQUOT", sqlite3.Error{Code: sqlite3.ErrIoErr, ExtendedCode: sqlite3.ErrIoErrWrite, SystemErrno: syscall.EDQUOT}, ErrDiskFull},
		{"SQLITE_READONLY", sqlite3.Error{Code: sqlite3.ErrReadonly}, ErrReadOnly},
		{"write: EROFS", sqlite3.Error{Code: sqlite3.ErrIoErr, ExtendedCode: sqlite3.ErrIoErrWrite, SystemErrno: syscall.EROFS}, ErrReadOnly},
		{"write: EPERM (chattr +i)", sqlite3.Error{Code: sqlite3.ErrIoErr, ExtendedCode: sqlite3.ErrIoErrWrite, SystemErrno: syscall.EPERM}, ErrReadOnly},
		{"open: EACCES", sqlite3.Error{Code: sqlite3.ErrCantOpen, SystemErrno: syscall.EACCES}, ErrReadOnly},
		{"write: EIO", sqlite3.Error{Code: sqlite3.ErrIoErr, ExtendedCode: sqlite3.ErrIoErrWrite, SystemErrno: syscall.EIO}, nil},
	} {
		err := classify(fmt.Errorf("wrapped: %w", c.err))
		if !errors.Is(err, pipes.ErrStore) {
			t.Errorf("%s: %v does not wrap pipes.ErrStore", c.name, err)
		}
		for _, kind := range []error{ErrDiskFull, ErrReadOnly} {
			if errors.Is(err, kind) != (kind == c.want) {
				t.Errorf("%s: %v: errors.Is(%v) = %v", c.name, err, kind, !(kind == c.want))
			}
		}
	}
}

func TestDataDirectoryLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), Config{Dir: dir}); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Open of a directory in use: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(context.Background(), Config{Dir: dir})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}
