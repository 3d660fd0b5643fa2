package jsapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/cometql/cometql/pipes"
)

// serveWS upgrades a request to a WebSocket (SPEC 3). params is what follows
// "/ws" in the escaped path.
//
// Refusals before the upgrade are HTTP errors: 403 for an origin outside the
// allow-list, 429 over MaxConnsPerIP, 503 while shutting down or when
// Config.Admit refuses (file descriptors low), 400 for a request that is not
// a WebSocket handshake. A URL the server cannot serve
// (no session part: 401, bad v: 418) is upgraded, gets one sys error frame
// and a TCP close, as CppComet clients expect.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request, params string) {
	if !s.setCORS(w, r) {
		s.refuse(w, r, http.StatusForbidden, "origin not allowed", "")
		return
	}
	if s.closing.Load() {
		s.refuse(w, r, http.StatusServiceUnavailable, "server shutting down", dropShutdown)
		return
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		s.refuse(w, r, http.StatusBadRequest, "this is a WebSocket endpoint: a WebSocket upgrade request is expected", "")
		return
	}
	if !s.admit(w) {
		s.refuseLowFDs(w, r, "")
		return
	}
	ip := s.clientIP(r)
	if !s.perIP.acquire(ip, s.cfg.MaxConnsPerIP) {
		s.refuse(w, r, http.StatusTooManyRequests, "too many connections from "+ip, dropPerIP)
		return
	}
	p, herr := parseWSURL(params, r.URL.RawQuery)

	nc, resp, err := s.upgrade(w, r)
	if err != nil {
		s.perIP.release(ip)
		return // answered
	}
	c := newWSConn(s, nc, ip)
	// The 101 response leaves in one write with the first frames: writing
	// is held until the session has queued them (startWriting).
	c.ctrl, c.flushing = resp, true
	s.wg.Add(1) // until c.finish
	if !s.conns.add(c) {
		c.closeSocket()
		s.perIP.release(ip)
		s.wg.Done()
		return
	}
	s.metrics.connWS.Inc()

	if herr != nil {
		s.metrics.handshakeErrors.WithLabelValues(strconv.Itoa(herr.code)).Inc()
		c.attach(nil)
		c.Send(pipes.HandshakeErrorFrame(herr.code, herr.text, time.Now().Unix()))
		c.startWriting()
		c.closeAfterFlushing()
		return
	}

	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	info := s.sessionInfo(r, p, ip, "ws")
	info.UserID, info.Token = s.identify(ctx, p)
	sess, err := s.hub.Open(ctx, info, c)
	if err != nil {
		s.log.Debug("session not opened", "err", err)
		c.attach(nil)
		c.closeConn("")
		return
	}
	if c.attach(sess) {
		c.startWriting()
		c.startReading()
	}
}

// refuse answers a request the server will not serve. A non-empty drop
// reason counts in the drops metric, every refusal in handshake errors.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, text, drop string) {
	s.metrics.handshakeErrors.WithLabelValues(strconv.Itoa(status)).Inc()
	if drop != "" {
		s.metrics.drop(drop)
	}
	s.plain(w, r, status, "text/plain; charset=utf-8", text+"\n")
}
