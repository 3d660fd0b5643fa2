package jsapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/pipes"
	"github.com/cometql/cometql/store"
)

func TestMain(m *testing.M) {
	if os.Getenv(memClientEnv) != "" {
		os.Exit(memClientMain())
	}
	goleak.VerifyTestMain(m)
}

// A test server: the real store on a temporary directory, the real hub and
// engine, and jsapi on 127.0.0.1:0.
type testServer struct {
	t     testing.TB
	auth  *auth.Service
	st    *store.Store
	eng   *pipes.MemoryEngine
	hub   *pipes.Hub
	srv   *Server
	addr  string
	serve chan error
}

const waitFor = 5 * time.Second

func newTestServer(t testing.TB, cfg Config, hcfg pipes.Config) *testServer {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), Sync: store.SyncNormal})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	eng := pipes.NewMemoryEngine(pipes.MemoryConfig{Node: "t1"}, st, log)
	if hcfg.Server == "" {
		hcfg.Server = "cometql test"
	}
	authSvc, users := testAuth(t, st)
	hub := pipes.New(hcfg, eng, users, log)
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	if cfg.NodeName == "" {
		cfg.NodeName = "node-t1"
	}
	if os.Getenv("JSAPI_NO_POLLER") != "" {
		cfg.noPoller = true // the whole suite over reading goroutines
	}
	srv, err := New(cfg, hub, authSvc, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, auth: authSvc, st: st, eng: eng, hub: hub, srv: srv, addr: ln.Addr().String(), serve: make(chan error, 1)}
	go func() { ts.serve <- srv.Serve(ln) }()
	t.Cleanup(ts.close)
	return ts
}

func (ts *testServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		ts.t.Errorf("shutdown: %v", err)
	}
	if err := <-ts.serve; !errors.Is(err, http.ErrServerClosed) {
		ts.t.Errorf("serve: %v", err)
	}
	ts.eng.Close(ctx)
	ts.st.Close()
}

// setHash registers a user's browser key.
func (ts *testServer) setHash(dev, user int64, hash string) {
	ts.t.Helper()
	if err := ts.st.SetHash(context.Background(), dev, user, hash); err != nil {
		ts.t.Fatal(err)
	}
}

func (ts *testServer) publish(pipe, event, data string) int {
	ts.t.Helper()
	n, err := ts.hub.Publish(context.Background(), 0, pipe, event, data)
	if err != nil {
		ts.t.Fatal(err)
	}
	return n
}

func wsURL(addr, path string) string { return "ws://" + addr + path }

func anonPath() string { return "/ws/sesion=&myid=0&devid=0&v=4.08&uuid=" + randID() + "&api=js" }

func userPath(user int64, key string) string {
	return fmt.Sprintf("/ws/sesion=%s&myid=%d&devid=0&v=4.08&uuid=%s&api=js", key, user, randID())
}

func randID() string {
	var b [12]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// wsClient is a gorilla client reading frames in the background.
type wsClient struct {
	t      testing.TB
	c      *websocket.Conn
	frames chan []byte
	pings  chan string
	done   chan struct{} // closed when the read loop ends
	err    error         // the read loop's error, after done
	held   [][]byte      // frames read while syncing, returned first
}

func (ts *testServer) dial(path string, hdr http.Header) *wsClient {
	ts.t.Helper()
	c, err := ts.tryDial(path, hdr)
	if err != nil {
		ts.t.Fatalf("dial %s: %v", path, err)
	}
	return c
}

func (ts *testServer) tryDial(path string, hdr http.Header) (*wsClient, error) {
	d := websocket.Dialer{HandshakeTimeout: waitFor}
	conn, resp, err := d.Dial(wsURL(ts.addr, path), hdr)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, err
	}
	c := &wsClient{t: ts.t, c: conn, frames: make(chan []byte, 100000), pings: make(chan string, 100), done: make(chan struct{})}
	conn.SetPingHandler(func(p string) error {
		select {
		case c.pings <- p:
		default:
		}
		return conn.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(time.Second))
	})
	go func() {
		defer close(c.done)
		for {
			_, m, err := conn.ReadMessage()
			if err != nil {
				c.err = err
				return
			}
			for _, line := range bytes.Split(m, []byte("\n")) {
				c.frames <- line
			}
		}
	}()
	ts.t.Cleanup(c.close)
	return c, nil
}

func (c *wsClient) close() {
	c.c.Close()
	<-c.done
}

// raw returns the next frame's bytes.
func (c *wsClient) raw() []byte {
	c.t.Helper()
	if len(c.held) > 0 {
		f := c.held[0]
		c.held = c.held[1:]
		return f
	}
	select {
	case f := <-c.frames:
		return f
	case <-c.done:
		select {
		case f := <-c.frames:
			return f
		default:
		}
		c.t.Fatalf("connection ended waiting for a frame: %v", c.err)
	case <-time.After(waitFor):
		c.t.Fatal("no frame within 5s")
	}
	return nil
}

// next returns the next frame decoded.
func (c *wsClient) next() map[string]any {
	c.t.Helper()
	f := c.raw()
	var m map[string]any
	if err := json.Unmarshal(f, &m); err != nil {
		c.t.Fatalf("invalid frame %s: %v", f, err)
	}
	return m
}

// nextOn returns the next frame on a pipe, skipping others.
func (c *wsClient) nextOn(pipe string) map[string]any {
	c.t.Helper()
	for {
		m := c.next()
		if m["pipe"] == pipe {
			return m
		}
	}
}

// none checks that no frame arrives within d.
func (c *wsClient) none(d time.Duration) {
	c.t.Helper()
	if len(c.held) > 0 {
		c.t.Fatalf("unexpected frame %s", c.held[0])
	}
	select {
	case f := <-c.frames:
		c.t.Fatalf("unexpected frame %s", f)
	case <-time.After(d):
	}
}

func (c *wsClient) send(text string) {
	c.t.Helper()
	if err := c.c.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
		c.t.Fatal(err)
	}
}

// ended waits for the server to end the connection.
func (c *wsClient) ended() error {
	c.t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(waitFor):
		c.t.Fatal("connection still open after 5s")
	}
	return nil
}

// info skips the serverInfo frame and returns it.
func (c *wsClient) info() map[string]any {
	c.t.Helper()
	m := c.next()
	if m["event"] != "serverInfo" {
		c.t.Fatalf("first frame %v is not serverInfo", m)
	}
	return m
}

// subscribe sends a subscription and waits until the hub applied it (a
// pipe_count round trip on a web pipe: commands run in order).
func (c *wsClient) subscribe(pipes ...string) {
	c.t.Helper()
	c.send("subscription\n" + strings.Join(pipes, "\n"))
	c.sync()
}

// sync waits until every command sent so far ran; the frames that arrive
// meanwhile are kept for the test.
func (c *wsClient) sync() {
	c.t.Helper()
	marker := "sync" + randID()[:8]
	c.send("pipe_count\nweb_sync\n" + marker + "\n")
	var held [][]byte
	for {
		f := c.raw()
		if bytes.Contains(f, []byte(`"marker":"`+marker+`"`)) {
			c.held = append(held, c.held...)
			return
		}
		held = append(held, f)
	}
}

func expect(t testing.TB, got map[string]any, kv ...any) {
	t.Helper()
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		g, _ := json.Marshal(got[k])
		w, _ := json.Marshal(kv[i+1])
		if string(g) != string(w) {
			t.Fatalf("frame %v: %s = %s, want %s", got, k, g, w)
		}
	}
}

// rawConn is a hand-driven WebSocket client for what gorilla will not do:
// arbitrary frames, and watching every byte the server sends.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func (ts *testServer) rawDial(path string) *rawConn {
	ts.t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { nc.Close() })
	req := "GET " + path + " HTTP/1.1\r\nHost: " + ts.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		ts.t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		ts.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		ts.t.Fatalf("upgrade: %s", resp.Status)
	}
	return &rawConn{t: ts.t, nc: nc, br: br}
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// readFrame reads one server frame: opcode and payload; err at EOF.
func (r *rawConn) readFrame() (op byte, payload []byte, err error) {
	r.nc.SetReadDeadline(time.Now().Add(waitFor))
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[0]&finBit == 0 || h[0]&0x70 != 0 || h[1]&maskBit != 0 {
		r.t.Fatalf("server frame header %x: not final, RSV set or masked", h)
	}
	n := int(h[1] & 0x7F)
	switch n {
	case 126:
		var l [2]byte
		io.ReadFull(r.br, l[:])
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		io.ReadFull(r.br, l[:])
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r.br, payload); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0F, payload, nil
}

// nextText returns the next text frame, skipping Pings.
func (r *rawConn) nextText() []byte {
	r.t.Helper()
	for {
		op, p, err := r.readFrame()
		if err != nil {
			r.t.Fatal(err)
		}
		if op == opText {
			return p
		}
		if op == opClose {
			r.t.Fatal("the server sent a Close frame")
		}
	}
}

// untilEOF reads frames until the server closes TCP, failing on a Close
// frame; it returns the text frames seen.
func (r *rawConn) untilEOF() [][]byte {
	r.t.Helper()
	var texts [][]byte
	for {
		op, p, err := r.readFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
				return texts
			}
			r.t.Fatalf("waiting for a TCP close: %v", err)
		}
		switch op {
		case opClose:
			r.t.Fatalf("the server sent a Close frame %x", p)
		case opText:
			texts = append(texts, p)
		}
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}
