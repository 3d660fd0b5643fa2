package jsapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cometql/cometql/pipes"
)

// lpClient drives the long-poll transport over real HTTP.
type lpClient struct {
	t    testing.TB
	base string
	sid  string
	ack  int64
	hc   *http.Client
}

type pollReply struct {
	SID    string            `json:"sid"`
	Next   int64             `json:"next"`
	Frames []json.RawMessage `json:"frames"`
	Error  string            `json:"error"`
	Code   int               `json:"code"`
}

func (ts *testServer) lpOpen(query string) *lpClient {
	ts.t.Helper()
	c := &lpClient{t: ts.t, base: "http://" + ts.addr, hc: &http.Client{Timeout: 10 * time.Second}}
	ts.t.Cleanup(c.hc.CloseIdleConnections)
	var r pollReply
	if st := c.get("/lp/open?"+query, &r); st != http.StatusOK || r.SID == "" || r.Next != 0 {
		ts.t.Fatalf("open: %d %+v", st, r)
	}
	c.sid = r.SID
	return c
}

func (c *lpClient) get(path string, v any) int {
	c.t.Helper()
	return c.do(http.MethodGet, path, "", v)
}

func (c *lpClient) do(method, path, body string, v any) int {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			c.t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// poll polls with an ack and returns the reply; it does not advance ack.
func (c *lpClient) poll(ack int64) pollReply {
	c.t.Helper()
	var r pollReply
	if st := c.get(fmt.Sprintf("/lp/poll?sid=%s&ack=%d", c.sid, ack), &r); st != http.StatusOK {
		c.t.Fatalf("poll: %d %+v", st, r)
	}
	return r
}

// frames polls until at least n frames arrived and acknowledges them.
func (c *lpClient) frames(n int) []map[string]any {
	c.t.Helper()
	var out []map[string]any
	deadline := time.Now().Add(waitFor)
	for len(out) < n {
		if time.Now().After(deadline) {
			c.t.Fatalf("got %d frames, want %d", len(out), n)
		}
		r := c.poll(c.ack)
		for _, f := range r.Frames {
			var m map[string]any
			if err := json.Unmarshal(f, &m); err != nil {
				c.t.Fatal(err)
			}
			out = append(out, m)
		}
		c.ack = r.Next
	}
	return out
}

func (c *lpClient) send(cmd string) {
	c.t.Helper()
	var r map[string]any
	if st := c.do(http.MethodPost, "/lp/send?sid="+c.sid, cmd, &r); st != http.StatusOK || r["ok"] != true {
		c.t.Fatalf("send: %d %v", st, r)
	}
}

const lpQuery = "sesion=&myid=0&devid=0&v=4.08&uuid=lpuuid&api=js"

func TestLongPollOpenPollSendClose(t *testing.T) {
	ts := newTestServer(t, Config{LongPollHold: 300 * time.Millisecond}, pipes.Config{})
	c := ts.lpOpen(lpQuery)
	expect(t, c.frames(1)[0], "event", "serverInfo", "authorized", false)

	// An empty poll is held for LongPollHold, then answers next = ack.
	start := time.Now()
	r := c.poll(c.ack)
	if len(r.Frames) != 0 || r.Next != c.ack || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("empty poll: %+v after %v", r, time.Since(start))
	}

	c.send("subscription\nnews\nweb_chat")
	ws := ts.dial(anonPath(), nil)
	ws.info()
	ws.subscribe("web_chat")
	for ts.hub.LocalCount(0, "news") != 1 {
		time.Sleep(time.Millisecond)
	}

	// A held poll returns as soon as a frame arrives.
	done := make(chan []map[string]any)
	go func() { done <- c.frames(1) }()
	time.Sleep(20 * time.Millisecond)
	ts.publish("news", "ev", "it's news")
	expect(t, (<-done)[0], "pipe", "news", "data", "it's news")

	// Commands: web_pipe2 reaches the WebSocket, the report comes by poll.
	c.send("web_pipe2\nweb_chat\nsay\n*\nfrom lp")
	expect(t, ws.nextOn("web_chat"), "data", "from lp")
	expect(t, c.frames(1)[0], "pipe", "_answer_to_web_chat")

	// Unknown commands: sys error in the next poll.
	c.send("bogus")
	expect(t, c.frames(1)[0], "pipe", "sys", "event", "error")

	var ok map[string]any
	if st := c.do(http.MethodPost, "/lp/close?sid="+c.sid, "", &ok); st != http.StatusOK || ok["ok"] != true {
		t.Fatalf("close: %d %v", st, ok)
	}
	var e pollReply
	for range 100 { // the session ends asynchronously
		if st := c.get(fmt.Sprintf("/lp/poll?sid=%s&ack=%d", c.sid, c.ack), &e); st == http.StatusNotFound {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if e.Error != "unknown session" || e.Code != 404 {
		t.Fatalf("poll after close: %+v", e)
	}
}

func TestLongPollRedeliversUnacked(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	c := ts.lpOpen(lpQuery)
	c.frames(1)
	c.send("subscription\nnews")
	ts.publish("news", "e", "one")
	ts.publish("news", "e", "two")
	base := c.ack
	first := c.frames(2)
	// The response was "lost": polling again with the old ack gets the same
	// frames again, nothing more, nothing less.
	r := c.poll(base)
	if len(r.Frames) != 2 || r.Next != c.ack {
		t.Fatalf("redelivery: %+v", r)
	}
	var m map[string]any
	json.Unmarshal(r.Frames[0], &m)
	if m["data"] != first[0]["data"] {
		t.Fatalf("redelivered %v, first time %v", m, first[0])
	}
}

func TestLongPollSupersede(t *testing.T) {
	ts := newTestServer(t, Config{LongPollHold: 5 * time.Second}, pipes.Config{})
	c := ts.lpOpen(lpQuery)
	c.frames(1)
	done := make(chan pollReply)
	go func() { done <- c.poll(c.ack) }()
	time.Sleep(50 * time.Millisecond)
	second := make(chan pollReply)
	go func() { second <- c.poll(c.ack) }() // supersedes the first
	select {
	case r := <-done:
		if len(r.Frames) != 0 {
			t.Fatalf("superseded poll: %+v", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the superseded poll was not answered")
	}
	c.send("bogus") // a frame for the second poll
	if r := <-second; len(r.Frames) != 1 {
		t.Fatalf("second poll: %+v", r)
	}
}

func TestLongPollJSONPAndCORS(t *testing.T) {
	ts := newTestServer(t, Config{AllowedOrigins: []string{"https://app.example"}}, pipes.Config{})
	get := func(path string, hdr http.Header) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ts.addr+path, nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	defer http.DefaultClient.CloseIdleConnections()

	resp, body := get("/lp/open?"+lpQuery+"&callback=cb_1.x", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/javascript") ||
		!strings.HasPrefix(body, `cb_1.x({"sid":"`) || !strings.HasSuffix(body, `,"next":0});`) {
		t.Fatalf("JSONP open: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var r pollReply
	json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimPrefix(body, "cb_1.x("), ");")), &r)

	cmd := url.QueryEscape("subscription\nnews")
	resp, body = get("/lp/send?sid="+r.SID+"&cmd="+cmd+"&callback=f", nil)
	if body != `f({"ok":true});` {
		t.Fatalf("JSONP send: %q", body)
	}
	resp, body = get("/lp/poll?sid=nope&ack=0&callback=f", nil)
	if resp.StatusCode != 200 || body != `f({"error":"unknown session","code":404});` {
		t.Fatalf("JSONP unknown session: %d %q", resp.StatusCode, body)
	}
	resp, _ = get("/lp/poll?sid=x&callback=alert(1)", nil)
	if resp.StatusCode != 400 {
		t.Fatalf("bad callback: %d", resp.StatusCode)
	}

	// CORS: the allowed origin is echoed; another is refused.
	resp, _ = get("/lp/poll?sid=nope", http.Header{"Origin": {"https://app.example"}})
	if resp.StatusCode != 404 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("CORS: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = get("/lp/open?"+lpQuery, http.Header{"Origin": {"https://evil.example"}})
	if resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("evil origin: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = get("/lp/open?"+lpQuery+"&callback=f", http.Header{"Referer": {"https://evil.example/page"}})
	if resp.StatusCode != 200 { // JSONP: the status is in the body
		t.Fatalf("evil referer: %d", resp.StatusCode)
	}

	req, _ := http.NewRequest(http.MethodOptions, "http://"+ts.addr+"/lp/send?sid=x", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	pre, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pre.Body.Close()
	if pre.StatusCode != 200 || pre.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Methods"), "POST") ||
		pre.Header.Get("Access-Control-Allow-Headers") != "content-type" {
		t.Fatalf("preflight: %d %v", pre.StatusCode, pre.Header)
	}
}

func TestLongPollHandshakeError(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	c := ts.lpOpen("sesion=&myid=0&devid=0&uuid=x&api=js") // no v
	m := c.frames(1)[0]
	expect(t, m, "pipe", "sys", "event", "error")
	if m["data"].(map[string]any)["error_code"] != float64(418) {
		t.Fatalf("frame %v", m)
	}
	var e pollReply
	for range 100 {
		if c.get(fmt.Sprintf("/lp/poll?sid=%s&ack=%d", c.sid, c.ack), &e) == http.StatusNotFound {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the session did not end: %+v", e)
}

func TestLongPollIdleExpiryEmitsOffline(t *testing.T) {
	ts := newTestServer(t, Config{LongPollIdle: 200 * time.Millisecond, LongPollHold: 50 * time.Millisecond}, pipes.Config{})
	ts.setHash(0, 21, "k21")
	obs := ts.dial(anonPath(), nil)
	obs.info()
	obs.subscribe("user_status_21", "track_t")

	c := ts.lpOpen("sesion=k21&myid=21&devid=0&v=4.08&uuid=lpU&api=js")
	expect(t, c.frames(1)[0], "authorized", true)
	expect(t, obs.nextOn("user_status_21"), "event", "online")
	c.send("subscription\ntrack_t")
	expect(t, obs.nextOn("track_t"), "event", "subscription", "data", map[string]any{"user_id": 21, "uuid": "lpU"})

	// No more polls: after LongPollIdle the session ends, as a closed
	// socket would.
	start := time.Now()
	expect(t, obs.nextOn("track_t"), "event", "unsubscription")
	expect(t, obs.nextOn("user_status_21"), "event", "offline")
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("expired after %v", d)
	}
	var e pollReply
	if st := c.get(fmt.Sprintf("/lp/poll?sid=%s&ack=%d", c.sid, c.ack), &e); st != http.StatusNotFound {
		t.Fatalf("poll after expiry: %d", st)
	}
}

func TestLongPollOverflowEndsSession(t *testing.T) {
	ts := newTestServer(t, Config{OutboxFrames: 5}, pipes.Config{})
	c := ts.lpOpen(lpQuery)
	c.frames(1)
	c.send("subscription\nnews")
	for range 6 {
		ts.publish("news", "e", "x")
	}
	var e pollReply
	if st := c.get(fmt.Sprintf("/lp/poll?sid=%s&ack=%d", c.sid, c.ack), &e); st != http.StatusNotFound {
		t.Fatalf("poll after overflow: %d %+v", st, e)
	}
}

// Frames that arrive within LongPollLinger of the first leave in the same
// response to a held poll.
func TestLongPollLingerGathersFrames(t *testing.T) {
	ts := newTestServer(t, Config{LongPollLinger: 300 * time.Millisecond}, pipes.Config{})
	c := ts.lpOpen(lpQuery)
	c.frames(1)
	c.send("subscription\nnews")
	for ts.hub.LocalCount(0, "news") != 1 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan pollReply, 1)
	go func() { done <- c.poll(c.ack) }()
	l := ts.srv.lp.get(c.sid)
	for held := false; !held; {
		l.mu.Lock()
		held = l.waiter != nil
		l.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	const n = 5
	for i := range n {
		ts.publish("news", "e", fmt.Sprint(i))
	}
	select {
	case r := <-done:
		if len(r.Frames) != n {
			t.Fatalf("held poll answered with %d frames, want %d: %+v", len(r.Frames), n, r)
		}
	case <-time.After(waitFor):
		t.Fatal("the held poll was not answered")
	}
}
