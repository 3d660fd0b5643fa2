package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeServer is a tiny CppComet-protocol server for the bench tool's own
// tests: WebSocket and long-poll subscribers, publish by Go call, and a
// fault injector to check that lost, duplicated and out-of-order messages
// are counted. It is not cometql and shares no code with it.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	subs     map[string]map[fakeSink]bool // pipe -> sinks
	lp       map[string]*fakeLP
	peers    map[string]int // remote IP -> connections
	settings []string
	nextSid  int
	pipeSeq  map[string]int

	// fault, when set, decides per message (n counts the pipe's messages
	// from 1): how many times to send it (0 = drop), and whether to hold
	// it back until after the next one.
	fault func(pipe string, n int) (copies int, swap bool)
	held  map[string][]byte

	conns atomic.Int64
}

type fakeSink interface{ send(frame []byte) }

type fakeWS struct {
	mu sync.Mutex
	c  *websocket.Conn
}

func (w *fakeWS) send(frame []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.c.WriteMessage(websocket.TextMessage, frame)
}

type fakeLP struct {
	mu     sync.Mutex
	frames [][]byte
	base   int64
	wake   chan struct{}
	pipes  []string
}

func (l *fakeLP) send(frame []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.frames = append(l.frames, frame)
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
}

func newFakeServer(t *testing.T) *fakeServer {
	f := &fakeServer{
		t:       t,
		subs:    map[string]map[fakeSink]bool{},
		lp:      map[string]*fakeLP{},
		peers:   map[string]int{},
		pipeSeq: map[string]int{},
		held:    map[string][]byte{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/lp/open", f.lpOpen)
	mux.HandleFunc("/lp/send", f.lpSend)
	mux.HandleFunc("/lp/poll", f.lpPoll)
	mux.HandleFunc("/lp/close", f.lpClose)
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "# TYPE go_goroutines gauge\ngo_goroutines %d\n", 10+f.conns.Load())
	})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/ws/") {
			f.ws(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) addr() string { return f.srv.Listener.Addr().String() }

func (f *fakeServer) notePeer(r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	f.mu.Lock()
	f.peers[host]++
	f.mu.Unlock()
}

func serverInfo() []byte {
	return []byte(`{"authorized":false,"data":"","event":"serverInfo","message_send_time":1,"pipe":"sys","server":"fake"}`)
}

var upgrader = websocket.Upgrader{ReadBufferSize: 512, WriteBufferSize: 512}

func (f *fakeServer) ws(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.URL.Path, "sesion=") || !strings.Contains(r.URL.Path, "v=4.08") {
		http.Error(w, "bad url", 400)
		return
	}
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	f.notePeer(r)
	f.conns.Add(1)
	defer f.conns.Add(-1)
	sink := &fakeWS{c: c}
	sink.send(serverInfo())
	var pipes []string
	defer func() {
		f.unsubscribe(sink, pipes)
		c.Close()
	}()
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		cmd, rest, _ := strings.Cut(string(msg), "\n")
		if cmd == "subscription" {
			f.unsubscribe(sink, pipes)
			pipes = strings.Split(rest, "\n")
			f.subscribe(sink, pipes)
		}
	}
}

func (f *fakeServer) subscribe(s fakeSink, pipes []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range pipes {
		if f.subs[p] == nil {
			f.subs[p] = map[fakeSink]bool{}
		}
		f.subs[p][s] = true
	}
}

func (f *fakeServer) unsubscribe(s fakeSink, pipes []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range pipes {
		delete(f.subs[p], s)
	}
}

// users counts subscriptions of pipes starting with prefix.
func (f *fakeServer) users(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for p, s := range f.subs {
		if strings.HasPrefix(p, prefix) {
			n += len(s)
		}
	}
	return n
}

// publish delivers msg to the pipe's subscribers as the server would frame
// it, applying the fault injector.
func (f *fakeServer) publish(pipe, event, msg string) {
	f.mu.Lock()
	f.pipeSeq[pipe]++
	n := f.pipeSeq[pipe]
	frame, _ := json.Marshal(map[string]any{
		"data": msg, "event": event, "message_send_time": time.Now().Unix(),
		"pipe": pipe, "user_id": 0, "id": strconv.Itoa(n), "seq": n,
	})
	frame = bytes.ReplaceAll(frame, []byte("'"), []byte(`\u0027`))
	copies, swap := 1, false
	if f.fault != nil {
		copies, swap = f.fault(pipe, n)
	}
	var out [][]byte
	if swap {
		f.held[pipe] = frame
	} else {
		for range copies {
			out = append(out, frame)
		}
		if h := f.held[pipe]; h != nil {
			out = append(out, h)
			delete(f.held, pipe)
		}
	}
	sinks := make([]fakeSink, 0, len(f.subs[pipe]))
	for s := range f.subs[pipe] {
		sinks = append(sinks, s)
	}
	f.mu.Unlock()
	for _, s := range sinks {
		for _, fr := range out {
			s.send(fr)
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (f *fakeServer) lpOpen(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("v") != "4.08" || !r.URL.Query().Has("sesion") {
		http.Error(w, "bad open", 400)
		return
	}
	f.notePeer(r)
	f.mu.Lock()
	f.nextSid++
	sid := "s" + strconv.Itoa(f.nextSid)
	l := &fakeLP{frames: [][]byte{serverInfo()}}
	f.lp[sid] = l
	f.mu.Unlock()
	writeJSON(w, map[string]any{"sid": sid, "next": 0})
}

func (f *fakeServer) session(w http.ResponseWriter, r *http.Request) *fakeLP {
	f.mu.Lock()
	l := f.lp[r.URL.Query().Get("sid")]
	f.mu.Unlock()
	if l == nil {
		w.WriteHeader(http.StatusNotFound)
		writeJSON(w, map[string]any{"error": "unknown session", "code": 404})
	}
	return l
}

func (f *fakeServer) lpSend(w http.ResponseWriter, r *http.Request) {
	l := f.session(w, r)
	if l == nil {
		return
	}
	body, _ := io.ReadAll(r.Body)
	cmd, rest, _ := strings.Cut(string(body), "\n")
	if cmd == "subscription" {
		f.unsubscribe(l, l.pipes)
		l.pipes = strings.Split(rest, "\n")
		f.subscribe(l, l.pipes)
	}
	writeJSON(w, map[string]any{"ok": true})
}

func (f *fakeServer) lpPoll(w http.ResponseWriter, r *http.Request) {
	l := f.session(w, r)
	if l == nil {
		return
	}
	ack, _ := strconv.ParseInt(r.URL.Query().Get("ack"), 10, 64)
	deadline := time.After(2 * time.Second)
	for {
		l.mu.Lock()
		if k := ack - l.base; k > 0 {
			k = min(k, int64(len(l.frames)))
			l.frames = l.frames[k:]
			l.base += k
		}
		if len(l.frames) > 0 {
			frames := l.frames
			next := l.base + int64(len(frames))
			l.mu.Unlock()
			var b bytes.Buffer
			fmt.Fprintf(&b, `{"sid":%q,"next":%d,"frames":[`, r.URL.Query().Get("sid"), next)
			b.Write(bytes.Join(frames, []byte(",")))
			b.WriteString("]}")
			w.Header().Set("Content-Type", "application/json")
			w.Write(b.Bytes())
			return
		}
		if l.wake == nil {
			l.wake = make(chan struct{})
		}
		wake := l.wake
		l.mu.Unlock()
		select {
		case <-wake:
		case <-deadline:
			writeJSON(w, map[string]any{"sid": r.URL.Query().Get("sid"), "next": ack, "frames": []any{}})
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (f *fakeServer) lpClose(w http.ResponseWriter, r *http.Request) {
	l := f.session(w, r)
	if l == nil {
		return
	}
	f.unsubscribe(l, l.pipes)
	f.mu.Lock()
	delete(f.lp, r.URL.Query().Get("sid"))
	f.mu.Unlock()
	writeJSON(w, map[string]any{"ok": true})
}

// fakeBackend publishes into a fakeServer by Go call.
type fakeBackend struct {
	f         *fakeServer
	failEvery int // every n-th publish fails (0 = never)
	n         atomic.Int64
}

func (b *fakeBackend) publisher(ctx context.Context) (publisherConn, error) {
	return &fakePub{b: b}, nil
}

func (b *fakeBackend) exec(ctx context.Context, q string) error {
	b.f.mu.Lock()
	b.f.settings = append(b.f.settings, q)
	b.f.mu.Unlock()
	return nil
}

func (b *fakeBackend) pipeUsers(ctx context.Context, prefix string) (int, error) {
	return b.f.users(prefix), nil
}

func (b *fakeBackend) close() error { return nil }

type fakePub struct{ b *fakeBackend }

func (p *fakePub) publish(ctx context.Context, pipe, event, msg string) error {
	n := p.b.n.Add(1)
	if p.b.failEvery > 0 && n%int64(p.b.failEvery) == 0 {
		return fmt.Errorf("injected publish failure")
	}
	p.b.f.publish(pipe, event, msg)
	time.Sleep(200 * time.Microsecond) // a server round trip, roughly
	return nil
}

func (p *fakePub) close() error { return nil }
