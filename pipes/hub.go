package pipes

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config holds the hub's limits. A zero field takes the default its comment
// names.
type Config struct {
	// Server is the server name sent in serverInfo frames
	// (default "cometql").
	Server string
	// MaxMessageBytes caps a message text (default 64 KiB).
	MaxMessageBytes int
	// MaxSubscriptions caps the pipes of one connection (default 256).
	MaxSubscriptions int
	// MaxConnectionsPerUser caps the authorized connections of one user,
	// cluster-wide (default 16).
	MaxConnectionsPerUser int
	// WebPublishRate is the web_pipe2 rate per connection in messages per
	// second (default 20), with WebPublishBurst (default 40).
	WebPublishRate  float64
	WebPublishBurst int
}

func (c *Config) setDefaults() {
	if c.Server == "" {
		c.Server = "cometql"
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMsg
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = 256
	}
	if c.MaxConnectionsPerUser <= 0 {
		c.MaxConnectionsPerUser = 16
	}
	if c.WebPublishRate <= 0 {
		c.WebPublishRate = 20
	}
	if c.WebPublishBurst <= 0 {
		c.WebPublishBurst = 40
	}
}

// UserDirectory gives the hub read access to users_data (implemented by the
// auth service).
type UserDirectory interface {
	// UserData returns the user's data, "" when there is none.
	UserData(ctx context.Context, dev, user int64) (string, error)
}

const shardCount = 64

type pipeKey struct {
	dev  int64
	name string
}

type userKey struct {
	dev, user int64
}

// pipeSubs is one pipe's local subscribers: a dense slice for fan-out and an
// index for O(1) removal.
type pipeSubs struct {
	list  []*Session
	index map[*Session]int
}

type pipeShard struct {
	mu    sync.RWMutex
	pipes map[pipeKey]*pipeSubs
}

type userShard struct {
	mu    sync.RWMutex
	users map[userKey][]*Session
}

type sessionShard struct {
	mu       sync.Mutex
	sessions map[uint64]*Session
}

// Stats are the hub's counters, as SHOW STATUS and /metrics show them.
type Stats struct {
	Sessions      int64  // open sessions on this node
	Subscriptions int64  // session-pipe subscriptions on this node
	Pipes         int64  // pipes with local subscribers
	Published     uint64 // messages published (all pipes)
	Delivered     uint64 // frames delivered to sessions (pipe messages)
	Private       uint64 // private messages delivered to sessions
	Queued        uint64 // private messages queued for offline users
	WebPublished  uint64 // browser publishes
	RateLimited   uint64 // commands refused by a rate limit
	// Errors counts the sys error frames sent to browsers, by code
	// ("too_many_subscriptions", "rate_limited", "message_too_large", ...).
	Errors map[string]uint64
}

// Hub routes messages between front ends and sessions. It is safe for
// concurrent use.
type Hub struct {
	cfg   Config
	eng   Engine
	users UserDirectory
	log   *slog.Logger
	node  string
	seed  maphash.Seed

	pipes     [shardCount]pipeShard
	userMap   [shardCount]userShard
	sessions  [shardCount]sessionShard
	devOnline sync.Map // int64 -> *atomic.Int64

	nextID atomic.Uint64
	closed atomic.Bool

	nSessions, nSubs, nPipes atomic.Int64
	published, delivered     atomic.Uint64
	private, queued          atomic.Uint64
	webPublished, limited    atomic.Uint64

	errMu  sync.Mutex
	errors map[string]uint64 // sys error frames by code
}

var _ Handler = (*Hub)(nil)

// New builds a hub over an engine. users may be nil (user_data then answers
// empty data). Call Start before use.
func New(cfg Config, eng Engine, users UserDirectory, log *slog.Logger) *Hub {
	cfg.setDefaults()
	if log == nil {
		log = slog.Default()
	}
	h := &Hub{cfg: cfg, eng: eng, users: users, log: log, node: eng.NodeName(), seed: maphash.MakeSeed()}
	for i := range h.pipes {
		h.pipes[i].pipes = make(map[pipeKey]*pipeSubs)
		h.userMap[i].users = make(map[userKey][]*Session)
		h.sessions[i].sessions = make(map[uint64]*Session)
	}
	return h
}

// Start starts the engine with the hub as its handler.
func (h *Hub) Start() error {
	if err := h.eng.Run(h); err != nil {
		return fmt.Errorf("pipes: start engine: %w", err)
	}
	return nil
}

// Engine is the engine behind the hub (for reads such as history and
// settings, which front ends serve directly).
func (h *Hub) Engine() Engine { return h.eng }

// Config returns the hub's effective configuration.
func (h *Hub) Config() Config { return h.cfg }

// CloseSessions stops accepting sessions and closes the transport of every
// open session (a TCP close for WebSockets). It does not stop the engine.
func (h *Hub) CloseSessions() {
	h.closed.Store(true)
	for i := range h.sessions {
		sh := &h.sessions[i]
		sh.mu.Lock()
		list := make([]*Session, 0, len(sh.sessions))
		for _, s := range sh.sessions {
			list = append(list, s)
		}
		sh.mu.Unlock()
		for _, s := range list {
			s.sink.Close()
		}
	}
}

// SessionCount is the number of open sessions on this node.
func (h *Hub) SessionCount() int { return int(h.nSessions.Load()) }

// LocalOnline implements Handler.
func (h *Hub) LocalOnline() map[int64]int {
	out := map[int64]int{}
	h.devOnline.Range(func(k, v any) bool {
		if n := v.(*atomic.Int64).Load(); n > 0 {
			out[k.(int64)] = int(n)
		}
		return true
	})
	return out
}

// Online is the number of open browser sessions of a tenant on this node.
func (h *Hub) Online(dev int64) int {
	if v, ok := h.devOnline.Load(dev); ok {
		return int(v.(*atomic.Int64).Load())
	}
	return 0
}

func (h *Hub) addOnline(dev int64, d int64) {
	v, ok := h.devOnline.Load(dev)
	if !ok {
		v, _ = h.devOnline.LoadOrStore(dev, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(d)
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() Stats {
	return Stats{
		Sessions:      h.nSessions.Load(),
		Subscriptions: h.nSubs.Load(),
		Pipes:         h.nPipes.Load(),
		Published:     h.published.Load(),
		Delivered:     h.delivered.Load(),
		Private:       h.private.Load(),
		Queued:        h.queued.Load(),
		WebPublished:  h.webPublished.Load(),
		RateLimited:   h.limited.Load(),
		Errors:        h.errorCounts(),
	}
}

func (h *Hub) countError(code string) {
	h.errMu.Lock()
	if h.errors == nil {
		h.errors = map[string]uint64{}
	}
	h.errors[code]++
	h.errMu.Unlock()
}

func (h *Hub) errorCounts() map[string]uint64 {
	h.errMu.Lock()
	defer h.errMu.Unlock()
	out := make(map[string]uint64, len(h.errors))
	for k, v := range h.errors {
		out[k] = v
	}
	return out
}

func (h *Hub) pipeShard(k pipeKey) *pipeShard {
	var mh maphash.Hash
	mh.SetSeed(h.seed)
	mh.WriteString(k.name)
	return &h.pipes[(mh.Sum64()^uint64(k.dev))%shardCount]
}

func (h *Hub) userShard(k userKey) *userShard {
	return &h.userMap[uint64(k.user*31+k.dev)%shardCount]
}

func (h *Hub) now() int64 { return time.Now().Unix() }

// Publish publishes a message from CometQL (user_id 0) to a pipe and returns
// the number of connections it reached.
func (h *Hub) Publish(ctx context.Context, dev int64, pipe, event, data string) (int, error) {
	if err := ValidatePublish(pipe, event, data, h.cfg.MaxMessageBytes); err != nil {
		return 0, err
	}
	m := &Message{Kind: KindPipe, DevID: dev, Pipe: pipe, Event: event, Data: data}
	return h.publish(ctx, m)
}

func (h *Hub) publish(ctx context.Context, m *Message) (int, error) {
	n, err := h.eng.Publish(ctx, m)
	if err != nil {
		return n, fmt.Errorf("publish to %q: %w", m.Pipe, err)
	}
	h.published.Add(1)
	return n, nil
}

// SendPrivate sends a private message to every live connection of a user,
// or queues it while the user has none. It returns the number of
// connections reached (0 when queued).
func (h *Hub) SendPrivate(ctx context.Context, dev, user int64, event, data string) (int, error) {
	if !ValidUserID(user) {
		return 0, fmt.Errorf("%w: %d", ErrInvalidUser, user)
	}
	if !ValidEventName(event) {
		return 0, fmt.Errorf("%w: %q", ErrInvalidEvent, clip(event))
	}
	if err := ValidateMessage(data, h.cfg.MaxMessageBytes); err != nil {
		return 0, err
	}
	n, queued, err := h.eng.SendPrivate(ctx, dev, user, event, data)
	if err != nil {
		return n, fmt.Errorf("private message to user %d: %w", user, err)
	}
	if queued {
		h.queued.Add(1)
	}
	return n, nil
}

// KickUser closes every live connection of a user on every node (after its
// key was removed from users_auth).
func (h *Hub) KickUser(ctx context.Context, dev, user int64) error {
	return h.eng.Kick(ctx, dev, user, "")
}

// KickToken closes the live connections authenticated by a token (after it
// was revoked).
func (h *Hub) KickToken(ctx context.Context, dev int64, token string) error {
	return h.eng.Kick(ctx, dev, 0, token)
}

// Deliver implements Handler: it queues m's frame, encoded once, to every
// local subscriber of its pipe except m.Exclude.
func (h *Hub) Deliver(m *Message) int {
	k := pipeKey{m.DevID, m.Pipe}
	sh := h.pipeShard(k)
	sh.mu.RLock()
	ps := sh.pipes[k]
	if ps == nil || len(ps.list) == 0 {
		sh.mu.RUnlock()
		return 0
	}
	frame := messageFrame(m)
	n := 0
	for _, s := range ps.list {
		if m.Exclude != "" && s.key == m.Exclude {
			continue
		}
		s.sink.Send(frame)
		n++
	}
	sh.mu.RUnlock()
	h.delivered.Add(uint64(n))
	return n
}

// DeliverPrivate implements Handler.
func (h *Hub) DeliverPrivate(dev, user int64, id, event, data string, t int64) int {
	k := userKey{dev, user}
	sh := h.userShard(k)
	sh.mu.RLock()
	list := sh.users[k]
	if len(list) == 0 {
		sh.mu.RUnlock()
		return 0
	}
	frame := privateFrame(id, event, data, t, false)
	for _, s := range list {
		s.sendPrivate(frame)
	}
	n := len(list)
	sh.mu.RUnlock()
	h.private.Add(uint64(n))
	return n
}

// Kick implements Handler.
func (h *Hub) Kick(dev, user int64, token string) {
	var victims []*Session
	if token == "" {
		k := userKey{dev, user}
		sh := h.userShard(k)
		sh.mu.RLock()
		victims = append(victims, sh.users[k]...)
		sh.mu.RUnlock()
	} else {
		for i := range h.userMap {
			sh := &h.userMap[i]
			sh.mu.RLock()
			for k, list := range sh.users {
				if k.dev != dev {
					continue
				}
				for _, s := range list {
					if s.info.Token == token {
						victims = append(victims, s)
					}
				}
			}
			sh.mu.RUnlock()
		}
	}
	for _, s := range victims {
		s.sink.Close()
	}
}

// LocalMembers implements Handler.
func (h *Hub) LocalMembers(dev int64, pipe string) []Member {
	k := pipeKey{dev, pipe}
	sh := h.pipeShard(k)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	ps := sh.pipes[k]
	if ps == nil {
		return nil
	}
	out := make([]Member, 0, len(ps.list))
	for _, s := range ps.list {
		out = append(out, s.member())
	}
	return out
}

// LocalCount implements Handler.
func (h *Hub) LocalCount(dev int64, pipe string) int {
	k := pipeKey{dev, pipe}
	sh := h.pipeShard(k)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if ps := sh.pipes[k]; ps != nil {
		return len(ps.list)
	}
	return 0
}

// LocalPipes implements Handler; the list is sorted by name.
func (h *Hub) LocalPipes(dev int64) []PipeCount {
	var out []PipeCount
	for i := range h.pipes {
		sh := &h.pipes[i]
		sh.mu.RLock()
		for k, ps := range sh.pipes {
			if k.dev == dev && len(ps.list) > 0 {
				out = append(out, PipeCount{Pipe: k.name, Users: len(ps.list)})
			}
		}
		sh.mu.RUnlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pipe < out[j].Pipe })
	return out
}

// addSub registers s as a subscriber of a pipe; first reports the pipe's
// first local subscriber.
func (h *Hub) addSub(k pipeKey, s *Session) (first bool) {
	sh := h.pipeShard(k)
	sh.mu.Lock()
	ps := sh.pipes[k]
	if ps == nil {
		ps = &pipeSubs{index: make(map[*Session]int, 1)}
		sh.pipes[k] = ps
		first = true
		h.nPipes.Add(1)
	}
	if _, ok := ps.index[s]; !ok {
		ps.index[s] = len(ps.list)
		ps.list = append(ps.list, s)
		h.nSubs.Add(1)
	}
	sh.mu.Unlock()
	return first
}

// removeSub unregisters s; last reports that the pipe has no local
// subscriber left.
func (h *Hub) removeSub(k pipeKey, s *Session) (last bool) {
	sh := h.pipeShard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ps := sh.pipes[k]
	if ps == nil {
		return false
	}
	i, ok := ps.index[s]
	if !ok {
		return false
	}
	end := len(ps.list) - 1
	if i != end {
		moved := ps.list[end]
		ps.list[i] = moved
		ps.index[moved] = i
	}
	ps.list[end] = nil
	ps.list = ps.list[:end]
	delete(ps.index, s)
	h.nSubs.Add(-1)
	if len(ps.list) == 0 {
		delete(sh.pipes, k)
		h.nPipes.Add(-1)
		return true
	}
	if cap(ps.list) > 64 && len(ps.list) < cap(ps.list)/4 {
		ps.list = append([]*Session(nil), ps.list...)
	}
	return false
}

func (h *Hub) addUserSession(k userKey, s *Session) {
	sh := h.userShard(k)
	sh.mu.Lock()
	sh.users[k] = append(sh.users[k], s)
	sh.mu.Unlock()
}

func (h *Hub) removeUserSession(k userKey, s *Session) {
	sh := h.userShard(k)
	sh.mu.Lock()
	list := sh.users[k]
	for i, x := range list {
		if x == s {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			break
		}
	}
	if len(list) == 0 {
		delete(sh.users, k)
	} else {
		sh.users[k] = list
	}
	sh.mu.Unlock()
}

func (h *Hub) registerSession(s *Session) {
	sh := &h.sessions[s.id%shardCount]
	sh.mu.Lock()
	sh.sessions[s.id] = s
	sh.mu.Unlock()
	h.nSessions.Add(1)
	h.addOnline(s.info.DevID, 1)
}

func (h *Hub) unregisterSession(s *Session) {
	sh := &h.sessions[s.id%shardCount]
	sh.mu.Lock()
	delete(sh.sessions, s.id)
	sh.mu.Unlock()
	h.nSessions.Add(-1)
	h.addOnline(s.info.DevID, -1)
}

// presence publishes online/offline on user_status_<id>.
func (h *Hub) presence(ctx context.Context, dev, user int64, online bool) {
	ev := "offline"
	if online {
		ev = "online"
	}
	m := &Message{Kind: KindPresence, DevID: dev, Pipe: "user_status_" + strconv.FormatInt(user, 10), Event: ev, Data: ev}
	if _, err := h.eng.Publish(ctx, m); err != nil {
		h.log.Warn("presence event not published", "dev", dev, "user", user, "event", ev, "err", err)
	}
}
