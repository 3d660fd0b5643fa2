package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary act as a worker process: the pool re-execs
// os.Executable(), which under `go test` is this binary.
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		os.Exit(workerMain(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// runFake runs a scenario against a fake server and returns its result.
func runFake(t *testing.T, f *fakeServer, be *fakeBackend, args ...string) result {
	t.Helper()
	old := openBackend
	openBackend = func(*options) (backend, error) { return be, nil }
	t.Cleanup(func() { openBackend = old })
	full := append(args[:1:1], "--http", f.addr(), "--server-pid", fmt.Sprint(os.Getpid()), "--quiet")
	full = append(full, args[1:]...)
	o, err := parseOptions(full, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := runScenario(o, &out, &errb)
	if testing.Verbose() {
		t.Log(errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one result line, got %q", out.String())
	}
	var r result
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		t.Fatalf("result line: %v: %s", err, lines[0])
	}
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, lines[0], errb.String())
	}
	return r
}

var quick = []string{"--duration", "1s", "--warmup", "200ms", "--drain", "3s", "--settle", "100ms"}

func TestFanoutWSTwoWorkers(t *testing.T) {
	f := newFakeServer(t)
	be := &fakeBackend{f: f}
	args := append([]string{"fanout", "--subs", "40", "--per-worker", "20", "--conns-per-addr", "10", "--publishers", "3", "--rate", "300"}, quick...)
	r := runFake(t, f, be, args...)
	c, d, p := r.Results.Connections, r.Results.Delivery, r.Results.Publish
	if c == nil || d == nil || p == nil {
		t.Fatalf("missing results: %+v", r.Results)
	}
	if c.Connected != 40 || c.Failed != 0 || c.Workers != 2 || c.SourceAddrs != 4 {
		t.Fatalf("connections %+v", c)
	}
	if r.Bench.Workers != 2 {
		t.Fatalf("bench workers %d", r.Bench.Workers)
	}
	if p.Published == 0 || p.Errors != 0 {
		t.Fatalf("publish %+v", p)
	}
	if d.Expected != p.Published*40 || d.Lost != 0 || d.Duplicated != 0 || d.OutOfOrder != 0 || d.Received != d.Expected {
		t.Fatalf("delivery %+v (published %d)", d, p.Published)
	}
	if d.LatencyMS.Count == 0 || d.LatencyMS.P50 <= 0 || d.PerSec <= 0 {
		t.Fatalf("latency %+v per_s %v", d.LatencyMS, d.PerSec)
	}
	// At most ~300 msg/s (less on a busy machine: publishers are closed-loop).
	if p.PerSec <= 0 || p.PerSec > 450 {
		t.Fatalf("rate-limited publish ran at %v/s", p.PerSec)
	}
	f.mu.Lock()
	peers := len(f.peers)
	f.mu.Unlock()
	if peers != 4 {
		t.Fatalf("connections came from %d source addresses, want 4", peers)
	}
	if r.Server == nil || r.Server.PID != os.Getpid() || r.Server.RSSAfterKB <= 0 || r.Server.GoroutinesAfter == nil {
		t.Fatalf("server report %+v", r.Server)
	}
}

func TestFanoutFaultsCounted(t *testing.T) {
	f := newFakeServer(t)
	// One publisher, so the pipe's order is the stream's order. Every 10th
	// message is dropped, every 25th sent twice, every 50th+1 held back
	// behind the next one.
	f.fault = func(pipe string, n int) (int, bool) {
		switch {
		case n%10 == 0:
			return 0, false
		case n%25 == 0:
			return 2, false
		case n%50 == 1 && n > 1:
			return 1, true
		}
		return 1, false
	}
	be := &fakeBackend{f: f}
	args := append([]string{"fanout", "--subs", "5", "--publishers", "1", "--rate", "500", "--drain", "1s"}, quick[:4]...)
	r := runFake(t, f, be, args...)
	d, p := r.Results.Delivery, r.Results.Publish
	n := int(p.Published)
	var drop, dup, late int
	for i := 1; i <= n; i++ {
		switch {
		case i%10 == 0:
			drop++
		case i%25 == 0:
			dup++
		case i%50 == 1 && i > 1:
			if i < n { // released by the next message
				late++
			} else {
				drop++
			}
		}
	}
	if d.Lost != uint64(drop*5) || d.Duplicated != uint64(dup*5) || d.OutOfOrder != uint64(late*5) {
		t.Fatalf("published %d: lost %d dup %d ooo %d; want %d %d %d", n, d.Lost, d.Duplicated, d.OutOfOrder, drop*5, dup*5, late*5)
	}
}

func TestPublishErrorsNotExpected(t *testing.T) {
	f := newFakeServer(t)
	be := &fakeBackend{f: f, failEvery: 7}
	args := append([]string{"publish", "--pipes", "6", "--publishers", "3", "--rate", "600"}, quick...)
	r := runFake(t, f, be, args...)
	d, p := r.Results.Delivery, r.Results.Publish
	if p.Errors == 0 || p.FirstError == "" {
		t.Fatalf("publish %+v", p)
	}
	if d.Lost != 0 || d.Expected != p.Published || d.Subscribers != 6 {
		t.Fatalf("delivery %+v, published %d", d, p.Published)
	}
}

func TestManyPipesLongPoll(t *testing.T) {
	f := newFakeServer(t)
	be := &fakeBackend{f: f}
	args := append([]string{"manypipes", "--transport", "lp", "--pipes", "30", "--publishers", "2", "--rate", "200"}, quick...)
	r := runFake(t, f, be, args...)
	d, p := r.Results.Delivery, r.Results.Publish
	if r.Results.Connections.Connected != 30 {
		t.Fatalf("connections %+v", r.Results.Connections)
	}
	if d.Lost != 0 || d.Expected != p.Published || d.Received != d.Expected || d.Duplicated != 0 {
		t.Fatalf("delivery %+v, published %d", d, p.Published)
	}
	f.mu.Lock()
	left := len(f.lp)
	f.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d long-poll sessions left open", left)
	}
}

func TestHistorySetsUpPipes(t *testing.T) {
	f := newFakeServer(t)
	be := &fakeBackend{f: f}
	args := append([]string{"history", "--pipes", "3", "--publishers", "2", "--rate", "100", "--prefix", "hist_"}, quick...)
	r := runFake(t, f, be, args...)
	f.mu.Lock()
	settings := append([]string(nil), f.settings...)
	f.mu.Unlock()
	want := []string{
		"INSERT INTO pipes_settings (name, length) VALUES ('hist_0', 1000)",
		"INSERT INTO pipes_settings (name, length) VALUES ('hist_1', 1000)",
		"INSERT INTO pipes_settings (name, length) VALUES ('hist_2', 1000)",
	}
	if strings.Join(settings, "\n") != strings.Join(want, "\n") {
		t.Fatalf("settings statements:\n%s", strings.Join(settings, "\n"))
	}
	if r.Scenario != scHistory || r.Results.Delivery.Lost != 0 {
		t.Fatalf("result %+v", r.Results.Delivery)
	}
}

func TestIdle(t *testing.T) {
	f := newFakeServer(t)
	be := &fakeBackend{f: f}
	r := runFake(t, f, be, "idle", "--subs", "50", "--pipes", "5", "--settle", "200ms", "--per-worker", "30")
	c, idle := r.Results.Connections, r.Results.Idle
	if c.Connected != 50 || c.Workers != 2 || c.PerSec <= 0 || c.LatencyMS.Count != 50 {
		t.Fatalf("connections %+v", c)
	}
	if idle == nil || r.Server == nil {
		t.Fatalf("idle %+v server %+v", idle, r.Server)
	}
	// The fake server runs in this process, one goroutine per connection.
	if g := idle.GoroutinesPerConn; g == nil || *g < 0.9 || *g > 3 {
		t.Fatalf("goroutines per conn %v", g)
	}
}

func TestChurn(t *testing.T) {
	for _, tr := range []string{"ws", "lp"} {
		t.Run(tr, func(t *testing.T) {
			f := newFakeServer(t)
			be := &fakeBackend{f: f}
			r := runFake(t, f, be, "churn", "--transport", tr, "--concurrency", "4", "--duration", "500ms", "--warmup", "100ms", "--settle", "100ms")
			c := r.Results.Churn
			if c == nil || c.Ops == 0 || c.Errors != 0 || c.PerSec <= 0 || c.LatencyMS.Count == 0 {
				t.Fatalf("churn %+v errors %v", c, r.Errors)
			}
		})
	}
}

func TestSoak(t *testing.T) {
	f := newFakeServer(t)
	be := &fakeBackend{f: f}
	r := runFake(t, f, be, "soak", "--subs", "10", "--rate", "100", "--duration", "1200ms", "--sample-interval", "300ms", "--warmup", "100ms", "--settle", "50ms")
	s := r.Results.Soak
	if r.Scenario != scSoak || s == nil || s.Samples < 2 || s.RSSKB.Start <= 0 || s.Goroutines == nil || len(s.Series) != s.Samples {
		t.Fatalf("soak %+v", s)
	}
	if r.Results.Delivery.Lost != 0 {
		t.Fatalf("lost %d", r.Results.Delivery.Lost)
	}
}

func TestConnectFailureReported(t *testing.T) {
	f := newFakeServer(t)
	addr := f.addr()
	f.srv.Close()
	o, err := parseOptions([]string{"idle", "--http", addr, "--subs", "3", "--connect-retries", "0", "--connect-timeout", "2s", "--quiet", "--metrics-url", "none"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	old := openBackend
	openBackend = func(*options) (backend, error) { return nil, fmt.Errorf("no backend") }
	defer func() { openBackend = old }()
	var out, errb bytes.Buffer
	start := time.Now()
	if code := runScenario(o, &out, &errb); code == 0 {
		t.Fatalf("exit 0 with no server: %s", out.String())
	}
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Results.Connections == nil || r.Results.Connections.Failed != 3 || len(r.Errors) == 0 {
		t.Fatalf("result %+v errors %v", r.Results.Connections, r.Errors)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatal("took too long to give up")
	}
}

// At max rate the publishers keep at most --window messages in flight:
// nothing is lost, and the window is recorded.
func TestFanoutMaxRateWindow(t *testing.T) {
	f := newFakeServer(t)
	be := &fakeBackend{f: f}
	args := append([]string{"fanout", "--subs", "20", "--per-worker", "10", "--conns-per-addr", "10", "--publishers", "2", "--window", "6"}, quick...)
	r := runFake(t, f, be, args...)
	d, p := r.Results.Delivery, r.Results.Publish
	if p == nil || d == nil || p.Published == 0 || p.Errors != 0 {
		t.Fatalf("publish %+v delivery %+v", p, d)
	}
	if d.Lost != 0 || d.Duplicated != 0 || d.OutOfOrder != 0 || d.Received != d.Expected {
		t.Fatalf("delivery %+v (published %d)", d, p.Published)
	}
	if w, _ := r.Params["window"].(float64); w != 6 {
		t.Fatalf("params %v: want window 6", r.Params)
	}
}

// A stream waits while a live subscriber is a window behind it.
func TestPublisherWindow(t *testing.T) {
	g := &pubGroup{window: 3, seen: make([]uint64, 2), stopCh: make(chan struct{})}
	g.seenCond = sync.NewCond(&g.seenMu)
	done := make(chan bool)
	go func() { done <- g.waitWindow(1, 4) }()
	select {
	case <-done:
		t.Fatal("seq 4 went out with nothing seen and a window of 3")
	case <-time.After(50 * time.Millisecond):
	}
	g.setSeen([]uint64{0, 1})
	if !<-done {
		t.Fatal("waitWindow reported a stop")
	}
	if !g.waitWindow(0, 3) {
		t.Fatal("seq 3 of stream 0 is within the window")
	}
	go func() { done <- g.waitWindow(0, 4) }()
	g.stop()
	if <-done {
		t.Fatal("waitWindow after stop reported go on")
	}
}
