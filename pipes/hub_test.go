package pipes_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cometql/cometql/pipes"
	"github.com/cometql/cometql/store"
)

// The hub is tested over the real SQLite store. Sessions use chanSink, an
// in-process transport that hands frames to the test; the WebSocket and
// long-poll transports have their own tests in jsapi.

type chanSink struct {
	frames chan []byte
	closed chan struct{}
	once   sync.Once
}

func newSink() *chanSink {
	return &chanSink{frames: make(chan []byte, 10000), closed: make(chan struct{})}
}

func (s *chanSink) Send(f []byte) {
	select {
	case s.frames <- f:
	default:
		panic("test sink overflow")
	}
}

func (s *chanSink) Close() { s.once.Do(func() { close(s.closed) }) }

// next returns the next frame decoded, failing after a timeout.
func (s *chanSink) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case f := <-s.frames:
		var m map[string]any
		if err := json.Unmarshal(f, &m); err != nil {
			t.Fatalf("invalid frame %s: %v", f, err)
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no frame within 5s")
	}
	return nil
}

// none checks that no frame is pending.
func (s *chanSink) none(t *testing.T) {
	t.Helper()
	select {
	case f := <-s.frames:
		t.Fatalf("unexpected frame %s", f)
	default:
	}
}

type fixture struct {
	hub   *pipes.Hub
	eng   *pipes.MemoryEngine
	store *store.Store
	dir   string
}

func newFixture(t *testing.T, cfg pipes.Config) *fixture {
	t.Helper()
	dir := t.TempDir()
	return openFixture(t, dir, cfg)
}

func openFixture(t *testing.T, dir string, cfg pipes.Config) *fixture {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	eng := pipes.NewMemoryEngine(pipes.MemoryConfig{Node: "n1", QueueMax: 5}, st, nil)
	hub := pipes.New(cfg, eng, nil, nil)
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	f := &fixture{hub: hub, eng: eng, store: st, dir: dir}
	t.Cleanup(func() { f.close() })
	return f
}

func (f *fixture) close() {
	f.hub.CloseSessions()
	f.eng.Close(context.Background())
	f.store.Close()
}

func (f *fixture) open(t *testing.T, user int64) (*pipes.Session, *chanSink) {
	t.Helper()
	sink := newSink()
	s, err := f.hub.Open(context.Background(), pipes.SessionInfo{UserID: user, Key: "k", UUID: fmt.Sprintf("uuid%d", user)}, sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, sink
}

func expect(t *testing.T, got map[string]any, kv ...any) {
	t.Helper()
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		want := kv[i+1]
		g, _ := json.Marshal(got[k])
		w, _ := json.Marshal(want)
		if string(g) != string(w) {
			t.Fatalf("frame %v: %s = %s, want %s", got, k, g, w)
		}
	}
}

func TestOpenSendsServerInfo(t *testing.T) {
	f := newFixture(t, pipes.Config{Server: "cometql test"})
	_, anon := f.open(t, 0)
	expect(t, anon.next(t), "event", "serverInfo", "authorized", false, "data", "", "pipe", "sys", "server", "cometql test")
	_, user := f.open(t, 5)
	expect(t, user.next(t), "event", "serverInfo", "authorized", true, "data", "k")
}

func TestPublishReachesSubscribers(t *testing.T) {
	f := newFixture(t, pipes.Config{})
	ctx := context.Background()
	a, sa := f.open(t, 0)
	b, sb := f.open(t, 0)
	sa.next(t)
	sb.next(t)
	if errs := a.Subscribe(ctx, []string{"news", "other"}); errs != nil {
		t.Fatal(errs)
	}
	b.Subscribe(ctx, []string{"news"})
	n, err := f.hub.Publish(ctx, 0, "news", "ev", "it's")
	if err != nil || n != 2 {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	expect(t, sa.next(t), "pipe", "news", "event", "ev", "data", "it's", "user_id", 0)
	expect(t, sb.next(t), "pipe", "news", "data", "it's")
	// Another tenant's pipe of the same name is another pipe.
	if n, _ := f.hub.Publish(ctx, 3, "news", "ev", "x"); n != 0 {
		t.Fatalf("dev 3 publish reached %d dev-0 sessions", n)
	}
	sa.none(t)
}

func TestSubscribeAppliesDifference(t *testing.T) {
	f := newFixture(t, pipes.Config{})
	ctx := context.Background()
	watcher, sw := f.open(t, 0)
	sw.next(t)
	watcher.Subscribe(ctx, []string{"track_room"})
	member, sm := f.open(t, 9)
	sm.next(t)
	member.Subscribe(ctx, []string{"track_room", "a1"})
	expect(t, sw.next(t), "pipe", "track_room", "event", "subscription", "data", map[string]any{"user_id": 9, "uuid": "uuid9"})
	sm.none(t) // its own join is not echoed

	// The same list again, and a list reordered with one more pipe: no track events.
	member.Subscribe(ctx, []string{"track_room", "a1"})
	member.Subscribe(ctx, []string{"a1", "b1", "track_room"})
	sw.none(t)
	if got := member.Pipes(); len(got) != 3 {
		t.Fatalf("pipes = %v", got)
	}
	member.Subscribe(ctx, []string{"a1"})
	expect(t, sw.next(t), "event", "unsubscription", "data", map[string]any{"user_id": 9, "uuid": "uuid9"})
	member.Subscribe(ctx, []string{"track_room"})
	expect(t, sw.next(t), "event", "subscription")
	member.Close()
	expect(t, sw.next(t), "event", "unsubscription")
}

func TestSubscribeRejectsBadNames(t *testing.T) {
	f := newFixture(t, pipes.Config{MaxSubscriptions: 3})
	ctx := context.Background()
	s, _ := f.open(t, 0)
	errs := s.Subscribe(ctx, []string{"ok1", "bad.name", "private_x", "sys", "_answer_user_status", "ok2", "ok3", "ok4", "msg"})
	if len(errs) != 3 {
		t.Fatalf("errors = %v", errs)
	}
	if !errors.Is(errs[0], pipes.ErrInvalidPipe) || !errors.Is(errs[1], pipes.ErrForbidden) || !errors.Is(errs[2], pipes.ErrTooManySubs) {
		t.Fatalf("errors = %v", errs)
	}
	if got := s.Pipes(); len(got) != 3 {
		t.Fatalf("pipes = %v", got)
	}
	many := make([]string, 10000)
	for i := range many {
		many[i] = fmt.Sprintf("bad pipe %d", i)
	}
	if errs := s.Subscribe(ctx, many); len(errs) > 11 {
		t.Fatalf("%d errors for one subscription frame", len(errs))
	}
}

func TestPresenceOncePerUser(t *testing.T) {
	f := newFixture(t, pipes.Config{})
	ctx := context.Background()
	w, sw := f.open(t, 0)
	sw.next(t)
	w.Subscribe(ctx, []string{"user_status_7"})
	tab1, _ := f.open(t, 7)
	expect(t, sw.next(t), "pipe", "user_status_7", "event", "online", "data", "online")
	tab2, _ := f.open(t, 7)
	sw.none(t)
	if rows, _ := f.eng.UsersTime(ctx, 0, []int64{7, 8}); rows[0].Time != 0 || rows[1].Time != -1 {
		t.Fatalf("users_time = %v", rows)
	}
	tab1.Close()
	sw.none(t)
	tab2.Close()
	expect(t, sw.next(t), "event", "offline")
	if rows, _ := f.eng.UsersTime(ctx, 0, []int64{7}); rows[0].Time <= 0 {
		t.Fatalf("users_time after offline = %v", rows)
	}
}

// failingUserTimes is a store whose users_time writes fail, as on a full
// disk.
type failingUserTimes struct{ *store.Store }

func (failingUserTimes) SetUserTime(context.Context, int64, int64, int64) error {
	return fmt.Errorf("%w: disk full", pipes.ErrStore)
}

// TestPresenceWhenUsersTimeFails: a user's online and offline events are
// published even when users_time cannot be stored.
func TestPresenceWhenUsersTimeFails(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	eng := pipes.NewMemoryEngine(pipes.MemoryConfig{Node: "n1"}, failingUserTimes{st}, nil)
	hub := pipes.New(pipes.Config{}, eng, nil, nil)
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	defer hub.CloseSessions()
	ctx := context.Background()
	sw := newSink()
	w, err := hub.Open(ctx, pipes.SessionInfo{UUID: "watcher"}, sw)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	sw.next(t)
	w.Subscribe(ctx, []string{"user_status_7"})
	u, err := hub.Open(ctx, pipes.SessionInfo{UserID: 7, Key: "k", UUID: "u7"}, newSink())
	if err != nil {
		t.Fatal(err)
	}
	expect(t, sw.next(t), "pipe", "user_status_7", "event", "online")
	u.Close()
	expect(t, sw.next(t), "pipe", "user_status_7", "event", "offline")
}

func TestPrivateMessagesAndQueue(t *testing.T) {
	f := newFixture(t, pipes.Config{})
	ctx := context.Background()
	for i := 0; i < 7; i++ { // queue cap is 5: the two oldest are dropped
		if n, err := f.hub.SendPrivate(ctx, 0, 4, "ev", fmt.Sprintf("q%d", i)); err != nil || n != 0 {
			t.Fatalf("SendPrivate = %d, %v", n, err)
		}
	}
	d1, s1 := f.open(t, 4)
	expect(t, s1.next(t), "event", "serverInfo")
	for i := 2; i < 7; i++ {
		expect(t, s1.next(t), "pipe", "msg", "data", fmt.Sprintf("q%d", i), "fromQueue", true)
	}
	_, s2 := f.open(t, 4)
	s2.next(t)
	s2.none(t) // the queue was taken by the first connection
	if n, err := f.hub.SendPrivate(ctx, 0, 4, "e2", "live"); err != nil || n != 2 {
		t.Fatalf("SendPrivate live = %d, %v", n, err)
	}
	expect(t, s1.next(t), "pipe", "msg", "event", "e2", "data", "live")
	expect(t, s2.next(t), "pipe", "msg", "data", "live")
	waitQueueEmpty(t, f.eng, 0, 4)
	_ = d1
}

func TestTooManyDevices(t *testing.T) {
	f := newFixture(t, pipes.Config{MaxConnectionsPerUser: 2})
	f.open(t, 3)
	f.open(t, 3)
	s, sink := f.open(t, 3)
	expect(t, sink.next(t), "event", "serverInfo", "authorized", false)
	expect(t, sink.next(t), "pipe", "sys", "event", "error")
	if s.UserID() != 0 {
		t.Fatal("third device is authorized")
	}
}

func TestHistoryAndOrder(t *testing.T) {
	f := newFixture(t, pipes.Config{})
	ctx := context.Background()
	if err := f.eng.SetLogLength(ctx, 0, "logged", 50); err != nil {
		t.Fatal(err)
	}
	s, sink := f.open(t, 0)
	sink.next(t)
	s.Subscribe(ctx, []string{"logged"})
	const writers, each = 16, 20
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := f.hub.Publish(ctx, 0, "logged", "", fmt.Sprintf("m%d", i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for i := 1; i <= writers*each; i++ {
		m := sink.next(t)
		if m["seq"].(float64) != float64(i) {
			t.Fatalf("frame %d has seq %v", i, m["seq"])
		}
	}
	hist, err := f.eng.History(ctx, 0, "logged", 0)
	if err != nil || len(hist) != 50 || hist[0].Seq != writers*each-49 {
		t.Fatalf("history: %d messages, first seq %d, %v", len(hist), hist[0].Seq, err)
	}
	if err := s.PipeLog(ctx, "logged", "m1", writers*each-2); err != nil {
		t.Fatal(err)
	}
	expect(t, sink.next(t), "history", true, "seq", writers*each-1)
	expect(t, sink.next(t), "history", true, "seq", writers*each)
	sink.none(t)
}

func TestSequenceSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	f := openFixture(t, dir, pipes.Config{})
	f.eng.SetLogLength(ctx, 0, "p1", 10)
	for i := 0; i < 3; i++ {
		f.hub.Publish(ctx, 0, "p1", "", "x")
	}
	f.eng.ClearHistory(ctx, 0, "p1")
	f.close()
	g := openFixture(t, dir, pipes.Config{})
	if n, _ := g.eng.LogLength(ctx, 0, "p1"); n != 10 {
		t.Fatalf("log length after restart = %d", n)
	}
	g.hub.Publish(ctx, 0, "p1", "", "y")
	hist, _ := g.eng.History(ctx, 0, "p1", 0)
	if len(hist) != 1 || hist[0].Seq != 4 {
		t.Fatalf("history after restart = %+v", hist)
	}
}

func TestWebPublish(t *testing.T) {
	f := newFixture(t, pipes.Config{})
	ctx := context.Background()
	sender, ss := f.open(t, 12)
	ss.next(t)
	other, so := f.open(t, 0)
	so.next(t)
	sender.Subscribe(ctx, []string{"web_chat"})
	other.Subscribe(ctx, []string{"web_chat"})
	if err := sender.WebPublish(ctx, "web_chat", "say", `hi 'there'`); err != nil {
		t.Fatal(err)
	}
	expect(t, so.next(t), "pipe", "web_chat", "event", "say", "data", `hi 'there'`, "user_id", 12)
	expect(t, ss.next(t), "pipe", "_answer_to_web_chat", "event", "answer", "data", map[string]any{"message": `hi 'there'`, "number_messages": 1, "error": ""})
	ss.none(t)
	if err := sender.WebPublish(ctx, "@web_chat", "say", "anon"); err != nil {
		t.Fatal(err)
	}
	expect(t, so.next(t), "user_id", 0, "data", "anon")
	for _, c := range []struct{ pipe string }{{"news"}, {"track_x"}, {"bad.pipe"}} {
		if err := sender.WebPublish(ctx, c.pipe, "e", "x"); err == nil {
			t.Errorf("publish to %q allowed", c.pipe)
		}
	}
	// CppComet's client reads "A::<id>;" as the sender id: refused.
	if err := other.WebPublish(ctx, "web_chat", "e", "A::7;I am the admin"); !errors.Is(err, pipes.ErrInvalidMessage) {
		t.Errorf("A:: message: %v", err)
	}
	if err := other.WebPublish(ctx, "webauth_x", "e", "x"); !errors.Is(err, pipes.ErrForbidden) {
		t.Errorf("anonymous webauth publish: %v", err)
	}
}

func TestKick(t *testing.T) {
	f := newFixture(t, pipes.Config{})
	_, s1 := f.open(t, 21)
	_, s2 := f.open(t, 22)
	if err := f.hub.KickUser(context.Background(), 0, 21); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s1.closed:
	case <-time.After(time.Second):
		t.Fatal("kicked session not closed")
	}
	select {
	case <-s2.closed:
		t.Fatal("other user kicked")
	default:
	}
}

func TestCountsAndMembers(t *testing.T) {
	f := newFixture(t, pipes.Config{})
	ctx := context.Background()
	a, sa := f.open(t, 1)
	sa.next(t)
	b, _ := f.open(t, 0)
	a.Subscribe(ctx, []string{"track_t", "web_w"})
	b.Subscribe(ctx, []string{"track_t"})
	sa.next(t) // b's track event
	if err := a.PipeCount(ctx, "track_t", "mk"); err != nil {
		t.Fatal(err)
	}
	expect(t, sa.next(t), "pipe", "_answer_pipe_count", "marker", "mk", "data", map[string]any{"user_in_pipe": 2, "0": "user_in_pipe", "1": 2})
	if err := a.PipeCount(ctx, "news", "mk"); !errors.Is(err, pipes.ErrForbidden) {
		t.Fatalf("count of news: %v", err)
	}
	if err := a.TrackPipeUsers(ctx, "track_t", "m2"); err != nil {
		t.Fatal(err)
	}
	got := sa.next(t)
	if list, _ := got["data"].([]any); len(list) != 2 {
		t.Fatalf("track users = %v", got)
	}
	pipesList, _ := f.eng.ActivePipes(ctx, 0)
	if len(pipesList) != 2 || pipesList[0].Pipe != "track_t" || pipesList[0].Users != 2 {
		t.Fatalf("active pipes = %v", pipesList)
	}
	if err := a.UserStatus(ctx, 1); err != nil {
		t.Fatal(err)
	}
	expect(t, sa.next(t), "pipe", "_answer_user_status", "event", "user_status_1", "data", map[string]any{"online": true, "last_online_time": 0})
}

func TestErrorFramesCounted(t *testing.T) {
	f := newFixture(t, pipes.Config{MaxSubscriptions: 2, MaxConnectionsPerUser: 1})
	ctx := context.Background()
	s, _ := f.open(t, 0)
	for _, err := range s.Subscribe(ctx, []string{"a1", "a2", "a3", "bad.name"}) {
		s.ReportError(err)
	}
	f.open(t, 4)
	f.open(t, 4) // too many devices
	got := f.hub.Stats().Errors
	for code, want := range map[string]uint64{"too_many_subscriptions": 1, "invalid_pipe": 1, "too_many_devices": 1} {
		if got[code] != want {
			t.Errorf("errors[%s] = %d, want %d (%v)", code, got[code], want, got)
		}
	}
}

// flushSink reports flushes only when the test says the frames reached the
// browser.
type flushSink struct {
	*chanSink
	mu      sync.Mutex
	pending []func()
}

func (s *flushSink) AfterFlush(fn func()) {
	s.mu.Lock()
	s.pending = append(s.pending, fn)
	s.mu.Unlock()
}

func (s *flushSink) flush() {
	s.mu.Lock()
	fns := s.pending
	s.pending = nil
	s.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// TestQueueKeptUntilFlushed: offline messages leave the queue only once the
// transport says they reached the browser; a connection lost before that
// (or a crash) gets them again on the next connect.
func TestQueueKeptUntilFlushed(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	f := openFixture(t, dir, pipes.Config{})
	f.hub.SendPrivate(ctx, 0, 31, "ev", "keep me")

	sink := &flushSink{chanSink: newSink()}
	s, err := f.hub.Open(ctx, pipes.SessionInfo{UserID: 31, Key: "k"}, sink)
	if err != nil {
		t.Fatal(err)
	}
	sink.next(t)
	expect(t, sink.next(t), "pipe", "msg", "data", "keep me", "fromQueue", true, "uuid", "q31_1")
	s.Close() // lost before the frames were written
	if q, _ := f.eng.Queue(ctx, 0, 31); len(q) != 1 {
		t.Fatalf("queue after a connection lost before flushing = %v", q)
	}
	f.close() // and the process goes away

	g := openFixture(t, dir, pipes.Config{})
	sink2 := &flushSink{chanSink: newSink()}
	s2, err := g.hub.Open(ctx, pipes.SessionInfo{UserID: 31, Key: "k"}, sink2)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	sink2.next(t)
	expect(t, sink2.next(t), "data", "keep me", "fromQueue", true)
	sink2.flush()
	waitQueueEmpty(t, g.eng, 0, 31)
}

// waitQueueEmpty waits for a session's background acknowledgement to empty
// a user's offline queue.
func waitQueueEmpty(t *testing.T, eng pipes.Engine, dev, user int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		q, _ := eng.Queue(context.Background(), dev, user)
		if len(q) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue of user %d still holds %v", user, q)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// limitedSink is a flushSink with outbox caps: replies longer than a
// quarter of them are paced.
type limitedSink struct {
	*flushSink
	maxFrames, maxBytes int
}

func (s *limitedSink) OutboxLimits() (int, int) { return s.maxFrames, s.maxBytes }

// TestPacedReplies: a long pipe_log reply goes out a quarter of the outbox
// at a time, each chunk after the previous one was flushed; a reply asked
// for after it waits for it, a published message does not; what would
// wait beyond the outbox caps closes the connection instead.
func TestPacedReplies(t *testing.T) {
	ctx := context.Background()
	f := openFixture(t, t.TempDir(), pipes.Config{})
	if err := f.eng.SetLogLength(ctx, 0, "logged", 100); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := f.hub.Publish(ctx, 0, "logged", "ev", fmt.Sprint("h", i)); err != nil {
			t.Fatal(err)
		}
	}
	sink := &limitedSink{flushSink: &flushSink{chanSink: newSink()}, maxFrames: 16, maxBytes: 1 << 20}
	s, err := f.hub.Open(ctx, pipes.SessionInfo{}, sink)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sink.next(t) // serverInfo
	subscribe(t, s, "live")
	if err := s.PipeLog(ctx, "logged", "", 0); err != nil {
		t.Fatal(err)
	}
	if err := s.PipeCount(ctx, "web_x", "m.1"); err != nil {
		t.Fatal(err)
	}
	f.hub.Publish(ctx, 0, "live", "ev", "not held back")
	var got []string
	live := -1
	for len(got) < 11 {
		m := sink.next(t)
		if m["pipe"] == "live" {
			live = len(got)
			continue
		}
		if m["marker"] == "m.1" {
			got = append(got, "count")
		} else {
			got = append(got, m["data"].(string))
		}
		if len(got)%4 == 0 {
			// A chunk: nothing more until it is flushed, but for the
			// published message.
			for stop := false; !stop; {
				select {
				case f := <-sink.frames:
					if !strings.Contains(string(f), `"pipe":"live"`) {
						t.Fatalf("a reply before the chunk was flushed: %s", f)
					}
					live = len(got)
				case <-time.After(50 * time.Millisecond):
					stop = true
				}
			}
			sink.flush()
		}
	}
	if want := "h0 h1 h2 h3 h4 h5 h6 h7 h8 h9 count"; strings.Join(got, " ") != want {
		t.Fatalf("replies in order %q, want %q", strings.Join(got, " "), want)
	}
	if live < 0 || live > 4 {
		t.Fatalf("the published message came after %d replies: held back", live)
	}
	// A browser that keeps asking while not reading: past the caps, closed.
	for range 3 {
		s.PipeLog(ctx, "logged", "", 0)
	}
	select {
	case <-sink.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("not closed with more waiting than the outbox holds")
	}
}
