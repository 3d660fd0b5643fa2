package pipes

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/cometql/cometql/internal/redisopt"
)

// RedisConfig configures the cluster engine. A zero field takes the default
// its comment names.
type RedisConfig struct {
	// URL is a Redis URL, redis://[user:password@]host:port/db (rediss://
	// for TLS). It takes precedence over Addr.
	URL string
	// Addr is host:port when URL is empty (default 127.0.0.1:6379).
	Addr string
	// Prefix starts every key and channel name (default "cometql"), so
	// several clusters (or tests) can share one Redis.
	Prefix string
	// Node is this node's name, unique in the cluster: 1..64 characters of
	// [A-Za-z0-9_.-] (default "local"). A node restarting under the same
	// name takes over (and cleans up) what its previous run left.
	Node string
	// QueueMax caps a user's offline queue; the oldest messages are dropped
	// first (default 1000).
	QueueMax int
	// QueueTTL expires queued messages (default 24h).
	QueueTTL time.Duration
	// NodeTTL is how long the node's liveness key lives without a
	// heartbeat; the node refreshes it every NodeTTL/3. Another node removes
	// the members and connections of a node whose key expired, so counts do
	// not stay inflated after a crash (default 15s).
	NodeTTL time.Duration
	// OpTimeout bounds each Redis operation (default 5s).
	OpTimeout time.Duration
	// DialTimeout bounds connecting to Redis (default 2s).
	DialTimeout time.Duration
}

func (c *RedisConfig) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:6379"
	}
	if c.Prefix == "" {
		c.Prefix = "cometql"
	}
	if c.Node == "" {
		c.Node = "local"
	}
	if c.QueueMax <= 0 {
		c.QueueMax = 1000
	}
	if c.QueueTTL <= 0 {
		c.QueueTTL = 24 * time.Hour
	}
	if c.NodeTTL <= 0 {
		c.NodeTTL = 15 * time.Second
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 5 * time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 2 * time.Second
	}
}

// ErrUnavailable means Redis cannot be reached: the cluster engine cannot
// publish, count or store until it can. It is an ErrStore.
var ErrUnavailable = fmt.Errorf("%w: redis unreachable", ErrStore)

// validNodeName reports whether s is 1..64 characters of [A-Za-z0-9_.-]: it
// is part of key names and session keys.
func validNodeName(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) && s[i] != '.' {
			return false
		}
	}
	return true
}

// RedisEngine is the cluster Engine: several nodes share one Redis.
//
// Every pipe message goes through Redis: an atomic script appends it to the
// history (when the pipe logs, with a sequence number from a counter that is
// never reset) and publishes it on the pipe's channel, and every node, the
// publishing one included, delivers it to its own subscribers from its one
// pub/sub connection, so each subscriber gets it once and in the channel's
// order. A node subscribes to a pipe's channel while it has local
// subscribers (Watch/Unwatch).
//
// Membership, users' live connections (cluster-wide counts), users_time,
// offline queues, history and settings live in Redis. Each node records what
// it registered in a per-node index and keeps a liveness key alive; entries
// of nodes whose key expired are removed by the others (with the offline and
// unsubscription events they imply), and a node removes its own stale
// entries when it starts.
//
// A node that loses Redis keeps its sessions and its local state: it reports
// not ready, publishes fail with ErrUnavailable (the message still reaches
// this node's own subscribers), and when Redis returns it resubscribes,
// re-registers its members and connections, and replays from the history
// what its subscribers of logging pipes missed.
type RedisEngine struct {
	cfg    RedisConfig
	log    *slog.Logger
	client rueidis.Client
	h      Handler
	token  string // this run's liveness token

	// names
	nodesKey, aliveKey, idxKey, nodeChan, ctlChan, nodeChanPrefix string

	// resyncMu orders re-registration against the calls that change this
	// node's entries: they hold it for reading, resync for writing.
	resyncMu sync.RWMutex

	wmu     sync.RWMutex
	chans   map[string]*watchedPipe // pipe channel -> watch state
	ps      rueidis.DedicatedClient // the pub/sub connection; nil while down
	stripes [64]sync.Mutex          // order SUBSCRIBE/UNSUBSCRIBE per channel

	staleMu sync.Mutex
	stale   map[string]struct{} // channels delivering without a watcher
	staleCh chan struct{}

	usersMu sync.Mutex
	users   map[userKey]map[SessionKey]struct{} // this node's registered connections

	workers []chan dispatchItem

	psUp atomic.Bool // pub/sub connected and subscribed
	hbOK atomic.Bool // last heartbeat succeeded
	// lossGen counts pub/sub connection losses; beatGen is the count read
	// before the last heartbeat that succeeded. Not ready while they differ:
	// a pub/sub connection back up says nothing of the command connection,
	// which a heartbeat replaces when it broke too.
	lossGen, beatGen atomic.Uint64

	errMu   sync.Mutex
	lastErr error

	dirty    atomic.Bool   // a registration failed: resync at the next heartbeat
	resyncCh chan struct{} // resync now (after the pub/sub connection came back)

	dropped atomic.Uint64
	started atomic.Bool
	closed  atomic.Bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

var _ Engine = (*RedisEngine)(nil)

// NewRedisEngine builds a cluster engine. It checks the configuration and
// prepares the client; Run connects.
func NewRedisEngine(cfg RedisConfig, log *slog.Logger) (*RedisEngine, error) {
	cfg.setDefaults()
	if log == nil {
		log = slog.Default()
	}
	if !validNodeName(cfg.Node) {
		return nil, fmt.Errorf("pipes: node name %q: want 1..64 characters of [A-Za-z0-9_.-]", clip(cfg.Node))
	}
	opt, err := redisOptions(cfg)
	if err != nil {
		return nil, err
	}
	client, err := rueidis.NewClient(opt)
	if client == nil {
		return nil, fmt.Errorf("pipes: redis client: %w", err)
	}
	var tok [8]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, fmt.Errorf("pipes: instance token: %w", err)
	}
	p := cfg.Prefix
	e := &RedisEngine{
		cfg:            cfg,
		log:            log.With("engine", "redis", "node", cfg.Node),
		client:         client,
		token:          hex.EncodeToString(tok[:]),
		nodesKey:       p + ":nodes",
		aliveKey:       p + ":node:" + cfg.Node,
		idxKey:         p + ":node:" + cfg.Node + ":idx",
		nodeChan:       p + ":node:" + cfg.Node + ":ch",
		nodeChanPrefix: p + ":node:",
		ctlChan:        p + ":ctl",
		chans:          map[string]*watchedPipe{},
		stale:          map[string]struct{}{},
		staleCh:        make(chan struct{}, 1),
		users:          map[userKey]map[SessionKey]struct{}{},
		resyncCh:       make(chan struct{}, 1),
		stop:           make(chan struct{}),
	}
	e.lastErr = errors.New("not started")
	return e, nil
}

// redisOptions turns the configuration into client options (see
// redisopt.Options: the engine decides what to do when Redis is away).
func redisOptions(cfg RedisConfig) (rueidis.ClientOption, error) {
	opt, err := redisopt.Options(cfg.URL, cfg.Addr, cfg.DialTimeout, cfg.OpTimeout, "cometql:"+cfg.Node)
	if err != nil {
		return opt, fmt.Errorf("pipes: redis URL: %w", err)
	}
	return opt, nil
}

// NodeName implements Engine.
func (e *RedisEngine) NodeName() string { return e.cfg.Node }

// DroppedFromQueues counts private messages dropped from full or expired
// offline queues by this node's sends.
func (e *RedisEngine) DroppedFromQueues() uint64 { return e.dropped.Load() }

// Run implements Engine: it removes what a previous run of this node left in
// Redis, registers the node, connects the pub/sub connection and starts the
// heartbeat. It fails when Redis cannot be reached.
func (e *RedisEngine) Run(h Handler) error {
	if e.started.Swap(true) {
		return errors.New("pipes: redis engine already running")
	}
	e.h = h
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.DialTimeout+e.cfg.OpTimeout)
	defer cancel()
	events, err := e.reap(ctx, e.cfg.Node, true)
	if err != nil {
		e.client.Close()
		e.closed.Store(true)
		return fmt.Errorf("redis %s: %w", e.where(), err)
	}
	if len(events) > 0 {
		e.log.Info("removed what the previous run of this node left in redis", "entries", len(events))
	}
	if _, err := e.heartbeat(ctx); err != nil {
		e.client.Close()
		e.closed.Store(true)
		return fmt.Errorf("redis %s: %w", e.where(), err)
	}
	e.hbOK.Store(true)
	e.publishEvents(ctx, events)

	n := min(max(2, 2*runtime.GOMAXPROCS(0)), 16)
	e.workers = make([]chan dispatchItem, n)
	for i := range e.workers {
		e.workers[i] = make(chan dispatchItem, 1024)
		e.wg.Add(1)
		go e.dispatchLoop(e.workers[i])
	}
	up := make(chan struct{})
	e.wg.Add(3)
	go e.pubsubLoop(up)
	go e.heartbeatLoop()
	go e.staleLoop()
	select {
	case <-up:
		e.log.Info("cluster engine connected", "redis", e.where(), "prefix", e.cfg.Prefix)
		return nil
	case <-ctx.Done():
		e.shutdownLoops()
		e.client.Close()
		e.closed.Store(true)
		return fmt.Errorf("redis %s: pub/sub connection not established: %w", e.where(), e.lastError())
	}
}

func (e *RedisEngine) where() string {
	if e.cfg.URL != "" {
		return "(" + redactURL(e.cfg.URL) + ")"
	}
	return "at " + e.cfg.Addr
}

// redactURL hides a password in a Redis URL.
func redactURL(u string) string {
	opt, err := rueidis.ParseURL(u)
	if err != nil || len(opt.InitAddress) == 0 {
		return "redis"
	}
	return opt.InitAddress[0]
}

// shutdownLoops stops the background goroutines and waits for them.
func (e *RedisEngine) shutdownLoops() {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	e.wg.Wait()
}

// Close implements Engine: it stops the loops, removes this node's remaining
// entries from Redis (publishing the offline and unsubscription events they
// imply) and its liveness key, and closes the connections.
func (e *RedisEngine) Close(ctx context.Context) error {
	if e.closed.Swap(true) {
		return nil
	}
	if !e.started.Load() {
		e.client.Close()
		return nil
	}
	e.shutdownLoops()
	var err error
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.cfg.OpTimeout)
		defer cancel()
	}
	events, rerr := e.reap(ctx, e.cfg.Node, true)
	if rerr == nil {
		e.publishEvents(ctx, events)
		rerr = e.client.DoMulti(ctx,
			e.client.B().Del().Key(e.aliveKey).Build(),
			e.client.B().Srem().Key(e.nodesKey).Member(e.cfg.Node).Build())[0].Error()
	}
	if rerr != nil {
		err = fmt.Errorf("pipes: unregister node from redis: %w", rerr)
	}
	e.client.Close()
	return err
}

// Ready implements Engine: nil while the pub/sub connection is up and the
// last heartbeat reached Redis.
func (e *RedisEngine) Ready() error {
	if e.closed.Load() {
		return ErrClosed
	}
	if !e.psUp.Load() || !e.hbOK.Load() || e.beatGen.Load() != e.lossGen.Load() {
		return fmt.Errorf("%w: %v", ErrUnavailable, e.lastError())
	}
	return nil
}

func (e *RedisEngine) setError(err error) {
	e.errMu.Lock()
	e.lastErr = err
	e.errMu.Unlock()
}

func (e *RedisEngine) lastError() error {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	return e.lastErr
}

// down reports whether Redis is known to be out of reach (both the pub/sub
// connection and the heartbeat failed), so calls fail fast.
func (e *RedisEngine) down() bool { return !e.psUp.Load() && !e.hbOK.Load() }

// opCtx bounds one Redis operation.
func (e *RedisEngine) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.cfg.OpTimeout)
}

// fail wraps a Redis error for callers: ErrUnavailable when Redis could not
// be reached, else ErrStore.
func (e *RedisEngine) fail(op string, err error) error {
	if isConnError(err) {
		return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
	}
	return fmt.Errorf("%w: redis: %s: %v", ErrStore, op, err)
}

// isConnError reports whether err means Redis was not reached or did not
// answer in time (as opposed to Redis answering with an error).
func isConnError(err error) bool {
	return !errors.Is(err, errBadPayload) && redisopt.IsConnError(err)
}

// Key and channel names. Tenant data lives under <prefix>:d<dev>:.
func (e *RedisEngine) devKey(dev int64) string {
	return e.cfg.Prefix + ":d" + strconv.FormatInt(dev, 10)
}

func (e *RedisEngine) pipeChannel(dev int64, pipe string) string {
	return e.devKey(dev) + ":p:" + pipe
}

// Publish implements Engine. It returns once Redis has stored (for a logging
// pipe) and published the message; delivery to this node's subscribers
// comes from the pub/sub connection, like everyone else's. Delivered is the
// number of subscribed connections cluster-wide, the sender excluded.
//
// Because delivery is asynchronous, a connection that subscribes to a pipe
// this node already watches may also receive a message published just
// before it subscribed, still on its way from Redis.
func (e *RedisEngine) Publish(ctx context.Context, m *Message) (int, error) {
	if e.closed.Load() {
		return 0, ErrClosed
	}
	return e.publish(ctx, m)
}

// publish is Publish without the closed check (Close publishes the events
// of its clean-up).
func (e *RedisEngine) publish(ctx context.Context, m *Message) (int, error) {
	if m.Time == 0 {
		m.Time = time.Now().Unix()
	}
	if m.ID == "" {
		m.ID = NewMessageID()
	}
	if e.down() {
		return e.publishLocal(m, e.lastError())
	}
	d := e.devKey(m.DevID)
	mayLog := "0"
	if m.Kind == KindPipe {
		mayLog = "1"
	}
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	res, err := scriptPublish.Exec(ctx, e.client,
		[]string{d + ":set", d + ":seq:" + m.Pipe, d + ":h:" + m.Pipe, d + ":hid", d + ":m:" + m.Pipe},
		[]string{m.Pipe, e.pipeChannel(m.DevID, m.Pipe), encodeBody(m), string(m.Exclude), m.ID, mayLog},
	).AsIntSlice()
	if err != nil {
		if isConnError(err) && !e.psUp.Load() {
			return e.publishLocal(m, err)
		}
		return 0, e.fail("publish", err)
	}
	if len(res) != 2 {
		return 0, e.fail("publish", errBadPayload)
	}
	m.Seq = res[1]
	return int(max(res[0], 0)), nil
}

// publishLocal delivers to this node's subscribers only, when Redis is out
// of reach, and reports the failure.
func (e *RedisEngine) publishLocal(m *Message, cause error) (int, error) {
	n := 0
	if e.h != nil {
		n = e.h.Deliver(m)
	}
	return n, fmt.Errorf("%w: message not published to the cluster, delivered to %d connections on this node only: %v",
		ErrUnavailable, n, cause)
}

// History implements Engine.
func (e *RedisEngine) History(ctx context.Context, dev int64, pipe string, since int64) ([]Message, error) {
	msgs, _, err := e.history(ctx, dev, pipe, since)
	return msgs, err
}

// history returns the kept messages after since and the pipe's last
// sequence number.
func (e *RedisEngine) history(ctx context.Context, dev int64, pipe string, since int64) ([]Message, int64, error) {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	d := e.devKey(dev)
	arr, err := scriptHistory.Exec(ctx, e.client, []string{d + ":h:" + pipe, d + ":seq:" + pipe},
		[]string{strconv.FormatInt(since, 10)}).ToArray()
	if err != nil {
		return nil, 0, e.fail("history", err)
	}
	if len(arr) != 2 {
		return nil, 0, e.fail("history", errBadPayload)
	}
	lastS, err := arr[0].ToString()
	if err != nil {
		return nil, 0, e.fail("history", err)
	}
	last, _ := strconv.ParseInt(lastS, 10, 64)
	items, err := arr[1].AsStrSlice()
	if err != nil {
		return nil, 0, e.fail("history", err)
	}
	out := make([]Message, 0, len(items)/2)
	for i := 0; i+1 < len(items); i += 2 {
		m := Message{DevID: dev, Pipe: pipe}
		if err := decodeBody(items[i], &m); err != nil {
			e.log.Warn("undecodable history entry skipped", "dev", dev, "pipe", pipe)
			continue
		}
		seq, err := strconv.ParseFloat(items[i+1], 64)
		if err != nil {
			continue
		}
		m.Kind, m.Exclude, m.Seq = KindPipe, "", int64(seq)
		out = append(out, m)
	}
	return out, last, nil
}

// ClearHistory implements Engine.
func (e *RedisEngine) ClearHistory(ctx context.Context, dev int64, pipe string) (int64, error) {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	d := e.devKey(dev)
	n, err := scriptClearHistory.Exec(ctx, e.client, []string{d + ":h:" + pipe, d + ":hid"}, nil).AsInt64()
	if err != nil {
		return 0, e.fail("clear history", err)
	}
	return n, nil
}

// DeleteMessage implements Engine.
func (e *RedisEngine) DeleteMessage(ctx context.Context, dev int64, id string) (int64, error) {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	d := e.devKey(dev)
	n, err := scriptDeleteMessage.Exec(ctx, e.client, []string{d + ":hid"}, []string{id, d + ":h:"}).AsInt64()
	if err != nil {
		return 0, e.fail("delete message", err)
	}
	return n, nil
}

// LogLength implements Engine.
func (e *RedisEngine) LogLength(ctx context.Context, dev int64, pipe string) (int, error) {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	n, err := e.client.Do(ctx, e.client.B().Hget().Key(e.devKey(dev)+":set").Field(pipe).Build()).AsInt64()
	if rueidis.IsRedisNil(err) {
		return 0, nil
	}
	if err != nil {
		return 0, e.fail("log length", err)
	}
	return int(n), nil
}

// SetLogLength implements Engine.
func (e *RedisEngine) SetLogLength(ctx context.Context, dev int64, pipe string, length int) error {
	if length < 0 || length > MaxLogLength {
		return fmt.Errorf("%w: %d (0..%d)", ErrInvalidLength, length, MaxLogLength)
	}
	if !ValidPipeName(pipe) {
		return fmt.Errorf("%w: %q", ErrInvalidPipe, clip(pipe))
	}
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	d := e.devKey(dev)
	err := scriptSetLogLength.Exec(ctx, e.client, []string{d + ":set", d + ":h:" + pipe, d + ":hid"},
		[]string{pipe, strconv.Itoa(length)}).Error()
	if err != nil {
		return e.fail("set log length", err)
	}
	return nil
}

// LogSettings implements Engine.
func (e *RedisEngine) LogSettings(ctx context.Context, dev int64) ([]PipeSetting, error) {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	m, err := e.client.Do(ctx, e.client.B().Hgetall().Key(e.devKey(dev)+":set").Build()).AsIntMap()
	if err != nil {
		return nil, e.fail("log settings", err)
	}
	out := make([]PipeSetting, 0, len(m))
	for p, n := range m {
		if n > 0 {
			out = append(out, PipeSetting{Pipe: p, Length: int(n)})
		}
	}
	slices.SortFunc(out, func(a, b PipeSetting) int { return cmp.Compare(a.Pipe, b.Pipe) })
	return out, nil
}

func (e *RedisEngine) notBefore() int64 {
	return time.Now().Add(-e.cfg.QueueTTL).Unix()
}

// Queue implements Engine.
func (e *RedisEngine) Queue(ctx context.Context, dev, user int64) ([]QueuedMessage, error) {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	d := e.devKey(dev)
	users := []int64{user}
	if user == 0 {
		ids, err := e.client.Do(ctx, e.client.B().Smembers().Key(d+":qusers").Build()).AsStrSlice()
		if err != nil {
			return nil, e.fail("queue", err)
		}
		users = users[:0]
		for _, s := range ids {
			if id, err := strconv.ParseInt(s, 10, 64); err == nil {
				users = append(users, id)
			}
		}
		if len(users) == 0 {
			return nil, nil
		}
	}
	cmds := make(rueidis.Commands, len(users))
	for i, u := range users {
		cmds[i] = e.client.B().Lrange().Key(d + ":q:" + strconv.FormatInt(u, 10)).Start(0).Stop(-1).Build()
	}
	nb := e.notBefore()
	var out []QueuedMessage
	for i, r := range e.client.DoMulti(ctx, cmds...) {
		entries, err := r.AsStrSlice()
		if err != nil {
			return nil, e.fail("queue", err)
		}
		for _, s := range entries {
			q, err := decodeQueued(s, users[i])
			if err != nil || q.Time < nb {
				continue
			}
			out = append(out, q)
		}
	}
	if user == 0 {
		slices.SortFunc(out, func(a, b QueuedMessage) int {
			switch {
			case a.Time != b.Time:
				return cmp.Compare(a.Time, b.Time)
			case a.UserID != b.UserID:
				return cmp.Compare(a.UserID, b.UserID)
			}
			return cmp.Compare(a.Index, b.Index)
		})
	}
	return out, nil
}

// ClearQueue implements Engine.
func (e *RedisEngine) ClearQueue(ctx context.Context, dev, user int64) (int64, error) {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	d := e.devKey(dev)
	n, err := scriptClearQueues.Exec(ctx, e.client, []string{d + ":qusers"},
		[]string{d + ":q:", strconv.FormatInt(user, 10)}).AsInt64()
	if err != nil {
		return 0, e.fail("clear queue", err)
	}
	return n, nil
}

// UsersTime implements Engine.
func (e *RedisEngine) UsersTime(ctx context.Context, dev int64, ids []int64) ([]UserTime, error) {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	key := e.devKey(dev) + ":ut"
	if ids == nil {
		m, err := e.client.Do(ctx, e.client.B().Hgetall().Key(key).Build()).AsIntMap()
		if err != nil {
			return nil, e.fail("users_time", err)
		}
		out := make([]UserTime, 0, len(m))
		for s, t := range m {
			if id, err := strconv.ParseInt(s, 10, 64); err == nil {
				out = append(out, UserTime{UserID: id, Time: t})
			}
		}
		slices.SortFunc(out, func(a, b UserTime) int { return cmp.Compare(a.UserID, b.UserID) })
		return out, nil
	}
	out := make([]UserTime, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	fields := make([]string, len(ids))
	for i, id := range ids {
		fields[i] = strconv.FormatInt(id, 10)
	}
	vals, err := e.client.Do(ctx, e.client.B().Hmget().Key(key).Field(fields...).Build()).ToArray()
	if err != nil {
		return nil, e.fail("users_time", err)
	}
	for i, id := range ids {
		out[i] = UserTime{UserID: id, Time: -1}
		if i < len(vals) {
			if t, err := vals[i].AsInt64(); err == nil {
				out[i].Time = t
			}
		}
	}
	return out, nil
}
