package pipes_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cometql/cometql/internal/redistest"
	"github.com/cometql/cometql/pipes"
)

// Tests of the Redis engine that need more than one node: several hubs, each
// with its own engine and node name, on one Redis (the test binary's shared
// redis-server with a key prefix per test, or a private one for the tests
// that stop Redis).

// rcluster builds Redis engines that share a key prefix.
type rcluster struct {
	srv    *redistest.Server
	prefix string
	opt    engineOpts
}

func newRCluster(t *testing.T, srv *redistest.Server, opt engineOpts) *rcluster {
	return &rcluster{srv: srv, prefix: redistest.Prefix(t), opt: opt}
}

func (c *rcluster) build(t *testing.T) func(node string) pipes.Engine {
	return func(node string) pipes.Engine {
		e, err := pipes.NewRedisEngine(pipes.RedisConfig{
			URL: c.srv.URL(), Prefix: c.prefix, Node: node,
			QueueMax: c.opt.queueMax, QueueTTL: c.opt.queueTTL, NodeTTL: c.opt.nodeTTL,
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
}

func (c *rcluster) node(t *testing.T, name string, cfg pipes.Config) *cnode {
	t.Helper()
	return startNode(t, c.build(t), name, cfg)
}

// redisEnv is the conformance suite's Redis backend.
func redisEnv(t *testing.T, opt engineOpts) func(node string) pipes.Engine {
	t.Helper()
	return newRCluster(t, redistest.Shared(t), opt).build(t)
}

func TestRedisEngineConfig(t *testing.T) {
	for _, bad := range []string{"", "a b", "a|b", "a:b", strings.Repeat("n", 65)} {
		if bad == "" {
			continue // the default "local"
		}
		if _, err := pipes.NewRedisEngine(pipes.RedisConfig{Node: bad}, nil); err == nil {
			t.Errorf("node name %q accepted", bad)
		}
	}
	if _, err := pipes.NewRedisEngine(pipes.RedisConfig{URL: "http://x", Node: "n"}, nil); err == nil {
		t.Error("http URL accepted")
	}
	e, err := pipes.NewRedisEngine(pipes.RedisConfig{Addr: "127.0.0.1:1", Node: "n", DialTimeout: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Ready(); err == nil {
		t.Error("ready before Run")
	}
	h := pipes.New(pipes.Config{}, e, nil, nil)
	if err := h.Start(); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Run without redis: %v", err)
	}
	e.Close(context.Background())
}

// A message published on either node reaches the subscribers of both nodes
// once each, in publish order; concurrent publishers on two nodes produce
// the same order everywhere.
func TestRedisClusterPublish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newRCluster(t, redistest.Shared(t), engineOpts{})
	a := c.node(t, "a", pipes.Config{})
	b := c.node(t, "b", pipes.Config{})
	if err := a.eng.SetLogLength(ctx, 0, "hist", 1000); err != nil {
		t.Fatal(err)
	}
	sa, ka := a.open(t, 0, 0)
	sb, kb := b.open(t, 0, 0)
	subscribe(t, sa, "news", "hist")
	subscribe(t, sb, "news", "hist")
	const n = 50
	for _, from := range []*cnode{a, b} {
		for i := range n {
			d, err := from.hub.Publish(ctx, 0, "news", "e", fmt.Sprintf("%s%d", from.eng.NodeName(), i))
			if err != nil || d != 2 {
				t.Fatalf("publish = %d, %v", d, err)
			}
		}
	}
	for _, k := range []*chanSink{ka, kb} {
		for _, from := range []string{"a", "b"} {
			for i := range n {
				expect(t, k.next(t), "pipe", "news", "data", fmt.Sprintf("%s%d", from, i))
			}
		}
	}

	var wg sync.WaitGroup
	for _, from := range []*cnode{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if _, err := from.hub.Publish(ctx, 0, "hist", "", fmt.Sprintf("%s%d", from.eng.NodeName(), i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	var orders [2][]string
	for j, k := range []*chanSink{ka, kb} {
		for seq := 1; seq <= 2*n; seq++ {
			f := k.next(t)
			expect(t, f, "pipe", "hist", "seq", seq)
			orders[j] = append(orders[j], f["data"].(string))
		}
		k.none(t)
	}
	if fmt.Sprint(orders[0]) != fmt.Sprint(orders[1]) {
		t.Fatalf("nodes delivered different orders:\n%v\n%v", orders[0], orders[1])
	}
	if got := barrier(t, b, 0, "news", ka); len(got) != 0 {
		t.Fatalf("extra frames: %v", got)
	}

	// The last local subscriber gone, the node unsubscribes the channel.
	subscribe(t, sa)
	subscribe(t, sb)
	ch := c.prefix + ":d0:p:news"
	eventually(t, "channel unsubscribed", func() bool {
		r, err := c.srv.Do("PUBSUB", "NUMSUB", ch)
		return err == nil && r == ch+"\n0"
	})
	if d, _ := a.hub.Publish(ctx, 0, "news", "e", "nobody"); d != 0 {
		t.Fatalf("delivered = %d", d)
	}
}

// online and offline once across nodes; users_time cluster-wide.
func TestRedisClusterPresence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newRCluster(t, redistest.Shared(t), engineOpts{})
	a := c.node(t, "a", pipes.Config{})
	b := c.node(t, "b", pipes.Config{})
	wa, ka := a.open(t, 0, 0)
	wb, kb := b.open(t, 0, 0)
	subscribe(t, wa, "user_status_7")
	subscribe(t, wb, "user_status_7")
	t1, _ := a.open(t, 0, 7)
	t2, _ := b.open(t, 0, 7)
	for _, w := range []struct {
		n *cnode
		k *chanSink
	}{{a, ka}, {b, kb}} {
		got := barrier(t, w.n, 0, "user_status_7", w.k)
		if len(got) != 1 {
			t.Fatalf("node %s: %v", w.n.eng.NodeName(), got)
		}
		expect(t, got[0], "event", "online")
	}
	if r, _ := a.eng.UsersTime(ctx, 0, []int64{7}); r[0].Time != 0 {
		t.Fatalf("users_time = %v", r)
	}
	t1.Close()
	if got := barrier(t, b, 0, "user_status_7", kb); len(got) != 0 {
		t.Fatalf("after the node A tab closed: %v", got)
	}
	t2.Close()
	for _, w := range []struct {
		n *cnode
		k *chanSink
	}{{a, ka}, {b, kb}} {
		got := barrier(t, w.n, 0, "user_status_7", w.k)
		if len(got) != 1 {
			t.Fatalf("node %s: %v", w.n.eng.NodeName(), got)
		}
		expect(t, got[0], "event", "offline")
	}
	if r, _ := b.eng.UsersTime(ctx, 0, []int64{7}); r[0].Time <= 0 {
		t.Fatalf("users_time = %v", r)
	}
}

// track_* events, pipe_count, track_pipe_users and the pipes list are
// cluster-wide.
func TestRedisClusterMembership(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newRCluster(t, redistest.Shared(t), engineOpts{})
	a := c.node(t, "a", pipes.Config{})
	b := c.node(t, "b", pipes.Config{})
	ma, ka := a.open(t, 0, 1)
	subscribe(t, ma, "track_room", "web_room")
	mb, _ := b.open(t, 0, 2)
	subscribe(t, mb, "track_room", "web_room")
	got := barrier(t, a, 0, "track_room", ka)
	if len(got) != 1 {
		t.Fatalf("frames = %v", got)
	}
	expect(t, got[0], "event", "subscription", "data", map[string]any{"user_id": 2, "uuid": "uuid2"})
	if err := ma.PipeCount(ctx, "web_room", "mk"); err != nil {
		t.Fatal(err)
	}
	expect(t, nextFrame(t, ka), "pipe", "_answer_pipe_count", "data", map[string]any{"user_in_pipe": 2, "0": "user_in_pipe", "1": 2})
	if err := ma.TrackPipeUsers(ctx, "track_room", "m2"); err != nil {
		t.Fatal(err)
	}
	if list := nextFrame(t, ka)["data"].([]any); len(list) != 2 {
		t.Fatalf("track users = %v", list)
	}
	active, _ := a.eng.ActivePipes(ctx, 0)
	if fmt.Sprint(active) != "[{track_room 2} {web_room 2}]" {
		t.Fatalf("active = %v", active)
	}
	members, _ := a.eng.Members(ctx, 0, "web_room")
	if len(members) != 2 || members[0].Session != ma.Key() || members[1].Session != mb.Key() {
		t.Fatalf("members = %v", members)
	}
	mb.Close()
	got = barrier(t, a, 0, "track_room", ka)
	if len(got) != 1 {
		t.Fatalf("frames = %v", got)
	}
	expect(t, got[0], "event", "unsubscription", "data", map[string]any{"user_id": 2, "uuid": "uuid2"})
	if n, _ := b.eng.MemberCount(ctx, 0, "web_room"); n != 1 {
		t.Fatalf("count = %d", n)
	}
}

// Private messages reach the user's connections on every node; the
// connection limit and kicks are cluster-wide.
func TestRedisClusterPrivate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newRCluster(t, redistest.Shared(t), engineOpts{})
	cfg := pipes.Config{MaxConnectionsPerUser: 2}
	a := c.node(t, "a", cfg)
	b := c.node(t, "b", cfg)
	_, kb := b.open(t, 0, 5)
	if d, err := a.hub.SendPrivate(ctx, 0, 5, "e", "one"); err != nil || d != 1 {
		t.Fatalf("send = %d, %v", d, err)
	}
	expect(t, kb.next(t), "pipe", "msg", "data", "one")
	_, ka := a.open(t, 0, 5)
	if d, err := b.hub.SendPrivate(ctx, 0, 5, "e", "two"); err != nil || d != 2 {
		t.Fatalf("send = %d, %v", d, err)
	}
	expect(t, ka.next(t), "pipe", "msg", "data", "two")
	expect(t, kb.next(t), "pipe", "msg", "data", "two")
	sink := newSink()
	s, _ := a.hub.Open(ctx, pipes.SessionInfo{UserID: 5}, sink)
	t.Cleanup(s.Close)
	expect(t, sink.next(t), "event", "serverInfo", "authorized", false)
	expect(t, sink.next(t), "pipe", "sys", "data", map[string]any{"code": "too_many_devices",
		"error": "user 5 already has 2 live connections: this one is not authorized"})
	if err := a.hub.KickUser(ctx, 0, 5); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ka, "node A")
	waitClosed(t, kb, "node B")
	notClosed(t, sink, "the anonymous third connection")
}

// A node that dies without cleaning up: after its liveness key expires,
// another node removes its members and connections and publishes the
// unsubscription and offline events. A node restarting under the same name
// removes its own leftovers at once.
func TestRedisNodeCrash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newRCluster(t, redistest.Shared(t), engineOpts{nodeTTL: 600 * time.Millisecond})
	a := c.node(t, "a", pipes.Config{})
	x := c.node(t, "x", pipes.Config{})
	w, kw := a.open(t, 0, 0)
	subscribe(t, w, "track_room", "user_status_9")
	sx, _ := x.open(t, 0, 9)
	subscribe(t, sx, "room", "track_room")
	anon, _ := x.open(t, 0, 0)
	subscribe(t, anon, "room")
	got := barrier(t, a, 0, "track_room", kw)
	if len(got) != 2 {
		t.Fatalf("frames = %v", got)
	}
	if n, _ := a.eng.MemberCount(ctx, 0, "room"); n != 2 {
		t.Fatalf("count = %d", n)
	}
	start := time.Now()
	x.eng.(*pipes.RedisEngine).Crash()
	eventually(t, "dead node's members removed", func() bool {
		n, _ := a.eng.MemberCount(ctx, 0, "room")
		return n == 0
	})
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Fatalf("members removed after %v, before the liveness key expired", d)
	}
	events := map[string]bool{}
	for len(events) < 2 {
		f := kw.next(t)
		events[f["pipe"].(string)+" "+f["event"].(string)] = true
	}
	if !events["track_room unsubscription"] || !events["user_status_9 offline"] {
		t.Fatalf("events = %v", events)
	}
	if r, _ := a.eng.UsersTime(ctx, 0, []int64{9}); r[0].Time <= 0 {
		t.Fatalf("users_time = %v", r)
	}
	if active, _ := a.eng.ActivePipes(ctx, 0); fmt.Sprint(active) != "[{track_room 1} {user_status_9 1}]" {
		t.Fatalf("active = %v", active)
	}

	// Restart under the same name right after a crash, well within the TTL
	// of a slow cluster: the new run cleans up at start.
	slow := newRCluster(t, c.srv, engineOpts{nodeTTL: time.Minute})
	y := slow.node(t, "y", pipes.Config{})
	sy, _ := y.open(t, 0, 4)
	subscribe(t, sy, "room")
	y.eng.(*pipes.RedisEngine).Crash()
	y2 := slow.node(t, "y", pipes.Config{})
	if n, _ := y2.eng.MemberCount(ctx, 0, "room"); n != 0 {
		t.Fatalf("count after restart = %d", n)
	}
	if r, _ := y2.eng.UsersTime(ctx, 0, []int64{4}); r[0].Time <= 0 {
		t.Fatalf("users_time after restart = %v", r)
	}
}

// Redis stops and comes back empty: the node keeps its sessions and
// delivers its own publishes locally (reporting the failure), is not ready
// while Redis is away, and then resubscribes and re-registers its members
// and connections.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.New(t)
	c := newRCluster(t, srv, engineOpts{nodeTTL: 900 * time.Millisecond})
	a := c.node(t, "a", pipes.Config{})
	b := c.node(t, "b", pipes.Config{})
	sa, ka := a.open(t, 0, 0)
	sb, kb := b.open(t, 0, 0)
	subscribe(t, sa, "news")
	subscribe(t, sb, "news")
	_, ua := a.open(t, 0, 3)
	b.hub.Publish(ctx, 0, "news", "e", "before")
	expect(t, ka.next(t), "data", "before")
	expect(t, kb.next(t), "data", "before")

	srv.Stop()
	eventually(t, "node A not ready", func() bool { return a.eng.Ready() != nil })
	d, err := a.hub.Publish(ctx, 0, "news", "e", "during")
	if !errors.Is(err, pipes.ErrUnavailable) || !errors.Is(err, pipes.ErrStore) || d != 1 {
		t.Fatalf("publish during the outage = %d, %v", d, err)
	}
	expect(t, ka.next(t), "data", "during")
	if _, err := a.eng.MemberCount(ctx, 0, "news"); err == nil {
		t.Fatal("count without redis")
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both nodes ready", func() bool { return a.eng.Ready() == nil && b.eng.Ready() == nil })
	eventually(t, "members re-registered", func() bool {
		n, _ := b.eng.MemberCount(ctx, 0, "news")
		return n == 2
	})
	if r, _ := b.eng.UsersTime(ctx, 0, []int64{3}); r[0].Time != 0 {
		t.Fatalf("users_time after re-registration = %v", r)
	}
	if d, err := b.hub.Publish(ctx, 0, "news", "e", "after"); err != nil || d != 2 {
		t.Fatalf("publish after = %d, %v", d, err)
	}
	expect(t, ka.next(t), "data", "after")
	expect(t, kb.next(t), "data", "after")
	kb.none(t)
	// Once ready, every write goes through: none meets a connection that
	// broke in the outage (each node sends several, as a backend would).
	for i := range 8 {
		for name, n := range map[string]*cnode{"a": a, "b": b} {
			data := fmt.Sprint("p", i, name)
			if d, err := n.hub.SendPrivate(ctx, 0, 3, "e", data); err != nil || d != 1 {
				t.Fatalf("private %d from %s after = %d, %v", i, name, d, err)
			}
			expect(t, ua.next(t), "pipe", "msg", "data", data)
		}
	}
}

// A node whose connections to Redis break while messages flow replays what
// its subscribers of a logging pipe missed from the history: every message
// once, in order.
func TestRedisCatchUpAfterReconnect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Shared(t)
	c := newRCluster(t, srv, engineOpts{})
	a := c.node(t, "catchup-a", pipes.Config{})
	b := c.node(t, "catchup-b", pipes.Config{})
	if err := a.eng.SetLogLength(ctx, 0, "hist", 1000); err != nil {
		t.Fatal(err)
	}
	sa, ka := a.open(t, 0, 0)
	sb, kb := b.open(t, 0, 0)
	subscribe(t, sa, "hist")
	subscribe(t, sb, "hist")
	const total, cut = 300, 50
	for i := 1; i <= cut; i++ {
		a.hub.Publish(ctx, 0, "hist", "", fmt.Sprint(i))
	}
	for i := 1; i <= cut; i++ {
		expect(t, kb.next(t), "seq", i)
	}
	list, err := srv.Do("CLIENT", "LIST")
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(line, " name=cometql:catchup-b ") {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(line, "id="), " ")
		if _, err := srv.Do("CLIENT", "KILL", "ID", id); err == nil {
			killed++
		}
	}
	if killed == 0 {
		t.Fatalf("no connection of node catchup-b in:\n%s", list)
	}
	for i := cut + 1; i <= total; i++ {
		if _, err := a.hub.Publish(ctx, 0, "hist", "", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := cut + 1; i <= total; i++ {
		expect(t, kb.next(t), "seq", i, "data", fmt.Sprint(i))
	}
	for i := 1; i <= total; i++ {
		expect(t, ka.next(t), "seq", i)
	}
	if got := barrier(t, a, 0, "hist", kb); len(got) != 0 {
		t.Fatalf("duplicates: %v", got)
	}
}

// An engine that is closed leaves no goroutine behind.
func TestRedisEngineNoLeak(t *testing.T) {
	srv := redistest.Shared(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := newRCluster(t, srv, engineOpts{})
	eng := c.build(t)("leak")
	hub := pipes.New(pipes.Config{}, eng, nil, nil)
	if err := hub.Start(); err != nil {
		t.Fatal(err)
	}
	sink := newSink()
	s, err := hub.Open(context.Background(), pipes.SessionInfo{UserID: 3}, sink)
	if err != nil {
		t.Fatal(err)
	}
	subscribe(t, s, "news")
	hub.Publish(context.Background(), 0, "news", "e", "x")
	s.Close()
	if err := eng.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Close removed the node from Redis.
	if r, err := srv.Do("EXISTS", c.prefix+":node:leak", c.prefix+":node:leak:idx"); err != nil || r != "0" {
		t.Fatalf("node keys left: %s, %v", r, err)
	}
}

// BenchmarkRedisPublish measures publishing through Redis to one local
// subscriber (64 concurrent publishers on two cores, one pipe).
func BenchmarkRedisPublish(b *testing.B) {
	srv := redistest.Shared(b)
	eng, err := pipes.NewRedisEngine(pipes.RedisConfig{URL: srv.URL(), Prefix: redistest.Prefix(b), Node: "bench"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	hub := pipes.New(pipes.Config{}, eng, nil, nil)
	if err := hub.Start(); err != nil {
		b.Fatal(err)
	}
	defer eng.Close(context.Background())
	s, _ := hub.Open(context.Background(), pipes.SessionInfo{}, discardSink{})
	s.Subscribe(context.Background(), []string{"bench"})
	b.SetParallelism(32) // many CometQL connections publishing at once
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := hub.Publish(context.Background(), 0, "bench", "e", "payload"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

type discardSink struct{}

func (discardSink) Send([]byte) {}
func (discardSink) Close()      {}

// Online (SHOW STATUS user_online) counts browser connections on every
// live node: this node's exactly, the others' as of their last heartbeat.
func TestRedisClusterOnline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newRCluster(t, redistest.Shared(t), engineOpts{nodeTTL: 300 * time.Millisecond})
	a := c.node(t, "a", pipes.Config{})
	b := c.node(t, "b", pipes.Config{})
	a.open(t, 0, 0)
	b.open(t, 0, 0)
	b.open(t, 0, 5)
	b.open(t, 3, 0)
	eventually(t, "a counts b's connections", func() bool {
		n, err := a.eng.Online(ctx, 0)
		return err == nil && n == 3
	})
	if n, err := b.eng.Online(ctx, 3); err != nil || n != 1 {
		t.Fatalf("tenant 3 online = %d, %v", n, err)
	}
	b.eng.Close(ctx) // a node that leaves stops counting once its liveness key expires
	eventually(t, "b's connections no longer counted", func() bool {
		n, err := a.eng.Online(ctx, 0)
		return err == nil && n == 1
	})
}
