package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Shared helpers for browser clients in e2e tests: a gorilla WebSocket
// subscriber (wsSub) on the CppComet URL, and a raw one (rawWS) that reads
// only when told to and parses what arrived frame by frame.

// wsFrame is one JSON object of a server frame (SPEC 3.3). A WebSocket text
// frame may hold several, separated by '\n'.
type wsFrame struct {
	Data  json.RawMessage `json:"data"`
	Event string          `json:"event"`
	Pipe  string          `json:"pipe"`
	ID    string          `json:"id"`
	Seq   int64           `json:"seq"`
	Time  int64           `json:"message_send_time"`

	str    string // data, when parseFrame decoded it without encoding/json
	hasStr bool
}

// text is the frame's data when it is a JSON string (pipe and private
// messages), else the raw JSON.
func (f *wsFrame) text() string {
	if f.hasStr {
		return f.str
	}
	var s string
	if len(f.Data) > 0 && f.Data[0] == '"' && json.Unmarshal(f.Data, &s) == nil {
		return s
	}
	return string(f.Data)
}

// parseFrame decodes one JSON object of a server frame. For a pipe message
// whose data, event and pipe need no unescaping (what load tests send) it
// reads only those, without encoding/json: decoding costs the race-built
// test process more CPU than the server spends sending.
func parseFrame(line []byte, f *wsFrame) error {
	if rest, ok := bytes.CutPrefix(line, []byte(`{"data":"`)); ok {
		if end := bytes.IndexByte(rest, '"'); end >= 0 && bytes.IndexByte(rest[:end], '\\') < 0 {
			event, ok1 := plainField(rest[end:], `,"event":"`)
			pipe, ok2 := plainField(rest[end:], `,"pipe":"`)
			if ok1 && ok2 {
				f.str, f.hasStr = string(rest[:end]), true
				f.Event, f.Pipe = event, pipe
				return nil
			}
		}
	}
	return json.Unmarshal(line, f)
}

// plainField finds key (`,"name":"`) in b and returns the string after it
// when it holds no escape.
func plainField(b []byte, key string) (string, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return "", false
	}
	v := b[i+len(key):]
	j := bytes.IndexByte(v, '"')
	if j < 0 || bytes.IndexByte(v[:j], '\\') >= 0 {
		return "", false
	}
	return string(v[:j]), true
}

// wsURL is the CppComet JS client's WebSocket URL for an anonymous browser.
func wsURL(scheme, httpAddr, uuid string) string {
	return fmt.Sprintf("%s://%s/ws/sesion=&myid=0&devid=0&v=4.08&uuid=%s&api=js", scheme, httpAddr, uuid)
}

// newUUID returns a 32-character browser uuid.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// wsSub is a browser on a gorilla WebSocket: a reader goroutine parses
// every frame and hands pipe frames (not sys ones) to onFrame, or keeps
// them when onFrame is nil. Pings are answered by gorilla.
type wsSub struct {
	conn *wsConnWrap
	uuid string

	onFrame func(f *wsFrame)

	mu     sync.Mutex
	frames []wsFrame
	sys    []wsFrame
	err    error // what ended the reader
	done   chan struct{}
}

// wsConnWrap serializes writes to a gorilla connection (one reader, many
// writers).
type wsConnWrap struct {
	*websocket.Conn
	wmu sync.Mutex
}

func (c *wsConnWrap) writeText(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.WriteMessage(websocket.TextMessage, []byte(s))
}

// wsDialer is the dialer of test browsers: small buffers (a thousand of them
// run in one test process).
var wsDialer = &websocket.Dialer{
	HandshakeTimeout: 15 * time.Second,
	ReadBufferSize:   2048,
	WriteBufferSize:  512,
}

// dialSub connects a browser and waits for its serverInfo frame; onFrame
// (may be nil) receives every later pipe frame from the reader goroutine.
// tlsCfg, when set, makes it a wss connection.
func dialSub(httpAddr string, tlsCfg *tls.Config, onFrame func(f *wsFrame)) (*wsSub, error) {
	return dialSubAs(httpAddr, tlsCfg, 0, "", onFrame)
}

// dialSubAs is dialSub for user (0: anonymous) with the sesion value key
// (a users_auth hash or a JWT).
func dialSubAs(httpAddr string, tlsCfg *tls.Config, user int64, key string, onFrame func(f *wsFrame)) (*wsSub, error) {
	d, scheme := wsDialer, "ws"
	if tlsCfg != nil {
		dd := *wsDialer
		dd.TLSClientConfig = tlsCfg
		d, scheme = &dd, "wss"
	}
	uuid := newUUID()
	h := http.Header{"Origin": []string{"http://" + httpAddr}}
	u := wsURL(scheme, httpAddr, uuid)
	if user != 0 {
		u = strings.Replace(u, "sesion=&myid=0", fmt.Sprintf("sesion=%s&myid=%d", key, user), 1)
	}
	c, resp, err := d.Dial(u, h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (HTTP %s)", err, resp.Status)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	s := &wsSub{conn: &wsConnWrap{Conn: c}, uuid: uuid, onFrame: onFrame, done: make(chan struct{})}
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, first, err := c.ReadMessage()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("no serverInfo frame: %w", err)
	}
	if !bytes.Contains(first, []byte(`"event":"serverInfo"`)) {
		c.Close()
		return nil, fmt.Errorf("first frame is not serverInfo: %s", first)
	}
	_ = c.SetReadDeadline(time.Time{})
	go s.read()
	return s, nil
}

func (s *wsSub) read() {
	defer close(s.done)
	for {
		_, msg, err := s.conn.ReadMessage()
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		for len(msg) > 0 {
			line := msg
			if i := bytes.IndexByte(msg, '\n'); i >= 0 {
				line, msg = msg[:i], msg[i+1:]
			} else {
				msg = nil
			}
			if len(line) == 0 {
				continue
			}
			var f wsFrame
			if err := parseFrame(line, &f); err != nil {
				s.mu.Lock()
				s.err = fmt.Errorf("bad frame %q: %w", line, err)
				s.mu.Unlock()
				s.conn.Close()
				return
			}
			if f.Pipe == "sys" || strings.HasPrefix(f.Pipe, "_answer") {
				s.mu.Lock()
				s.sys = append(s.sys, f)
				s.mu.Unlock()
				continue
			}
			if s.onFrame != nil {
				s.onFrame(&f)
				continue
			}
			s.mu.Lock()
			s.frames = append(s.frames, f)
			s.mu.Unlock()
		}
	}
}

// subscribe sends the complete subscription list.
func (s *wsSub) subscribe(pipes ...string) error {
	return s.conn.writeText("subscription\n" + strings.Join(pipes, "\n"))
}

// received returns a copy of the pipe frames kept so far (onFrame nil).
func (s *wsSub) received() []wsFrame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]wsFrame(nil), s.frames...)
}

// sysFrames returns the sys and answer frames received so far.
func (s *wsSub) sysFrames() []wsFrame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]wsFrame(nil), s.sys...)
}

// readErr returns what ended the reader, nil while it runs.
func (s *wsSub) readErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// alive reports whether the connection is still being read.
func (s *wsSub) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// close ends the connection with a TCP close and waits for the reader.
func (s *wsSub) close() {
	s.conn.Close()
	<-s.done
}

// dialSubs connects n browsers, at most 32 at a time, each subscribed to
// pipesOf(i) (nil: none), and returns them in order. onFrame(i) gives the
// frame handler of browser i (nil: keep frames).
func dialSubs(t *testing.T, httpAddr string, n int, pipesOf func(i int) []string, onFrame func(i int) func(*wsFrame)) []*wsSub {
	t.Helper()
	subs := make([]*wsSub, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var h func(*wsFrame)
			if onFrame != nil {
				h = onFrame(i)
			}
			s, err := dialSub(httpAddr, nil, h)
			if err != nil {
				errs <- fmt.Errorf("browser %d: %w", i, err)
				return
			}
			subs[i] = s
			if pipesOf != nil {
				if p := pipesOf(i); len(p) > 0 {
					if err := s.subscribe(p...); err != nil {
						errs <- fmt.Errorf("browser %d: subscribe: %w", i, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	t.Cleanup(func() {
		for _, s := range subs {
			if s != nil {
				s.close()
			}
		}
	})
	for err := range errs {
		t.Fatal(err)
	}
	return subs
}

// waitSubscribed waits until the server counts want[pipe] subscribed
// connections on every pipe (SELECT ... FROM pipes), up to a minute.
func waitSubscribed(t *testing.T, db *sql.DB, want map[string]int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := pipeUsers(db, want)
		if err == nil {
			ok := true
			for p, n := range want {
				if got[p] != n {
					ok = false
					break
				}
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriptions not counted within 60s: got %v (err %v), want %v", got, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pipeUsers returns the server's subscriber count of each pipe in want.
func pipeUsers(db *sql.DB, want map[string]int) (map[string]int, error) {
	names := make([]string, 0, len(want))
	args := make([]any, 0, len(want))
	for p := range want {
		names = append(names, "?")
		args = append(args, p)
	}
	rows, err := db.Query("SELECT name, users FROM pipes WHERE name IN ("+strings.Join(names, ",")+")", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	got := map[string]int{}
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			return nil, err
		}
		got[name] = n
	}
	return got, rows.Err()
}

// rawWS is a browser on a plain TCP connection that reads only when asked:
// a stalled reader. Its receive buffer is set before connecting, so the
// TCP window it offers stays small.
type rawWS struct {
	nc net.Conn
	br *bufio.Reader
}

// dialRawWS upgrades a TCP connection to a WebSocket on the CppComet URL.
// It reads the HTTP response and nothing more. With rcvbuf > 0 the socket
// gets that receive buffer and announces a small MSS (536 bytes, a
// mobile-network size) before connecting: the window it offers stays small
// and the server's kernel sizes the connection's send buffer from the MSS,
// so a stalled reader's backlog piles up in the server's outbox rather
// than in the server's kernel (on loopback, with a 64 KiB MSS, the send
// buffer grows to tcp_wmem's maximum, 4 MiB).
func dialRawWS(httpAddr string, rcvbuf int) (*rawWS, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = errors.Join(
					syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf),
					syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 536))
			})
			return errors.Join(err, serr)
		}
	}
	nc, err := d.Dial("tcp", httpAddr)
	if err != nil {
		return nil, err
	}
	path := strings.TrimPrefix(wsURL("ws", httpAddr, newUUID()), "ws://"+httpAddr)
	req := "GET " + path + " HTTP/1.1\r\nHost: " + httpAddr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://" + httpAddr + "\r\n\r\n"
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write([]byte(req)); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, fmt.Errorf("upgrade: HTTP %s", resp.Status)
	}
	_ = nc.SetDeadline(time.Time{})
	return &rawWS{nc: nc, br: br}, nil
}

// sendText sends one masked text frame.
func (r *rawWS) sendText(s string) error {
	p := []byte(s)
	var h []byte
	switch {
	case len(p) < 126:
		h = []byte{0x81, 0x80 | byte(len(p))}
	case len(p) < 1<<16:
		h = []byte{0x81, 0x80 | 126, byte(len(p) >> 8), byte(len(p))}
	default:
		h = binary.BigEndian.AppendUint64([]byte{0x81, 0x80 | 127}, uint64(len(p)))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	h = append(h, mask[:]...)
	for i := range p {
		p[i] ^= mask[i%4]
	}
	_ = r.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := r.nc.Write(append(h, p...))
	return err
}

// rawFrame is one WebSocket frame as it arrived.
type rawFrame struct {
	op      byte
	payload []byte
}

// drain reads until the server ends the connection (or timeout passes) and
// returns the complete frames read and how the stream ended: io.EOF for a
// FIN, ECONNRESET for an RST, a timeout error when the server never closed.
// A frame cut short by the close is left out (truncated reports it).
func (r *rawWS) drain(timeout time.Duration) (frames []rawFrame, truncated bool, end error) {
	_ = r.nc.SetReadDeadline(time.Now().Add(timeout))
	data, end := io.ReadAll(r.br)
	if end == nil {
		end = io.EOF
	}
	for len(data) > 0 {
		op, payload, n, ok := parseWSFrame(data)
		if !ok {
			return frames, true, end
		}
		frames = append(frames, rawFrame{op, payload})
		data = data[n:]
	}
	return frames, false, end
}

// parseWSFrame decodes an unmasked server frame at the start of b; ok is
// false when b holds only part of it.
func parseWSFrame(b []byte) (op byte, payload []byte, n int, ok bool) {
	if len(b) < 2 {
		return 0, nil, 0, false
	}
	op = b[0] & 0x0f
	l := int(b[1] & 0x7f)
	h := 2
	switch l {
	case 126:
		if len(b) < 4 {
			return 0, nil, 0, false
		}
		l, h = int(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, nil, 0, false
		}
		l, h = int(binary.BigEndian.Uint64(b[2:])), 10
	}
	if len(b) < h+l {
		return 0, nil, 0, false
	}
	return op, b[h : h+l], h + l, true
}

// isConnReset reports an RST from the peer.
func isConnReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// closedByTCP checks that a gorilla connection's read ended without a
// WebSocket Close frame from the server (SPEC 3.3 rule 1). gorilla reports
// a connection that ended without one as a CloseError with the reserved
// code 1006 (abnormal closure), which no peer may send in a frame.
func closedByTCP(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
		return fmt.Errorf("the server sent a WebSocket Close frame (%d %q): it must close TCP only", ce.Code, ce.Text)
	}
	if err == nil {
		return errors.New("the connection is still open")
	}
	return nil
}

// waitUntil polls cond every 20 ms until it holds or timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lpClient is a browser on the long-polling transport (jsapi/longpoll.go).
type lpClient struct {
	base string // http://<addr>/lp
	sid  string
	next int64
	hc   *http.Client
}

// lpReply is the body of /lp/open and /lp/poll.
type lpReply struct {
	Sid    string            `json:"sid"`
	Next   int64             `json:"next"`
	Frames []json.RawMessage `json:"frames"`
	Error  string            `json:"error"`
}

// openLP opens an anonymous long-poll session.
func openLP(httpAddr string) (*lpClient, error) {
	c := &lpClient{base: "http://" + httpAddr + "/lp", hc: &http.Client{Timeout: 60 * time.Second}}
	var r lpReply
	if _, err := c.get("/open?sesion=&myid=0&devid=0&v=4.08&api=js&uuid="+newUUID(), &r); err != nil {
		return nil, err
	}
	if r.Sid == "" {
		return nil, fmt.Errorf("open: no session id (%q)", r.Error)
	}
	c.sid, c.next = r.Sid, r.Next
	return c, nil
}

func (c *lpClient) get(path string, into any) (int, error) {
	resp, err := c.hc.Get(c.base + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if into != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, into); err != nil {
			return resp.StatusCode, fmt.Errorf("%s: %w: %.200s", path, err, body)
		}
	}
	return resp.StatusCode, nil
}

// send posts one command.
func (c *lpClient) send(cmd string) error {
	resp, err := c.hc.Post(c.base+"/send?sid="+c.sid, "text/plain", strings.NewReader(cmd))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("send: HTTP %s", resp.Status)
	}
	return nil
}

// poll acknowledges what was received and waits for more; it returns the
// HTTP status and the frames.
func (c *lpClient) poll() (int, []json.RawMessage, error) {
	var r lpReply
	code, err := c.get(fmt.Sprintf("/poll?sid=%s&ack=%d", c.sid, c.next), &r)
	if err == nil && code == http.StatusOK {
		c.next = r.Next
	}
	return code, r.Frames, err
}

// TestParseFrameFastPath: the test browsers' shortcut decodes what
// encoding/json decodes.
func TestParseFrameFastPath(t *testing.T) {
	for _, line := range []string{
		`{"data":"hello","event":"ev","message_send_time":1,"pipe":"p1","user_id":0,"id":"x","seq":3}`,
		`{"data":"he\"llo","event":"ev","message_send_time":1,"pipe":"p1"}`,
		`{"data":{"a":1},"event":"e2","message_send_time":1,"pipe":"sys"}`,
		`{"data":"x","event":"e\u0027","message_send_time":1,"pipe":"p"}`,
		`{"data":"","event":"","message_send_time":1,"pipe":"p"}`,
	} {
		var fast, slow wsFrame
		if err := parseFrame([]byte(line), &fast); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(line), &slow); err != nil {
			t.Fatal(err)
		}
		if fast.text() != slow.text() || fast.Event != slow.Event || fast.Pipe != slow.Pipe {
			t.Errorf("%s: fast %q %q %q, encoding/json %q %q %q", line, fast.text(), fast.Event, fast.Pipe, slow.text(), slow.Event, slow.Pipe)
		}
	}
}
