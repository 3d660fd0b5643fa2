package jsapi

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cometql/cometql/internal/version"
)

// Config configures the browser front end. A zero field takes the default
// its comment names; New validates the rest.
type Config struct {
	// AllowedOrigins lists the page origins (scheme://host[:port], or a
	// host[:port] for that host under any scheme and, without a port, any
	// port, as comet.ini's [ws] host) that may open WebSockets and
	// long-poll sessions; "*" allows any origin. Empty
	// means ["*"], CppComet's behaviour. Requests without an Origin header
	// (non-browser clients) are allowed.
	AllowedOrigins []string
	// TrustedProxies lists the addresses (CIDRs such as "10.0.0.0/8", or
	// single IPs) of reverse proxies whose X-Forwarded-For and X-Real-IP
	// headers name the real client. Empty: the headers are ignored.
	TrustedProxies []string

	// PingInterval is how often the server pings each WebSocket (default
	// 25s).
	PingInterval time.Duration
	// PongTimeout drops a WebSocket from which nothing (a Pong or anything
	// else) arrived for this long (default 60s).
	PongTimeout time.Duration
	// HandshakeTimeout bounds the HTTP request of an upgrade or a long-poll
	// call, and how long a client may take to finish sending a started
	// WebSocket frame (slowloris protection) (default 10s).
	HandshakeTimeout time.Duration

	// MaxFrameBytes caps a message from a browser: a WebSocket message
	// (after reassembling fragments) or a long-poll command body (default
	// 64 KiB of message plus 4 KiB for the command around it).
	MaxFrameBytes int
	// OutboxBytes and OutboxFrames cap what may wait to be written to one
	// browser (a WebSocket outbox or a long-poll session buffer); a
	// connection that falls further behind is disconnected (defaults 1 MiB
	// and 1000 frames).
	OutboxBytes  int
	OutboxFrames int

	// MaxConnsPerIP caps the WebSockets plus long-poll sessions of one
	// client address (default 1000).
	MaxConnsPerIP int
	// CommandRate is the number of commands per second one browser
	// connection may send, with bursts of CommandBurst (defaults 50 and
	// 100). Commands over the limit get a sys error frame.
	CommandRate  float64
	CommandBurst int

	// IdleTimeout closes a keep-alive HTTP connection that sent no new
	// request for this long (default twice LongPollHold).
	IdleTimeout time.Duration

	// Admit, when set, is asked before a new browser connection (a
	// WebSocket upgrade or a long-poll session) opens: false refuses it
	// with 503 and Retry-After, and every response asks the client to
	// close its connection (Connection: close). The server uses it to keep
	// its last file descriptors for CometQL and health checks.
	Admit func() bool

	// LongPollHold is how long a poll is held open waiting for frames
	// (default 25s).
	LongPollHold time.Duration
	// LongPollIdle ends a long-poll session that was not polled for this
	// long (default 60s).
	LongPollIdle time.Duration
	// MaxLongPollSessions caps the open long-poll sessions (default 10000).
	MaxLongPollSessions int
	// LongPollLinger is how long a held poll waits, once a first frame is
	// ready, for more frames to answer with (default 10ms). Frames of a
	// burst then leave in one response, and a publish to many sessions
	// wakes them in batches, not one at a time from the publisher.
	LongPollLinger time.Duration

	// Pollers is the number of epoll loops that watch idle WebSockets for
	// input (default min(4, GOMAXPROCS)). Linux only; elsewhere, and for
	// TLS connections, each WebSocket has a reading goroutine.
	Pollers int

	// NodeName is this node's name, shown by /info (default: the host
	// name).
	NodeName string
	// Version is the server version shown on / (default: the build's,
	// internal/version.Version).
	Version string

	// Ready reports readiness for /readyz: nil means ready, an error is the
	// reason it is not. Nil Ready means always ready.
	Ready func() error
	// Gatherer is what /metrics serves. Nil: the Registerer when it is also
	// a Gatherer, else a private registry holding this package's metrics.
	Gatherer prometheus.Gatherer
	// Registerer receives this package's metrics. Nil: a private registry.
	Registerer prometheus.Registerer
	// Pprof mounts net/http/pprof under /debug/pprof/.
	Pprof bool

	// tick overrides the housekeeping interval (tests).
	tick time.Duration
	// noPoller forces a reading goroutine per WebSocket (tests).
	noPoller bool
}

// Defaults of Config.
const (
	DefaultPingInterval        = 25 * time.Second
	DefaultPongTimeout         = 60 * time.Second
	DefaultHandshakeTimeout    = 10 * time.Second
	DefaultMaxFrameBytes       = 64<<10 + 4<<10
	DefaultOutboxBytes         = 1 << 20
	DefaultOutboxFrames        = 1000
	DefaultMaxConnsPerIP       = 1000
	DefaultCommandRate         = 50
	DefaultCommandBurst        = 100
	DefaultLongPollHold        = 25 * time.Second
	DefaultLongPollIdle        = 60 * time.Second
	DefaultMaxLongPollSessions = 10000
	DefaultLongPollLinger      = 10 * time.Millisecond
)

func (c *Config) setDefaults() {
	if len(c.AllowedOrigins) == 0 {
		c.AllowedOrigins = []string{"*"}
	}
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PongTimeout <= 0 {
		c.PongTimeout = DefaultPongTimeout
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.OutboxBytes <= 0 {
		c.OutboxBytes = DefaultOutboxBytes
	}
	if c.OutboxFrames <= 0 {
		c.OutboxFrames = DefaultOutboxFrames
	}
	// A connection counts these in 32 bits.
	c.MaxFrameBytes = min(c.MaxFrameBytes, math.MaxInt32)
	c.OutboxBytes = min(c.OutboxBytes, math.MaxInt32)
	c.OutboxFrames = min(c.OutboxFrames, math.MaxInt32)
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.CommandRate <= 0 {
		c.CommandRate = DefaultCommandRate
	}
	if c.CommandBurst <= 0 {
		c.CommandBurst = DefaultCommandBurst
	}
	if c.LongPollHold <= 0 {
		c.LongPollHold = DefaultLongPollHold
	}
	if c.LongPollIdle <= 0 {
		c.LongPollIdle = DefaultLongPollIdle
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 2 * c.LongPollHold
	}
	if c.LongPollLinger <= 0 {
		c.LongPollLinger = DefaultLongPollLinger
	}
	if c.MaxLongPollSessions <= 0 {
		c.MaxLongPollSessions = DefaultMaxLongPollSessions
	}
	if c.Pollers <= 0 {
		c.Pollers = min(4, runtime.GOMAXPROCS(0))
	}
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname()
		if c.NodeName == "" {
			c.NodeName = "cometql"
		}
	}
	if c.Version == "" {
		c.Version = version.Version
	}
	if c.tick <= 0 {
		// Housekeeping (pings, pong and partial-frame deadlines, long-poll
		// expiry) runs at a quarter of the shortest period it enforces, at
		// most once a second.
		c.tick = min(time.Second, c.PingInterval/4, c.PongTimeout/4, c.LongPollIdle/4, c.HandshakeTimeout/4)
		c.tick = max(c.tick, 5*time.Millisecond)
	}
}

// originPolicy decides which page origins may connect: exact origins
// (scheme://host[:port]) and, as CppComet's comet.ini lists them, host
// names (any scheme; any port unless one is given).
type originPolicy struct {
	any     bool
	allowed map[string]struct{} // scheme://host[:port]
	hosts   map[string]struct{} // host or host:port
}

func newOriginPolicy(list []string) (originPolicy, error) {
	p := originPolicy{allowed: make(map[string]struct{}, len(list)), hosts: make(map[string]struct{})}
	for _, o := range list {
		o = strings.ToLower(strings.TrimRight(strings.TrimSpace(o), "/"))
		switch {
		case o == "*":
			p.any = true
		case o == "":
		case strings.Contains(o, "://"):
			p.allowed[o] = struct{}{}
		case strings.ContainsAny(o, "/?#@ \t") || strings.HasPrefix(o, ":"):
			return p, fmt.Errorf("jsapi: allowed origin %q: want scheme://host[:port], host[:port] or *", o)
		default:
			p.hosts[o] = struct{}{}
		}
	}
	return p, nil
}

// allows reports whether a request's Origin may connect; an empty origin
// (no header: not a cross-origin browser request) is allowed.
func (p originPolicy) allows(origin string) bool {
	if origin == "" || p.any {
		return true
	}
	origin = strings.ToLower(origin)
	if _, ok := p.allowed[origin]; ok {
		return true
	}
	if len(p.hosts) == 0 {
		return false
	}
	_, hostPort, ok := strings.Cut(origin, "://")
	if !ok {
		return false
	}
	if _, ok := p.hosts[hostPort]; ok {
		return true
	}
	host := hostPort
	if h, _, err := net.SplitHostPort(hostPort); err == nil {
		host = h
	}
	_, ok = p.hosts[host]
	return ok
}

// parseTrustedProxies parses CIDRs and single addresses.
func parseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("jsapi: trusted proxy %q: %w", s, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("jsapi: trusted proxy %q: %w", s, err)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (c *Config) validate() error {
	if c.PongTimeout <= c.PingInterval {
		return errors.New("jsapi: PongTimeout must be longer than PingInterval")
	}
	return nil
}
