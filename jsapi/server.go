// Package jsapi is cometql's browser front end: the WebSocket and
// long-polling transports of CppComet's CometServerApi.js protocol (SPEC 3
// and 4), the served JavaScript client, and the plain HTTP endpoints (/info,
// health, metrics). It translates between browsers and the hub (package
// pipes); it decides nothing the hub decides.
//
// Idle WebSockets cost little: no goroutine and no buffer is held for a
// connection waiting for input (epoll loops watch the sockets and a worker
// reads when data arrives), and frames are written by a few writer
// goroutines shared by all connections, a connection's whole backlog in one
// write (see wswriter.go).
package jsapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cometql/cometql/pipes"
)

// authFunc authenticates a browser: the user it is authorized as (0:
// anonymous) and, for a JWT, the token (so that revoking it disconnects the
// connection).
type authFunc func(ctx context.Context, dev, user int64, key string) (userID int64, token string, err error)

// Server serves browsers over HTTP: WebSockets, long-polling, the client
// script and the plain endpoints. It is safe for concurrent use.
type Server struct {
	cfg      Config
	hub      *pipes.Hub
	auth     authFunc
	log      *slog.Logger
	origins  originPolicy
	proxies  []netip.Prefix
	metrics  *metrics
	clients  clientAssets
	demo     http.Handler
	metricsH http.Handler
	pprof    http.Handler
	http     *http.Server
	start    time.Time

	conns   connTable
	pollers []*poller
	writers []*wsWriter // nil without pollers
	wpoll   *wpoller    // raw sockets waiting to be writable; nil without pollers
	lp      lpRegistry
	lpWaker lpWaker
	// lpSlots bounds the poll responses being written at once: under
	// load, polls with frames wait for a slot (gathering more frames)
	// instead of all becoming runnable at once, which would queue every
	// other goroutine (publishers' INSERTs among them) behind them.
	lpSlots chan struct{}
	perIP   ipCounter
	strs    internTable

	ctx    context.Context // canceled at Shutdown; commands run under it
	cancel context.CancelFunc

	closing      atomic.Bool
	acceptErrors atomic.Uint64
	stop         chan struct{}  // closed when the background loops must end
	wg           sync.WaitGroup // connections and sessions until finished, flushes, read workers
	bg           sync.WaitGroup // housekeeping and epoll loops
	shutOnce     sync.Once
	shutErr      error
}

// lpResponseSlots is how many long-poll responses carrying frames may be
// under way at once.
const lpResponseSlots = 64

// newServer builds a Server; New wires it to the auth service.
func newServer(cfg Config, hub *pipes.Hub, authenticate authFunc, log *slog.Logger) (*Server, error) {
	if hub == nil {
		return nil, errors.New("jsapi: no hub")
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	origins, err := newOriginPolicy(cfg.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	proxies, err := parseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	clients, err := loadClients()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		hub:     hub,
		auth:    authenticate,
		log:     log.With("component", "jsapi"),
		origins: origins,
		proxies: proxies,
		metrics: m,
		clients: clients,
		demo:    demoHandler(),
		start:   time.Now(),
		stop:    make(chan struct{}),
	}
	gatherer := cfg.Gatherer
	if gatherer == nil {
		if g, ok := reg.(prometheus.Gatherer); ok {
			gatherer = g
		}
	}
	if gatherer != nil {
		s.metricsH = promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorLog: slogPrintln{s.log}})
	}
	if cfg.Pprof {
		s.pprof = pprofHandler()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.lp.init()
	s.strs.init(4096)
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.HandshakeTimeout,
		ReadTimeout:       cfg.HandshakeTimeout + cfg.LongPollHold,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    32 << 10,
		// "OPTIONS *" is a CORS preflight like any other: answered by
		// ServeHTTP, with the Access-Control-Allow-* headers.
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if !cfg.noPoller {
		s.pollers, err = newPollers(s, cfg.Pollers)
		if err != nil {
			s.log.Warn("epoll unavailable: one reading goroutine per WebSocket", "err", err)
			s.pollers = nil
		}
	}
	if s.pollers != nil {
		// Without the write poller the read loops stay idle (and stop at
		// Shutdown): no socket goes raw.
		if s.wpoll, err = newWPoller(s); err != nil {
			s.log.Warn("epoll unavailable: one reading goroutine per WebSocket", "err", err)
		} else {
			s.writers = newWriters(s, runtime.GOMAXPROCS(0))
		}
	}
	s.lpWaker.init(s)
	s.lpSlots = make(chan struct{}, lpResponseSlots)
	s.bg.Add(2)
	go s.lpWaker.run()
	go s.housekeeping()
	return s, nil
}

// Serve accepts HTTP connections on ln until Shutdown; it returns
// http.ErrServerClosed after Shutdown. ln may be a TLS listener (wss). When
// the process runs out of file descriptors, accepting backs off (logging at
// most once a second) and resumes when descriptors free up.
func (s *Server) Serve(ln net.Listener) error {
	if s.closing.Load() {
		return http.ErrServerClosed
	}
	bl := newBackoffListener(ln, s.log)
	bl.errors = &s.acceptErrors
	return s.http.Serve(bl)
}

// AcceptErrors is the number of accepts that failed for lack of file
// descriptors (each followed by a pause).
func (s *Server) AcceptErrors() uint64 { return s.acceptErrors.Load() }

// Shutdown stops accepting, closes every WebSocket with a TCP close (never
// a Close frame), ends every long-poll session, waits for their sessions to
// close in the hub (offline and unsubscription events) and stops the
// background loops. It returns early with ctx's error when ctx ends first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() { s.shutErr = s.shutdown(ctx) })
	return s.shutErr
}

func (s *Server) shutdown(ctx context.Context) error {
	s.closing.Store(true)
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.http.Shutdown(ctx) }()

	for _, c := range s.conns.closeAll() {
		c.closeConn("")
	}
	s.lp.closeAll()

	err := <-httpDone
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	drained := true
	select {
	case <-done:
	case <-ctx.Done():
		drained = false
		if err == nil {
			err = ctx.Err()
		}
	}
	close(s.stop)
	for _, p := range s.pollers {
		p.wake()
	}
	if s.wpoll != nil {
		s.wpoll.wake()
	}
	s.bg.Wait()
	if drained {
		// Not before every worker is gone: one might re-arm a socket on a
		// closed (or reused) epoll descriptor.
		for _, p := range s.pollers {
			p.close()
		}
		if s.wpoll != nil {
			s.wpoll.close()
		}
	}
	return err
}

// now is the server's monotonic clock: nanoseconds since start.
func (s *Server) now() int64 { return int64(time.Since(s.start)) }

// identify authenticates a browser's parameters; failures are anonymous.
func (s *Server) identify(ctx context.Context, p connParams) (user int64, token string) {
	if p.UserID == 0 || p.Key == "" || s.auth == nil {
		return 0, ""
	}
	user, token, err := s.auth(ctx, p.DevID, p.UserID, p.Key)
	if err != nil {
		s.log.Warn("authentication failed; connection is anonymous", "dev", p.DevID, "user", p.UserID, "err", err)
		return 0, ""
	}
	return user, token
}

// sessionInfo builds what the hub learns about a connection.
func (s *Server) sessionInfo(r *http.Request, p connParams, ip, transport string) pipes.SessionInfo {
	return pipes.SessionInfo{
		DevID:     p.DevID,
		Key:       p.Key,
		UUID:      p.UUID,
		UserAgent: s.strs.intern(clipString(r.Header.Get("User-Agent"), 512)),
		IP:        ip,
		Origin:    s.strs.intern(clipString(r.Header.Get("Origin"), 256)),
		Language:  s.strs.intern(clipString(r.Header.Get("Accept-Language"), 128)),
		Transport: transport,
	}
}

// housekeeping runs the periodic duties: WebSocket pings and deadlines,
// long-poll expiry.
func (s *Server) housekeeping() {
	defer s.bg.Done()
	t := time.NewTicker(s.cfg.tick)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := s.now()
		s.sweepConns(now)
		s.lp.sweep(s, now)
	}
}

// ipCounter counts connections per client address.
type ipCounter struct {
	mu sync.Mutex
	m  map[string]int32
}

func (c *ipCounter) acquire(ip string, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]int32)
	}
	if int(c.m[ip]) >= max {
		return false
	}
	c.m[ip]++
	return true
}

func (c *ipCounter) release(ip string) {
	c.mu.Lock()
	if n := c.m[ip]; n <= 1 {
		delete(c.m, ip)
	} else {
		c.m[ip] = n - 1
	}
	c.mu.Unlock()
}

// internTable shares the copies of strings many connections repeat
// (User-Agent, Origin, Accept-Language), up to a number of entries.
type internTable struct {
	mu  sync.Mutex
	m   map[string]string
	max int
}

func (t *internTable) init(max int) { t.m, t.max = make(map[string]string), max }

func (t *internTable) intern(v string) string {
	if v == "" {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.m[v]; ok {
		return s
	}
	v = strings.Clone(v)
	if len(t.m) < t.max {
		t.m[v] = v
	}
	return v
}

// backoffListener keeps accepting through descriptor exhaustion: on
// EMFILE/ENFILE it waits (5 ms doubling to 1 s) instead of letting the
// HTTP server spin, and logs at most once a second.
type backoffListener struct {
	net.Listener
	log       *slog.Logger
	closed    chan struct{}
	closeOnce sync.Once
	lastLog   time.Time      // guarded by the single accepting goroutine
	errors    *atomic.Uint64 // counts the failed accepts, when set
}

func newBackoffListener(ln net.Listener, log *slog.Logger) *backoffListener {
	return &backoffListener{Listener: ln, log: log, closed: make(chan struct{})}
}

func (l *backoffListener) Accept() (net.Conn, error) {
	delay := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err == nil || !isFDExhaustion(err) {
			return c, err
		}
		if l.errors != nil {
			l.errors.Add(1)
		}
		if time.Since(l.lastLog) >= time.Second {
			l.lastLog = time.Now()
			l.log.Error("out of file descriptors: accepting paused", "retry_in", delay, "err", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.closed:
			t.Stop()
			return nil, net.ErrClosed
		}
		delay = min(2*delay, time.Second)
	}
}

// Close closes the listener and ends a backoff wait.
func (l *backoffListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// isFDExhaustion reports whether an accept failed for lack of file
// descriptors.
func isFDExhaustion(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// slogPrintln adapts a slog.Logger to promhttp's logger.
type slogPrintln struct{ l *slog.Logger }

func (p slogPrintln) Println(v ...any) { p.l.Error(fmt.Sprint(v...)) }
