package e2e

// Helpers of the input tests (hostile_*, limits_*, rights_*): a browser on
// a gorilla WebSocket that keeps every frame, a long-poll client, a
// Prometheus scraper, a canary (a healthy browser and CometQL connection
// checked between hostile cases) and a leak check on the server's
// goroutines and heap. Names start with "in" so that they do not collide
// with other suites' helpers.

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/gorilla/websocket"
)

// inWait is how long a test waits for something the server should do at
// once (generous: the server runs under the race detector on 2 cores).
const inWait = 10 * time.Second

// inWSPath is the CppComet JS client's WebSocket path (SPEC 3.1).
func inWSPath(dev, user int64, key string) string {
	return fmt.Sprintf("/ws/sesion=%s&myid=%d&devid=%d&v=4.08&uuid=%s&api=js", url.PathEscape(key), user, dev, inUUID())
}

var inUUIDSeq atomic.Int64

func inUUID() string { return fmt.Sprintf("e2einput%024d", inUUIDSeq.Add(1)) }

// inBrowser is a WebSocket browser that decodes and keeps every frame.
type inBrowser struct {
	t      testing.TB
	c      *websocket.Conn
	frames chan map[string]any
	done   chan struct{}
	err    error // what ended the reader, once done is closed
	wmu    sync.Mutex
}

// inDial opens a browser on path with extra headers; it fails the test
// unless the upgrade succeeds.
func inDial(t testing.TB, s *server, path string, hdr http.Header) *inBrowser {
	t.Helper()
	b, resp, err := inTryDial(t, s, path, hdr)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial %s: %v %s", path, err, status)
	}
	return b
}

// inTryDial opens a browser; on a refused upgrade it returns the response.
func inTryDial(t testing.TB, s *server, path string, hdr http.Header) (*inBrowser, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: inWait, ReadBufferSize: 4096, WriteBufferSize: 4096}
	c, resp, err := d.Dial("ws://"+s.httpAddr+path, hdr)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, resp, err
	}
	b := &inBrowser{t: t, c: c, frames: make(chan map[string]any, 20000), done: make(chan struct{})}
	go b.read()
	t.Cleanup(b.close)
	return b, resp, nil
}

func (b *inBrowser) read() {
	defer close(b.done)
	for {
		_, m, err := b.c.ReadMessage()
		if err != nil {
			b.err = err
			return
		}
		for _, line := range strings.Split(string(m), "\n") {
			if line == "" {
				continue
			}
			var f map[string]any
			if err := json.Unmarshal([]byte(line), &f); err != nil {
				b.err = fmt.Errorf("frame is not JSON: %q: %v", line, err)
				b.c.Close()
				return
			}
			select {
			case b.frames <- f:
			default:
				b.err = fmt.Errorf("test browser overflow")
				b.c.Close()
				return
			}
		}
	}
}

func (b *inBrowser) close() {
	b.c.Close()
	<-b.done
}

// send sends one text frame (a command).
func (b *inBrowser) send(text string) {
	b.t.Helper()
	if err := b.sendErr(text); err != nil {
		b.t.Fatalf("send: %v", err)
	}
}

func (b *inBrowser) sendErr(text string) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	_ = b.c.SetWriteDeadline(time.Now().Add(inWait))
	return b.c.WriteMessage(websocket.TextMessage, []byte(text))
}

// next returns the next frame, failing after inWait.
func (b *inBrowser) next() map[string]any {
	b.t.Helper()
	select {
	case f := <-b.frames:
		return f
	case <-b.done:
		select {
		case f := <-b.frames:
			return f
		default:
		}
		b.t.Fatalf("connection ended while a frame was expected: %v", b.err)
	case <-time.After(inWait):
		b.t.Fatal("no frame within the wait")
	}
	return nil
}

// until returns the first frame for which match is true, skipping others.
func (b *inBrowser) until(what string, match func(map[string]any) bool) map[string]any {
	b.t.Helper()
	deadline := time.After(inWait)
	for {
		select {
		case f := <-b.frames:
			if match(f) {
				return f
			}
		case <-b.done:
			b.t.Fatalf("connection ended while waiting for %s: %v", what, b.err)
		case <-deadline:
			b.t.Fatalf("no %s within the wait", what)
		}
	}
}

// info returns the serverInfo frame (the first one).
func (b *inBrowser) info() map[string]any {
	b.t.Helper()
	f := b.next()
	if f["event"] != "serverInfo" {
		b.t.Fatalf("first frame is not serverInfo: %v", f)
	}
	return f
}

// sysError waits for the next sys error frame and returns its code.
func (b *inBrowser) sysError() (code, text string) {
	b.t.Helper()
	f := b.until("a sys error frame", func(f map[string]any) bool { return f["pipe"] == "sys" && f["event"] == "error" })
	d, _ := f["data"].(map[string]any)
	code, _ = d["code"].(string)
	text, _ = d["error"].(string)
	return code, text
}

// quiet checks that no frame arrives for d (those matching ignore are
// skipped).
func (b *inBrowser) quiet(d time.Duration, ignore func(map[string]any) bool) {
	b.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f := <-b.frames:
			if ignore == nil || !ignore(f) {
				b.t.Fatalf("unexpected frame %v", f)
			}
		case <-deadline:
			return
		}
	}
}

// sync sends a command with a known answer and waits for it: everything
// sent before has been handled. It returns the frames that came before the
// answer.
func (b *inBrowser) sync() []map[string]any {
	b.t.Helper()
	marker := "sync" + strconv.FormatInt(inUUIDSeq.Add(1), 10)
	b.send("pipe_count\nweb_sync\n" + marker + "\n")
	var before []map[string]any
	b.until("the sync answer", func(f map[string]any) bool {
		if f["marker"] == marker {
			return true
		}
		before = append(before, f)
		return false
	})
	return before
}

// inSysErrors counts the sys error frames among frames.
func inSysErrors(frames []map[string]any) int {
	n := 0
	for _, f := range frames {
		if f["pipe"] == "sys" && f["event"] == "error" {
			n++
		}
	}
	return n
}

// ended waits until the server closed the connection and returns the
// reader's error.
func (b *inBrowser) ended() error {
	b.t.Helper()
	select {
	case <-b.done:
		return b.err
	case <-time.After(inWait):
		b.t.Fatal("the server did not close the connection")
	}
	return nil
}

// inWaitUsers waits until SELECT users FROM pipes says n connections are
// subscribed to pipe, for db's tenant.
func inWaitUsers(t testing.TB, db *sql.DB, pipe string, n int) {
	t.Helper()
	deadline := time.Now().Add(inWait)
	for {
		var got int
		err := db.QueryRow("SELECT users FROM pipes WHERE name = ?", pipe).Scan(&got)
		if err == nil && got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pipe %s: %d subscribers (err %v), want %d", pipe, got, err, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inDB opens a connection pool for a CometQL user ("root" or a tenant id)
// with a password.
func inDB(t testing.TB, s *server, user, password string) *sql.DB {
	t.Helper()
	dsn := fmt.Sprintf("%s:%s@tcp(%s)/CometQL_v1?allowNativePasswords=true&interpolateParams=false&timeout=5s", user, password, s.qlAddr)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// inMyErr checks that err is a MySQL error with code, and returns it.
func inMyErr(t testing.TB, err error, code uint16) *mysql.MySQLError {
	t.Helper()
	me, ok := err.(*mysql.MySQLError)
	if !ok || me.Number != code {
		t.Fatalf("error %v (%T), want MySQL error %d", err, err, code)
	}
	return me
}

// inHTTP is the client of plain HTTP requests.
var inHTTP = &http.Client{Timeout: inWait}

// inGet performs a GET with headers and returns status and body.
func inGet(t testing.TB, s *server, path string, hdr http.Header) (int, string, http.Header) {
	t.Helper()
	return inDo(t, s, http.MethodGet, path, "", hdr)
}

func inDo(t testing.TB, s *server, method, path, body string, hdr http.Header) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.httpAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := inHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// inLP is a long-poll browser (SPEC 4).
type inLP struct {
	t   testing.TB
	s   *server
	sid string
	ack int64
}

// inLPOpen opens a long-poll session with the parameters of query.
func inLPOpen(t testing.TB, s *server, query string) *inLP {
	t.Helper()
	st, body, _ := inGet(t, s, "/lp/open?"+query, nil)
	var r struct {
		SID string `json:"sid"`
	}
	if st != 200 || json.Unmarshal([]byte(body), &r) != nil || r.SID == "" {
		t.Fatalf("long-poll open: %d %s", st, body)
	}
	l := &inLP{t: t, s: s, sid: r.SID}
	t.Cleanup(func() { // the server may be gone by then
		if resp, err := inHTTP.Post("http://"+s.httpAddr+"/lp/close?sid="+r.SID, "text/plain", nil); err == nil {
			resp.Body.Close()
		}
	})
	return l
}

// send posts one command and returns the status.
func (l *inLP) send(cmd string) (int, string) {
	l.t.Helper()
	st, body, _ := inDo(l.t, l.s, http.MethodPost, "/lp/send?sid="+l.sid, cmd, http.Header{"Content-Type": {"text/plain"}})
	return st, body
}

// poll returns the frames after the last acknowledged one (waiting up to
// the server's hold) and acknowledges them.
func (l *inLP) poll() []map[string]any {
	l.t.Helper()
	st, body, _ := inGet(l.t, l.s, fmt.Sprintf("/lp/poll?sid=%s&ack=%d", l.sid, l.ack), nil)
	var r struct {
		Next   int64            `json:"next"`
		Frames []map[string]any `json:"frames"`
	}
	if st != 200 || json.Unmarshal([]byte(body), &r) != nil {
		l.t.Fatalf("poll: %d %s", st, body)
	}
	l.ack = r.Next
	return r.Frames
}

// until polls until a frame matches.
func (l *inLP) until(what string, match func(map[string]any) bool) map[string]any {
	l.t.Helper()
	deadline := time.Now().Add(inWait)
	for time.Now().Before(deadline) {
		for _, f := range l.poll() {
			if match(f) {
				return f
			}
		}
	}
	l.t.Fatalf("long-poll: no %s within the wait", what)
	return nil
}

// inMetrics scrapes /metrics into name{labels} → value.
func inMetrics(t testing.TB, s *server) map[string]float64 {
	t.Helper()
	st, body, _ := inGet(t, s, "/metrics", nil)
	if st != 200 {
		t.Fatalf("/metrics: %d", st)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// inMetric is one metric's value (0 when absent); name includes labels as
// Prometheus prints them, e.g. `cometql_browser_drops_total{reason="too_large"}`.
func inMetric(t testing.TB, s *server, name string) float64 {
	t.Helper()
	return inMetrics(t, s)[name]
}

// inWaitMetric waits until a metric reaches at least want.
func inWaitMetric(t testing.TB, s *server, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(inWait)
	for {
		got := inMetric(t, s, name)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %g, want >= %g", name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inWaitMetricAtMost waits until the metric is at most want.
func inWaitMetricAtMost(t testing.TB, s *server, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(inWait)
	for {
		got := inMetric(t, s, name)
		if got <= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %g, want <= %g", name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inCanary is a healthy client: a WebSocket subscriber and a CometQL
// connection. check publishes a fresh message over CometQL and fails
// unless the subscriber receives it: both front ends still serve.
type inCanary struct {
	t    testing.TB
	db   *sql.DB
	b    *inBrowser
	pipe string
	n    int
}

func newCanary(t testing.TB, s *server) *inCanary {
	t.Helper()
	c := &inCanary{t: t, db: inDB(t, s, "root", testPassword), pipe: "canary_" + strconv.FormatInt(inUUIDSeq.Add(1), 10)}
	c.db.SetMaxIdleConns(2)
	c.b = inDial(t, s, inWSPath(0, 0, ""), nil)
	c.b.info()
	c.b.send("subscription\n" + c.pipe)
	inWaitUsers(t, c.db, c.pipe, 1)
	c.check()
	return c
}

func (c *inCanary) check() {
	c.t.Helper()
	c.n++
	msg := fmt.Sprintf("tick %d", c.n)
	ctx, cancel := context.WithTimeout(context.Background(), inWait)
	defer cancel()
	if _, err := c.db.ExecContext(ctx, "INSERT INTO pipes_messages (name, event, message) VALUES (?, 'tick', ?)", c.pipe, msg); err != nil {
		c.t.Fatalf("canary: CometQL publish: %v", err)
	}
	c.b.until("the canary's message "+msg, func(f map[string]any) bool { return f["pipe"] == c.pipe && f["data"] == msg })
}

// inLeaks remembers the server's goroutines and heap; check waits until
// they are back near what they were (after a GC on the server, through
// /debug/pprof: the server must run with --pprof).
type inLeaks struct {
	t          testing.TB
	s          *server
	goroutines float64
	heap       float64
}

func inLeakBaseline(t testing.TB, s *server) *inLeaks {
	t.Helper()
	l := &inLeaks{t: t, s: s}
	l.goroutines, l.heap = l.sample()
	return l
}

func (l *inLeaks) sample() (goroutines, heap float64) {
	l.t.Helper()
	// A heap profile with gc=1 runs a garbage collection first.
	if st, _, _ := inGet(l.t, l.s, "/debug/pprof/heap?gc=1", nil); st != 200 {
		l.t.Fatalf("/debug/pprof/heap: %d (is --pprof set?)", st)
	}
	m := inMetrics(l.t, l.s)
	return m["go_goroutines"], m["go_memstats_heap_inuse_bytes"]
}

// check allows a few goroutines (HTTP keep-alives, the test's own
// connections) and 8 MiB of heap more than the baseline.
func (l *inLeaks) check(what string) {
	l.t.Helper()
	const slackG, slackHeap = 8, 8 << 20
	deadline := time.Now().Add(inWait)
	for {
		g, h := l.sample()
		if g <= l.goroutines+slackG && h <= l.heap+slackHeap {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("after %s: %g goroutines (baseline %g), heap in use %.1f MiB (baseline %.1f MiB)",
				what, g, l.goroutines, h/(1<<20), l.heap/(1<<20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// inRaw opens a TCP connection with a deadline for everything.
func inRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, inWait)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(3 * inWait))
	t.Cleanup(func() { nc.Close() })
	return nc
}

// inClosedWithin reads from nc until the server closes it and returns how
// long that took; it fails the test when the server keeps it open past
// limit.
func inClosedWithin(t testing.TB, nc net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = nc.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, nc)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s", limit)
	}
	return time.Since(start)
}
