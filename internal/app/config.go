// Package app assembles a cometql server from its packages: store, auth,
// the pipes hub and its engine, the CometQL front end (sqlengine +
// mysqlproto) and the browser front end (jsapi). cmd/cometql and the
// end-to-end tests use it; it owns the order of start-up and shutdown.
package app

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cometql/cometql/store"
)

// Config is the whole server configuration. DefaultConfig gives the
// defaults; every field is a flag of cmd/cometql.
type Config struct {
	QLAddr    string // CometQL listen address (default 127.0.0.1:3300)
	HTTPAddr  string // HTTP/WebSocket listen address (default 127.0.0.1:8087)
	DataDir   string // SQLite and local state (default ./data)
	Sync      string // when durable writes are acknowledged: normal (committed, no fsync; the default) or full (after an fsync); see StoreSync
	Password  string // CometQL password; generated and saved in DataDir when empty
	NodeName  string // node name (default: host name)
	RedisURL  string // Redis URL: cluster mode when set
	LogLevel  string // debug, info, warn, error (default info)
	LogFormat string // text or json (default text)
	TLSCert   string // PEM certificate: TLS on both ports when set
	TLSKey    string // PEM key for TLSCert

	AllowedOrigins  []string         // browser origins allowed (default: all)
	TrustedProxies  []string         // CIDRs whose forwarding headers are trusted
	TenantPasswords map[int64]string // per-tenant CometQL passwords

	MaxMessageBytes       int           // default 64 KiB
	MaxQueryBytes         int           // default 1 MiB
	MaxSubscriptions      int           // per browser connection, default 256
	MaxConnectionsPerUser int           // default 16
	WebPublishRate        float64       // web_pipe2 per second per connection, default 20
	WebPublishBurst       int           // web_pipe2 burst, default (0) twice WebPublishRate
	CommandRate           float64       // browser commands per second per connection, default 50
	CommandBurst          int           // browser command burst, default 100
	QueueMax              int           // offline queue per user, default 1000
	QueueTTL              time.Duration // default 24h
	QLMaxConnections      int           // default 1000
	QLIdleTimeout         time.Duration // default 8h
	MaxConnsPerIP         int           // browser connections per IP, default 1000
	MaxLongPollSessions   int           // default 100000
	LongPollIdle          time.Duration // default 60s
	PingInterval          time.Duration // default 25s
	PongTimeout           time.Duration // default 60s
	HandshakeTimeout      time.Duration // CometQL handshake, HTTP request headers, a started packet or frame; default 10s
	HTTPIdleTimeout       time.Duration // idle keep-alive HTTP connections, default 50s
	FDReserve             int           // descriptors kept from browsers for CometQL and health checks, default 64 (0: off)
	MaxOpenFiles          int           // soft open-files limit to set, default (0) the hard limit
	ShutdownTimeout       time.Duration // default 10s
	Pprof                 bool          // serve /debug/pprof
}

// DefaultConfig returns the embedded-default configuration of `make run`.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "cometql"
	}
	return Config{
		QLAddr:                "127.0.0.1:3300",
		HTTPAddr:              "127.0.0.1:8087",
		DataDir:               "./data",
		Sync:                  "normal",
		NodeName:              host,
		LogLevel:              "info",
		LogFormat:             "text",
		MaxMessageBytes:       64 << 10,
		MaxQueryBytes:         1 << 20,
		MaxSubscriptions:      256,
		MaxConnectionsPerUser: 16,
		WebPublishRate:        20,
		CommandRate:           50,
		CommandBurst:          100,
		QueueMax:              1000,
		QueueTTL:              24 * time.Hour,
		QLMaxConnections:      1000,
		QLIdleTimeout:         8 * time.Hour,
		MaxConnsPerIP:         1000,
		MaxLongPollSessions:   100000,
		LongPollIdle:          60 * time.Second,
		PingInterval:          25 * time.Second,
		PongTimeout:           60 * time.Second,
		HandshakeTimeout:      10 * time.Second,
		HTTPIdleTimeout:       50 * time.Second,
		FDReserve:             64,
		ShutdownTimeout:       10 * time.Second,
	}
}

// Validate reports the first invalid setting.
func (c *Config) Validate() error {
	var errs []error
	if c.QLAddr == "" || c.HTTPAddr == "" {
		errs = append(errs, errors.New("ql-addr and http-addr must be set"))
	}
	if c.DataDir == "" && c.RedisURL == "" {
		errs = append(errs, errors.New("data-dir must be set"))
	}
	if _, err := c.StoreSync(); err != nil {
		errs = append(errs, err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls-cert and tls-key go together"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log-format %q: want text or json", c.LogFormat))
	}
	positive := []struct {
		name string
		v    int
	}{
		{"max-message-bytes", c.MaxMessageBytes}, {"max-query-bytes", c.MaxQueryBytes},
		{"max-subscriptions", c.MaxSubscriptions}, {"max-connections-per-user", c.MaxConnectionsPerUser},
		{"queue-max", c.QueueMax}, {"ql-max-connections", c.QLMaxConnections},
		{"max-conns-per-ip", c.MaxConnsPerIP}, {"max-longpoll-sessions", c.MaxLongPollSessions},
		{"command-burst", c.CommandBurst},
	}
	for _, p := range positive {
		if p.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, not %d", p.name, p.v))
		}
	}
	if c.WebPublishRate <= 0 {
		errs = append(errs, fmt.Errorf("web-publish-rate must be positive, not %g", c.WebPublishRate))
	}
	if c.CommandRate <= 0 {
		errs = append(errs, fmt.Errorf("command-rate must be positive, not %g", c.CommandRate))
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"web-publish-burst", c.WebPublishBurst}, {"fd-reserve", c.FDReserve}, {"max-open-files", c.MaxOpenFiles}} {
		if p.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, not %d", p.name, p.v))
		}
	}
	if c.MaxOpenFiles > 0 && c.MaxOpenFiles < 4*c.FDReserve {
		errs = append(errs, fmt.Errorf("max-open-files %d leaves nothing for browsers after fd-reserve %d", c.MaxOpenFiles, c.FDReserve))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"queue-ttl", c.QueueTTL}, {"ql-idle-timeout", c.QLIdleTimeout}, {"longpoll-idle", c.LongPollIdle},
		{"ping-interval", c.PingInterval}, {"pong-timeout", c.PongTimeout}, {"shutdown-timeout", c.ShutdownTimeout},
		{"handshake-timeout", c.HandshakeTimeout}, {"http-idle-timeout", c.HTTPIdleTimeout},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, not %s", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// webPublishBurst is WebPublishBurst, or twice WebPublishRate when unset.
func (c *Config) webPublishBurst() int {
	if c.WebPublishBurst > 0 {
		return c.WebPublishBurst
	}
	return max(1, int(2*c.WebPublishRate))
}

// StoreSync is Sync as the store's setting ("" is normal). With normal, a
// write is acknowledged once committed (SQLite WAL, synchronous=NORMAL): it
// survives kill -9 of the process (SPEC 7) but not an OS crash or a power
// loss, which may take the last commits. With full it is acknowledged
// after an fsync of the WAL and survives those too, at a cost: an INSERT
// into a logging pipe waits for the disk (BENCHMARKS.md, history).
func (c *Config) StoreSync() (store.Sync, error) {
	switch c.Sync {
	case "", "normal":
		return store.SyncNormal, nil
	case "full":
		return store.SyncFull, nil
	}
	return store.SyncNormal, fmt.Errorf("sync %q: want normal or full", c.Sync)
}
