package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// bigInsert is one multi-row INSERT of rows messages into a pipe.
func bigInsert(pipe string, rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO pipes_messages (name, event, message) VALUES ")
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "('%s', 'e', 'm%d')", pipe, i)
	}
	return b.String()
}

// slowInsertRows calibrates a multi-row INSERT into a logging pipe (every
// row a commit the OK waits for) that takes about want on this machine.
func slowInsertRows(t *testing.T, db *sql.DB, want time.Duration) int {
	t.Helper()
	mustExec(t, db, "INSERT INTO pipes_settings (name, length) VALUES ('calibrate', 1000)")
	const n = 50
	start := time.Now()
	mustExec(t, db, bigInsert("calibrate", n))
	per := time.Since(start) / n
	rows := int(want / max(per, time.Microsecond))
	return min(max(rows, 100), 1000)
}

// TestFaultGracefulShutdown: on SIGTERM the server stops accepting (new
// CometQL connections and WebSocket upgrades are refused), lets the
// statements in flight finish with OK and makes them durable, closes
// browser connections with a TCP close (never a Close frame), and exits
// with code 0 within 10 s (SPEC 1, 3.3 rule 1, 7).
func TestFaultGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	db := s.db(t)
	rows := slowInsertRows(t, db, time.Second)

	const statements = 4
	for i := range statements {
		mustExec(t, db, fmt.Sprintf("INSERT INTO pipes_settings (name, length) VALUES ('gs%d', 1000)", i))
	}
	subs := dialSubs(t, s.httpAddr, 20, func(int) []string { return []string{"gs_live"} }, nil)
	// A long-poll browser, whose poll will be held when SIGTERM comes.
	lp, err := openLP(s.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.send("subscription\ngs_live"); err != nil {
		t.Fatal(err)
	}
	waitSubscribed(t, db, map[string]int{"gs_live": len(subs) + 1})
	if code, frames, err := lp.poll(); err != nil || code != 200 || len(frames) == 0 {
		t.Fatalf("first poll: %d %d frames %v", code, len(frames), err)
	}
	lpDone := make(chan string, 1)
	go func() {
		code, frames, err := lp.poll() // held: nothing more is published
		lpDone <- fmt.Sprintf("HTTP %d, %d frames, err %v", code, len(frames), err)
	}()

	conns := make([]*sql.Conn, statements)
	for i := range conns {
		c, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	type outcome struct {
		affected int64
		err      error
		at       time.Time
	}
	results := make([]outcome, statements)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			r, err := c.ExecContext(context.Background(), bigInsert(fmt.Sprintf("gs%d", i), rows))
			results[i].err, results[i].at = err, time.Now()
			if err == nil {
				results[i].affected, _ = r.RowsAffected()
			}
		})
	}
	// Wait until every statement is executing: its first rows are stored.
	for i := range statements {
		if !waitUntil(context.Background(), 30*time.Second, func() bool {
			var n int
			err := db.QueryRow("SELECT COUNT(*) FROM pipes_messages WHERE name = ?", fmt.Sprintf("gs%d", i)).Scan(&n)
			return err == nil && n > 0
		}) {
			t.Fatalf("statement %d did not start", i)
		}
	}
	var stored int
	if err := db.QueryRow("SELECT COUNT(*) FROM pipes_messages WHERE name LIKE 'gs%'").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	db.Close() // its idle connections would only be closed by the shutdown

	sigAt := time.Now()
	s.signal(syscall.SIGTERM)
	if stored >= statements*rows {
		t.Logf("the statements finished before SIGTERM (%d rows each): in-flight not exercised", rows)
	}
	if !s.waitLog("shutting down", 5*time.Second) {
		t.Fatalf("no shutdown log line\n%s", s.logs())
	}

	// New CometQL connections are refused (connection refused, or a 1053
	// error packet in place of the greeting) while the statements run.
	refusedQL := waitUntil(context.Background(), 3*time.Second, func() bool {
		ok, _, _ := qlGreeting(s.qlAddr)
		return !ok
	})
	if !refusedQL {
		t.Errorf("a new CometQL connection was still accepted 3 s after SIGTERM")
	}
	refusedWS := waitUntil(context.Background(), 3*time.Second, func() bool {
		sub, err := dialSub(s.httpAddr, nil, nil)
		if err == nil {
			sub.close()
			return false
		}
		return true
	})
	if !refusedWS {
		t.Errorf("a new WebSocket was still accepted 3 s after SIGTERM")
	}
	refusedAt := time.Now()

	// Browsers: TCP close, never a Close frame.
	for i, sub := range subs {
		select {
		case <-sub.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("browser %d still connected 10 s after SIGTERM", i)
		}
		if err := closedByTCP(sub.readErr()); err != nil {
			t.Errorf("browser %d: %v", i, err)
		}
	}

	// The held long-poll request ends with the session, not after its
	// 25 s hold.
	select {
	case r := <-lpDone:
		t.Logf("held long-poll request at shutdown: %s", r)
	case <-time.After(10 * time.Second):
		t.Errorf("a held long-poll request was still open 10 s after SIGTERM")
	}

	wg.Wait()
	inFlight := true // the statements were still running when refusals were seen
	for _, r := range results {
		inFlight = inFlight && r.at.After(refusedAt)
	}
	for i, r := range results {
		if r.err != nil {
			t.Errorf("statement %d in flight at SIGTERM failed: %v", i, r.err)
		} else if r.affected != int64(rows) {
			t.Errorf("statement %d: %d rows affected, want %d", i, r.affected, rows)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	code := s.waitExit(12 * time.Second)
	took := time.Since(sigAt)
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0\n%s", code, s.logs())
	}
	if took > 10*time.Second {
		t.Errorf("exit %v after SIGTERM, want within 10 s", took)
	}
	t.Logf("%d statements of %d rows in flight at SIGTERM (refusals seen while running: %v); exit %d after %v",
		statements, rows, inFlight, code, took.Round(time.Millisecond))

	// Durable: every row of every statement is there after a restart.
	s2 := startServer(t, dir)
	db2 := s2.db(t)
	for i := range statements {
		checkOne(t, db2, fmt.Sprintf("SELECT COUNT(*) FROM pipes_messages WHERE name = 'gs%d'", i), fmt.Sprint(rows))
	}
}

// stalledShutdown starts a server with extra flags, has a CometQL client
// ask for about 3 MB of history and stop reading after the column
// definitions (a 4 KiB receive buffer: the server blocks writing the rows),
// sends SIGTERM and waits for the shutdown to start.
func stalledShutdown(t *testing.T, extra ...string) *server {
	t.Helper()
	s := startServer(t, "", extra...)
	db := s.db(t)
	mustExec(t, db, "INSERT INTO pipes_settings (name, length) VALUES ('big', 1000)")
	big := strings.Repeat("x", 60000)
	for range 5 {
		q := "INSERT INTO pipes_messages (name, event, message) VALUES " +
			strings.TrimSuffix(strings.Repeat("('big', 'e', '"+big+"'),", 10), ",")
		mustExec(t, db, q)
	}
	mysql.RegisterDialContext("stalledtcp", func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}}
		return d.DialContext(ctx, "tcp", addr)
	})
	stalled, err := sql.Open("mysql", fmt.Sprintf("root:%s@stalledtcp(%s)/CometQL_v1", testPassword, s.qlAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stalled.Close() })
	rows, err := stalled.Query("SELECT message FROM pipes_messages WHERE name = 'big'")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { go rows.Close() }) // would read the rest of the result
	db.Close()

	s.signal(syscall.SIGTERM)
	if !s.waitLog("shutting down", 5*time.Second) {
		t.Fatalf("no shutdown log line\n%s", s.logs())
	}
	return s
}

// TestFaultSecondSignalExitsAtOnce: a shutdown kept waiting (here by a
// CometQL client that does not read the result it asked for, with a long
// --shutdown-timeout) ends at once, with a non-zero exit code, on a second
// SIGTERM.
func TestFaultSecondSignalExitsAtOnce(t *testing.T) {
	s := stalledShutdown(t, "--shutdown-timeout", "60s")
	// The shutdown waits for the stalled statement.
	select {
	case <-s.exited:
		t.Fatalf("the server exited at once: the shutdown was expected to wait for the stalled client\n%s", s.logs())
	case <-time.After(time.Second):
	}
	second := time.Now()
	s.signal(syscall.SIGTERM)
	code := s.waitExit(5 * time.Second)
	took := time.Since(second)
	if code == 0 {
		t.Errorf("exit code 0 after a second SIGTERM, want non-zero")
	}
	if took > 2*time.Second {
		t.Errorf("exited %v after the second SIGTERM, want at once", took)
	}
	if !strings.Contains(s.logs(), "second signal") {
		t.Errorf("no log line about the second signal\n%s", s.logs())
	}
	t.Logf("exit code %d, %v after the second SIGTERM", code, took.Round(time.Millisecond))
}

// TestFaultShutdownTimeout: a shutdown that cannot finish within
// --shutdown-timeout closes what is left and exits with a non-zero code
// when the timeout ends, without a second signal.
func TestFaultShutdownTimeout(t *testing.T) {
	s := stalledShutdown(t, "--shutdown-timeout", "2s")
	start := time.Now() // just after the shutdown started
	code := s.waitExit(10 * time.Second)
	took := time.Since(start)
	if code == 0 {
		t.Errorf("exit code 0 after a shutdown that timed out, want non-zero\n%s", s.logs())
	}
	if took > 5*time.Second {
		t.Errorf("exit %v after the shutdown started, want about the 2 s timeout", took)
	}
	t.Logf("exit code %d, %v after the shutdown started (timeout 2 s)", code, took.Round(time.Millisecond))
}
