package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// storageFixture is a server with data to read, a browser subscribed to a
// pipe that does not log and to one that does, and an authorized browser
// of user 7, for the tests of a data directory that cannot be written.
type storageFixture struct {
	s        *server
	db       *sql.DB
	c        *sql.Conn // the connection that sees the failures
	anon     *wsSub
	user     *wsSub
	anonGot  chan *wsFrame
	userGot  chan *wsFrame
	acked    int // messages stored in st_log
	ackedMsg []string
}

func newStorageFixture(t *testing.T, dir string) *storageFixture {
	t.Helper()
	f := &storageFixture{anonGot: make(chan *wsFrame, 100), userGot: make(chan *wsFrame, 100)}
	f.s = startServer(t, dir)
	f.db = f.s.db(t)
	mustExec(t, f.db, "INSERT INTO pipes_settings (name, length) VALUES ('st_log', 1000)")
	mustExec(t, f.db, "INSERT INTO users_auth (id, hash) VALUES (7, 'key7')")
	mustExec(t, f.db, "INSERT INTO users_data (id, data) VALUES (7, 'data of 7')")
	for i := range 3 {
		m := fmt.Sprintf("before %d", i)
		mustExec(t, f.db, "INSERT INTO pipes_messages (name, event, message) VALUES ('st_log', 'e', ?)", m)
		f.ackedMsg = append(f.ackedMsg, m)
	}
	var err error
	if f.anon, err = dialSub(f.s.httpAddr, nil, func(fr *wsFrame) { f.anonGot <- fr }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.anon.close)
	if err := f.anon.subscribe("st_live", "st_log", "user_status_7"); err != nil {
		t.Fatal(err)
	}
	if f.user, err = dialSubAs(f.s.httpAddr, nil, 7, "key7", func(fr *wsFrame) { f.userGot <- fr }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.user.close)
	waitSubscribed(t, f.db, map[string]int{"st_live": 1, "st_log": 1})
	if f.c, err = f.db.Conn(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.c.Close() })
	return f
}

// expectFrame waits for a frame with text want on ch.
func expectFrame(t *testing.T, ch chan *wsFrame, what, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case fr := <-ch:
			if fr.text() == want {
				return
			}
		case <-deadline:
			t.Errorf("%s: %q not received", what, want)
			return
		}
	}
}

// storageError checks that err is a MySQL error that says why the write
// failed (one of the words in why).
func storageError(t *testing.T, what string, err error, why ...string) {
	t.Helper()
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		t.Errorf("%s: want a MySQL error packet, got %v", what, err)
		return
	}
	msg := strings.ToLower(me.Message)
	for _, w := range why {
		if strings.Contains(msg, w) {
			return
		}
	}
	t.Errorf("%s: error %d %q does not say why (want one of %q)", what, me.Number, me.Message, why)
}

// stillServing checks, while writes fail: the failing connection stays
// usable, reads work, live delivery works (pipes that do not log, private
// messages to online users).
func (f *storageFixture) stillServing(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var one int
	if err := f.c.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("the connection is not usable after the failure: %v", err)
	}
	var got []string
	rows, err := f.c.QueryContext(ctx, "SELECT message FROM pipes_messages WHERE name = 'st_log' ORDER BY `index`")
	if err != nil {
		t.Errorf("history not readable: %v", err)
	} else {
		for rows.Next() {
			var m string
			_ = rows.Scan(&m)
			got = append(got, m)
		}
		rows.Close()
		if fmt.Sprint(got) != fmt.Sprint(f.ackedMsg) {
			t.Errorf("history read while writes fail:\n got %q\nwant %q", got, f.ackedMsg)
		}
	}
	var hash, data string
	if err := f.c.QueryRowContext(ctx, "SELECT hash FROM users_auth WHERE id = 7").Scan(&hash); err != nil || hash != "key7" {
		t.Errorf("users_auth not readable: %q %v", hash, err)
	}
	if err := f.c.QueryRowContext(ctx, "SELECT data FROM users_data WHERE id = 7").Scan(&data); err != nil || data != "data of 7" {
		t.Errorf("users_data not readable: %q %v", data, err)
	}
	if _, err := f.c.ExecContext(ctx, "INSERT INTO pipes_messages (name, event, message) VALUES ('st_live', 'e', 'live while the disk fails')"); err != nil {
		t.Errorf("publish to a pipe that does not log: %v", err)
	}
	expectFrame(t, f.anonGot, "live pipe", "live while the disk fails")
	if _, err := f.c.ExecContext(ctx, "INSERT INTO users_messages (id, event, message) VALUES (7, 'pm', 'private while the disk fails')"); err != nil {
		t.Errorf("private message to an online user: %v", err)
	}
	expectFrame(t, f.userGot, "private message", "private while the disk fails")
	// A new browser can still connect and is served.
	if sub, err := dialSub(f.s.httpAddr, nil, nil); err != nil {
		t.Errorf("new browser while the disk fails: %v", err)
	} else {
		sub.close()
	}
	// Presence goes on: user 7's last connection closing is announced
	// (users_time, which cannot be written now, is not).
	f.user.close()
	expectFrame(t, f.anonGot, "offline event of user 7", "offline")
}

// TestFaultDiskFull: when the file system of the data directory is full,
// writes fail with a MySQL error that says so and the connection stays
// usable; reads and live delivery go on; once space is freed writes work
// again, and what was acknowledged survives a restart.
//
// The data directory is a small tmpfs (mounting needs root; the test
// skips with a message otherwise), filled with a file.
func TestFaultDiskFull(t *testing.T) {
	dir := mountTmpfs(t, 16<<20)
	f := newStorageFixture(t, dir)
	filler := fillDisk(t, dir)

	// Write until the store needs space it cannot get. Some writes may fit
	// in space SQLite already holds; a few hundred 32 KiB messages cannot.
	big := strings.Repeat("d", 32<<10)
	ctx := context.Background()
	var failure error
	for i := range 1000 {
		m := fmt.Sprintf("%d %s", i, big)
		if _, err := f.c.ExecContext(ctx, "INSERT INTO pipes_messages (name, event, message) VALUES ('st_log', 'e', ?)", m); err != nil {
			failure = err
			break
		}
		f.ackedMsg = append(f.ackedMsg, m)
	}
	if failure == nil {
		t.Fatal("1000 messages of 32 KiB written to a full 16 MiB file system")
	}
	storageError(t, "history write on a full disk", failure, "disk full", "full")
	t.Logf("%d messages stored after the disk filled; then: %v", len(f.ackedMsg)-3, failure)

	// Other persistent writes fail too (or fit in space already held).
	if _, err := f.c.ExecContext(ctx, "INSERT INTO users_messages (id, event, message) VALUES (8, 'pm', ?)", big); err != nil {
		storageError(t, "offline queue write on a full disk", err, "disk full", "full")
	}
	f.stillServing(t)
	if _, err := os.Stat(f.s.dataDir); err != nil {
		t.Fatal(err)
	}

	// Space comes back: writes work again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.ExecContext(ctx, "INSERT INTO pipes_messages (name, event, message) VALUES ('st_log', 'e', 'after the disk has space again')"); err != nil {
		t.Fatalf("write after space was freed: %v", err)
	}
	f.ackedMsg = append(f.ackedMsg, "after the disk has space again")
	mustExec(t, f.db, "INSERT INTO users_data (id, data) VALUES (8, 'written after')")

	// Everything acknowledged survives a restart.
	f.s.kill()
	s2 := startServer(t, dir)
	db2 := s2.db(t)
	got := queryStrings(t, db2, "SELECT message FROM pipes_messages WHERE name = 'st_log' ORDER BY `index`")
	if fmt.Sprint(got) != fmt.Sprint(f.ackedMsg) {
		t.Errorf("history after restart: %d messages, want %d", len(got), len(f.ackedMsg))
	}
	checkOne(t, db2, "SELECT data FROM users_data WHERE id = 8", "written after")
}

// immutableDir returns a new directory on a file system where chattr +i
// makes writes through already open descriptors fail (ext4, xfs, btrfs;
// not tmpfs), trying the test's temporary directory, then /var/tmp. It
// skips the test when there is none, or no chattr.
func immutableDir(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("chattr"); err != nil {
		t.Skipf("chattr not installed (e2fsprogs): %v", err)
	}
	var tried []string
	for _, parent := range []string{"", "/var/tmp"} {
		var dir string
		if parent == "" {
			dir = t.TempDir()
		} else {
			d, err := os.MkdirTemp(parent, "cometql-e2e-ro-")
			if err != nil {
				continue
			}
			dir = d
			t.Cleanup(func() { os.RemoveAll(d) })
		}
		if err := probeImmutable(dir); err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", dir, err))
			continue
		}
		return dir
	}
	t.Skipf("no file system here makes chattr +i block writes to open files: %s", strings.Join(tried, "; "))
	return ""
}

func probeImmutable(dir string) error {
	path := filepath.Join(dir, "probe")
	fd, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	defer fd.Close()
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		return fmt.Errorf("chattr +i: %v: %s", err, strings.TrimSpace(string(out)))
	}
	defer exec.Command("chattr", "-i", path).Run()
	if _, err := fd.Write([]byte("x")); err == nil {
		return errors.New("writes to an open immutable file succeed")
	}
	return nil
}

// chattrAll sets or clears the immutable flag of dir and everything in it.
func chattrAll(t *testing.T, flag, dir string) {
	t.Helper()
	if out, err := exec.Command("chattr", "-R", flag, dir).CombinedOutput(); err != nil {
		t.Errorf("chattr -R %s %s: %v: %s", flag, dir, err, out)
	}
}

// TestFaultReadOnlyDataDir: when the data directory becomes read-only
// under a running server, writes fail with a MySQL error that says so and
// the connection stays usable; reads and live delivery go on; writes work
// again once the directory is writable.
//
// Root ignores file modes, so the directory and its files are made
// immutable (chattr +i) on a file system that enforces it on open files.
func TestFaultReadOnlyDataDir(t *testing.T) {
	dir := immutableDir(t)
	f := newStorageFixture(t, dir)
	chattrAll(t, "+i", dir)
	unlocked := false
	unlock := func() {
		if !unlocked {
			unlocked = true
			chattrAll(t, "-i", dir)
		}
	}
	t.Cleanup(unlock)

	ctx := context.Background()
	_, err := f.c.ExecContext(ctx, "INSERT INTO pipes_messages (name, event, message) VALUES ('st_log', 'e', 'while read-only')")
	if err == nil {
		t.Fatal("a history write succeeded in a read-only data directory")
	}
	storageError(t, "history write in a read-only data directory", err, "read-only", "read only")
	_, err = f.c.ExecContext(ctx, "INSERT INTO users_auth (id, hash) VALUES (9, 'key9')")
	if err == nil {
		t.Error("a users_auth write succeeded in a read-only data directory")
	} else {
		storageError(t, "users_auth write in a read-only data directory", err, "read-only", "read only")
	}
	t.Logf("read-only: %v", err)
	f.stillServing(t)

	unlock()
	if _, err := f.c.ExecContext(ctx, "INSERT INTO pipes_messages (name, event, message) VALUES ('st_log', 'e', 'writable again')"); err != nil {
		t.Fatalf("write once the directory is writable again: %v", err)
	}
	mustExec(t, f.db, "INSERT INTO users_auth (id, hash) VALUES (9, 'key9')")
	checkOne(t, f.db, "SELECT hash FROM users_auth WHERE id = 9", "key9")
}
