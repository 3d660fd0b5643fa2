package jsapi

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
