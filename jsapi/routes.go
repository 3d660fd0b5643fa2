package jsapi

import (
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
)

// ServeHTTP routes a request. Every path also works under /comet-server.
// The router never cleans paths: "//ws/..." is the WebSocket endpoint, not a
// redirect.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if rest, ok := strings.CutPrefix(path, "/comet-server"); ok && (rest == "" || rest[0] == '/') {
		path = rest
	}
	s.admit(w)
	if r.Method == http.MethodOptions {
		s.preflight(w, r)
		return
	}
	route := strings.TrimLeft(path, "/")
	if route == "ws" || strings.HasPrefix(route, "ws/") {
		s.serveWS(w, r, wsParams(r))
		return
	}
	if rest, ok := strings.CutPrefix(route, "lp/"); ok {
		s.serveLP(w, r, rest)
		return
	}
	if a := s.clients[route]; a != nil {
		if s.methodGetHead(w, r) {
			s.setCORS(w, r)
			a.serve(w, r)
		}
		return
	}
	switch {
	case route == "":
		s.serveRoot(w, r)
	case route == "info":
		s.plain(w, r, http.StatusOK, "application/json", `{"status":"ok","node":`+jsonString(s.cfg.NodeName)+`}`)
	case route == "favicon.ico":
		s.setCORS(w, r)
		w.WriteHeader(http.StatusNoContent) // pages ask for one; nothing to show
	case route == "healthz":
		s.plain(w, r, http.StatusOK, "text/plain; charset=utf-8", "ok\n")
	case route == "readyz":
		s.serveReady(w, r)
	case route == "metrics":
		if s.metricsH == nil {
			s.plain(w, r, http.StatusNotFound, "text/plain; charset=utf-8", "no metrics\n")
			return
		}
		s.setCORS(w, r)
		s.metricsH.ServeHTTP(w, r)
	case route == "demo" || strings.HasPrefix(route, "demo/"):
		switch {
		case s.demo == nil:
			s.plain(w, r, http.StatusNotFound, "text/plain; charset=utf-8", "no demo in this build\n")
		case route == "demo":
			http.Redirect(w, r, "demo/", http.StatusMovedPermanently) // relative: keeps a /comet-server prefix
		default:
			s.setCORS(w, r)
			s.demo.ServeHTTP(w, withPath(r, "/"+route))
		}
	case s.pprof != nil && strings.HasPrefix(route, "debug/pprof"):
		s.pprof.ServeHTTP(w, withPath(r, "/"+route))
	default:
		s.plain(w, r, http.StatusNotFound, "text/plain; charset=utf-8", "not found\n")
	}
}

// wsParams returns what follows "/ws" in the request's escaped path, the
// parameters parseWSURL reads.
func wsParams(r *http.Request) string {
	p := r.URL.EscapedPath()
	if i := strings.Index(p, "/ws"); i >= 0 {
		return p[i+3:]
	}
	return ""
}

// admit asks Config.Admit whether a new browser connection may open; when
// not, the response will ask the client to close its connection, so that
// the descriptors kept in reserve are not held by keep-alives.
func (s *Server) admit(w http.ResponseWriter) bool {
	if s.cfg.Admit == nil || s.cfg.Admit() {
		return true
	}
	w.Header().Set("Connection", "close")
	return false
}

// refuseLowFDs answers a browser connection refused by Config.Admit.
func (s *Server) refuseLowFDs(w http.ResponseWriter, r *http.Request, cb string) {
	s.metrics.handshakeErrors.WithLabelValues("503").Inc()
	s.metrics.drop(dropFDReserve)
	w.Header().Set("Retry-After", "5")
	const text = "the server is short of file descriptors: try again later"
	if cb != "" || strings.Contains(r.URL.Path, "/lp/") {
		s.lpError(w, r, http.StatusServiceUnavailable, text, cb)
		return
	}
	s.plain(w, r, http.StatusServiceUnavailable, "text/plain; charset=utf-8", text+"\n")
}

func (s *Server) methodGetHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD, OPTIONS")
	s.plain(w, r, http.StatusMethodNotAllowed, "text/plain; charset=utf-8", "method not allowed\n")
	return false
}

// plain writes a small response with CORS headers.
func (s *Server) plain(w http.ResponseWriter, r *http.Request, status int, contentType, body string) {
	s.setCORS(w, r)
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write([]byte(body))
	}
}

func (s *Server) serveRoot(w http.ResponseWriter, r *http.Request) {
	v := html.EscapeString(s.cfg.Version)
	node := html.EscapeString(s.cfg.NodeName)
	s.plain(w, r, http.StatusOK, "text/html; charset=utf-8", `<!doctype html>
<html><head><meta charset="utf-8"><title>cometql `+v+`</title></head>
<body><h1>cometql `+v+`</h1>
<p>Comet server (CppComet-compatible) on node <b>`+node+`</b>.</p>
<p><a href="CometServerApi.js">CometServerApi.js</a> · <a href="info">info</a> · <a href="metrics">metrics</a></p>
</body></html>
`)
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	var err error
	switch {
	case s.closing.Load():
		err = errors.New("shutting down")
	case s.cfg.Ready != nil:
		err = s.cfg.Ready()
	}
	if err != nil {
		s.plain(w, r, http.StatusServiceUnavailable, "text/plain; charset=utf-8", "not ready: "+err.Error()+"\n")
		return
	}
	s.plain(w, r, http.StatusOK, "text/plain; charset=utf-8", "ready\n")
}

// setCORS adds Access-Control-Allow-Origin: the request's Origin when it is
// allowed, "*" for requests without one when every origin is allowed. It
// reports whether the origin is allowed.
func (s *Server) setCORS(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	if len(h.Values("Vary")) == 0 {
		h.Set("Vary", "Origin")
	}
	origin := r.Header.Get("Origin")
	if !s.origins.allows(origin) {
		return false
	}
	if origin == "" {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	return true
}

// preflight answers OPTIONS (CORS preflight) for any path.
func (s *Server) preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if s.setCORS(w, r) {
		h.Set("Access-Control-Allow-Methods", "GET, POST, HEAD, OPTIONS")
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
			h.Set("Access-Control-Allow-Headers", req)
		} else {
			h.Set("Access-Control-Allow-Headers", "Content-Type")
		}
		h.Set("Access-Control-Max-Age", "86400")
	}
	h.Set("Allow", "GET, POST, HEAD, OPTIONS")
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// clientIP is the peer address, or the client named by X-Forwarded-For or
// X-Real-IP when the peer is a trusted proxy.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if !s.trusted(peer) {
		return peer.String()
	}
	// X-Forwarded-For: walk from the nearest hop back, skipping trusted
	// proxies; the first untrusted address is the client.
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		hops := strings.Split(strings.Join(xff, ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			a = a.Unmap()
			if !s.trusted(a) || i == 0 {
				return a.String()
			}
		}
	}
	if xr := strings.TrimSpace(r.Header.Get("X-Real-IP")); xr != "" {
		if a, err := netip.ParseAddr(xr); err == nil {
			return a.Unmap().String()
		}
	}
	return peer.String()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// jsonString encodes s as a JSON string with the frame encoder's rules.
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == '\'' || r == '\u2028' || r == '\u2029' || r == '<' || r == '>':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// withPath is r with another URL path (for handlers mounted below a prefix
// the router stripped).
func withPath(r *http.Request, path string) *http.Request {
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = path, ""
	return r2
}
