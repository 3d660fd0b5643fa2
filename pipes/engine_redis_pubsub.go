package pipes

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// The Redis engine's pub/sub side: one dedicated connection carries this
// node's channel (private messages for users it hosts), the control channel
// (kicks) and one channel per watched pipe. Messages are handed to a few
// dispatch goroutines, each pipe (and each user) always to the same one, so
// delivery is parallel across pipes and ordered within a pipe.

// watchedPipe is a pipe this node has local subscribers of.
type watchedPipe struct {
	key     pipeKey
	channel string
	refs    int // Watch calls minus Unwatch calls; guarded by RedisEngine.wmu

	mu sync.Mutex // guards the fields below
	// lastSeq is the highest sequence number delivered here, so a message
	// is delivered once even when it arrives both live and from a history
	// replay.
	lastSeq int64
	// recovering holds live messages while the history replay after a
	// reconnection runs; they follow it, duplicates dropped.
	recovering bool
	held       []*Message
}

// dispatchItem is one message for a dispatch goroutine.
type dispatchItem struct {
	wp   *watchedPipe
	m    *Message
	priv *privateMessage
}

var stripeSeed = maphash.MakeSeed()

func (e *RedisEngine) worker(s string) chan dispatchItem {
	return e.workers[maphash.String(stripeSeed, s)%uint64(len(e.workers))]
}

func (e *RedisEngine) stripe(ch string) *sync.Mutex {
	return &e.stripes[maphash.String(stripeSeed, ch)%uint64(len(e.stripes))]
}

// Watch implements Engine: the node subscribes to the pipe's channel when it
// gains the pipe's first local subscriber, and returns once Redis confirmed
// the subscription (messages published after Watch returns arrive). When
// the pub/sub connection is down the channel is subscribed on reconnection.
func (e *RedisEngine) Watch(dev int64, pipe string) {
	ch := e.pipeChannel(dev, pipe)
	st := e.stripe(ch)
	st.Lock()
	defer st.Unlock()
	e.wmu.Lock()
	wp := e.chans[ch]
	if wp == nil {
		wp = &watchedPipe{key: pipeKey{dev, pipe}, channel: ch}
		e.chans[ch] = wp
	}
	wp.refs++
	first := wp.refs == 1
	ps := e.ps
	e.wmu.Unlock()
	if !first || ps == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.OpTimeout)
	defer cancel()
	if err := ps.Do(ctx, ps.B().Subscribe().Channel(ch).Build()).Error(); err != nil {
		e.log.Warn("subscribe failed: reconnecting the pub/sub connection", "dev", dev, "pipe", pipe, "err", err)
		// A new connection subscribes every watched channel.
		ps.Close()
	}
}

// Unwatch implements Engine: the node unsubscribes when the pipe lost its
// last local subscriber.
func (e *RedisEngine) Unwatch(dev int64, pipe string) {
	ch := e.pipeChannel(dev, pipe)
	st := e.stripe(ch)
	st.Lock()
	defer st.Unlock()
	e.wmu.Lock()
	wp := e.chans[ch]
	if wp == nil {
		e.wmu.Unlock()
		return
	}
	wp.refs--
	last := wp.refs <= 0
	if last {
		delete(e.chans, ch)
	}
	ps := e.ps
	e.wmu.Unlock()
	if !last || ps == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.OpTimeout)
	defer cancel()
	if err := ps.Do(ctx, ps.B().Unsubscribe().Channel(ch).Build()).Error(); err != nil {
		// Messages for a channel nobody watches are dropped, and the
		// channel is unsubscribed again then (staleLoop).
		e.log.Debug("unsubscribe failed", "dev", dev, "pipe", pipe, "err", err)
	}
}

// pubsubLoop keeps the pub/sub connection up: it connects, subscribes every
// channel, replays what logging pipes missed, and starts again after a
// failure, backing off up to a second. up is closed on the first success.
func (e *RedisEngine) pubsubLoop(up chan struct{}) {
	defer e.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-e.stop:
			return
		default:
		}
		dc, _ := e.client.Dedicate()
		wait := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: e.onMessage})
		err := e.attach(dc)
		if err == nil {
			if up != nil {
				close(up)
				up = nil
			} else {
				e.log.Info("pub/sub connection to redis restored")
			}
			backoff = 50 * time.Millisecond
			e.signalResync()
			select {
			case err = <-wait:
			case <-e.stop:
				e.detach(dc, errors.New("engine closed"))
				return
			}
			if err == nil {
				err = errors.New("pub/sub connection closed")
			}
			e.log.Warn("pub/sub connection to redis lost", "err", err)
			e.lossGen.Add(1)
		}
		e.detach(dc, err)
		select {
		case <-e.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// attach subscribes a new pub/sub connection to every channel and makes it
// the current one, then replays the history of the logging pipes that had
// delivered messages before.
func (e *RedisEngine) attach(dc rueidis.DedicatedClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.OpTimeout)
	err := dc.Do(ctx, dc.B().Subscribe().Channel(e.nodeChan, e.ctlChan).Build()).Error()
	cancel()
	if err != nil {
		e.setError(err)
		return err
	}
	e.wmu.Lock()
	e.ps = dc
	list := make([]*watchedPipe, 0, len(e.chans))
	for _, wp := range e.chans {
		list = append(list, wp)
	}
	e.wmu.Unlock()
	var replay []*watchedPipe
	for _, wp := range list {
		wp.mu.Lock()
		if wp.lastSeq > 0 {
			wp.recovering = true
			replay = append(replay, wp)
		}
		wp.mu.Unlock()
	}
	const batch = 256
	for i := 0; i < len(list) && err == nil; i += batch {
		chs := make([]string, 0, batch)
		for _, wp := range list[i:min(i+batch, len(list))] {
			chs = append(chs, wp.channel)
		}
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.OpTimeout)
		err = dc.Do(ctx, dc.B().Subscribe().Channel(chs...).Build()).Error()
		cancel()
	}
	if err != nil {
		for _, wp := range replay {
			e.endRecovery(wp, nil)
		}
		e.setError(err)
		return err
	}
	e.psUp.Store(true)
	for _, wp := range replay {
		e.catchUp(wp)
	}
	return nil
}

// detach forgets a failed or closing pub/sub connection.
func (e *RedisEngine) detach(dc rueidis.DedicatedClient, cause error) {
	e.psUp.Store(false)
	e.setError(cause)
	e.wmu.Lock()
	if e.ps == dc {
		e.ps = nil
	}
	e.wmu.Unlock()
	dc.Close()
}

// catchUp replays to local subscribers the messages of a logging pipe they
// missed while the pub/sub connection was down, then the live messages held
// meanwhile, each sequence number once.
func (e *RedisEngine) catchUp(wp *watchedPipe) {
	wp.mu.Lock()
	since := wp.lastSeq
	wp.mu.Unlock()
	ctx := context.Background()
	msgs, last, err := e.history(ctx, wp.key.dev, wp.key.name, since)
	reset := false
	if err == nil && last < since {
		// Redis lost its data: sequence numbers start again, and every
		// message it holds now came after the connection was lost.
		reset = true
		msgs, _, err = e.history(ctx, wp.key.dev, wp.key.name, 0)
	}
	if err != nil {
		e.log.Warn("history replay after reconnection failed: subscribers may have missed messages",
			"dev", wp.key.dev, "pipe", wp.key.name, "err", err)
		msgs = nil
	}
	wp.mu.Lock()
	if reset {
		wp.lastSeq = 0
	}
	wp.mu.Unlock()
	e.endRecovery(wp, msgs)
}

// endRecovery delivers msgs and then the held live messages, and ends the
// recovery of wp.
func (e *RedisEngine) endRecovery(wp *watchedPipe, msgs []Message) {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	for i := range msgs {
		e.deliverLocked(wp, &msgs[i])
	}
	for _, m := range wp.held {
		e.deliverLocked(wp, m)
	}
	wp.held, wp.recovering = nil, false
}

// deliverLocked hands m to the hub unless its sequence number was delivered
// already; wp.mu is held.
func (e *RedisEngine) deliverLocked(wp *watchedPipe, m *Message) {
	if m.Seq > 0 {
		if m.Seq <= wp.lastSeq {
			return
		}
		wp.lastSeq = m.Seq
	}
	e.h.Deliver(m)
}

// onMessage runs on the pub/sub connection's reader: it decodes and hands
// the message on without blocking on anything but a full dispatch queue.
func (e *RedisEngine) onMessage(pm rueidis.PubSubMessage) {
	switch pm.Channel {
	case e.nodeChan:
		p, err := decodePrivate(pm.Message)
		if err != nil {
			e.log.Warn("undecodable private message dropped", "err", err)
			return
		}
		e.enqueue(e.worker(pm.Message[:privateKeyLen(pm.Message)]), dispatchItem{priv: p})
	case e.ctlChan:
		dev, user, token, err := decodeKick(pm.Message)
		if err != nil {
			e.log.Warn("undecodable control message dropped", "err", err)
			return
		}
		// Closing sessions leads to calls back into the engine: not on
		// the reader.
		go e.h.Kick(dev, user, token)
	default:
		e.wmu.RLock()
		wp := e.chans[pm.Channel]
		e.wmu.RUnlock()
		if wp == nil {
			e.markStale(pm.Channel)
			return
		}
		m := &Message{DevID: wp.key.dev, Pipe: wp.key.name}
		if err := decodeChannelMessage(pm.Message, m); err != nil {
			e.log.Warn("undecodable pipe message dropped", "dev", wp.key.dev, "pipe", wp.key.name, "err", err)
			return
		}
		e.enqueue(e.worker(pm.Channel), dispatchItem{wp: wp, m: m})
	}
}

// privateKeyLen is the length of the "<dev>|<user>|" start of a private
// payload, which picks its dispatch goroutine (one per user keeps a user's
// messages in order).
func privateKeyLen(s string) int {
	bars := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '|' {
			if bars++; bars == 2 {
				return i
			}
		}
	}
	return len(s)
}

func (e *RedisEngine) enqueue(w chan dispatchItem, it dispatchItem) {
	select {
	case w <- it:
	case <-e.stop:
	}
}

func (e *RedisEngine) dispatchLoop(ch chan dispatchItem) {
	defer e.wg.Done()
	for {
		select {
		case it := <-ch:
			e.dispatch(it)
		case <-e.stop:
			return
		}
	}
}

func (e *RedisEngine) dispatch(it dispatchItem) {
	if p := it.priv; p != nil {
		e.h.DeliverPrivate(p.dev, p.user, p.id, p.event, p.data, p.t)
		return
	}
	wp := it.wp
	wp.mu.Lock()
	if wp.recovering {
		wp.held = append(wp.held, it.m)
	} else {
		e.deliverLocked(wp, it.m)
	}
	wp.mu.Unlock()
}

// markStale notes a channel that delivers although no pipe is watched
// (an UNSUBSCRIBE that raced a reconnection), for staleLoop.
func (e *RedisEngine) markStale(ch string) {
	e.staleMu.Lock()
	e.stale[ch] = struct{}{}
	e.staleMu.Unlock()
	select {
	case e.staleCh <- struct{}{}:
	default:
	}
}

// staleLoop unsubscribes channels that deliver without a watcher.
func (e *RedisEngine) staleLoop() {
	defer e.wg.Done()
	for {
		select {
		case <-e.stop:
			return
		case <-e.staleCh:
		}
		e.staleMu.Lock()
		list := make([]string, 0, len(e.stale))
		for ch := range e.stale {
			list = append(list, ch)
		}
		clear(e.stale)
		e.staleMu.Unlock()
		for _, ch := range list {
			e.unsubscribeStale(ch)
		}
	}
}

func (e *RedisEngine) unsubscribeStale(ch string) {
	st := e.stripe(ch)
	st.Lock()
	defer st.Unlock()
	e.wmu.RLock()
	_, watched := e.chans[ch]
	ps := e.ps
	e.wmu.RUnlock()
	if watched || ps == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.OpTimeout)
	defer cancel()
	_ = ps.Do(ctx, ps.B().Unsubscribe().Channel(ch).Build()).Error()
}

// signalResync asks the heartbeat loop to re-register this node's entries
// now.
func (e *RedisEngine) signalResync() {
	select {
	case e.resyncCh <- struct{}{}:
	default:
	}
}
