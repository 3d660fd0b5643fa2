package jsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cometql/cometql/pipes"
)

func TestServerInfoAnonymous(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	c := ts.dial(anonPath(), nil)
	expect(t, c.next(), "authorized", false, "data", "", "event", "serverInfo", "pipe", "sys", "server", "cometql test")
}

func TestServerInfoAuthorizedByHash(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	ts.setHash(0, 42, "s3cret+/=")
	c := ts.dial(userPath(42, "s3cret+/="), nil)
	expect(t, c.next(), "authorized", true, "data", "s3cret+/=", "event", "serverInfo")

	// A wrong key stays connected, anonymous.
	w := ts.dial(userPath(42, "wrong"), nil)
	expect(t, w.next(), "authorized", false, "data", "")
	w.send("statistics\n{}")
	w.sync()
}

func TestPaths(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	for _, p := range []string{
		anonPath(),
		"/" + anonPath(), // "//ws/..." from a node ending in '/'
		"/comet-server" + anonPath(),
		"/comet-server/" + anonPath(),
		"/ws?sesion=&myid=0&devid=0&v=4.08&uuid=q&api=js",
		"/ws/?sesion=&myid=0&devid=0&v=4.08&uuid=q&api=js",
	} {
		c := ts.dial(p, nil)
		expect(t, c.info(), "authorized", false)
	}
}

func TestHandshakeErrors(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	for _, c := range []struct {
		path string
		code int
	}{
		{"/ws/sesion=&myid=0&devid=0&uuid=x&api=js", 418},
		{"/ws/sesion=&myid=0&devid=0&v=abc&uuid=x&api=js", 418},
		{"/ws/myid=0&devid=0&v=4.08", 401},
		{"/ws/", 401},
	} {
		r := ts.rawDial(c.path)
		texts := r.untilEOF()
		if len(texts) != 1 {
			t.Fatalf("%s: got %d frames before the TCP close, want 1", c.path, len(texts))
		}
		var m map[string]any
		if err := json.Unmarshal(texts[0], &m); err != nil {
			t.Fatal(err)
		}
		data := m["data"].(map[string]any)
		if m["pipe"] != "sys" || m["event"] != "error" || data["error_code"] != float64(c.code) ||
			!strings.HasPrefix(data["error"].(string), "Error code "+strconv.Itoa(c.code)+"(") {
			t.Fatalf("%s: frame %s", c.path, texts[0])
		}
	}
}

func TestOriginRefused(t *testing.T) {
	ts := newTestServer(t, Config{AllowedOrigins: []string{"https://good.example"}}, pipes.Config{})
	_, err := ts.tryDial(anonPath(), http.Header{"Origin": {"https://evil.example"}})
	if err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Fatalf("evil origin: %v", err)
	}
	c := ts.dial(anonPath(), http.Header{"Origin": {"https://good.example"}})
	c.info()
}

func TestApostropheEscaped(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	c := ts.dial(anonPath(), nil)
	c.info()
	c.subscribe("news")
	ts.publish("news", "ev", `it's "quoted" \ here`)
	f := c.raw()
	if bytes.Contains(f, []byte(`\'`)) || bytes.Contains(f, []byte(`'`)) || !bytes.Contains(f, []byte(`it\u0027s`)) {
		t.Fatalf("frame %s", f)
	}
	var m map[string]any
	json.Unmarshal(f, &m)
	expect(t, m, "data", `it's "quoted" \ here`, "event", "ev", "pipe", "news", "user_id", 0)
}

// TestFrameSizes sends frames whose payloads are exactly at the WebSocket
// length boundaries, both ways, and checks they arrive intact.
func TestFrameSizes(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	c := ts.dial(anonPath(), nil)
	c.info()
	c.subscribe("sizes")
	ts.publish("sizes", "e", "")
	overhead := len(c.raw())
	for _, size := range []int{123, 124, 125, 126, 127, 65535, 65536, 60 << 10} {
		data := strings.Repeat("x", size-overhead)
		ts.publish("sizes", "e", data)
		f := c.raw()
		if len(f) != size {
			t.Fatalf("frame of %d bytes arrived with %d", size, len(f))
		}
		var m map[string]any
		if err := json.Unmarshal(f, &m); err != nil || m["data"] != data {
			t.Fatalf("frame of %d bytes corrupted: %v", size, err)
		}
	}

	// Browser to server: masked frames at the same boundaries, through
	// web_pipe2 to a second browser.
	a := ts.dial(anonPath(), nil)
	a.info()
	a.subscribe("web_sizes")
	head := "web_pipe2\nweb_sizes\ne\n*\n"
	for _, size := range []int{124, 125, 126, 127, 65535, 65536} {
		data := strings.Repeat("y", size-len(head))
		c.send(head + data)
		m := a.nextOn("web_sizes")
		if m["data"] != data {
			t.Fatalf("client frame of %d bytes: data of %d bytes arrived", size, len(m["data"].(string)))
		}
		c.nextOn("_answer_to_web_sizes")
	}
}

func TestSubscriptionDiffAndTrackEvents(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	a := ts.dial("/ws/sesion=&myid=0&devid=0&v=4.08&uuid=AAA&api=js", nil)
	b := ts.dial("/ws/sesion=&myid=0&devid=0&v=4.08&uuid=BBB&api=js", nil)
	a.info()
	b.info()
	a.subscribe("track_room")
	b.subscribe("track_room")
	m := a.nextOn("track_room")
	expect(t, m, "event", "subscription", "data", map[string]any{"user_id": 0, "uuid": "BBB"})

	// The same list again, and a longer one: no new events.
	b.subscribe("track_room")
	b.subscribe("track_room", "web_other")
	a.sync()
	a.none(100 * time.Millisecond)
	b.sync()
	b.none(50 * time.Millisecond) // B never sees its own join

	b.subscribe("web_other")
	m = a.nextOn("track_room")
	expect(t, m, "event", "unsubscription", "data", map[string]any{"user_id": 0, "uuid": "BBB"})

	// A track_pipe_users list has both, then A alone.
	b.subscribe("track_room")
	a.nextOn("track_room")
	a.send("track_pipe_users\ntrack_room\nmk1")
	m = a.nextOn("_answer")
	expect(t, m, "marker", "mk1", "event", "answer")
	if n := len(m["data"].([]any)); n != 2 {
		t.Fatalf("track_pipe_users: %v", m)
	}
	b.close()
	m = a.nextOn("track_room")
	expect(t, m, "event", "unsubscription", "data", map[string]any{"user_id": 0, "uuid": "BBB"})
}

func TestPipeCount(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	a := ts.dial(anonPath(), nil)
	b := ts.dial(anonPath(), nil)
	a.info()
	b.info()
	a.subscribe("web_room")
	b.subscribe("web_room")
	a.send("pipe_count\nweb_room\ncount.1\n")
	expect(t, a.nextOn("_answer_pipe_count"), "event", "user_in_pipe", "marker", "count.1",
		"data", map[string]any{"user_in_pipe": 2, "0": "user_in_pipe", "1": 2})
	a.send("pipe_count\nnews\nm2\n")
	expect(t, a.nextOn("sys"), "event", "error")
}

func TestTooManyDevices(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	ts.setHash(0, 7, "key7")
	for i := 0; i < 16; i++ {
		c := ts.dial(userPath(7, "key7"), nil)
		expect(t, c.info(), "authorized", true)
	}
	c := ts.dial(userPath(7, "key7"), nil)
	expect(t, c.info(), "authorized", false)
	m := c.next()
	expect(t, m, "pipe", "sys", "event", "error")
	if m["data"].(map[string]any)["code"] != "too_many_devices" {
		t.Fatalf("17th device: %v", m)
	}
	c.sync() // still connected
}

func TestPrivateMessagesAndOfflineQueue(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	ctx := context.Background()
	ts.setHash(0, 9, "k9")
	for i := range 12 {
		if _, err := ts.hub.SendPrivate(ctx, 0, 9, "note", fmt.Sprintf("queued %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	a := ts.dial(userPath(9, "k9"), nil)
	expect(t, a.info(), "authorized", true)
	for i := range 12 {
		expect(t, a.next(), "pipe", "msg", "event", "note", "data", fmt.Sprintf("queued %d", i), "fromQueue", true)
	}
	b := ts.dial(userPath(9, "k9"), nil)
	b.info()
	n, err := ts.hub.SendPrivate(ctx, 0, 9, "live", "to all devices")
	if err != nil || n != 2 {
		t.Fatalf("delivered %d: %v", n, err)
	}
	for _, c := range []*wsClient{a, b} {
		m := c.next()
		expect(t, m, "pipe", "msg", "event", "live", "data", "to all devices")
		if _, ok := m["fromQueue"]; ok {
			t.Fatalf("live message marked fromQueue: %v", m)
		}
	}
}

func TestUserStatusOnceForTwoTabs(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	ts.setHash(0, 5, "k5")
	obs := ts.dial(anonPath(), nil)
	obs.info()
	obs.subscribe("user_status_5")

	tab1 := ts.dial(userPath(5, "k5"), nil)
	tab1.info()
	expect(t, obs.nextOn("user_status_5"), "event", "online", "data", "online")
	tab2 := ts.dial(userPath(5, "k5"), nil)
	tab2.info()
	tab2.sync()

	obs.send("user_status\n5")
	m := obs.nextOn("_answer_user_status")
	expect(t, m, "event", "user_status_5", "data", map[string]any{"online": true, "last_online_time": 0})

	tab1.close()
	obs.sync()
	obs.none(100 * time.Millisecond)
	tab2.close()
	expect(t, obs.nextOn("user_status_5"), "event", "offline", "data", "offline")
	obs.sync()
	obs.none(100 * time.Millisecond)

	obs.send("user_status\n5")
	m = obs.nextOn("_answer_user_status")
	if d := m["data"].(map[string]any); d["online"] != false || d["last_online_time"].(float64) <= 0 {
		t.Fatalf("user_status after offline: %v", m)
	}
}

func TestWebPipe(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	ts.setHash(0, 3, "k3")
	sender := ts.dial(userPath(3, "k3"), nil)
	anon := ts.dial(anonPath(), nil)
	recv := ts.dial(anonPath(), nil)
	for _, c := range []*wsClient{sender, anon, recv} {
		c.info()
		c.subscribe("web_chat", "webauth_room")
	}

	sender.send("web_pipe2\nweb_chat\nsay\n*\n{\"text\":\"it's\\nmulti\"}")
	for _, c := range []*wsClient{anon, recv} {
		expect(t, c.nextOn("web_chat"), "event", "say", "user_id", 3, "data", "{\"text\":\"it's\\nmulti\"}")
	}
	expect(t, sender.nextOn("_answer_to_web_chat"), "event", "answer",
		"data", map[string]any{"message": "{\"text\":\"it's\\nmulti\"}", "number_messages": 2, "error": ""})

	// '@' publishes anonymously.
	sender.send("web_pipe2\n@web_chat\nsay\n*\nhidden")
	expect(t, recv.nextOn("web_chat"), "user_id", 0, "data", "hidden")
	sender.nextOn("_answer_to_web_chat")

	// webauth_*: authorized senders only.
	sender.send("web_pipe2\nwebauth_room\nsay\n*\nauth")
	expect(t, recv.nextOn("webauth_room"), "user_id", 3, "data", "auth")
	anon.nextOn("webauth_room")
	sender.nextOn("_answer_to_webauth_room")
	anon.send("web_pipe2\nwebauth_room\nsay\n*\nnope")
	expect(t, anon.nextOn("sys"), "event", "error")

	// Other pipes are refused.
	anon.send("web_pipe2\nnews\nsay\n*\nnope")
	m := anon.nextOn("sys")
	if m["data"].(map[string]any)["code"] != "forbidden" {
		t.Fatalf("publish to news: %v", m)
	}
	// Not delivered to the sender itself.
	sender.sync()
	sender.none(50 * time.Millisecond)
	recv.sync()
	recv.none(50 * time.Millisecond)
}

func TestPipeLog(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	ctx := context.Background()
	if err := ts.hub.Engine().SetLogLength(ctx, 0, "logged", 10); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		ts.publish("logged", "ev", fmt.Sprintf("m%d", i))
	}
	c := ts.dial(anonPath(), nil)
	c.info()
	c.send("pipe_log\nlogged\nmark.1\n")
	var seqs []float64
	for i := range 3 {
		m := c.next()
		expect(t, m, "pipe", "logged", "history", true, "data", fmt.Sprintf("m%d", i), "user_id", 0)
		if _, ok := m["marker"]; ok {
			t.Fatalf("history frame with a marker: %v", m)
		}
		// No uuid: CppComet's client drops frames whose uuid it saw in
		// the last minutes, so asking for the history again, or for
		// messages received live, would show nothing.
		if _, ok := m["uuid"]; ok {
			t.Fatalf("history frame with a uuid: %v", m)
		}
		seqs = append(seqs, m["seq"].(float64))
	}
	c.send(fmt.Sprintf("pipe_log\nlogged\nmark.2\n%d", int64(seqs[1])))
	expect(t, c.next(), "data", "m2", "history", true)
	c.sync()
	c.none(50 * time.Millisecond)
}

func TestUserData(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	if err := ts.st.SetUserData(context.Background(), 0, 11, `{"name":"Zoë"}`); err != nil {
		t.Fatal(err)
	}
	c := ts.dial(anonPath(), nil)
	c.info()
	c.send("user_data\nud.1\n11")
	expect(t, c.next(), "pipe", "_answer", "event", "answer", "marker", "ud.1",
		"data", map[string]any{"user_data": `{"name":"Zoë"}`, "user_id": 11})
	c.send("user_data\nud.2\n12")
	expect(t, c.next(), "marker", "ud.2", "data", map[string]any{"user_data": "", "user_id": 12})
}

func TestStatisticsIgnoredUnknownCommandReported(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	c := ts.dial(anonPath(), nil)
	c.info()
	c.send("statistics\n{\"url\":\"http://x\"}")
	c.send("launch_rockets\nnow")
	m := c.next()
	expect(t, m, "pipe", "sys", "event", "error")
	if m["data"].(map[string]any)["code"] != "unknown_command" {
		t.Fatalf("unknown command: %v", m)
	}
	c.subscribe("news") // the connection lives
	ts.publish("news", "e", "still here")
	expect(t, c.next(), "data", "still here")
}

func TestInvalidUTF8AndBinary(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	r := ts.rawDial(anonPath())
	r.nextText() // serverInfo
	key := [4]byte{7, 7, 7, 7}
	r.write(clientFrame(true, opText, []byte("subscription\nweb_\xff\xfe"), key))
	var m map[string]any
	json.Unmarshal(r.nextText(), &m)
	if m["data"].(map[string]any)["code"] != "invalid_message" {
		t.Fatalf("invalid UTF-8: %v", m)
	}
	r.write(clientFrame(true, opBinary, []byte{1, 2, 3}, key))
	json.Unmarshal(r.nextText(), &m)
	expect(t, m, "pipe", "sys", "event", "error")

	// Fragmented command, with a Ping between the fragments.
	r.write(clientFrame(false, opText, []byte("pipe_count\nweb_"), key))
	r.write(clientFrame(true, opPing, []byte("hi"), key))
	r.write(clientFrame(false, opContinuation, []byte("x\nfr"), key))
	r.write(clientFrame(true, opContinuation, []byte("ag\n"), key))
	op, p, err := r.readFrame()
	if err != nil || op != opPong || string(p) != "hi" {
		t.Fatalf("pong: op %d %q %v", op, p, err)
	}
	json.Unmarshal(r.nextText(), &m)
	expect(t, m, "marker", "frag", "pipe", "_answer_pipe_count")
}

func TestClientCloseGetsTCPClose(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	r := ts.rawDial(anonPath())
	r.nextText()
	r.write(clientFrame(true, opClose, []byte{0x03, 0xE8}, [4]byte{1, 2, 3, 4}))
	if texts := r.untilEOF(); len(texts) != 0 {
		t.Fatalf("frames after Close: %q", texts)
	}
}

func TestUnmaskedClientFrameCloses(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	r := ts.rawDial(anonPath())
	r.nextText()
	f := appendFrameHeader(nil, opText, 5)
	r.write(append(f, "hello"...))
	r.untilEOF()
}

func TestPings(t *testing.T) {
	ts := newTestServer(t, Config{PingInterval: 40 * time.Millisecond, PongTimeout: 400 * time.Millisecond}, pipes.Config{})
	c := ts.dial(anonPath(), nil)
	c.info()
	for range 3 {
		select {
		case <-c.pings:
		case <-time.After(waitFor):
			t.Fatal("no ping from the server")
		}
	}
	// A client Ping is answered with a Pong carrying its payload.
	pong := make(chan string, 1)
	c.c.SetPongHandler(func(p string) error { pong <- p; return nil })
	if err := c.c.WriteControl(websocket.PingMessage, []byte("marco"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pong:
		if p != "marco" {
			t.Fatalf("pong %q", p)
		}
	case <-time.After(waitFor):
		t.Fatal("no pong")
	}

	// A client that stops answering is dropped.
	r := ts.rawDial(anonPath())
	start := time.Now()
	r.untilEOF() // reads (and ignores) pings without answering
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("dropped after %v, before the pong timeout", d)
	}
}

func TestSlowConsumerDropped(t *testing.T) {
	ts := newTestServer(t, Config{OutboxBytes: 256 << 10, OutboxFrames: 100}, pipes.Config{})
	fast := ts.dial(anonPath(), nil)
	fast.info()
	fast.subscribe("flood")
	slow := ts.rawDial(anonPath())
	slow.nextText()
	slow.write(clientFrame(true, opText, []byte("subscription\nflood"), [4]byte{}))
	for ts.hub.LocalCount(0, "flood") != 2 {
		time.Sleep(time.Millisecond)
	}
	data := strings.Repeat("z", 60<<10)
	const n = 300 // 18 MB: more than the socket buffers hold
	for i := range n {
		ts.publish("flood", "e", data)
		if m := fast.next(); m["data"] != data {
			t.Fatalf("fast consumer: frame %d wrong", i)
		}
	}
	// The slow one was cut off: reading what is buffered ends in a TCP
	// close, before all the frames.
	got := len(slow.untilEOF())
	if got >= n {
		t.Fatalf("slow consumer got all %d frames", got)
	}
	_, b := httpGet(t, "http://"+ts.addr+"/metrics", nil)
	if !strings.Contains(string(b), `cometql_browser_drops_total{reason="overflow"} 1`) {
		t.Fatalf("no overflow drop counted:\n%s", b)
	}
}

func TestKickUser(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	ts.setHash(0, 8, "k8")
	r := ts.rawDial(userPath(8, "k8"))
	r.nextText()
	if err := ts.hub.KickUser(context.Background(), 0, 8); err != nil {
		t.Fatal(err)
	}
	r.untilEOF()
}

func TestCommandRateLimit(t *testing.T) {
	ts := newTestServer(t, Config{CommandRate: 1, CommandBurst: 3}, pipes.Config{})
	c := ts.dial(anonPath(), nil)
	c.info()
	for range 5 {
		c.send("statistics\n{}")
	}
	m := c.next()
	if m["data"].(map[string]any)["code"] != "rate_limited" {
		t.Fatalf("got %v", m)
	}
}

func TestPartialFrameDeadline(t *testing.T) {
	ts := newTestServer(t, Config{HandshakeTimeout: 200 * time.Millisecond}, pipes.Config{})
	r := ts.rawDial(anonPath())
	r.nextText()
	f := clientFrame(true, opText, []byte("subscription\nnews"), [4]byte{1, 2, 3, 4})
	r.write(f[:len(f)-3]) // and never the rest
	start := time.Now()
	r.untilEOF()
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("closed after %v", d)
	}

	// Fragments that never end count as an incomplete message too.
	r = ts.rawDial(anonPath())
	r.nextText()
	r.write(clientFrame(false, opText, []byte("subscription\n"), [4]byte{}))
	r.untilEOF()
}

func TestMessageTooLarge(t *testing.T) {
	ts := newTestServer(t, Config{MaxFrameBytes: 1000}, pipes.Config{})
	r := ts.rawDial(anonPath())
	r.nextText()
	r.write(clientFrame(true, opText, make([]byte, 1001), [4]byte{}))
	texts := r.untilEOF()
	if len(texts) != 1 || !bytes.Contains(texts[0], []byte("message_too_large")) {
		t.Fatalf("frames before the close: %q", texts)
	}
}

// TestMessageTooLargeWhileSending: the rest of an oversized frame is still
// arriving when the server closes. Closing a socket with unread input makes
// the kernel answer with a reset that can overtake the error frame; the
// server must shut down its side and drain instead, so the client reads
// the explanation, then a clean EOF.
func TestMessageTooLargeWhileSending(t *testing.T) {
	for _, noPoller := range []bool{false, true} {
		t.Run(fmt.Sprintf("noPoller=%v", noPoller), func(t *testing.T) {
			ts := newTestServer(t, Config{MaxFrameBytes: 1000, noPoller: noPoller}, pipes.Config{})
			r := ts.rawDial(anonPath())
			r.nextText()
			frame := clientFrame(true, opText, make([]byte, 512<<10), [4]byte{})
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				r.nc.Write(frame) // fails once the server has closed: expected
			}()
			var texts [][]byte
			for {
				op, p, err := r.readFrame()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Errorf("the connection ended with %v, not a clean EOF", err)
					}
					break
				}
				if op == opClose {
					t.Fatal("the server sent a Close frame")
				}
				if op == opText {
					texts = append(texts, p)
				}
			}
			if len(texts) != 1 || !bytes.Contains(texts[0], []byte("message_too_large")) {
				t.Fatalf("frames before the close: %q", texts)
			}
			r.nc.Close()
			<-sent
		})
	}
}

// TestWithoutPoller runs a WebSocket conversation with a reading goroutine
// per connection (the path of TLS connections and non-Linux systems).
func TestWithoutPoller(t *testing.T) {
	ts := newTestServer(t, Config{noPoller: true, HandshakeTimeout: 300 * time.Millisecond}, pipes.Config{})
	a := ts.dial(anonPath(), nil)
	b := ts.dial(anonPath(), nil)
	a.info()
	b.info()
	a.subscribe("web_x")
	b.send("web_pipe2\nweb_x\ne\n*\n" + strings.Repeat("w", 60000))
	if m := a.nextOn("web_x"); len(m["data"].(string)) != 60000 {
		t.Fatal("big message")
	}
	r := ts.rawDial(anonPath())
	r.nextText()
	r.write(clientFrame(true, opText, []byte("subscr"), [4]byte{})[:5])
	r.untilEOF() // partial frame deadline
	r = ts.rawDial(anonPath())
	r.nextText()
	r.write(clientFrame(true, opClose, nil, [4]byte{}))
	r.untilEOF()
}

func TestServerInfoAuthorizedByJWT(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	ctx := context.Background()
	tok, err := ts.auth.MakeToken(0, 77, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c := ts.dial(userPath(77, tok), nil)
	expect(t, c.info(), "authorized", true, "data", tok)

	// For another user, or expired: anonymous.
	expect(t, ts.dial(userPath(78, tok), nil).info(), "authorized", false)
	old, _ := ts.auth.MakeToken(0, 77, time.Now().Add(-time.Hour))
	expect(t, ts.dial(userPath(77, old), nil).info(), "authorized", false)

	// Revoked: the live connection is closed, new ones are anonymous.
	if err := ts.auth.Revoke(ctx, 0, tok); err != nil {
		t.Fatal(err)
	}
	if err := ts.hub.KickToken(ctx, 0, tok); err != nil {
		t.Fatal(err)
	}
	c.ended()
	expect(t, ts.dial(userPath(77, tok), nil).info(), "authorized", false, "data", "")
}

// Connections closed after an error frame linger (the input is drained
// for up to a second) without holding an OS thread each: 100 clients that
// announce an oversized frame and then hold their connection open must not
// add a thread per client to the server, and each gets its explanation and
// then a TCP close.
func TestLingeringClosesHoldNoThreads(t *testing.T) {
	const clients = 100
	ts := newTestServer(t, Config{MaxFrameBytes: 1000}, pipes.Config{})
	conns := make([]*rawConn, clients)
	for i := range conns {
		conns[i] = ts.rawDial(anonPath())
		conns[i].nextText()
	}
	before := processThreads(t)
	// Announce 512 KiB, send 2 KiB of it, then hold.
	head := clientFrame(true, opText, make([]byte, 512<<10), [4]byte{})[:2<<10]
	for _, r := range conns {
		r.write(head)
	}
	for _, r := range conns {
		if p := r.nextText(); !bytes.Contains(p, []byte("message_too_large")) {
			t.Fatalf("error frame: %q", p)
		}
	}
	// Every connection is lingering now, for up to a second each: the
	// most threads seen over half of that.
	during := 0
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		during = max(during, processThreads(t))
	}
	if during-before > clients/4 {
		t.Fatalf("threads %d before the lingering closes, up to %d during: one per lingering connection", before, during)
	}
	for _, r := range conns {
		r.untilEOF()
	}
}

// processThreads is this process's thread count.
func processThreads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads line")
	return 0
}
