package jsapi

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cometql/cometql/pipes"
)

func httpGet(t *testing.T, url string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestPlainEndpoints(t *testing.T) {
	ready := errors.New("engine not connected")
	ts := newTestServer(t, Config{
		NodeName: "node-a'b",
		Version:  "1.2.3",
		Ready:    func() error { return ready },
	}, pipes.Config{})
	base := "http://" + ts.addr

	resp, b := httpGet(t, base+"/info", http.Header{"Origin": {"https://x.example"}})
	if resp.StatusCode != 200 || string(b) != `{"status":"ok","node":"node-a\u0027b"}` ||
		resp.Header.Get("Access-Control-Allow-Origin") != "https://x.example" {
		t.Fatalf("/info: %d %s %v", resp.StatusCode, b, resp.Header)
	}
	resp, b = httpGet(t, base+"/comet-server/info", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("/comet-server/info: %d %s", resp.StatusCode, b)
	}
	if resp, _ := httpGet(t, base+"/healthz", nil); resp.StatusCode != 200 {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
	if resp, b := httpGet(t, base+"/readyz", nil); resp.StatusCode != 503 || !strings.Contains(string(b), "engine not connected") {
		t.Fatalf("/readyz: %d %s", resp.StatusCode, b)
	}
	ready = nil
	if resp, _ := httpGet(t, base+"/readyz", nil); resp.StatusCode != 200 {
		t.Fatalf("/readyz when ready: %d", resp.StatusCode)
	}
	if resp, b := httpGet(t, base+"/", nil); resp.StatusCode != 200 || !strings.Contains(string(b), "cometql 1.2.3") ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/: %d %s", resp.StatusCode, b)
	}
	if resp, _ := httpGet(t, base+"/favicon.ico", nil); resp.StatusCode != 204 {
		t.Fatalf("/favicon.ico: %d", resp.StatusCode)
	}
	if resp, _ := httpGet(t, base+"/nothing", nil); resp.StatusCode != 404 {
		t.Fatalf("/nothing: %d", resp.StatusCode)
	}
	if resp, _ := httpGet(t, base+"/wsx", nil); resp.StatusCode != 404 {
		t.Fatalf("/wsx: %d", resp.StatusCode)
	}
	// A plain GET of the WebSocket path is a bad request, never a redirect.
	if resp, _ := httpGet(t, base+"//ws/sesion=&v=1", nil); resp.StatusCode != 400 {
		t.Fatalf("GET //ws/: %d", resp.StatusCode)
	}

	req, _ := http.NewRequest(http.MethodOptions, base+"/anything", nil)
	req.Header.Set("Origin", "https://x.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Methods") == "" ||
		resp.Header.Get("Access-Control-Allow-Origin") != "https://x.example" {
		t.Fatalf("OPTIONS: %d %v", resp.StatusCode, resp.Header)
	}

	// "OPTIONS *" too.
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("OPTIONS * HTTP/1.1\r\nHost: x\r\nOrigin: https://x.example\r\n\r\n"))
	star, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	star.Body.Close()
	if star.StatusCode != 200 || star.Header.Get("Access-Control-Allow-Origin") != "https://x.example" ||
		star.Header.Get("Access-Control-Allow-Methods") == "" {
		t.Fatalf("OPTIONS *: %d %v", star.StatusCode, star.Header)
	}
}

func TestClientScript(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	want, err := staticFS.ReadFile("static/CometServerApi.js")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ts.addr + "/CometServerApi.js"
	resp, b := httpGet(t, url, nil)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || !bytes.Equal(b, want) || etag == "" ||
		resp.Header.Get("Content-Type") != "application/javascript; charset=utf-8" {
		t.Fatalf("script: %d %s etag %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), etag, len(b))
	}
	resp, b = httpGet(t, url, http.Header{"Accept-Encoding": {"br, gzip"}})
	if resp.Header.Get("Content-Encoding") != "gzip" || len(b) >= len(want) {
		t.Fatalf("gzip: %q, %d bytes", resp.Header.Get("Content-Encoding"), len(b))
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if plain, _ := io.ReadAll(zr); !bytes.Equal(plain, want) {
		t.Fatal("gzip body differs")
	}
	resp, b = httpGet(t, url, http.Header{"If-None-Match": {etag}})
	if resp.StatusCode != http.StatusNotModified || len(b) != 0 {
		t.Fatalf("If-None-Match: %d, %d bytes", resp.StatusCode, len(b))
	}
	resp, _ = httpGet(t, "http://"+ts.addr+"/comet-server/CometServerApi.js", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("under /comet-server: %d", resp.StatusCode)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	reg := prometheus.NewRegistry()
	ts := newTestServer(t, Config{Registerer: reg, Gatherer: reg}, pipes.Config{})
	c := ts.dial(anonPath(), nil)
	c.info()
	c.send("nonsense")
	c.next()
	_, b := httpGet(t, "http://"+ts.addr+"/metrics", nil)
	for _, want := range []string{
		`cometql_browser_connections{transport="ws"} 1`,
		`cometql_browser_frames_out_total{transport="ws"} 2`,
		`cometql_browser_commands_total 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("metrics lack %q:\n%s", want, b)
		}
	}
}

func TestPprofMounted(t *testing.T) {
	ts := newTestServer(t, Config{Pprof: true}, pipes.Config{})
	if resp, _ := httpGet(t, "http://"+ts.addr+"/debug/pprof/", nil); resp.StatusCode != 200 {
		t.Fatalf("pprof: %d", resp.StatusCode)
	}
}

func TestClientIP(t *testing.T) {
	s := &Server{}
	var err error
	s.proxies, err = parseTrustedProxies([]string{"10.0.0.0/8", "192.168.1.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		remote, xff, xri, want string
	}{
		{"1.2.3.4:5", "9.9.9.9", "", "1.2.3.4"},                     // untrusted peer: headers ignored
		{"10.1.1.1:5", "9.9.9.9", "", "9.9.9.9"},                    // trusted proxy
		{"10.1.1.1:5", "6.6.6.6, 9.9.9.9, 10.2.2.2", "", "9.9.9.9"}, // skip trusted hops only
		{"192.168.1.1:5", "", "8.8.8.8", "8.8.8.8"},
		{"[::ffff:10.0.0.1]:5", "7.7.7.7", "", "7.7.7.7"},
		{"10.1.1.1:5", "garbage", "", "10.1.1.1"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if c.xri != "" {
			r.Header.Set("X-Real-IP", c.xri)
		}
		if got := s.clientIP(r); got != c.want {
			t.Errorf("%+v: got %s", c, got)
		}
	}
}

func TestPerIPLimit(t *testing.T) {
	ts := newTestServer(t, Config{MaxConnsPerIP: 2}, pipes.Config{})
	a := ts.dial(anonPath(), nil)
	ts.dial(anonPath(), nil).info()
	if _, err := ts.tryDial(anonPath(), nil); err == nil || !strings.Contains(err.Error(), "HTTP 429") {
		t.Fatalf("third connection: %v", err)
	}
	a.close()
	for start := time.Now(); ; {
		c, err := ts.tryDial(anonPath(), nil)
		if err == nil {
			c.info()
			break
		}
		if time.Since(start) > waitFor {
			t.Fatal("the slot was not released")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTLS runs the WebSocket over a TLS listener (wss): such connections
// are read by a goroutine instead of an epoll loop.
func TestTLS(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	tsrv := httptest.NewUnstartedServer(nil) // only for its certificate
	tsrv.StartTLS()
	cert := tsrv.TLS.Certificates
	pool := tsrv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	tsrv.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln := tls.NewListener(ln, &tls.Config{Certificates: cert})
	go ts.srv.Serve(tln) // ended by the cleanup's Shutdown

	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "example.com"}, HandshakeTimeout: waitFor}
	conn, _, err := d.Dial("wss://"+ln.Addr().String()+anonPath(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(waitFor))
	_, m, err := conn.ReadMessage()
	if err != nil || !strings.Contains(string(m), `"serverInfo"`) {
		t.Fatalf("serverInfo over TLS: %s %v", m, err)
	}
	conn.WriteMessage(websocket.TextMessage, []byte("subscription\nnews"))
	conn.WriteMessage(websocket.TextMessage, []byte("pipe_count\nweb_x\nm1\n"))
	_, m, err = conn.ReadMessage()
	if err != nil || !strings.Contains(string(m), `"marker":"m1"`) {
		t.Fatalf("over TLS: %s %v", m, err)
	}
	ts.publish("news", "e", strings.Repeat("t", 65000))
	_, m, err = conn.ReadMessage()
	if err != nil || len(m) < 65000 {
		t.Fatalf("big frame over TLS: %d bytes, %v", len(m), err)
	}
}

func TestShutdownClosesEverything(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	ts.setHash(0, 4, "k4")
	obs := ts.hub // presence is checked through the hub's counters
	r := ts.rawDial(userPath(4, "k4"))
	r.nextText()
	lp := ts.lpOpen(lpQuery)
	lp.frames(1)
	held := make(chan int)
	go func() {
		var e pollReply
		held <- lp.get("/lp/poll?sid="+lp.sid+"&ack=1", &e)
	}()
	time.Sleep(20 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	r.untilEOF()
	if st := <-held; st != http.StatusNotFound {
		t.Fatalf("held poll at shutdown: %d", st)
	}
	if n := obs.SessionCount(); n != 0 {
		t.Fatalf("%d sessions left after shutdown", n)
	}
	if _, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestMinifiedScriptAndDemo(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	if _, err := staticFS.ReadFile("static/CometServerApi.min.js"); err == nil {
		if resp, _ := httpGet(t, "http://"+ts.addr+"/CometServerApi.min.js", nil); resp.StatusCode != 200 {
			t.Fatalf("min.js: %d", resp.StatusCode)
		}
	}
	resp, _ := httpGet(t, "http://"+ts.addr+"/demo/", nil)
	if demoHandler() != nil && resp.StatusCode != 200 {
		t.Fatalf("/demo/: %d", resp.StatusCode)
	}
	if demoHandler() == nil && resp.StatusCode != 404 {
		t.Fatalf("/demo/ without a demo: %d", resp.StatusCode)
	}
}

// fdListener fails Accept with EMFILE a number of times.
type fdListener struct {
	net.Listener
	fails int
	calls int
}

func (l *fdListener) Accept() (net.Conn, error) {
	l.calls++
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

func TestAcceptBacksOffWithoutFDs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &fdListener{Listener: ln, fails: 6}
	bl := newBackoffListener(fl, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer bl.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Close()
		}
	}()
	start := time.Now()
	c, err := bl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// 5+10+20+40+80+160 ms of backoff, no spinning.
	if d := time.Since(start); d < 300*time.Millisecond || fl.calls != 7 {
		t.Fatalf("accepted after %v and %d calls", d, fl.calls)
	}

	// Closing the listener ends a wait at once.
	fl.fails = 100
	done := make(chan error)
	go func() { _, err := bl.Accept(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	bl.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("accept after close: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("the backoff wait outlived Close")
	}
}

// The origin allow-list takes exact origins and, as comet.ini's [ws] host
// lists them, host names (any scheme; any port unless one is given).
func TestOriginPolicy(t *testing.T) {
	p, err := newOriginPolicy([]string{"https://a.example", "Example.com", "www.example.com:8080", ""})
	if err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{
		"":                             true,
		"https://a.example":            true,
		"http://a.example":             false,
		"https://a.example:8443":       false,
		"http://example.com":           true,
		"https://EXAMPLE.com:8443":     true,
		"https://www.example.com:8080": true,
		"https://www.example.com":      false,
		"https://evil.example.com":     false,
		"https://example.com.evil":     false,
		"null":                         false,
	} {
		if got := p.allows(origin); got != want {
			t.Errorf("allows(%q) = %v, want %v", origin, got, want)
		}
	}
	for _, bad := range []string{"example.com/path", ":8080", "a b"} {
		if _, err := newOriginPolicy([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// Over a real connection.
	ts := newTestServer(t, Config{AllowedOrigins: []string{"example.com"}}, pipes.Config{})
	if _, err := ts.tryDial(anonPath(), http.Header{"Origin": {"https://example.com"}}); err != nil {
		t.Fatalf("allowed host refused: %v", err)
	}
	if _, err := ts.tryDial(anonPath(), http.Header{"Origin": {"https://other.example"}}); err == nil {
		t.Fatal("another origin accepted")
	}
}
