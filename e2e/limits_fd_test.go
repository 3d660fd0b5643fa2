package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// inFDDial opens a bare browser (no reader: the test only holds it) and
// returns the HTTP status of a refused upgrade (0 when the dial failed
// otherwise).
func inFDDial(s *server, timeout time.Duration) (*websocket.Conn, int, error) {
	d := websocket.Dialer{HandshakeTimeout: timeout, ReadBufferSize: 512, WriteBufferSize: 512}
	c, resp, err := d.Dial("ws://"+s.httpAddr+inWSPath(0, 0, ""), nil)
	if err != nil {
		st := 0
		if resp != nil {
			st = resp.StatusCode
			resp.Body.Close()
		}
		return nil, st, err
	}
	return c, 0, nil
}

// inLogLines counts the server's log lines matching re.
func inLogLines(s *server, re *regexp.Regexp) int {
	n := 0
	for _, line := range strings.Split(s.logs(), "\n") {
		if re.MatchString(line) {
			n++
		}
	}
	return n
}

// TestLimitsFDReserve: with a low open-files limit, browsers are refused
// (503) before they take the last descriptors, so the CometQL port and the
// health checks still answer; a flood of bare TCP connections on the HTTP
// port pauses HTTP accepting without starving CometQL; the pause is logged
// at most once a second; everything recovers once connections close.
func TestLimitsFDReserve(t *testing.T) {
	const limit, reserve = 400, 64
	s := startServer(t, "", "--max-open-files", strconv.Itoa(limit), "--fd-reserve", strconv.Itoa(reserve))
	if !strings.Contains(s.logs(), fmt.Sprintf("soft=%d", limit)) {
		t.Fatalf("the open-files limit is not logged:\n%s", s.logs())
	}
	db := s.db(t)
	db.SetMaxIdleConns(1)

	var browsers []*websocket.Conn
	closeBrowsers := func() {
		for _, c := range browsers {
			c.Close()
		}
		browsers = nil
	}
	defer closeBrowsers()
	refused := 0
	for len(browsers) < limit {
		c, status, err := inFDDial(s, inWait)
		if err != nil {
			if status != http.StatusServiceUnavailable {
				t.Fatalf("browser %d: %v (HTTP %d), want a 503 refusal", len(browsers)+1, err, status)
			}
			refused++
			break
		}
		browsers = append(browsers, c)
	}
	if refused == 0 || len(browsers) < limit-3*reserve {
		t.Fatalf("%d browsers connected, refused %d: want a refusal after at least %d", len(browsers), refused, limit-3*reserve)
	}
	t.Logf("%d browsers connected before the reserve", len(browsers))

	// The reserve answers health checks and CometQL.
	checkAlive := func(when string) {
		t.Helper()
		for _, path := range []string{"/healthz", "/readyz", "/info"} {
			if st, body, _ := inGet(t, s, path, nil); st != 200 {
				t.Fatalf("%s: %s: %d %s", when, path, st, body)
			}
		}
		fresh := inDB(t, s, "root", testPassword)
		var one int
		if err := fresh.QueryRow("SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("%s: CometQL on a new connection: %v", when, err)
		}
		fresh.Close()
		if _, err := db.Exec("INSERT INTO pipes_messages (name, event, message) VALUES ('fd_pipe', 'e', 'still publishing')"); err != nil {
			t.Fatalf("%s: CometQL publish: %v", when, err)
		}
	}
	checkAlive("browsers refused")
	if got := inMetric(t, s, `cometql_browser_drops_total{reason="fd_reserve"}`); got < 1 {
		t.Errorf("fd_reserve drops = %g", got)
	}

	// Bare TCP connections on the HTTP port (a slowloris crowd) take the
	// HTTP share of the reserve; then HTTP accepting pauses and CometQL
	// still has its share.
	floodStart := time.Now()
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for range reserve {
		c, err := net.DialTimeout("tcp", s.httpAddr, inWait)
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, c)
	}
	paused := regexp.MustCompile(`accepting paused`)
	deadline := time.Now().Add(inWait)
	for inLogLines(s, paused) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("HTTP accepting never paused:\n%s", s.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for range 3 {
		fresh := inDB(t, s, "root", testPassword)
		var one int
		if err := fresh.QueryRow("SELECT 1").Scan(&one); err != nil {
			t.Fatalf("CometQL with HTTP paused: %v", err)
		}
		fresh.Close()
	}
	time.Sleep(2 * time.Second) // let the pause last: it must not flood the log
	for _, c := range flood {
		c.Close()
	}
	flood = nil
	checkAlive("flood closed")
	if n, secs := inLogLines(s, paused), time.Since(floodStart).Seconds(); float64(n) > secs+2 {
		t.Errorf("%d 'accepting paused' lines in %.1fs", n, secs)
	}

	// Browsers closed: new ones connect again.
	closeBrowsers()
	deadline = time.Now().Add(inWait)
	for {
		c, _, err := inFDDial(s, inWait)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("browsers still refused after closing them: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLimitsFDExhaustedBackoff: without a reserve, browsers can take every
// descriptor; both listeners then fail to accept (EMFILE), and the server
// waits instead of spinning: little CPU, one log line a second at most.
// It recovers by itself when the browsers leave.
func TestLimitsFDExhaustedBackoff(t *testing.T) {
	const limit = 300
	s := startServer(t, "", "--max-open-files", strconv.Itoa(limit), "--fd-reserve", "0")
	var browsers []*websocket.Conn
	defer func() {
		for _, c := range browsers {
			c.Close()
		}
	}()
	for len(browsers) < 2*limit {
		c, status, err := inFDDial(s, 2*time.Second)
		if err != nil {
			t.Logf("browser %d not served: %v (HTTP %d)", len(browsers)+1, err, status)
			break
		}
		browsers = append(browsers, c)
	}
	if len(browsers) < limit/2 || len(browsers) >= 2*limit {
		t.Fatalf("%d browsers connected", len(browsers))
	}
	// CometQL cannot accept either now: make it try.
	nc, err := net.DialTimeout("tcp", s.qlAddr, inWait)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	start := time.Now()
	cpu0 := inProcessCPU(t, s)
	time.Sleep(3 * time.Second)
	cpu := inProcessCPU(t, s) - cpu0
	elapsed := time.Since(start)
	if cpu > elapsed/2 {
		t.Errorf("the server used %s of CPU in %s while out of descriptors: spinning?", cpu, elapsed)
	}
	failed := regexp.MustCompile(`out of file descriptors|CometQL accept failed`)
	lines := inLogLines(s, failed)
	if lines == 0 {
		t.Fatalf("no accept failure logged:\n%s", s.logs())
	}
	// Both listeners log at most once a second each.
	if secs := time.Since(start).Seconds() + 3; float64(lines) > 2*(secs+1) {
		t.Errorf("%d accept failure lines in about %.0fs", lines, secs)
	}
	for _, c := range browsers {
		c.Close()
	}
	browsers = nil
	deadline := time.Now().Add(inWait)
	for {
		c, _, err := inFDDial(s, inWait)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("browsers still not served after the others left: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	db := s.db(t)
	if _, err := db.Exec("SELECT 1"); err != nil {
		t.Fatalf("CometQL after recovery: %v", err)
	}
}

// inProcessCPU is the server process's user+system CPU time so far.
func inProcessCPU(t testing.TB, s *server) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which ends with ')'): utime is the
	// 14th field of the line, stime the 15th.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		t.Fatal(errors.New("short /proc stat"))
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100
}
