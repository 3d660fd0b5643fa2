package pipes

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryConfig configures the single-node engine. A zero field takes the
// default its comment names.
type MemoryConfig struct {
	// Node is the node name (default "local").
	Node string
	// QueueMax caps a user's offline queue; the oldest messages are dropped
	// first (default 1000).
	QueueMax int
	// QueueTTL expires queued messages (default 24h).
	QueueTTL time.Duration
}

// MemoryEngine is the single-node Engine: live state in this process,
// durable data in a Store (SQLite by default).
type MemoryEngine struct {
	cfg   MemoryConfig
	store Store
	log   *slog.Logger
	h     Handler

	setMu    sync.RWMutex
	settings map[pipeKey]int

	seqMu sync.Mutex
	seqs  map[pipeKey]*pipeSeq

	users [shardCount]struct {
		mu sync.Mutex
		m  map[userKey]int // live authorized connections per user
	}

	dropped atomic.Uint64
	closed  atomic.Bool
}

var _ Engine = (*MemoryEngine)(nil)

// pipeSeq orders a logging pipe: sequence numbers are reserved in publish
// order and messages are delivered strictly in sequence order once stored.
type pipeSeq struct {
	mu        sync.Mutex
	cond      sync.Cond
	loaded    bool
	last      int64 // highest reserved
	delivered int64 // highest delivered (or abandoned)
}

// NewMemoryEngine builds a single-node engine over a store.
func NewMemoryEngine(cfg MemoryConfig, st Store, log *slog.Logger) *MemoryEngine {
	if cfg.Node == "" {
		cfg.Node = "local"
	}
	if cfg.QueueMax <= 0 {
		cfg.QueueMax = 1000
	}
	if cfg.QueueTTL <= 0 {
		cfg.QueueTTL = 24 * time.Hour
	}
	if log == nil {
		log = slog.Default()
	}
	e := &MemoryEngine{cfg: cfg, store: st, log: log, settings: map[pipeKey]int{}, seqs: map[pipeKey]*pipeSeq{}}
	for i := range e.users {
		e.users[i].m = map[userKey]int{}
	}
	return e
}

// Run implements Engine: it loads the log settings and marks users that were
// online when the process last stopped as offline since now.
func (e *MemoryEngine) Run(h Handler) error {
	e.h = h
	ctx := context.Background()
	all, err := e.store.LogSettings(ctx)
	if err != nil {
		return fmt.Errorf("load pipe settings: %w", err)
	}
	e.setMu.Lock()
	for dev, list := range all {
		for _, s := range list {
			e.settings[pipeKey{dev, s.Pipe}] = s.Length
		}
	}
	e.setMu.Unlock()
	if err := e.store.ResetOnline(ctx, time.Now().Unix()); err != nil {
		return fmt.Errorf("reset users_time: %w", err)
	}
	return nil
}

// Close implements Engine. The store is closed by its owner.
func (e *MemoryEngine) Close(context.Context) error {
	e.closed.Store(true)
	return nil
}

// Ready implements Engine.
func (e *MemoryEngine) Ready() error {
	if e.closed.Load() {
		return ErrClosed
	}
	return nil
}

// NodeName implements Engine.
func (e *MemoryEngine) NodeName() string { return e.cfg.Node }

// DroppedFromQueues counts private messages dropped from full offline queues.
func (e *MemoryEngine) DroppedFromQueues() uint64 { return e.dropped.Load() }

func (e *MemoryEngine) logLength(k pipeKey) int {
	e.setMu.RLock()
	n := e.settings[k]
	e.setMu.RUnlock()
	return n
}

// Publish implements Engine.
func (e *MemoryEngine) Publish(ctx context.Context, m *Message) (int, error) {
	if m.Time == 0 {
		m.Time = time.Now().Unix()
	}
	if m.ID == "" {
		m.ID = NewMessageID()
	}
	if m.Kind == KindPipe {
		k := pipeKey{m.DevID, m.Pipe}
		if keep := e.logLength(k); keep > 0 {
			return e.publishLogged(ctx, k, m, keep)
		}
	}
	return e.h.Deliver(m), nil
}

func (e *MemoryEngine) pipeSeq(k pipeKey) *pipeSeq {
	e.seqMu.Lock()
	defer e.seqMu.Unlock()
	ps := e.seqs[k]
	if ps == nil {
		ps = &pipeSeq{}
		ps.cond.L = &ps.mu
		e.seqs[k] = ps
	}
	return ps
}

// publishLogged stores m in the pipe's history, then delivers it in sequence
// order. A reserved sequence number is always completed (delivered or
// abandoned) so later messages never wait forever.
func (e *MemoryEngine) publishLogged(ctx context.Context, k pipeKey, m *Message, keep int) (int, error) {
	ps := e.pipeSeq(k)
	ps.mu.Lock()
	if !ps.loaded {
		last, err := e.store.LastSeq(ctx, k.dev, k.name)
		if err != nil {
			ps.mu.Unlock()
			return 0, fmt.Errorf("last sequence: %w", err)
		}
		ps.last, ps.delivered, ps.loaded = last, last, true
	}
	ps.last++
	seq := ps.last
	ps.mu.Unlock()

	m.Seq = seq
	// Once a sequence number is reserved the write is not abandoned half
	// way because a caller went away.
	err := e.store.AppendHistory(context.WithoutCancel(ctx), m, keep)

	ps.mu.Lock()
	for ps.delivered != seq-1 {
		ps.cond.Wait()
	}
	n := 0
	if err == nil {
		n = e.h.Deliver(m)
	}
	ps.delivered = seq
	ps.cond.Broadcast()
	ps.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("store history: %w", err)
	}
	return n, nil
}

func (e *MemoryEngine) userShard(k userKey) *struct {
	mu sync.Mutex
	m  map[userKey]int
} {
	return &e.users[uint64(k.user*31+k.dev)%shardCount]
}

func (e *MemoryEngine) notBefore() int64 {
	return time.Now().Add(-e.cfg.QueueTTL).Unix()
}

// SendPrivate implements Engine. The user's shard lock orders it against
// UserConnect, so a message is either delivered live or queued and then
// taken by the next connection, never lost in between.
func (e *MemoryEngine) SendPrivate(ctx context.Context, dev, user int64, event, data string) (int, bool, error) {
	k := userKey{dev, user}
	sh := e.userShard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := time.Now().Unix()
	if sh.m[k] > 0 {
		return e.h.DeliverPrivate(dev, user, NewMessageID(), event, data, now), false, nil
	}
	q := &QueuedMessage{UserID: user, Event: event, Data: data, Time: now}
	dropped, err := e.store.Enqueue(ctx, dev, q, e.cfg.QueueMax)
	if err != nil {
		return 0, false, fmt.Errorf("queue: %w", err)
	}
	if dropped > 0 {
		e.dropped.Add(uint64(dropped))
	}
	return 0, true, nil
}

// Watch implements Engine (nothing to do on one node).
func (e *MemoryEngine) Watch(int64, string) {}

// Unwatch implements Engine (nothing to do on one node).
func (e *MemoryEngine) Unwatch(int64, string) {}

// Join implements Engine: membership is the hub's local state.
func (e *MemoryEngine) Join(context.Context, int64, string, Member) error { return nil }

// Leave implements Engine.
func (e *MemoryEngine) Leave(context.Context, int64, string, Member) error { return nil }

// Members implements Engine.
func (e *MemoryEngine) Members(_ context.Context, dev int64, pipe string) ([]Member, error) {
	return e.h.LocalMembers(dev, pipe), nil
}

// MemberCount implements Engine.
func (e *MemoryEngine) MemberCount(_ context.Context, dev int64, pipe string) (int, error) {
	return e.h.LocalCount(dev, pipe), nil
}

// ActivePipes implements Engine.
func (e *MemoryEngine) ActivePipes(_ context.Context, dev int64) ([]PipeCount, error) {
	return e.h.LocalPipes(dev), nil
}

// Online implements Engine: on one node, the hub's count.
func (e *MemoryEngine) Online(_ context.Context, dev int64) (int, error) {
	return e.h.LocalOnline()[dev], nil
}

// UserConnect implements Engine.
func (e *MemoryEngine) UserConnect(ctx context.Context, dev, user int64, _ SessionKey, max int) (bool, bool, []QueuedMessage, error) {
	k := userKey{dev, user}
	sh := e.userShard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n := sh.m[k]
	if max > 0 && n >= max {
		return false, false, nil, nil
	}
	sh.m[k] = n + 1
	if n > 0 {
		return true, false, nil, nil
	}
	if err := e.store.SetUserTime(ctx, dev, user, 0); err != nil {
		e.log.Warn("users_time not recorded", "dev", dev, "user", user, "err", err)
	}
	queue, err := e.store.Queue(ctx, dev, user, e.notBefore())
	if err != nil {
		// The messages stay queued for the next connection.
		e.log.Warn("offline queue not read", "dev", dev, "user", user, "err", err)
		queue = nil
	}
	return true, true, queue, nil
}

// AckQueue implements Engine.
func (e *MemoryEngine) AckQueue(ctx context.Context, dev, user, upTo int64) error {
	_, err := e.store.AckQueue(ctx, dev, user, upTo)
	return err
}

// UserDisconnect implements Engine.
func (e *MemoryEngine) UserDisconnect(ctx context.Context, dev, user int64, _ SessionKey) (bool, error) {
	k := userKey{dev, user}
	sh := e.userShard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n := sh.m[k]
	if n <= 0 {
		return false, nil
	}
	if n > 1 {
		sh.m[k] = n - 1
		return false, nil
	}
	delete(sh.m, k)
	if err := e.store.SetUserTime(ctx, dev, user, time.Now().Unix()); err != nil {
		return true, fmt.Errorf("users_time: %w", err)
	}
	return true, nil
}

// UsersTime implements Engine.
func (e *MemoryEngine) UsersTime(ctx context.Context, dev int64, ids []int64) ([]UserTime, error) {
	times, err := e.store.UserTimes(ctx, dev, ids)
	if err != nil {
		return nil, err
	}
	if ids == nil {
		out := make([]UserTime, 0, len(times))
		for id, t := range times {
			out = append(out, UserTime{UserID: id, Time: t})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].UserID < out[j].UserID })
		return out, nil
	}
	out := make([]UserTime, len(ids))
	for i, id := range ids {
		t, ok := times[id]
		if !ok {
			t = -1
		}
		out[i] = UserTime{UserID: id, Time: t}
	}
	return out, nil
}

// Kick implements Engine.
func (e *MemoryEngine) Kick(_ context.Context, dev, user int64, token string) error {
	e.h.Kick(dev, user, token)
	return nil
}

// History implements Engine.
func (e *MemoryEngine) History(ctx context.Context, dev int64, pipe string, since int64) ([]Message, error) {
	return e.store.History(ctx, dev, pipe, since)
}

// ClearHistory implements Engine.
func (e *MemoryEngine) ClearHistory(ctx context.Context, dev int64, pipe string) (int64, error) {
	return e.store.ClearHistory(ctx, dev, pipe)
}

// DeleteMessage implements Engine.
func (e *MemoryEngine) DeleteMessage(ctx context.Context, dev int64, id string) (int64, error) {
	return e.store.DeleteMessage(ctx, dev, id)
}

// LogLength implements Engine.
func (e *MemoryEngine) LogLength(_ context.Context, dev int64, pipe string) (int, error) {
	return e.logLength(pipeKey{dev, pipe}), nil
}

// SetLogLength implements Engine.
func (e *MemoryEngine) SetLogLength(ctx context.Context, dev int64, pipe string, length int) error {
	if length < 0 || length > MaxLogLength {
		return fmt.Errorf("%w: %d (0..%d)", ErrInvalidLength, length, MaxLogLength)
	}
	if !ValidPipeName(pipe) {
		return fmt.Errorf("%w: %q", ErrInvalidPipe, clip(pipe))
	}
	k := pipeKey{dev, pipe}
	// Hold the pipe's sequencer so no logged publish is half way while the
	// setting changes.
	ps := e.pipeSeq(k)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if err := e.store.SetLogLength(ctx, dev, pipe, length); err != nil {
		return err
	}
	e.setMu.Lock()
	if length == 0 {
		delete(e.settings, k)
	} else {
		e.settings[k] = length
	}
	e.setMu.Unlock()
	return nil
}

// LogSettings implements Engine.
func (e *MemoryEngine) LogSettings(_ context.Context, dev int64) ([]PipeSetting, error) {
	e.setMu.RLock()
	var out []PipeSetting
	for k, n := range e.settings {
		if k.dev == dev {
			out = append(out, PipeSetting{Pipe: k.name, Length: n})
		}
	}
	e.setMu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Pipe < out[j].Pipe })
	return out, nil
}

// Queue implements Engine.
func (e *MemoryEngine) Queue(ctx context.Context, dev, user int64) ([]QueuedMessage, error) {
	return e.store.Queue(ctx, dev, user, e.notBefore())
}

// ClearQueue implements Engine.
func (e *MemoryEngine) ClearQueue(ctx context.Context, dev, user int64) (int64, error) {
	return e.store.ClearQueue(ctx, dev, user)
}

// Message ids are 64-bit values written as 11 base64url characters, fixed
// width so every frame of a message kind has the same overhead: 42 bits of
// milliseconds (until the year 2109), 10 bits of a per-process random node
// tag and a 12-bit counter. The time and counter part is one monotonic
// value, so ids from one process never repeat, even across restarts (the
// clock moves on) and bursts of more than 4096 a millisecond (the value
// runs ahead of the clock).
var (
	idClock atomic.Uint64 // ms<<12 | counter, of the last id
	idNode  = func() uint64 {
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic(errors.New("pipes: no randomness for message ids"))
		}
		return uint64(binary.BigEndian.Uint16(b[:])) & 0x3ff
	}()
)

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// NewMessageID returns a new message id, unique across processes and
// restarts.
func NewMessageID() string {
	var v uint64
	for {
		old := idClock.Load()
		v = uint64(time.Now().UnixMilli()) << 12
		if v <= old {
			v = old + 1
		}
		if idClock.CompareAndSwap(old, v) {
			break
		}
	}
	id := (v>>12)<<22 | idNode<<12 | v&0xfff
	var b [11]byte
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = idAlphabet[id&63]
		id >>= 6
	}
	return string(b[:])
}
