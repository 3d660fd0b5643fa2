package jsapi

import (
	"fmt"
	"sync"
	"time"

	"github.com/cometql/cometql/pipes"
)

// connTable holds the open WebSockets: for Shutdown (http.Server does not
// track hijacked connections), for housekeeping, and so that epoll events
// can name a connection by slot and generation instead of by file
// descriptor (descriptor numbers are reused as soon as a socket closes).
type connTable struct {
	mu      sync.RWMutex
	slots   []*wsConn
	gens    []uint32
	free    []uint32
	closing bool
}

// add gives c a slot; false when the server is shutting down.
func (t *connTable) add(c *wsConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	var i uint32
	if k := len(t.free); k > 0 {
		i = t.free[k-1]
		t.free = t.free[:k-1]
	} else {
		i = uint32(len(t.slots))
		t.slots = append(t.slots, nil)
		t.gens = append(t.gens, 0)
	}
	t.gens[i]++
	t.slots[i] = c
	c.slot, c.gen = i, t.gens[i]
	return true
}

// remove frees c's slot.
func (t *connTable) remove(c *wsConn) {
	t.mu.Lock()
	if int(c.slot) < len(t.slots) && t.slots[c.slot] == c {
		t.slots[c.slot] = nil
		t.free = append(t.free, c.slot)
	}
	t.mu.Unlock()
}

// acquire returns the connection in a slot if its generation matches, and
// counts a worker for it in wg while the slot is still held (so that a
// worker never starts after Shutdown's wait ended).
func (t *connTable) acquire(slot, gen uint32, wg *sync.WaitGroup) *wsConn {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if int(slot) >= len(t.slots) {
		return nil
	}
	c := t.slots[slot]
	if c == nil || c.gen != gen {
		return nil
	}
	wg.Add(1)
	return c
}

// closeAll refuses new connections and returns the open ones.
func (t *connTable) closeAll() []*wsConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closing = true
	out := make([]*wsConn, 0, len(t.slots)-len(t.free))
	for _, c := range t.slots {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

// sweepConns pings the connections whose ping is due and closes those past
// a deadline: nothing read for PongTimeout, a write blocked for PongTimeout
// (the client sends but does not read), or a message left incomplete for
// HandshakeTimeout. The table is scanned in chunks so that accepts
// never wait long for its lock.
func (s *Server) sweepConns(now int64) {
	const chunk = 4096
	ping := int64(s.cfg.PingInterval)
	pong := int64(s.cfg.PongTimeout)
	partial := int64(s.cfg.HandshakeTimeout)
	type victim struct {
		c      *wsConn
		reason string
	}
	var victims []victim
	t := &s.conns
	for from := 0; ; from += chunk {
		t.mu.RLock()
		if from >= len(t.slots) {
			t.mu.RUnlock()
			break
		}
		for _, c := range t.slots[from:min(from+chunk, len(t.slots))] {
			if c == nil {
				continue
			}
			switch p := c.partialSince.Load(); {
			case p != 0 && now-p > partial:
				victims = append(victims, victim{c, dropReadTimeout})
			case now-c.lastRead.Load() > pong:
				victims = append(victims, victim{c, dropPongTimeout})
			case c.writeBlocked(now, pong):
				victims = append(victims, victim{c, dropWriteTimeout})
			case now-c.lastPing >= ping:
				c.lastPing = now
				c.sendControl(opPing, nil)
			}
		}
		t.mu.RUnlock()
	}
	for _, v := range victims {
		if v.reason == dropPongTimeout {
			s.log.Debug("websocket pong timeout", "ip", v.c.ip, "silent_for", time.Duration(now-v.c.lastRead.Load()))
		}
		v.c.closeConn(v.reason)
	}
}

// command runs a browser command (WebSocket or long-poll) under the
// connection's command rate limit.
func (s *Server) command(sess *pipes.Session, lim *cmdLimiter, text string) {
	s.metrics.commands.Inc()
	if !lim.allow(s.now(), s.cfg.CommandRate, s.cfg.CommandBurst) {
		s.metrics.rateLimited.Inc()
		sess.SendError("rate_limited", fmt.Sprintf("more than %g commands per second: command ignored", s.cfg.CommandRate))
		return
	}
	runCommand(s.ctx, sess, text)
}

// writeBlocked reports whether a write has been in progress for longer
// than limit.
func (c *wsConn) writeBlocked(now, limit int64) bool {
	w := c.writingSince.Load()
	return w != 0 && now-w > limit
}

// cmdLimiter is a connection's command rate limit: a token bucket of
// burst tokens refilled at rate per second, full at first. It lives inside
// the connection (16 bytes) rather than as a rate.Limiter of its own, and
// its user serializes the calls.
type cmdLimiter struct {
	tokens float64
	last   int64 // server clock of the last call; 0 before the first
}

// allow takes a token at now (server clock) if there is one.
func (l *cmdLimiter) allow(now int64, rate float64, burst int) bool {
	if l.last == 0 {
		l.tokens = float64(burst)
	} else if now > l.last {
		l.tokens = min(float64(burst), l.tokens+float64(now-l.last)*rate/1e9)
	}
	l.last = max(now, 1)
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
