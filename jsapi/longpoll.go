package jsapi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cometql/cometql/pipes"
)

// Long-polling (SPEC 4): the same frames and commands as WebSocket over
// plain HTTP/1.1, for browsers and proxies where WebSocket fails.
//
//	GET  /lp/open?sesion=..&myid=..&devid=..&v=..&uuid=..&api=js
//	     → {"sid":"<sid>","next":0}
//	GET  /lp/poll?sid=<sid>&ack=<n>
//	     → {"sid":"<sid>","next":<m>,"frames":[<frame n+1>,...,<frame m>]}
//	POST /lp/send?sid=<sid>   body: one command, as a WebSocket text frame
//	GET  /lp/send?sid=<sid>&cmd=<command>      (JSONP)
//	     → {"ok":true}
//	POST /lp/close?sid=<sid>  (or GET) → {"ok":true}
//
// Frames are numbered from 1 per session. A poll acknowledges the frames up
// to ack (they are discarded) and is held until a frame after ack exists or
// LongPollHold passes (then "frames" is empty and next is ack); a poll with
// an old ack gets the unacknowledged frames again, so a lost response loses
// nothing. A new poll on a session makes a held one return empty at once.
// A session not polled for LongPollIdle ends (as a closed WebSocket would:
// offline and unsubscription events). An unknown or ended session answers
// 404 {"error":"unknown session","code":404}. Every GET takes callback=<fn>
// and then answers 200 with fn(<json>); (JSONP), the status in "code" of
// error bodies. Handshake errors (401, 418) are the sys error frame of the
// first poll, after which the session ends.

// lpSession is one long-poll session and the pipes.Sink of its hub session.
type lpSession struct {
	srv *Server
	sid string
	ip  string

	mu               sync.Mutex
	sess             *pipes.Session
	frames           [][]byte // frames base+1 .. base+len(frames), not yet acknowledged
	base             int64
	bytes            int
	ended            bool
	attached         bool            // the opener is done with the session
	endAfterDelivery bool            // a handshake error: end once the frames went out
	waiter           chan struct{}   // closed to wake the held poll
	wakeQueued       bool            // on the waker's list (a frame for the held poll)
	pollSeq          uint64          // number of the latest poll
	polls            int             // polls in progress
	lastPoll         int64           // server clock of the last poll's start or end
	flushWaiters     []lpFlushWaiter // AfterFlush callbacks; nil almost always

	cmdMu   sync.Mutex // commands of a session run one at a time
	limiter cmdLimiter
}

var (
	_ pipes.Sink          = (*lpSession)(nil)
	_ pipes.FlushNotifier = (*lpSession)(nil)
	_ pipes.OutboxLimiter = (*lpSession)(nil)
)

// lpFlushWaiter is an AfterFlush callback waiting for the frames up to upTo
// to be acknowledged.
type lpFlushWaiter struct {
	upTo int64
	fn   func()
}

// AfterFlush calls fn once a poll has acknowledged every frame buffered so
// far (pipes.FlushNotifier): only then did they surely reach the browser.
// Never if the session ends first.
func (l *lpSession) AfterFlush(fn func()) {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	upTo := l.base + int64(len(l.frames))
	if upTo <= l.base {
		l.mu.Unlock()
		fn()
		return
	}
	l.flushWaiters = append(l.flushWaiters, lpFlushWaiter{upTo: upTo, fn: fn})
	l.mu.Unlock()
}

// Send buffers a frame for the next poll (pipes.Sink); a session whose
// buffer would pass OutboxBytes or OutboxFrames ends.
func (l *lpSession) Send(frame []byte) {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	if len(l.frames) >= l.srv.cfg.OutboxFrames || l.bytes+len(frame) > l.srv.cfg.OutboxBytes {
		l.mu.Unlock()
		l.end(dropOverflow)
		return
	}
	l.frames = append(l.frames, frame)
	l.bytes += len(frame)
	if l.waiter != nil && !l.wakeQueued {
		// Not woken here: a publisher fans out to many sessions, and
		// readying thousands of goroutines from its call would queue it
		// behind them. The waker wakes the held poll after the linger.
		l.wakeQueued = true
		l.srv.lpWaker.add(l)
	}
	l.mu.Unlock()
}

// Close ends the session (pipes.Sink).
func (l *lpSession) Close() { l.end("") }

// OutboxLimits returns the buffer caps past which Send ends the session
// (pipes.OutboxLimiter).
func (l *lpSession) OutboxLimits() (frames, bytes int) {
	return l.srv.cfg.OutboxFrames, l.srv.cfg.OutboxBytes
}

func (l *lpSession) wakeLocked() {
	if l.waiter != nil {
		close(l.waiter)
		l.waiter = nil
	}
}

// lpWaker wakes held polls that have frames, LongPollLinger after their
// first frame, many at a time.
type lpWaker struct {
	srv    *Server
	mu     sync.Mutex
	list   []*lpSession
	signal chan struct{}
}

func (w *lpWaker) init(s *Server) {
	w.srv = s
	w.signal = make(chan struct{}, 1)
}

// add queues l (whose wakeQueued was just set, under l.mu) for a wake-up.
func (w *lpWaker) add(l *lpSession) {
	w.mu.Lock()
	w.list = append(w.list, l)
	first := len(w.list) == 1
	w.mu.Unlock()
	if first {
		select {
		case w.signal <- struct{}{}:
		default:
		}
	}
}

func (w *lpWaker) run() {
	defer w.srv.bg.Done()
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	var batch []*lpSession
	for {
		select {
		case <-w.signal:
		case <-w.srv.stop:
			return
		}
		linger.Reset(w.srv.cfg.LongPollLinger)
		select {
		case <-linger.C:
		case <-w.srv.stop:
			return
		}
		w.mu.Lock()
		batch, w.list = w.list, batch[:0]
		w.mu.Unlock()
		for i, l := range batch {
			l.mu.Lock()
			l.wakeQueued = false
			l.wakeLocked()
			l.mu.Unlock()
			batch[i] = nil
		}
	}
}

// end ends the session: polls answer 404 from now on and, once the opener
// is done, the hub session closes.
func (l *lpSession) end(reason string) {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	l.ended = true
	l.frames, l.bytes, l.flushWaiters = nil, 0, nil
	l.wakeLocked()
	run := l.attached
	l.mu.Unlock()
	if reason != "" {
		l.srv.metrics.drop(reason)
	}
	if run {
		go l.finish() // not inline: Send runs under hub locks
	}
}

// attach is attach of wsConn for long-poll sessions.
func (l *lpSession) attach(sess *pipes.Session) {
	l.mu.Lock()
	l.sess = sess
	l.attached = true
	ended := l.ended
	l.mu.Unlock()
	if ended {
		go l.finish()
	}
}

func (l *lpSession) finish() {
	defer l.srv.wg.Done()
	l.mu.Lock()
	sess := l.sess
	l.mu.Unlock()
	if sess != nil {
		sess.Close()
	}
	l.srv.lp.remove(l)
	l.srv.perIP.release(l.ip)
	l.srv.metrics.connLP.Dec()
}

// ackLocked discards the frames up to ack and returns the AfterFlush
// callbacks now due, to be called once l.mu is released.
func (l *lpSession) ackLocked(ack int64) []func() {
	k := ack - l.base
	if k <= 0 {
		return nil
	}
	k = min(k, int64(len(l.frames)))
	for _, f := range l.frames[:k] {
		l.bytes -= len(f)
	}
	n := copy(l.frames, l.frames[k:])
	clear(l.frames[n:])
	l.frames = l.frames[:n]
	if n == 0 {
		l.frames = nil
	}
	l.base += k
	if len(l.flushWaiters) == 0 {
		return nil
	}
	var due []func()
	keep := l.flushWaiters[:0]
	for _, w := range l.flushWaiters {
		if w.upTo <= l.base {
			due = append(due, w.fn)
		} else {
			keep = append(keep, w)
		}
	}
	if len(keep) == 0 {
		keep = nil
	}
	l.flushWaiters = keep
	return due
}

// lpRegistry holds the long-poll sessions by sid.
type lpRegistry struct {
	mu      sync.RWMutex
	m       map[string]*lpSession
	closing bool
}

func (r *lpRegistry) init() { r.m = make(map[string]*lpSession) }

// add registers l unless the server is closing or max sessions are open.
func (r *lpRegistry) add(l *lpSession, max int) (ok, full bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return false, false
	}
	if len(r.m) >= max {
		return false, true
	}
	r.m[l.sid] = l
	return true, false
}

func (r *lpRegistry) get(sid string) *lpSession {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[sid]
}

func (r *lpRegistry) remove(l *lpSession) {
	r.mu.Lock()
	if r.m[l.sid] == l {
		delete(r.m, l.sid)
	}
	r.mu.Unlock()
}

// closeAll refuses new sessions and ends the open ones.
func (r *lpRegistry) closeAll() {
	r.mu.Lock()
	r.closing = true
	list := make([]*lpSession, 0, len(r.m))
	for _, l := range r.m {
		list = append(list, l)
	}
	r.mu.Unlock()
	for _, l := range list {
		l.end("")
	}
}

// sweep ends the sessions not polled for LongPollIdle.
func (r *lpRegistry) sweep(s *Server, now int64) {
	idle := int64(s.cfg.LongPollIdle)
	var victims []*lpSession
	r.mu.RLock()
	for _, l := range r.m {
		l.mu.Lock()
		if l.polls == 0 && !l.ended && now-l.lastPoll > idle {
			victims = append(victims, l)
		}
		l.mu.Unlock()
	}
	r.mu.RUnlock()
	for _, l := range victims {
		l.end(dropIdle)
	}
}

// newSID makes a session id: 128 random bits, URL-safe.
func newSID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// serveLP routes /lp/<op>; parseLPRequest decodes the call.
func (s *Server) serveLP(w http.ResponseWriter, r *http.Request, op string) {
	var body []byte
	if r.Method == http.MethodPost && op == "send" {
		b, err := io.ReadAll(io.LimitReader(r.Body, int64(s.cfg.MaxFrameBytes)+1))
		if err != nil {
			s.lpError(w, r, http.StatusBadRequest, "could not read the command", "")
			return
		}
		body = b
	}
	req, perr := parseLPRequest(r.Method, op, r.URL.RawQuery, body, s.cfg.MaxFrameBytes)
	if perr != nil && perr.early {
		s.lpError(w, r, perr.status, perr.text, "")
		return
	}
	cb := req.cb
	// The Referer first: a refused JSONP call gets no CORS header either.
	if !s.origins.allows(refererOrigin(r)) || !s.setCORS(w, r) {
		s.metrics.handshakeErrors.WithLabelValues("403").Inc()
		s.lpError(w, r, http.StatusForbidden, "origin not allowed", cb)
		return
	}
	if perr != nil {
		switch perr.status {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", "GET, POST, OPTIONS")
		case http.StatusRequestEntityTooLarge:
			s.metrics.tooLarge.Inc()
		}
		s.lpError(w, r, perr.status, perr.text, cb)
		return
	}
	switch req.op {
	case "open":
		s.lpOpen(w, r, req)
	case "poll":
		s.withSession(w, r, req.sid, cb, func(l *lpSession) { s.lpPoll(w, r, l, req.ack, cb) })
	case "send":
		s.withSession(w, r, req.sid, cb, func(l *lpSession) { s.lpSend(w, r, l, req.cmd, cb) })
	case "close":
		s.withSession(w, r, req.sid, cb, func(l *lpSession) {
			l.end("")
			s.lpReply(w, r, http.StatusOK, []byte(`{"ok":true}`), cb)
		})
	}
}

func (s *Server) withSession(w http.ResponseWriter, r *http.Request, sid, cb string, f func(*lpSession)) {
	l := s.lp.get(sid)
	if l == nil {
		s.lpError(w, r, http.StatusNotFound, "unknown session", cb)
		return
	}
	f(l)
}

func (s *Server) lpOpen(w http.ResponseWriter, r *http.Request, req lpRequest) {
	cb := req.cb
	if s.closing.Load() {
		s.metrics.handshakeErrors.WithLabelValues("503").Inc()
		s.lpError(w, r, http.StatusServiceUnavailable, "server shutting down", cb)
		return
	}
	if !s.admit(w) {
		s.refuseLowFDs(w, r, cb)
		return
	}
	ip := s.clientIP(r)
	if !s.perIP.acquire(ip, s.cfg.MaxConnsPerIP) {
		s.metrics.handshakeErrors.WithLabelValues("429").Inc()
		s.metrics.drop(dropPerIP)
		s.lpError(w, r, http.StatusTooManyRequests, "too many connections from "+ip, cb)
		return
	}
	p, herr := req.params, req.herr
	l := &lpSession{srv: s, sid: newSID(), ip: ip, lastPoll: s.now()}
	s.wg.Add(1) // until l.finish
	if ok, full := s.lp.add(l, s.cfg.MaxLongPollSessions); !ok {
		s.perIP.release(ip)
		s.wg.Done()
		if full {
			s.metrics.handshakeErrors.WithLabelValues("503").Inc()
			s.metrics.drop(dropLongPollLimit)
			s.lpError(w, r, http.StatusServiceUnavailable, "too many long-poll sessions", cb)
		} else {
			s.lpError(w, r, http.StatusServiceUnavailable, "server shutting down", cb)
		}
		return
	}
	s.metrics.connLP.Inc()
	opened := []byte(`{"sid":"` + l.sid + `","next":0}`)

	if herr != nil {
		s.metrics.handshakeErrors.WithLabelValues(strconv.Itoa(herr.code)).Inc()
		l.Send(pipes.HandshakeErrorFrame(herr.code, herr.text, time.Now().Unix()))
		l.mu.Lock()
		l.endAfterDelivery = true
		l.mu.Unlock()
		l.attach(nil)
		s.lpReply(w, r, http.StatusOK, opened, cb)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	info := s.sessionInfo(r, p, ip, "lp")
	info.UserID, info.Token = s.identify(ctx, p)
	sess, err := s.hub.Open(ctx, info, l)
	if err != nil {
		l.attach(nil)
		l.end("")
		s.lpError(w, r, http.StatusServiceUnavailable, "server shutting down", cb)
		return
	}
	l.attach(sess)
	s.lpReply(w, r, http.StatusOK, opened, cb)
}

// lpPoll answers a poll: the frames after ack, waiting for some up to
// LongPollHold.
func (s *Server) lpPoll(w http.ResponseWriter, r *http.Request, l *lpSession, ack int64, cb string) {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		s.lpError(w, r, http.StatusNotFound, "unknown session", cb)
		return
	}
	if due := l.ackLocked(ack); due != nil {
		l.mu.Unlock()
		callAll(due)
		l.mu.Lock()
	}
	l.pollSeq++
	me := l.pollSeq
	l.polls++
	l.lastPoll = s.now()
	l.wakeLocked() // a held poll is superseded

	var timer *time.Timer
wait:
	for len(l.frames) == 0 && !l.ended && l.pollSeq == me {
		if timer == nil {
			timer = time.NewTimer(s.cfg.LongPollHold)
			defer timer.Stop()
		}
		ch := make(chan struct{})
		l.waiter = ch
		l.mu.Unlock()
		select {
		case <-ch:
			l.mu.Lock()
		case <-timer.C:
			l.mu.Lock()
			break wait
		case <-r.Context().Done():
			l.mu.Lock()
			break wait
		}
	}
	if l.waiter != nil && l.pollSeq == me {
		l.waiter = nil
	}
	if len(l.frames) > 0 && !l.ended && l.pollSeq == me {
		// Answer when a response slot is free; frames that arrive
		// meanwhile leave in the same response.
		l.mu.Unlock()
		select {
		case s.lpSlots <- struct{}{}:
			defer func() { <-s.lpSlots }()
		case <-r.Context().Done():
		}
		l.mu.Lock()
	}
	l.polls--
	l.lastPoll = s.now()
	if l.ended {
		l.mu.Unlock()
		s.lpError(w, r, http.StatusNotFound, "unknown session", cb)
		return
	}
	var frames [][]byte
	next := max(ack, l.base)
	if l.pollSeq == me {
		frames = append(frames, l.frames...)
		next = l.base + int64(len(l.frames))
	}
	endNow := l.endAfterDelivery && len(frames) > 0
	l.mu.Unlock()

	size := 64 + len(l.sid)
	for _, f := range frames {
		size += len(f) + 1
	}
	b := make([]byte, 0, size)
	b = append(b, `{"sid":"`...)
	b = append(b, l.sid...)
	b = append(b, `","next":`...)
	b = strconv.AppendInt(b, next, 10)
	b = append(b, `,"frames":[`...)
	payload := 0
	for i, f := range frames {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, f...)
		payload += len(f)
	}
	b = append(b, "]}"...)
	s.lpReply(w, r, http.StatusOK, b, cb)
	if len(frames) > 0 {
		// Written while the response slot is held.
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		s.metrics.writesLP.Inc()
	}
	s.metrics.framesLP.Add(float64(len(frames)))
	s.metrics.bytesLP.Add(float64(payload))
	if endNow {
		l.end("")
	}
}

// lpSend runs one command: the POST body, or the cmd parameter of a GET.
func (s *Server) lpSend(w http.ResponseWriter, r *http.Request, l *lpSession, text, cb string) {
	l.mu.Lock()
	sess, ended := l.sess, l.ended
	l.mu.Unlock()
	if ended || sess == nil {
		s.lpError(w, r, http.StatusNotFound, "unknown session", cb)
		return
	}
	l.cmdMu.Lock()
	s.command(sess, &l.limiter, text)
	l.cmdMu.Unlock()
	s.lpReply(w, r, http.StatusOK, []byte(`{"ok":true}`), cb)
}

// lpReply writes a long-poll answer: JSON, or fn(<json>); with a callback
// (then always status 200: a script element cannot read a status).
func (s *Server) lpReply(w http.ResponseWriter, r *http.Request, status int, body []byte, cb string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if cb != "" {
		h.Set("Content-Type", "application/javascript; charset=utf-8")
		out := make([]byte, 0, len(cb)+len(body)+3)
		out = append(out, cb...)
		out = append(out, '(')
		out = append(out, body...)
		out = append(out, ')', ';')
		h.Set("Content-Length", strconv.Itoa(len(out)))
		w.WriteHeader(http.StatusOK)
		w.Write(out)
		return
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// lpError writes {"error":"<text>","code":<status>}.
func (s *Server) lpError(w http.ResponseWriter, r *http.Request, status int, text, cb string) {
	s.lpReply(w, r, status, []byte(`{"error":`+jsonString(text)+`,"code":`+strconv.Itoa(status)+`}`), cb)
}

// validCallback reports whether name is a JSONP callback:
// [A-Za-z_$][A-Za-z0-9_$.]{0,63}.
func validCallback(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '$'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '.')) {
			return false
		}
	}
	return true
}

// refererOrigin is the origin of the Referer header when the request has no
// Origin (JSONP script elements send none), so the allow-list also applies
// to them; "" when there is an Origin header or no usable Referer.
func refererOrigin(r *http.Request) string {
	if r.Header.Get("Origin") != "" {
		return ""
	}
	ref := r.Header.Get("Referer")
	scheme, rest, ok := cutScheme(ref)
	if !ok {
		return ""
	}
	host := rest
	for i := 0; i < len(rest); i++ {
		if rest[i] == '/' || rest[i] == '?' || rest[i] == '#' {
			host = rest[:i]
			break
		}
	}
	if host == "" {
		return ""
	}
	return scheme + "://" + host
}

func cutScheme(u string) (scheme, rest string, ok bool) {
	for _, sc := range []string{"http", "https"} {
		if len(u) > len(sc)+3 && u[:len(sc)+3] == sc+"://" {
			return sc, u[len(sc)+3:], true
		}
	}
	return "", "", false
}
