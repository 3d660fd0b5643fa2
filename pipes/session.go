package pipes

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// Sink is the transport end of a session: a WebSocket connection or a
// long-poll session. Implementations are safe for concurrent use.
type Sink interface {
	// Send queues one encoded frame for the browser. It must not block and
	// must not retain a right to modify frame (frames are shared by many
	// sessions). A sink whose queue overflows closes itself.
	Send(frame []byte)
	// Close ends the transport (for WebSockets a TCP close, never a Close
	// frame). The transport then calls Session.Close. Close may be called
	// more than once.
	Close()
}

// SessionInfo describes a browser connection, as the transport learnt it.
type SessionInfo struct {
	DevID int64
	// UserID is the user the connection authenticated as (0: anonymous).
	UserID int64
	// Key is the sesion value the browser sent; echoed in serverInfo when
	// the connection is authorized.
	Key string
	// Token is set when the connection authenticated with a JWT, so that
	// revoking the token disconnects it.
	Token     string
	UUID      string
	UserAgent string
	IP        string
	Origin    string
	Language  string
	// Transport names the transport ("ws" or "lp") for statistics.
	Transport string
}

// Session is one browser connection's state in the hub: its authorized user,
// its pipes. Presence follows sessions.
//
// States: opening (queued private messages are held back until the offline
// queue is delivered) → open → closed. A closed session never reopens.
type Session struct {
	hub  *Hub
	id   uint64
	key  SessionKey
	info SessionInfo
	sink Sink

	user atomic.Int64 // authorized user id, 0 when anonymous

	mu      sync.Mutex // guards the fields below; held across a whole command
	subs    []string   // the pipes subscribed, in subscription order
	closed  bool
	limiter *rate.Limiter

	pmu     sync.Mutex // guards opening and pending
	opening bool
	pending [][]byte // private frames received while opening

	pace pacer // orders paced replies (sendPaced)
}

// Open registers a browser session. It sends the serverInfo frame and, for an
// authorized user, the offline queue, then publishes the user's online event
// when this is the user's first live connection. A user already holding the
// maximum number of connections is refused authorization (the session stays
// open, anonymous, with a sys error frame).
func (h *Hub) Open(ctx context.Context, info SessionInfo, sink Sink) (*Session, error) {
	if h.closed.Load() {
		return nil, ErrClosed
	}
	id := h.nextID.Add(1)
	s := &Session{
		hub:  h,
		id:   id,
		key:  SessionKey(h.node + "/" + strconv.FormatUint(id, 36)),
		info: info,
		sink: sink,
	}
	h.registerSession(s)
	if info.UserID == 0 || !ValidUserID(info.UserID) {
		s.send(serverInfoFrame(false, "", h.now(), h.cfg.Server))
		return s, nil
	}

	// Register as the user's session before the engine counts the
	// connection, so a private message sent in between is held in pending
	// rather than lost.
	uk := userKey{info.DevID, info.UserID}
	s.user.Store(info.UserID)
	s.pmu.Lock()
	s.opening = true
	s.pmu.Unlock()
	h.addUserSession(uk, s)

	ok, first, queue, err := h.eng.UserConnect(ctx, info.DevID, info.UserID, s.key, h.cfg.MaxConnectionsPerUser)
	if err != nil || !ok {
		h.removeUserSession(uk, s)
		s.user.Store(0)
		s.pmu.Lock()
		s.opening, s.pending = false, nil
		s.pmu.Unlock()
		s.send(serverInfoFrame(false, "", h.now(), h.cfg.Server))
		if err != nil {
			h.log.Warn("user connect failed", "dev", info.DevID, "user", info.UserID, "err", err)
			s.SendError("500", "authorization is unavailable right now: "+err.Error())
		} else {
			s.SendError("too_many_devices", fmt.Sprintf(
				"user %d already has %d live connections: this one is not authorized", info.UserID, h.cfg.MaxConnectionsPerUser))
		}
		return s, nil
	}

	s.send(serverInfoFrame(true, info.Key, h.now(), h.cfg.Server))
	// A queued message's uuid is the same at every delivery, so CppComet's
	// client drops a repeat (the queue is handed over at least once), and
	// names the user, as the client remembers uuids across a restart()
	// that switches users.
	frames := make([][]byte, len(queue))
	uq := "q" + strconv.FormatInt(info.UserID, 10) + "_"
	for i := range queue {
		q := &queue[i]
		frames[i] = privateFrame(uq+strconv.FormatInt(q.Index, 10), q.Event, q.Data, q.Time, true)
	}
	h.private.Add(uint64(len(queue)))
	// The queue may be more than the transport's outbox holds: it goes out
	// in paced chunks, each removed from the queue once it reached the
	// browser; private messages sent meanwhile wait in pending and follow.
	s.sendPaced(frames, func(end int) { s.ackQueue(queue[end-1].Index) }, func() {
		s.pmu.Lock()
		for _, f := range s.pending {
			s.sink.Send(f)
		}
		s.pending, s.opening = nil, false
		s.pmu.Unlock()
	})

	if first {
		h.presence(ctx, info.DevID, info.UserID, true)
	}
	return s, nil
}

// FlushNotifier is implemented by sinks that can tell when the frames sent
// so far have reached the browser: written to the socket for a WebSocket,
// acknowledged by the next poll for a long-poll session.
type FlushNotifier interface {
	// AfterFlush calls fn (from any goroutine, without blocking it) once
	// every frame sent before the call has reached the browser; never if
	// the transport closes first.
	AfterFlush(fn func())
}

// OutboxLimiter is implemented by sinks that close themselves when more
// than a number of frames or bytes wait for the browser.
type OutboxLimiter interface {
	// OutboxLimits returns the caps on the frames and bytes waiting.
	OutboxLimits() (frames, bytes int)
}

// sendPaced sends frames in chunks of at most a quarter of the sink's
// outbox caps (OutboxLimiter), each once the previous one reached the
// browser (FlushNotifier), so that a reply longer than the outbox holds (a
// full offline queue, a long history) arrives instead of closing the
// connection for overflow. sent (may be nil) is called after each chunk
// with the number of frames sent so far; done (may be nil) once all are
// sent. If the transport closes first, neither is called again. A sink
// without both interfaces gets every frame at once.
//
// Paced replies and the replies sent after them (send) leave in the order
// the commands ran: a reply queued behind a paced one waits for it (a
// page's marker request after pipe_log must not overtake the replay).
// Messages published to the session's pipes do not wait.
func (s *Session) sendPaced(frames [][]byte, sent func(end int), done func()) {
	job := newPacedJob(frames, sent, done)
	s.pace.mu.Lock()
	if s.pace.active {
		s.waitLocked(job)
		return
	}
	s.pace.active = true
	s.pace.mu.Unlock()
	s.runPaced(job)
}

// waitLocked queues job behind the paced reply being sent and unlocks
// s.pace.mu. What waits is capped as the outbox is: a browser that asks
// for more than that while not reading is closed, as an overflowing
// outbox would close it.
func (s *Session) waitLocked(job pacedJob) {
	if lim, ok := s.sink.(OutboxLimiter); ok {
		maxFrames, maxBytes := lim.OutboxLimits()
		if s.pace.waitFrames+len(job.frames) > maxFrames || s.pace.waitBytes+job.bytes > maxBytes {
			s.pace.mu.Unlock()
			s.hub.log.Debug("replies waiting behind a paced reply over the outbox caps: closing the connection",
				"dev", s.info.DevID, "ip", s.info.IP)
			s.sink.Close()
			return
		}
	}
	s.pace.waiting = append(s.pace.waiting, job)
	s.pace.waitFrames += len(job.frames)
	s.pace.waitBytes += job.bytes
	s.pace.mu.Unlock()
}

// pacer orders a session's paced replies and the replies behind them.
type pacer struct {
	mu      sync.Mutex
	active  bool       // a paced reply is being sent
	waiting []pacedJob // replies behind it, in order
	// the frames and bytes in waiting
	waitFrames, waitBytes int
}

type pacedJob struct {
	frames [][]byte
	bytes  int // of frames
	sent   func(end int)
	done   func()
}

func newPacedJob(frames [][]byte, sent func(end int), done func()) pacedJob {
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	return pacedJob{frames: frames, bytes: n, sent: sent, done: done}
}

// runPaced sends job, then the replies that queued up behind it; when a
// chunk must wait for a flush, the flush's callback carries on.
func (s *Session) runPaced(job pacedJob) {
	for {
		if !s.sendChunks(job, 0) {
			return
		}
		var ok bool
		if job, ok = s.nextPaced(); !ok {
			return
		}
	}
}

// nextPaced takes the next waiting reply, or ends the paced state.
func (s *Session) nextPaced() (pacedJob, bool) {
	s.pace.mu.Lock()
	defer s.pace.mu.Unlock()
	if len(s.pace.waiting) == 0 {
		s.pace.active = false
		s.pace.waiting, s.pace.waitFrames, s.pace.waitBytes = nil, 0, 0
		return pacedJob{}, false
	}
	job := s.pace.waiting[0]
	s.pace.waiting = s.pace.waiting[1:]
	s.pace.waitFrames -= len(job.frames)
	s.pace.waitBytes -= job.bytes
	return job, true
}

// sendChunks sends job's frames from start. It reports true when all are
// sent (done called); false when the rest waits for a flush, whose
// callback then finishes job and runs the replies behind it.
func (s *Session) sendChunks(job pacedJob, start int) bool {
	fn, notifies := s.sink.(FlushNotifier)
	lim, limited := s.sink.(OutboxLimiter)
	maxFrames, maxBytes := 0, 0
	if limited {
		maxFrames, maxBytes = lim.OutboxLimits()
		maxFrames, maxBytes = max(maxFrames/4, 1), maxBytes/4
	}
	paced := notifies && limited
	for {
		end, n := start, 0
		for end < len(job.frames) && (end == start || !paced ||
			(end-start < maxFrames && n+len(job.frames[end]) <= maxBytes)) {
			n += len(job.frames[end])
			s.sink.Send(job.frames[end])
			end++
		}
		if end > start && job.sent != nil {
			job.sent(end)
		}
		if end == len(job.frames) {
			if job.done != nil {
				job.done()
			}
			return true
		}
		// Wait for the flush. A callback run during AfterFlush itself
		// (nothing was left to write) continues this loop instead of
		// nesting a call per chunk.
		w := &flushWait{registering: true}
		fn.AfterFlush(func() {
			if w.fired() {
				return
			}
			if s.sendChunks(job, end) {
				s.runPacedRest()
			}
		})
		if !w.registered() {
			return false
		}
		start = end
	}
}

// runPacedRest runs the replies waiting behind a paced reply that a flush
// callback finished.
func (s *Session) runPacedRest() {
	if job, ok := s.nextPaced(); ok {
		s.runPaced(job)
	}
}

// flushWait tells an AfterFlush callback run while AfterFlush was being
// called (inline) from one run later.
type flushWait struct {
	mu          sync.Mutex
	registering bool
	inline      bool
}

// fired is called by the callback: true when it ran inline (the caller
// carries on instead).
func (w *flushWait) fired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.registering {
		w.inline = true
		return true
	}
	return false
}

// registered ends the registration: false when the callback will carry
// on, true when it already ran inline.
func (w *flushWait) registered() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.registering = false
	return w.inline
}

// ackQueue removes the delivered offline queue up to index once the frames
// have reached the browser (at once when the sink cannot tell). Until then
// the messages stay queued: a crash or a dropped connection delivers them
// again rather than losing them (their uuid lets CppComet's client drop a
// repeat).
func (s *Session) ackQueue(upTo int64) {
	h, dev, user := s.hub, s.info.DevID, s.info.UserID
	ack := func() {
		if err := h.eng.AckQueue(context.Background(), dev, user, upTo); err != nil {
			h.log.Warn("delivered offline messages not removed from the queue", "dev", dev, "user", user, "err", err)
		}
	}
	if fn, ok := s.sink.(FlushNotifier); ok {
		fn.AfterFlush(func() { go ack() })
		return
	}
	go ack()
}

// Key is the session's cluster-wide key.
func (s *Session) Key() SessionKey { return s.key }

// Info is what the transport told the hub about the connection.
func (s *Session) Info() SessionInfo { return s.info }

// UserID is the authorized user of the session, 0 when anonymous.
func (s *Session) UserID() int64 { return s.user.Load() }

// Pipes returns the session's subscribed pipes.
func (s *Session) Pipes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.subs...)
}

// send sends a frame answering the browser (or the server's own, such as
// serverInfo): at once, or after the paced reply being sent (sendPaced).
func (s *Session) send(frame []byte) {
	s.pace.mu.Lock()
	if s.pace.active {
		s.waitLocked(pacedJob{frames: [][]byte{frame}, bytes: len(frame)})
		return
	}
	s.pace.mu.Unlock()
	s.sink.Send(frame)
}

func (s *Session) sendPrivate(frame []byte) {
	s.pmu.Lock()
	if s.opening {
		s.pending = append(s.pending, frame)
		s.pmu.Unlock()
		return
	}
	s.pmu.Unlock()
	s.sink.Send(frame)
}

func (s *Session) member() Member {
	return Member{
		Session:   s.key,
		UserID:    s.user.Load(),
		UUID:      s.info.UUID,
		UserAgent: s.info.UserAgent,
		IP:        s.info.IP,
		Origin:    s.info.Origin,
		Language:  s.info.Language,
	}
}

// maxReportedErrors caps the error frames one subscription command produces.
const maxReportedErrors = 10

// Subscribe applies a complete subscription list (SPEC 3.4): only pipes not
// yet subscribed join (and emit track_* subscription events), only pipes
// missing from the list leave. Invalid or forbidden names are skipped and
// reported in the returned errors (at most a few, then a summary); the rest
// apply. The list is capped at the configured maximum.
func (s *Session) Subscribe(ctx context.Context, names []string) []error {
	h := s.hub
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	var errs []error
	report := func(err error) {
		if len(errs) < maxReportedErrors {
			errs = append(errs, err)
		} else if len(errs) == maxReportedErrors {
			errs = append(errs, errors.New("more names were refused (not reported one by one)"))
		}
	}
	want := make(map[string]struct{}, len(names))
	order := make([]string, 0, len(names))
	overflow := 0
	for _, n := range names {
		if n == "" || n == "msg" || IsServerPipe(n) {
			// msg needs no subscription, and server replies (sys,
			// _answer*) reach the connection anyway: CppComet's client
			// lists them when a page listens to them. Empty lines are
			// padding.
			continue
		}
		if _, dup := want[n]; dup {
			continue
		}
		if err := CanSubscribe(n, s.user.Load() != 0); err != nil {
			report(err)
			continue
		}
		if len(order) >= h.cfg.MaxSubscriptions {
			overflow++
			continue
		}
		want[n] = struct{}{}
		order = append(order, n)
	}
	if overflow > 0 {
		errs = append(errs, fmt.Errorf("%w: %d pipes over the limit of %d were not subscribed",
			ErrTooManySubs, overflow, h.cfg.MaxSubscriptions))
	}

	kept := s.subs[:0:0]
	for _, p := range s.subs {
		if _, ok := want[p]; ok {
			kept = append(kept, p)
			delete(want, p)
			continue
		}
		s.leave(ctx, p)
	}
	for _, p := range order {
		if _, isNew := want[p]; !isNew {
			continue
		}
		s.join(ctx, p)
		kept = append(kept, p)
	}
	s.subs = kept
	return errs
}

// join subscribes the session to one pipe; s.mu is held.
func (s *Session) join(ctx context.Context, pipe string) {
	h := s.hub
	dev := s.info.DevID
	k := pipeKey{dev, pipe}
	if h.addSub(k, s) {
		h.eng.Watch(dev, pipe)
	}
	m := s.member()
	if err := h.eng.Join(ctx, dev, pipe, m); err != nil {
		h.log.Warn("join not recorded", "dev", dev, "pipe", pipe, "err", err)
	}
	if IsTrackPipe(pipe) {
		h.trackEvent(ctx, dev, pipe, "subscription", m)
	}
}

// leave unsubscribes the session from one pipe; s.mu is held.
func (s *Session) leave(ctx context.Context, pipe string) {
	h := s.hub
	dev := s.info.DevID
	k := pipeKey{dev, pipe}
	if h.removeSub(k, s) {
		h.eng.Unwatch(dev, pipe)
	}
	m := s.member()
	if err := h.eng.Leave(ctx, dev, pipe, m); err != nil {
		h.log.Warn("leave not recorded", "dev", dev, "pipe", pipe, "err", err)
	}
	if IsTrackPipe(pipe) {
		h.trackEvent(ctx, dev, pipe, "unsubscription", m)
	}
}

func (h *Hub) trackEvent(ctx context.Context, dev int64, pipe, event string, m Member) {
	msg := &Message{Kind: KindTrack, DevID: dev, Pipe: pipe, Event: event, Member: m, Exclude: m.Session}
	if _, err := h.eng.Publish(ctx, msg); err != nil {
		h.log.Warn("track event not published", "dev", dev, "pipe", pipe, "event", event, "err", err)
	}
}

// Close ends the session after its transport went away: it leaves every
// pipe (emitting track_* unsubscription events) and, for the user's last
// live connection, publishes offline. Close is idempotent.
func (s *Session) Close() {
	h := s.hub
	ctx := context.Background()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, p := range s.subs {
		s.leave(ctx, p)
	}
	s.subs = nil
	user := s.user.Load()
	s.mu.Unlock()

	h.unregisterSession(s)
	if user == 0 {
		return
	}
	h.removeUserSession(userKey{s.info.DevID, user}, s)
	// The engine may report the last connection and an error together
	// (users_time could not be written: disk full, read-only): the user is
	// offline all the same, and subscribers are told.
	last, err := h.eng.UserDisconnect(ctx, s.info.DevID, user, s.key)
	if err != nil {
		h.log.Warn("user disconnect not recorded", "dev", s.info.DevID, "user", user, "err", err)
	}
	if last {
		h.presence(ctx, s.info.DevID, user, false)
	}
}
