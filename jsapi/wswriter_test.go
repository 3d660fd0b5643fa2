package jsapi

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cometql/cometql/pipes"
)

// wsWrites reads cometql_browser_writes_total{transport="ws"} from /metrics.
func (ts *testServer) wsWrites() float64 {
	ts.t.Helper()
	_, b := httpGet(ts.t.(*testing.T), "http://"+ts.addr+"/metrics", nil)
	m := regexp.MustCompile(`(?m)^cometql_browser_writes_total\{transport="ws"\} (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		ts.t.Fatal(err)
	}
	return v
}

// The frames a connection gathers while it waits for its writer leave in
// one write, in order.
func TestWriterBatchesBacklog(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	if ts.srv.writers == nil {
		t.Skip("no writers without epoll loops")
	}
	c := ts.dial(anonPath(), nil)
	c.info()
	c.subscribe("batch")
	var wc *wsConn
	ts.srv.conns.mu.RLock()
	for _, x := range ts.srv.conns.slots {
		if x != nil {
			wc = x
		}
	}
	ts.srv.conns.mu.RUnlock()
	if wc == nil {
		t.Fatal("connection not in the table")
	}
	// Wait until nothing is being written, then claim the connection's
	// turn, as a writer holding it in its queue would.
	deadline := time.Now().Add(waitFor)
	for {
		wc.mu.Lock()
		if !wc.flushing {
			wc.flushing = true
			wc.mu.Unlock()
			break
		}
		wc.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the connection never stopped flushing")
		}
		time.Sleep(time.Millisecond)
	}
	writes0 := ts.wsWrites()
	const n = 20
	for i := range n {
		ts.publish("batch", "e", fmt.Sprint(i))
	}
	wc.writeOut(&wsWriter{srv: ts.srv})
	for i := range n {
		m := c.nextOn("batch")
		if m["data"] != fmt.Sprint(i) {
			t.Fatalf("frame %d: data %v", i, m["data"])
		}
	}
	if w := ts.wsWrites() - writes0; w != 1 {
		t.Fatalf("%d frames took %v writes, want 1", n, w)
	}
	wc.mu.Lock()
	flushing, frames := wc.flushing, wc.queuedFrames
	wc.mu.Unlock()
	if flushing || frames != 0 {
		t.Fatalf("after the write: flushing %v, %d frames queued", flushing, frames)
	}
}

// A browser that stops reading for a while (its socket fills up) gets
// every frame, in order, once it reads again; meanwhile the writers serve
// the others.
func TestWriterSlowReaderCatchesUp(t *testing.T) {
	ts := newTestServer(t, Config{OutboxBytes: 64 << 20, OutboxFrames: 1000}, pipes.Config{})
	slow := ts.rawDial(anonPath())
	// A small receive buffer: the server's socket fills after a few frames.
	slow.nc.(*net.TCPConn).SetReadBuffer(16 << 10)
	slow.nextText()
	slow.write(clientFrame(true, opText, []byte("subscription\nslow"), [4]byte{}))
	fast := ts.dial(anonPath(), nil)
	fast.info()
	fast.subscribe("slow")
	for ts.hub.LocalCount(0, "slow") != 2 {
		time.Sleep(time.Millisecond)
	}
	data := strings.Repeat("s", 60<<10)
	const n = 200 // 12 MB: more than the socket buffers hold
	for i := range n {
		ts.publish("slow", "e", fmt.Sprintf("%d:%s", i, data))
		if m := fast.next(); !strings.HasPrefix(fmt.Sprint(m["data"]), fmt.Sprintf("%d:", i)) {
			t.Fatalf("fast reader: frame %d wrong", i)
		}
	}
	for i := range n {
		var f struct{ Data string }
		if err := json.Unmarshal(slow.nextText(), &f); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(f.Data, fmt.Sprintf("%d:", i)) {
			t.Fatalf("slow reader: frame %d is %.10q", i, f.Data)
		}
	}
}
