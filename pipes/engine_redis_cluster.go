package pipes

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// The Redis engine's cluster state: membership, users' live connections,
// private messages, kicks, and the node bookkeeping that keeps them right
// when nodes crash or lose Redis.
//
// Every entry a node adds (a member of a pipe, a live connection of a user)
// is also recorded in the node's index set, as "m|<dev>|<pipe>|<session>" or
// "u|<dev>|<user>|<session>", so the entries of a dead node can be found and
// removed, and a node can re-register what it holds.

func memberEntry(dev int64, pipe string, s SessionKey) string {
	return "m|" + strconv.FormatInt(dev, 10) + "|" + pipe + "|" + string(s)
}

func userEntry(dev, user int64, s SessionKey) string {
	return "u|" + strconv.FormatInt(dev, 10) + "|" + strconv.FormatInt(user, 10) + "|" + string(s)
}

// unavailable is the error of a call made while Redis is known to be out of
// reach.
func (e *RedisEngine) unavailable(op string) error {
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, e.lastError())
}

// Join implements Engine.
func (e *RedisEngine) Join(ctx context.Context, dev int64, pipe string, m Member) error {
	if e.closed.Load() {
		return ErrClosed
	}
	e.resyncMu.RLock()
	defer e.resyncMu.RUnlock()
	if e.down() {
		e.dirty.Store(true)
		return e.unavailable("join")
	}
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	d := e.devKey(dev)
	err := scriptJoin.Exec(ctx, e.client, []string{d + ":m:" + pipe, d + ":active", e.idxKey},
		[]string{string(m.Session), encodeMember(m), pipe, memberEntry(dev, pipe, m.Session)}).Error()
	if err != nil {
		e.dirty.Store(true)
		return e.fail("join", err)
	}
	return nil
}

// Leave implements Engine.
func (e *RedisEngine) Leave(ctx context.Context, dev int64, pipe string, m Member) error {
	if e.closed.Load() {
		return nil // Close removed every entry of the node
	}
	e.resyncMu.RLock()
	defer e.resyncMu.RUnlock()
	if e.down() {
		e.dirty.Store(true)
		return e.unavailable("leave")
	}
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	d := e.devKey(dev)
	err := scriptLeave.Exec(ctx, e.client, []string{d + ":m:" + pipe, d + ":active", e.idxKey},
		[]string{string(m.Session), pipe, memberEntry(dev, pipe, m.Session)}).Error()
	if err != nil {
		e.dirty.Store(true)
		return e.fail("leave", err)
	}
	return nil
}

// Members implements Engine; the list is sorted by session key.
func (e *RedisEngine) Members(ctx context.Context, dev int64, pipe string) ([]Member, error) {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	all, err := e.client.Do(ctx, e.client.B().Hgetall().Key(e.devKey(dev)+":m:"+pipe).Build()).AsStrMap()
	if err != nil {
		return nil, e.fail("members", err)
	}
	out := make([]Member, 0, len(all))
	for _, v := range all {
		m, err := decodeMember(v)
		if err != nil {
			continue
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(string(a.Session), string(b.Session)) })
	return out, nil
}

// MemberCount implements Engine.
func (e *RedisEngine) MemberCount(ctx context.Context, dev int64, pipe string) (int, error) {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	n, err := e.client.Do(ctx, e.client.B().Hlen().Key(e.devKey(dev)+":m:"+pipe).Build()).AsInt64()
	if err != nil {
		return 0, e.fail("member count", err)
	}
	return int(n), nil
}

// ActivePipes implements Engine; the list is sorted by name.
func (e *RedisEngine) ActivePipes(ctx context.Context, dev int64) ([]PipeCount, error) {
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	all, err := e.client.Do(ctx, e.client.B().Hgetall().Key(e.devKey(dev)+":active").Build()).AsIntMap()
	if err != nil {
		return nil, e.fail("active pipes", err)
	}
	out := make([]PipeCount, 0, len(all))
	for p, n := range all {
		if n > 0 {
			out = append(out, PipeCount{Pipe: p, Users: int(n)})
		}
	}
	slices.SortFunc(out, func(a, b PipeCount) int { return cmp.Compare(a.Pipe, b.Pipe) })
	return out, nil
}

// SendPrivate implements Engine. One script decides, against the user's
// cluster-wide connections, between publishing to the nodes that host them
// and queueing; UserConnect changes the connections in one script too, so a
// message is never lost between the two.
func (e *RedisEngine) SendPrivate(ctx context.Context, dev, user int64, event, data string) (int, bool, error) {
	if e.closed.Load() {
		return 0, false, ErrClosed
	}
	if e.down() {
		return 0, false, e.unavailable("private message")
	}
	now := time.Now().Unix()
	p := &privateMessage{dev: dev, user: user, t: now, id: NewMessageID(), event: event, data: data}
	d := e.devKey(dev)
	u := strconv.FormatInt(user, 10)
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	res, err := scriptSendPrivate.Exec(ctx, e.client,
		[]string{d + ":c:" + u, d + ":q:" + u, d + ":qidx", d + ":qusers"},
		[]string{u, encodePrivate(p), e.nodeChanPrefix, strconv.FormatInt(now, 10), event, data,
			strconv.Itoa(e.cfg.QueueMax), strconv.FormatInt(e.notBefore(), 10),
			strconv.FormatInt(e.cfg.QueueTTL.Milliseconds(), 10)},
	).AsIntSlice()
	if err != nil {
		return 0, false, e.fail("private message", err)
	}
	if len(res) != 2 {
		return 0, false, e.fail("private message", errBadPayload)
	}
	if res[0] == 1 {
		return int(res[1]), false, nil
	}
	if res[1] > 0 {
		e.dropped.Add(uint64(res[1]))
	}
	return 0, true, nil
}

// UserConnect implements Engine: the connection is counted cluster-wide
// (and refused at max) and, for the first one, users_time becomes 0 and the
// offline queue is read, in one script.
func (e *RedisEngine) UserConnect(ctx context.Context, dev, user int64, key SessionKey, max int) (bool, bool, []QueuedMessage, error) {
	if e.closed.Load() {
		return false, false, nil, ErrClosed
	}
	e.resyncMu.RLock()
	defer e.resyncMu.RUnlock()
	if e.down() {
		return false, false, nil, e.unavailable("user connect")
	}
	d := e.devKey(dev)
	u := strconv.FormatInt(user, 10)
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	arr, err := scriptUserConnect.Exec(ctx, e.client,
		[]string{d + ":c:" + u, d + ":q:" + u, d + ":ut", d + ":qusers", e.idxKey},
		[]string{string(key), e.cfg.Node, strconv.Itoa(max), u, userEntry(dev, user, key)},
	).ToArray()
	if err != nil {
		// The script may have run: a resync removes what this node does
		// not hold.
		e.dirty.Store(true)
		return false, false, nil, e.fail("user connect", err)
	}
	if len(arr) != 3 {
		return false, false, nil, e.fail("user connect", errBadPayload)
	}
	ok, _ := arr[0].AsInt64()
	first, _ := arr[1].AsInt64()
	if ok != 1 {
		return false, false, nil, nil
	}
	e.usersMu.Lock()
	k := userKey{dev, user}
	set := e.users[k]
	if set == nil {
		set = map[SessionKey]struct{}{}
		e.users[k] = set
	}
	set[key] = struct{}{}
	e.usersMu.Unlock()
	if first != 1 {
		return true, false, nil, nil
	}
	entries, _ := arr[2].AsStrSlice()
	return true, true, e.decodeQueue(entries, user), nil
}

// AckQueue implements Engine.
func (e *RedisEngine) AckQueue(ctx context.Context, dev, user, upTo int64) error {
	if e.closed.Load() {
		return ErrClosed
	}
	if e.down() {
		return e.unavailable("ack queue")
	}
	d := e.devKey(dev)
	u := strconv.FormatInt(user, 10)
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	err := scriptAckQueue.Exec(ctx, e.client, []string{d + ":q:" + u, d + ":qusers"},
		[]string{u, strconv.FormatInt(upTo, 10)}).Error()
	if err != nil {
		return e.fail("ack queue", err)
	}
	return nil
}

// decodeQueue decodes queue entries, leaving out expired ones.
func (e *RedisEngine) decodeQueue(entries []string, user int64) []QueuedMessage {
	if len(entries) == 0 {
		return nil
	}
	nb := e.notBefore()
	out := make([]QueuedMessage, 0, len(entries))
	for _, s := range entries {
		q, err := decodeQueued(s, user)
		if err != nil || q.Time < nb {
			continue
		}
		out = append(out, q)
	}
	return out
}

// UserDisconnect implements Engine.
func (e *RedisEngine) UserDisconnect(ctx context.Context, dev, user int64, key SessionKey) (bool, error) {
	k := userKey{dev, user}
	e.usersMu.Lock()
	if set := e.users[k]; set != nil {
		delete(set, key)
		if len(set) == 0 {
			delete(e.users, k)
		}
	}
	e.usersMu.Unlock()
	if e.closed.Load() {
		return false, nil // Close removed every entry of the node
	}
	e.resyncMu.RLock()
	defer e.resyncMu.RUnlock()
	if e.down() {
		e.dirty.Store(true)
		return false, e.unavailable("user disconnect")
	}
	d := e.devKey(dev)
	u := strconv.FormatInt(user, 10)
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	last, err := scriptUserDisconnect.Exec(ctx, e.client,
		[]string{d + ":c:" + u, d + ":ut", e.idxKey},
		[]string{string(key), u, strconv.FormatInt(time.Now().Unix(), 10), userEntry(dev, user, key)},
	).AsInt64()
	if err != nil {
		e.dirty.Store(true)
		return false, e.fail("user disconnect", err)
	}
	return last == 1, nil
}

// Kick implements Engine: the request goes to every node on the control
// channel.
func (e *RedisEngine) Kick(ctx context.Context, dev, user int64, token string) error {
	if e.closed.Load() {
		return ErrClosed
	}
	if e.down() {
		e.h.Kick(dev, user, token)
		return e.unavailable("kick (done on this node only)")
	}
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	err := e.client.Do(ctx, e.client.B().Publish().Channel(e.ctlChan).Message(encodeKick(dev, user, token)).Build()).Error()
	if err != nil {
		return e.fail("kick", err)
	}
	return nil
}

// Online implements Engine: this node's exact count plus what the other
// live nodes reported at their last heartbeat.
func (e *RedisEngine) Online(ctx context.Context, dev int64) (int, error) {
	local := e.h.LocalOnline()[dev]
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	n, err := scriptOnline.Exec(ctx, e.client, []string{e.nodesKey},
		[]string{e.cfg.Prefix, strconv.FormatInt(dev, 10), e.cfg.Node}).AsInt64()
	if err != nil {
		return local, e.fail("online count", err)
	}
	return local + int(n), nil
}

// reportOnline publishes this node's browser connection counts by tenant
// for the other nodes' Online.
func (e *RedisEngine) reportOnline(ctx context.Context) {
	counts := e.h.LocalOnline()
	args := make([]string, 0, 1+2*len(counts))
	args = append(args, strconv.FormatInt(2*e.cfg.NodeTTL.Milliseconds(), 10))
	for dev, n := range counts {
		args = append(args, strconv.FormatInt(dev, 10), strconv.Itoa(n))
	}
	if err := scriptReportOnline.Exec(ctx, e.client, []string{e.aliveKey + ":online"}, args).Error(); err != nil {
		e.log.Debug("online counts not reported", "err", err)
	}
}

// heartbeat refreshes this node's liveness key (see scriptHeartbeat for the
// result).
func (e *RedisEngine) heartbeat(ctx context.Context) (int64, error) {
	return scriptHeartbeat.Exec(ctx, e.client, []string{e.aliveKey, e.nodesKey},
		[]string{e.token, strconv.FormatInt(e.cfg.NodeTTL.Milliseconds(), 10), e.cfg.Node}).AsInt64()
}

// heartbeatLoop refreshes the liveness key every NodeTTL/3, re-registers
// this node's entries when Redis lost them (or a registration failed), and
// removes the entries of dead nodes.
func (e *RedisEngine) heartbeatLoop() {
	defer e.wg.Done()
	tick := time.NewTicker(max(e.cfg.NodeTTL/3, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-tick.C:
		case <-e.resyncCh:
			e.dirty.Store(true)
		}
		e.beat()
	}
}

func (e *RedisEngine) beat() {
	ctx, cancel := e.opCtx(context.Background())
	defer cancel()
	gen := e.lossGen.Load()
	r, err := e.heartbeat(ctx)
	if err != nil && isConnError(err) && ctx.Err() == nil {
		// A connection that broke under the call is replaced by the next
		// one: one quick retry before declaring Redis unreachable.
		select {
		case <-time.After(50 * time.Millisecond):
		case <-e.stop:
			return
		}
		r, err = e.heartbeat(ctx)
	}
	if err != nil {
		if e.hbOK.Swap(false) {
			e.log.Warn("redis unreachable: not ready; local sessions are kept", "err", err)
		}
		e.setError(err)
		e.dirty.Store(true)
		return
	}
	if !e.hbOK.Swap(true) {
		e.log.Info("redis reachable again")
	}
	e.beatGen.Store(gen)
	switch r {
	case 2:
		e.log.Error("another instance refreshed this node's liveness key: node names must be unique in a cluster")
		e.dirty.Store(true)
	case 0:
		e.dirty.Store(true)
	}
	if e.dirty.Swap(false) {
		if err := e.resync(); err != nil {
			e.dirty.Store(true)
			e.log.Warn("re-registering this node's members and connections failed; will retry", "err", err)
		}
	}
	e.reportOnline(ctx)
	e.reapDead(ctx)
}

// resync re-registers every member and live connection this node holds and
// removes the node's entries it no longer holds (connections that ended
// while Redis was out of reach), publishing the events that implies.
func (e *RedisEngine) resync() error {
	e.resyncMu.Lock()
	defer e.resyncMu.Unlock()
	var pairs []string
	e.wmu.RLock()
	keys := make([]pipeKey, 0, len(e.chans))
	for _, wp := range e.chans {
		keys = append(keys, wp.key)
	}
	e.wmu.RUnlock()
	for _, k := range keys {
		for _, m := range e.h.LocalMembers(k.dev, k.name) {
			pairs = append(pairs, memberEntry(k.dev, k.name, m.Session), encodeMember(m))
		}
	}
	e.usersMu.Lock()
	for k, set := range e.users {
		for s := range set {
			pairs = append(pairs, userEntry(k.dev, k.user, s), "")
		}
	}
	e.usersMu.Unlock()

	ctx, cancel := e.opCtx(context.Background())
	err := e.client.Do(ctx, e.client.B().Del().Key(e.idxKey+":sync").Build()).Error()
	cancel()
	if err != nil {
		return err
	}
	var events []redisEvent
	const batch = 2 * 256
	for i := 0; i < len(pairs); i += batch {
		args := append([]string{e.cfg.Prefix, e.cfg.Node}, pairs[i:min(i+batch, len(pairs))]...)
		ctx, cancel := e.opCtx(context.Background())
		evs, err := e.runEvents(ctx, scriptResyncAdd, args)
		cancel()
		if err != nil {
			return err
		}
		events = append(events, evs...)
	}
	ctx, cancel = e.opCtx(context.Background())
	defer cancel()
	evs, err := e.runEvents(ctx, scriptResyncEnd,
		[]string{e.cfg.Prefix, e.cfg.Node, strconv.FormatInt(time.Now().Unix(), 10)})
	if err != nil {
		return err
	}
	events = append(events, evs...)
	if len(events) > 0 {
		e.log.Info("re-registered this node's members and connections in redis", "entries", len(pairs)/2, "changes", len(events))
	} else {
		e.log.Debug("re-registered this node's members and connections in redis", "entries", len(pairs)/2)
	}
	e.publishEvents(ctx, events)
	return nil
}

// reap removes the entries of a node whose liveness key is gone (of any
// node with force) and returns the events that implies.
func (e *RedisEngine) reap(ctx context.Context, node string, force bool) ([]redisEvent, error) {
	f := "0"
	if force {
		f = "1"
	}
	return e.runEvents(ctx, scriptReap, []string{e.cfg.Prefix, node, strconv.FormatInt(time.Now().Unix(), 10), f})
}

// reapDead removes the entries of every dead node and publishes the events.
func (e *RedisEngine) reapDead(ctx context.Context) {
	nodes, err := e.client.Do(ctx, e.client.B().Smembers().Key(e.nodesKey).Build()).AsStrSlice()
	if err != nil {
		return
	}
	for _, n := range nodes {
		if n == e.cfg.Node {
			continue
		}
		events, err := e.reap(ctx, n, false)
		if err != nil {
			e.log.Warn("removing a dead node's entries failed", "dead_node", n, "err", err)
			continue
		}
		if len(events) > 0 {
			e.log.Info("removed the entries of a node whose heartbeat stopped", "dead_node", n, "changes", len(events))
		}
		e.publishEvents(ctx, events)
	}
}

// redisEvent is a change found by a clean-up or resync script.
type redisEvent struct {
	kind  string // m: track member gone, s: track member back, u: user offline, o: user online
	dev   int64
	name  string // pipe or user id
	value string // member
	queue []string
}

func (e *RedisEngine) runEvents(ctx context.Context, s *rueidis.Lua, args []string) ([]redisEvent, error) {
	arr, err := s.Exec(ctx, e.client, nil, args).ToArray()
	if err != nil {
		return nil, err
	}
	out := make([]redisEvent, 0, len(arr))
	for _, it := range arr {
		f, err := it.ToArray()
		if err != nil || len(f) != 4 {
			continue
		}
		var ev redisEvent
		ev.kind, _ = f[0].ToString()
		ds, _ := f[1].ToString()
		ev.dev, _ = strconv.ParseInt(ds, 10, 64)
		ev.name, _ = f[2].ToString()
		if f[3].IsArray() {
			ev.queue, _ = f[3].AsStrSlice()
		} else {
			ev.value, _ = f[3].ToString()
		}
		out = append(out, ev)
	}
	return out, nil
}

// publishEvents publishes the presence and track events of membership
// changes made by clean-up or resync, and delivers the offline queue of
// users who came back online here.
func (e *RedisEngine) publishEvents(ctx context.Context, events []redisEvent) {
	for _, ev := range events {
		var m *Message
		switch ev.kind {
		case "u", "o":
			state := "offline"
			if ev.kind == "o" {
				state = "online"
			}
			m = &Message{Kind: KindPresence, DevID: ev.dev, Pipe: "user_status_" + ev.name, Event: state, Data: state}
			if ev.kind == "o" && len(ev.queue) > 0 && e.h != nil {
				if user, err := strconv.ParseInt(ev.name, 10, 64); err == nil {
					for _, q := range e.decodeQueue(ev.queue, user) {
						e.h.DeliverPrivate(ev.dev, user, "", q.Event, q.Data, q.Time)
					}
				}
			}
		case "m", "s":
			mem, err := decodeMember(ev.value)
			if err != nil {
				continue
			}
			event := "unsubscription"
			if ev.kind == "s" {
				event = "subscription"
			}
			m = &Message{Kind: KindTrack, DevID: ev.dev, Pipe: ev.name, Event: event, Member: mem, Exclude: mem.Session}
		default:
			continue
		}
		if _, err := e.publish(ctx, m); err != nil {
			e.log.Warn("event not published", "dev", m.DevID, "pipe", m.Pipe, "event", m.Event, "err", err)
		}
	}
}
