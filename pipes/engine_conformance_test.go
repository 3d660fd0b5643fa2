package pipes_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cometql/cometql/pipes"
	"github.com/cometql/cometql/store"
)

// The engine conformance suite: every Engine implementation must pass the
// same tests, run through a hub the way the front ends use it. The memory
// engine runs over a SQLite store in a temporary directory; the Redis engine
// over a real redis-server, with a key prefix of its own per test.

// engineOpts are the engine settings a conformance test may change.
type engineOpts struct {
	queueMax int
	queueTTL time.Duration
	nodeTTL  time.Duration // Redis only
}

// backend builds engines on one shared state per test: a store for the
// memory engine, a key prefix on the shared Redis for the Redis engine.
type backend struct {
	name string
	// env prepares a test's shared state and returns a function that
	// builds an engine for a node on it.
	env func(t *testing.T, opt engineOpts) func(node string) pipes.Engine
}

func backends() []backend {
	return []backend{
		{name: "memory", env: memoryEnv},
		{name: "redis", env: redisEnv},
	}
}

func memoryEnv(t *testing.T, opt engineOpts) func(node string) pipes.Engine {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{Dir: t.TempDir(), QueueTTL: opt.queueTTL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return func(node string) pipes.Engine {
		return pipes.NewMemoryEngine(pipes.MemoryConfig{Node: node, QueueMax: opt.queueMax, QueueTTL: opt.queueTTL}, st, nil)
	}
}

// cnode is one node of a conformance or cluster test: an engine and its hub.
type cnode struct {
	hub *pipes.Hub
	eng pipes.Engine
}

// startNode starts a hub over a new engine from build; the test's cleanup
// closes both.
func startNode(t *testing.T, build func(string) pipes.Engine, node string, cfg pipes.Config) *cnode {
	t.Helper()
	eng := build(node)
	hub := pipes.New(cfg, eng, nil, nil)
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	n := &cnode{hub: hub, eng: eng}
	t.Cleanup(func() {
		hub.CloseSessions()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		eng.Close(ctx)
	})
	return n
}

// open opens a session of user (0: anonymous) in dev and returns it with its
// sink, the serverInfo frame already read.
func (n *cnode) open(t *testing.T, dev, user int64) (*pipes.Session, *chanSink) {
	t.Helper()
	return n.openInfo(t, pipes.SessionInfo{DevID: dev, UserID: user, Key: "k", UUID: fmt.Sprintf("uuid%d", user)})
}

func (n *cnode) openInfo(t *testing.T, info pipes.SessionInfo) (*pipes.Session, *chanSink) {
	t.Helper()
	sink := newSink()
	s, err := n.hub.Open(context.Background(), info, sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	expect(t, sink.next(t), "event", "serverInfo")
	return s, sink
}

func subscribe(t *testing.T, s *pipes.Session, names ...string) {
	t.Helper()
	if errs := s.Subscribe(context.Background(), names); len(errs) > 0 {
		t.Fatalf("subscribe %v: %v", names, errs)
	}
}

var barriers atomic.Uint64

// barrier publishes a marker message on pipe and returns the frames sink
// received before it, other barriers left out. Frames of one pipe arrive in
// publish order, so nothing published on the pipe before the barrier can
// arrive after it.
func barrier(t *testing.T, n *cnode, dev int64, pipe string, sink *chanSink) []map[string]any {
	t.Helper()
	id := fmt.Sprint(barriers.Add(1))
	if _, err := n.hub.Publish(context.Background(), dev, pipe, "barrier", id); err != nil {
		t.Fatal(err)
	}
	var before []map[string]any
	for {
		f := sink.next(t)
		if f["pipe"] == pipe && f["event"] == "barrier" {
			if f["data"] == id {
				return before
			}
			continue
		}
		before = append(before, f)
	}
}

// nextFrame is the sink's next frame that is not a barrier.
func nextFrame(t *testing.T, sink *chanSink) map[string]any {
	t.Helper()
	for {
		if f := sink.next(t); f["event"] != "barrier" {
			return f
		}
	}
}

// waitClosed waits for a sink's transport to be closed.
func waitClosed(t *testing.T, s *chanSink, what string) {
	t.Helper()
	select {
	case <-s.closed:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: session not closed", what)
	}
}

func notClosed(t *testing.T, s *chanSink, what string) {
	t.Helper()
	select {
	case <-s.closed:
		t.Fatalf("%s: session closed", what)
	case <-time.After(100 * time.Millisecond):
	}
}

// eventually retries cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var conformanceCases = []struct {
	name string
	opt  engineOpts
	cfg  pipes.Config
	run  func(t *testing.T, n *cnode)
}{
	{name: "PublishOrder", run: testPublishOrder},
	{name: "ConcurrentLoggedPublish", run: testConcurrentLoggedPublish},
	{name: "HistorySequence", run: testHistorySequence},
	{name: "PrivateDeliverOrQueueRace", opt: engineOpts{queueMax: 100}, run: testPrivateRace},
	{name: "QueueCapAndOrder", opt: engineOpts{queueMax: 5}, run: testQueueCap},
	{name: "QueueTTL", opt: engineOpts{queueTTL: time.Second}, run: testQueueTTL},
	{name: "UsersTime", run: testUsersTime},
	{name: "Presence", run: testPresence},
	{name: "MaxConnections", cfg: pipes.Config{MaxConnectionsPerUser: 2}, run: testMaxConnections},
	{name: "Membership", run: testMembership},
	{name: "TrackEvents", run: testTrackEvents},
	{name: "WebPublish", run: testWebPublishDelivered},
	{name: "Kick", run: testKick},
	{name: "Tenancy", run: testTenancy},
}

func TestEngineConformance(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range conformanceCases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					build := b.env(t, c.opt)
					c.run(t, startNode(t, build, "n1", c.cfg))
				})
			}
		})
	}
}

// Messages of one pipe arrive in publish order; a logging pipe numbers them
// 1, 2, 3...; the publisher learns how many connections it reached.
func testPublishOrder(t *testing.T, n *cnode) {
	ctx := context.Background()
	if err := n.eng.SetLogLength(ctx, 0, "ordlog", 1000); err != nil {
		t.Fatal(err)
	}
	s, sink := n.open(t, 0, 0)
	subscribe(t, s, "ord", "ordlog")
	const count = 100
	for i := range count {
		for _, p := range []string{"ord", "ordlog"} {
			d, err := n.hub.Publish(ctx, 0, p, "ev", fmt.Sprint(i))
			if err != nil || d != 1 {
				t.Fatalf("publish %s #%d = %d, %v", p, i, d, err)
			}
		}
	}
	next := map[string]int{}
	for range 2 * count {
		f := sink.next(t)
		p := f["pipe"].(string)
		if f["data"] != fmt.Sprint(next[p]) {
			t.Fatalf("pipe %s: got %v, want %d", p, f["data"], next[p])
		}
		next[p]++
		if p == "ordlog" {
			expect(t, f, "seq", next[p])
		} else if _, ok := f["seq"]; ok {
			t.Fatalf("non-logging pipe frame has a seq: %v", f)
		}
	}
	sink.none(t)
}

// Concurrent publishers to a logging pipe: every message once, sequence
// numbers 1..N without gaps in delivery order, each publisher's messages in
// its order.
func testConcurrentLoggedPublish(t *testing.T, n *cnode) {
	ctx := context.Background()
	if err := n.eng.SetLogLength(ctx, 0, "conc", 1000); err != nil {
		t.Fatal(err)
	}
	s, sink := n.open(t, 0, 0)
	subscribe(t, s, "conc")
	const writers, each = 8, 30
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := n.hub.Publish(ctx, 0, "conc", "", fmt.Sprintf("%d:%d", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	last := make([]int, writers)
	for i := range last {
		last[i] = -1
	}
	for seq := 1; seq <= writers*each; seq++ {
		f := sink.next(t)
		expect(t, f, "seq", seq)
		var w, i int
		fmt.Sscanf(f["data"].(string), "%d:%d", &w, &i)
		if i != last[w]+1 {
			t.Fatalf("writer %d: message %d after %d", w, i, last[w])
		}
		last[w] = i
	}
	sink.none(t)
}

// History keeps the newest length messages; sequence numbers are never
// reused, across clearing, deleting and turning logging off and on.
func testHistorySequence(t *testing.T, n *cnode) {
	ctx := context.Background()
	e := n.eng
	if err := e.SetLogLength(ctx, 0, "hist", 5); err != nil {
		t.Fatal(err)
	}
	if err := e.SetLogLength(ctx, 0, "hist", 1001); !errors.Is(err, pipes.ErrInvalidLength) {
		t.Fatalf("length 1001: %v", err)
	}
	for i := 1; i <= 8; i++ {
		n.hub.Publish(ctx, 0, "hist", "e", fmt.Sprint(i))
	}
	seqs := func(since int64) []int64 {
		t.Helper()
		h, err := e.History(ctx, 0, "hist", since)
		if err != nil {
			t.Fatal(err)
		}
		out := []int64{}
		for _, m := range h {
			if m.Data != fmt.Sprint(m.Seq) && m.Data != "late" {
				t.Fatalf("message %+v", m)
			}
			out = append(out, m.Seq)
		}
		return out
	}
	same := func(got []int64, want ...int64) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(append([]int64{}, want...)) {
			t.Fatalf("history seqs = %v, want %v", got, want)
		}
	}
	same(seqs(0), 4, 5, 6, 7, 8)
	same(seqs(6), 7, 8)
	h, _ := e.History(ctx, 0, "hist", 0)
	if h[0].ID == "" || h[0].Time == 0 || h[0].Event != "e" || h[0].Kind != pipes.KindPipe {
		t.Fatalf("stored message %+v", h[0])
	}
	if got, _ := e.LogLength(ctx, 0, "hist"); got != 5 {
		t.Fatalf("log length = %d", got)
	}
	if d, err := e.DeleteMessage(ctx, 0, h[1].ID); err != nil || d != 1 {
		t.Fatalf("delete = %d, %v", d, err)
	}
	if d, _ := e.DeleteMessage(ctx, 0, h[1].ID); d != 0 {
		t.Fatalf("second delete = %d", d)
	}
	same(seqs(0), 4, 6, 7, 8)
	if err := e.SetLogLength(ctx, 0, "hist", 2); err != nil {
		t.Fatal(err)
	}
	same(seqs(0), 7, 8)
	if c, err := e.ClearHistory(ctx, 0, "hist"); err != nil || c != 2 {
		t.Fatalf("clear = %d, %v", c, err)
	}
	same(seqs(0))
	n.hub.Publish(ctx, 0, "hist", "e", "9")
	same(seqs(0), 9)
	if err := e.SetLogLength(ctx, 0, "hist", 0); err != nil {
		t.Fatal(err)
	}
	same(seqs(0))
	n.hub.Publish(ctx, 0, "hist", "e", "not kept")
	same(seqs(0))
	if got, _ := e.LogLength(ctx, 0, "hist"); got != 0 {
		t.Fatalf("log length after off = %d", got)
	}
	e.SetLogLength(ctx, 0, "hist", 3)
	e.SetLogLength(ctx, 0, "other", 7)
	n.hub.Publish(ctx, 0, "hist", "e", "10")
	same(seqs(0), 10)
	set, err := e.LogSettings(ctx, 0)
	if err != nil || fmt.Sprint(set) != "[{hist 3} {other 7}]" {
		t.Fatalf("settings = %v, %v", set, err)
	}
}

// Many users connect while private messages are sent to them: each message
// is delivered exactly once, live or from the queue, in send order.
func testPrivateRace(t *testing.T, n *cnode) {
	ctx := context.Background()
	const users, each = 12, 30
	sinks := make([]*chanSink, users)
	var wg sync.WaitGroup
	for u := range users {
		user := int64(100 + u)
		wg.Add(2)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			sink := newSink()
			s, err := n.hub.Open(ctx, pipes.SessionInfo{UserID: user, Key: "k"}, sink)
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(s.Close)
			sinks[u] = sink
		}()
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := n.hub.SendPrivate(ctx, 0, user, "ev", fmt.Sprint(i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for u, sink := range sinks {
		if sink == nil {
			t.Fatalf("user %d not connected", u)
		}
		expect(t, sink.next(t), "event", "serverInfo", "authorized", true)
		for i := range each {
			f := sink.next(t)
			expect(t, f, "pipe", "msg", "event", "ev", "data", fmt.Sprint(i))
		}
		sink.none(t)
		eventually(t, "delivered messages removed from the queue", func() bool {
			q, err := n.eng.Queue(ctx, 0, int64(100+u))
			return err == nil && len(q) == 0
		})
	}
}

// The queue keeps the newest QueueMax messages, lists them in order, and
// hands all of them over, in order, to the next connection.
func testQueueCap(t *testing.T, n *cnode) {
	ctx := context.Background()
	for i := range 8 {
		d, err := n.hub.SendPrivate(ctx, 0, 9, "ev", fmt.Sprint(i))
		if err != nil || d != 0 {
			t.Fatalf("send = %d, %v", d, err)
		}
	}
	n.hub.SendPrivate(ctx, 0, 10, "other", "x")
	n.hub.SendPrivate(ctx, 0, 10, "other", "y")
	q, err := n.eng.Queue(ctx, 0, 9)
	if err != nil || len(q) != 5 {
		t.Fatalf("queue = %v, %v", q, err)
	}
	for i, m := range q {
		if m.Data != fmt.Sprint(i+3) || m.UserID != 9 || m.Event != "ev" || m.Time == 0 || (i > 0 && m.Index <= q[i-1].Index) {
			t.Fatalf("queue[%d] = %+v", i, m)
		}
	}
	if all, _ := n.eng.Queue(ctx, 0, 0); len(all) != 7 {
		t.Fatalf("all queues = %v", all)
	}
	_, sink := n.open(t, 0, 9)
	for i := 3; i < 8; i++ {
		expect(t, sink.next(t), "pipe", "msg", "data", fmt.Sprint(i), "fromQueue", true)
	}
	sink.none(t)
	// The delivered messages leave the queue once acknowledged, which the
	// session does in the background.
	eventually(t, "delivered messages removed from the queue", func() bool {
		q, _ := n.eng.Queue(ctx, 0, 9)
		return len(q) == 0
	})
	if c, err := n.eng.ClearQueue(ctx, 0, 10); err != nil || c != 2 {
		t.Fatalf("clear = %d, %v", c, err)
	}
	n.hub.SendPrivate(ctx, 0, 11, "e", "z")
	if c, err := n.eng.ClearQueue(ctx, 0, 0); err != nil || c != 1 {
		t.Fatalf("clear all = %d, %v", c, err)
	}
	if all, _ := n.eng.Queue(ctx, 0, 0); len(all) != 0 {
		t.Fatalf("queues after clear = %v", all)
	}
}

// Queued messages expire after QueueTTL.
func testQueueTTL(t *testing.T, n *cnode) {
	ctx := context.Background()
	n.hub.SendPrivate(ctx, 0, 12, "e", "old")
	if q, _ := n.eng.Queue(ctx, 0, 12); len(q) != 1 {
		t.Fatalf("queue = %v", q)
	}
	time.Sleep(2100 * time.Millisecond) // unix seconds: 1 s TTL expires within 2 s
	if q, _ := n.eng.Queue(ctx, 0, 12); len(q) != 0 {
		t.Fatalf("expired queue = %v", q)
	}
	n.hub.SendPrivate(ctx, 0, 12, "e", "new")
	_, sink := n.open(t, 0, 12)
	expect(t, sink.next(t), "pipe", "msg", "data", "new", "fromQueue", true)
	sink.none(t)
}

// users_time: -1 never seen, 0 online, the time of the last disconnect.
func testUsersTime(t *testing.T, n *cnode) {
	ctx := context.Background()
	rows := func(ids ...int64) []pipes.UserTime {
		t.Helper()
		r, err := n.eng.UsersTime(ctx, 0, ids)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := rows(20, 21); r[0].Time != -1 || r[1].Time != -1 || r[0].UserID != 20 {
		t.Fatalf("never seen = %v", r)
	}
	s1, _ := n.open(t, 0, 20)
	s2, _ := n.open(t, 0, 20)
	if r := rows(20); r[0].Time != 0 {
		t.Fatalf("online = %v", r)
	}
	s1.Close()
	if r := rows(20); r[0].Time != 0 {
		t.Fatalf("one tab left = %v", r)
	}
	before := time.Now().Unix()
	s2.Close()
	if r := rows(20); r[0].Time < before || r[0].Time > time.Now().Unix() {
		t.Fatalf("offline = %v", r)
	}
	n.open(t, 0, 22)
	all, err := n.eng.UsersTime(ctx, 0, nil)
	if err != nil || len(all) != 2 || all[0].UserID != 20 || all[1].UserID != 22 || all[1].Time != 0 {
		t.Fatalf("all = %v, %v", all, err)
	}
}

// online on the first connection, offline after the last, never twice.
func testPresence(t *testing.T, n *cnode) {
	w, ws := n.open(t, 0, 0)
	subscribe(t, w, "user_status_8")
	tab1, _ := n.open(t, 0, 8)
	tab2, _ := n.open(t, 0, 8)
	got := barrier(t, n, 0, "user_status_8", ws)
	if len(got) != 1 {
		t.Fatalf("frames = %v", got)
	}
	expect(t, got[0], "pipe", "user_status_8", "event", "online", "data", "online")
	tab1.Close()
	if got := barrier(t, n, 0, "user_status_8", ws); len(got) != 0 {
		t.Fatalf("after one tab closed: %v", got)
	}
	tab2.Close()
	got = barrier(t, n, 0, "user_status_8", ws)
	if len(got) != 1 {
		t.Fatalf("frames = %v", got)
	}
	expect(t, got[0], "event", "offline")
}

// A user's connections are capped; a refused one is anonymous and told so.
func testMaxConnections(t *testing.T, n *cnode) {
	a, _ := n.open(t, 0, 3)
	n.open(t, 0, 3)
	sink := newSink()
	s, err := n.hub.Open(context.Background(), pipes.SessionInfo{UserID: 3, Key: "k"}, sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	expect(t, sink.next(t), "event", "serverInfo", "authorized", false)
	expect(t, sink.next(t), "pipe", "sys", "event", "error", "data", map[string]any{"code": "too_many_devices",
		"error": "user 3 already has 2 live connections: this one is not authorized"})
	if s.UserID() != 0 {
		t.Fatal("third connection is authorized")
	}
	a.Close()
	_, again := n.open(t, 0, 3)
	_ = again
	if d, _ := n.hub.SendPrivate(context.Background(), 0, 3, "e", "x"); d != 2 {
		t.Fatalf("private reached %d connections", d)
	}
}

// Counts and member lists follow subscriptions.
func testMembership(t *testing.T, n *cnode) {
	ctx := context.Background()
	e := n.eng
	s1, _ := n.open(t, 0, 0)
	s2, s2sink := n.open(t, 0, 3)
	s3, _ := n.openInfo(t, pipes.SessionInfo{UserID: 0, UUID: "u3", UserAgent: "ua", IP: "10.0.0.1", Origin: "https://o", Language: "fr"})
	subscribe(t, s1, "room", "web_room")
	subscribe(t, s2, "room")
	subscribe(t, s3, "room", "web_room")
	count := func(p string) int {
		c, err := e.MemberCount(ctx, 0, p)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := count("room"); c != 3 {
		t.Fatalf("room count = %d", c)
	}
	members, err := e.Members(ctx, 0, "web_room")
	if err != nil || len(members) != 2 {
		t.Fatalf("members = %v, %v", members, err)
	}
	found := false
	for _, m := range members {
		if m.Session == s3.Key() {
			found = true
			if m.UUID != "u3" || m.UserAgent != "ua" || m.IP != "10.0.0.1" || m.Origin != "https://o" || m.Language != "fr" {
				t.Fatalf("member = %+v", m)
			}
		}
	}
	if !found {
		t.Fatalf("s3 not in %v", members)
	}
	active, _ := e.ActivePipes(ctx, 0)
	if fmt.Sprint(active) != "[{room 3} {web_room 2}]" {
		t.Fatalf("active = %v", active)
	}
	if err := s2.PipeCount(ctx, "web_room", "mk"); err != nil {
		t.Fatal(err)
	}
	expect(t, s2sink.next(t), "pipe", "_answer_pipe_count", "data", map[string]any{"user_in_pipe": 2, "0": "user_in_pipe", "1": 2})
	subscribe(t, s1)
	if c := count("room"); c != 2 {
		t.Fatalf("room count after unsubscribe = %d", c)
	}
	s2.Close()
	s3.Close()
	if c := count("room"); c != 0 {
		t.Fatalf("room count after close = %d", c)
	}
	if active, _ := e.ActivePipes(ctx, 0); len(active) != 0 {
		t.Fatalf("active = %v", active)
	}
	if m, _ := e.Members(ctx, 0, "room"); len(m) != 0 {
		t.Fatalf("members = %v", m)
	}
}

// Joining and leaving a track_* pipe tells the other members.
func testTrackEvents(t *testing.T, n *cnode) {
	a, as := n.open(t, 0, 1)
	subscribe(t, a, "track_t")
	b, bs := n.open(t, 0, 2)
	subscribe(t, b, "track_t")
	got := barrier(t, n, 0, "track_t", as)
	if len(got) != 1 {
		t.Fatalf("frames = %v", got)
	}
	expect(t, got[0], "event", "subscription", "data", map[string]any{"user_id": 2, "uuid": "uuid2"})
	// b may see a's join when it was still on its way from Redis as b
	// subscribed (the cluster engine delivers asynchronously), never its
	// own.
	for _, f := range barrier(t, n, 0, "track_t", bs) {
		if d, _ := f["data"].(map[string]any); d["user_id"] != float64(1) {
			t.Fatalf("own join echoed: %v", f)
		}
	}
	if err := a.TrackPipeUsers(context.Background(), "track_t", "m"); err != nil {
		t.Fatal(err)
	}
	list := nextFrame(t, as)["data"].([]any)
	if len(list) != 2 {
		t.Fatalf("track users = %v", list)
	}
	subscribe(t, b)
	got = barrier(t, n, 0, "track_t", as)
	if len(got) != 1 {
		t.Fatalf("frames = %v", got)
	}
	expect(t, got[0], "event", "unsubscription", "data", map[string]any{"user_id": 2, "uuid": "uuid2"})
}

// A browser publish reaches the others, with the sender's id, and its
// delivery report counts them.
func testWebPublishDelivered(t *testing.T, n *cnode) {
	ctx := context.Background()
	sender, ss := n.open(t, 0, 12)
	other, so := n.open(t, 0, 0)
	subscribe(t, sender, "web_chat")
	subscribe(t, other, "web_chat")
	if err := sender.WebPublish(ctx, "web_chat", "say", "hi"); err != nil {
		t.Fatal(err)
	}
	expect(t, so.next(t), "pipe", "web_chat", "event", "say", "data", "hi", "user_id", 12)
	expect(t, ss.next(t), "pipe", "_answer_to_web_chat", "data", map[string]any{"message": "hi", "number_messages": 1, "error": ""})
	if got := barrier(t, n, 0, "web_chat", ss); len(got) != 0 {
		t.Fatalf("sender got its own message: %v", got)
	}
}

// Kicks close a user's connections, or those of one token.
func testKick(t *testing.T, n *cnode) {
	ctx := context.Background()
	_, a := n.open(t, 0, 5)
	_, b := n.open(t, 0, 5)
	_, c := n.open(t, 0, 6)
	_, t1 := n.openInfo(t, pipes.SessionInfo{UserID: 7, Token: "tok1"})
	_, t2 := n.openInfo(t, pipes.SessionInfo{UserID: 7, Token: "tok2"})
	if err := n.hub.KickUser(ctx, 0, 5); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, a, "user 5 tab 1")
	waitClosed(t, b, "user 5 tab 2")
	if err := n.hub.KickToken(ctx, 0, "tok1"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, t1, "token 1")
	notClosed(t, t2, "token 2")
	notClosed(t, c, "user 6")
}

// Tenants share nothing.
func testTenancy(t *testing.T, n *cnode) {
	ctx := context.Background()
	e := n.eng
	s1, k1 := n.open(t, 1, 0)
	s2, k2 := n.open(t, 2, 0)
	subscribe(t, s1, "news")
	subscribe(t, s2, "news")
	if d, err := n.hub.Publish(ctx, 1, "news", "e", "for 1"); err != nil || d != 1 {
		t.Fatalf("publish = %d, %v", d, err)
	}
	expect(t, k1.next(t), "data", "for 1")
	if got := barrier(t, n, 2, "news", k2); len(got) != 0 {
		t.Fatalf("dev 2 got %v", got)
	}
	e.SetLogLength(ctx, 1, "news", 10)
	n.hub.Publish(ctx, 1, "news", "e", "kept")
	if l, _ := e.LogLength(ctx, 2, "news"); l != 0 {
		t.Fatalf("dev 2 log length = %d", l)
	}
	if h, _ := e.History(ctx, 2, "news", 0); len(h) != 0 {
		t.Fatalf("dev 2 history = %v", h)
	}
	if s, _ := e.LogSettings(ctx, 2); len(s) != 0 {
		t.Fatalf("dev 2 settings = %v", s)
	}
	n.hub.SendPrivate(ctx, 1, 4, "e", "q")
	if q, _ := e.Queue(ctx, 2, 4); len(q) != 0 {
		t.Fatalf("dev 2 queue = %v", q)
	}
	if q, _ := e.Queue(ctx, 2, 0); len(q) != 0 {
		t.Fatalf("dev 2 queues = %v", q)
	}
	_, u := n.open(t, 2, 4)
	u.none(t) // the offline queue is delivered within Open

	if r, _ := e.UsersTime(ctx, 1, []int64{4}); r[0].Time != -1 {
		t.Fatalf("dev 1 users_time = %v", r)
	}
	if c, _ := e.MemberCount(ctx, 2, "news"); c != 1 {
		t.Fatalf("dev 2 count = %d", c)
	}
	if a, _ := e.ActivePipes(ctx, 3); len(a) != 0 {
		t.Fatalf("dev 3 active = %v", a)
	}
	if q, _ := e.Queue(ctx, 1, 4); len(q) != 1 {
		t.Fatalf("dev 1 queue = %v", q)
	}
}
