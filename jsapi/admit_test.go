package jsapi

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/cometql/cometql/pipes"
)

// TestAdmitRefusesBrowsers: while Config.Admit says no, WebSocket upgrades
// and long-poll opens get 503 with Retry-After, every response asks the
// client to close, health checks still answer; once it says yes again,
// browsers connect.
func TestAdmitRefusesBrowsers(t *testing.T) {
	var full atomic.Bool
	ts := newTestServer(t, Config{Admit: func() bool { return !full.Load() }}, pipes.Config{})
	full.Store(true)
	hc := &http.Client{Timeout: waitFor}
	t.Cleanup(hc.CloseIdleConnections)

	if _, err := ts.tryDial(anonPath(), nil); err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("upgrade while short of descriptors: %v", err)
	}
	resp, err := hc.Get("http://" + ts.addr + "/lp/open?sesion=&v=4.08")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"code":503`) {
		t.Fatalf("long-poll open: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	for _, path := range []string{"/healthz", "/readyz", "/info"} {
		resp, err := hc.Get("http://" + ts.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !resp.Close {
			t.Fatalf("%s: %d, close %v", path, resp.StatusCode, resp.Close)
		}
	}
	// The refusal closed the connection: a raw request sees EOF after it.
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(waitFor))
	io.WriteString(nc, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := io.ReadAll(nc); err != nil {
		t.Fatalf("connection kept open: %v", err)
	}

	full.Store(false)
	c := ts.dial(anonPath(), nil)
	if f := c.next(); f["event"] != "serverInfo" {
		t.Fatalf("first frame %v", f)
	}
}

// TestWriteBlockedDrops: a client that stops reading while frames are
// on their way but keeps sending (pings) blocks the server's writer once
// the socket buffers are full; it is dropped after PongTimeout although
// input keeps arriving, and its outbox never overflowed.
func TestWriteBlockedDrops(t *testing.T) {
	ts := newTestServer(t, Config{PingInterval: 100 * time.Millisecond, PongTimeout: 500 * time.Millisecond,
		OutboxBytes: 64 << 20, OutboxFrames: 100000}, pipes.Config{})
	// A small receive buffer, so that the frames fill it soon.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	nc, err := d.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, "GET "+anonPath()+" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(nc), nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	nc.Write(clientFrame(true, opText, []byte("subscription\nweb_big"), [4]byte{1, 2, 3, 4}))
	deadline := time.Now().Add(waitFor)
	for ts.hub.LocalCount(0, "web_big") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("not subscribed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Pings all along: the client is alive, it only does not read.
	ping := clientFrame(true, opPing, []byte("p"), [4]byte{1, 2, 3, 4})
	dropped := make(chan time.Time, 1)
	go func() {
		for {
			nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := nc.Write(ping); err != nil {
				dropped <- time.Now()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	big := strings.Repeat("b", 60000)
	start := time.Now()
	for range 150 { // 9 MB: more than the socket buffers hold
		ts.publish("web_big", "e", big)
	}
	select {
	case at := <-dropped:
		if d := at.Sub(start); d < 400*time.Millisecond {
			t.Errorf("dropped after %s", d)
		}
		var m dto.Metric
		ts.srv.metrics.drops.WithLabelValues(dropWriteTimeout).Write(&m)
		if got := m.GetCounter().GetValue(); got != 1 {
			t.Errorf("write_timeout drops = %g", got)
		}
	case <-time.After(10 * time.Second):
		nc.Close()
		<-dropped
		t.Fatal("a client that never reads is still connected after 10s")
	}
}
