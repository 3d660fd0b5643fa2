package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/ini.v1"

	"github.com/cometql/cometql/internal/app"
)

// options binds every command-line flag to a field of app.Config. Each flag
// is also read from the environment as COMETQL_<FLAG> (upper case, '-' as
// '_') and from the config file as a top-level key of the same name.
// Precedence: flag, then environment, then file, then the default.
type options struct {
	fs         *flag.FlagSet
	cfg        app.Config
	configPath string
	version    bool
	tenantPw   stringList
}

// stringList is a repeatable flag; from the environment or a file it is a
// comma-separated list.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func newOptions(stderr io.Writer) *options {
	o := &options{cfg: app.DefaultConfig()}
	fs := flag.NewFlagSet("cometql", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &o.cfg
	fs.StringVar(&c.QLAddr, "ql-addr", c.QLAddr, "CometQL (MySQL protocol) listen address")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "HTTP/WebSocket listen address")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for SQLite and other local state")
	fs.StringVar(&c.Sync, "sync", c.Sync, "when durable writes (history, offline queues, users_*) are acknowledged: normal (once committed: survives kill -9 of the server, not a power loss or OS crash) or full (after an fsync: survives those too; slower)")
	fs.StringVar(&c.Password, "password", c.Password, "CometQL password (user root) and JWT secret base; generated, saved in the data directory and printed when unset")
	fs.StringVar(&o.configPath, "config", "", "config file (INI; CppComet's comet.ini is accepted)")
	fs.StringVar(&o.configPath, "conf", "", "the same as --config (CppComet's name for it)")
	fs.StringVar(&c.NodeName, "node-name", c.NodeName, "node name shown in /info and SHOW STATUS")
	fs.StringVar(&c.RedisURL, "redis", c.RedisURL, "Redis URL for cluster mode, e.g. redis://127.0.0.1:6379/0")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate file: enables TLS on both ports (wss and MySQL TLS)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key file for --tls-cert")
	fs.Var((*stringList)(&c.AllowedOrigins), "allowed-origins", "browser origins allowed to connect, comma-separated: scheme://host[:port], or a host[:port] for that host under any scheme (and any port when none is given), as comet.ini's [ws] host lists them (default *: all)")
	fs.Var((*stringList)(&c.TrustedProxies), "trusted-proxies", "CIDRs of proxies whose X-Forwarded-For/X-Real-IP is trusted, comma-separated")
	fs.Var(&o.tenantPw, "tenant-password", "per-tenant CometQL password as DEV=PASSWORD (repeatable; tenants without one use --password)")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", c.MaxMessageBytes, "largest message text, in bytes")
	fs.IntVar(&c.MaxQueryBytes, "max-query-bytes", c.MaxQueryBytes, "largest CometQL statement, in bytes")
	fs.IntVar(&c.MaxSubscriptions, "max-subscriptions", c.MaxSubscriptions, "pipes per browser connection")
	fs.IntVar(&c.MaxConnectionsPerUser, "max-connections-per-user", c.MaxConnectionsPerUser, "authorized connections per user (more are refused authorization)")
	fs.Float64Var(&c.WebPublishRate, "web-publish-rate", c.WebPublishRate, "web_pipe2 messages per second per connection")
	fs.IntVar(&c.WebPublishBurst, "web-publish-burst", c.WebPublishBurst, "web_pipe2 burst per connection (0: twice --web-publish-rate)")
	fs.Float64Var(&c.CommandRate, "command-rate", c.CommandRate, "browser commands per second per connection (more get a rate_limited error)")
	fs.IntVar(&c.CommandBurst, "command-burst", c.CommandBurst, "browser command burst per connection")
	fs.IntVar(&c.QueueMax, "queue-max", c.QueueMax, "offline queue length per user (oldest dropped first)")
	fs.DurationVar(&c.QueueTTL, "queue-ttl", c.QueueTTL, "how long a queued private message is kept")
	fs.IntVar(&c.QLMaxConnections, "ql-max-connections", c.QLMaxConnections, "CometQL connections")
	fs.DurationVar(&c.QLIdleTimeout, "ql-idle-timeout", c.QLIdleTimeout, "close CometQL connections idle this long")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP, "browser connections per client IP")
	fs.IntVar(&c.MaxLongPollSessions, "max-longpoll-sessions", c.MaxLongPollSessions, "long-poll sessions")
	fs.DurationVar(&c.LongPollIdle, "longpoll-idle", c.LongPollIdle, "end a long-poll session after this long without a poll")
	fs.DurationVar(&c.PingInterval, "ping-interval", c.PingInterval, "WebSocket ping interval")
	fs.DurationVar(&c.PongTimeout, "pong-timeout", c.PongTimeout, "drop a WebSocket that has not answered pings for this long")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", c.HandshakeTimeout, "close a connection whose CometQL handshake or HTTP request headers, or a started MySQL packet or WebSocket frame, take longer")
	fs.DurationVar(&c.HTTPIdleTimeout, "http-idle-timeout", c.HTTPIdleTimeout, "close keep-alive HTTP connections idle this long")
	fs.IntVar(&c.FDReserve, "fd-reserve", c.FDReserve, "file descriptors kept from browsers for CometQL and health checks (0: off)")
	fs.IntVar(&c.MaxOpenFiles, "max-open-files", c.MaxOpenFiles, "soft open-files limit to run with (0: the hard limit)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long a graceful shutdown may take")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve /debug/pprof on the HTTP port")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: cometql [flags]

cometql serves CometQL (the MySQL wire protocol) to backends and WebSocket /
long-polling to browsers. Every flag can also be set in the environment as
COMETQL_<FLAG> (upper case, '-' as '_', e.g. COMETQL_PASSWORD) and as a key in
the --config file; flags win over the environment, which wins over the file.

Flags:
`)
		fs.PrintDefaults()
	}
	o.fs = fs
	return o
}

// parse reads args, then the environment, then the config file.
func (o *options) parse(args []string, getenv func(string) string) error {
	if err := o.fs.Parse(args); err != nil {
		return err
	}
	if o.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see --help)", o.fs.Arg(0))
	}
	set := map[string]bool{}
	o.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	for _, name := range o.names() {
		if set[name] {
			continue
		}
		if v := getenv(envName(name)); v != "" {
			if err := o.fs.Set(name, v); err != nil {
				return fmt.Errorf("environment %s: %w", envName(name), err)
			}
			set[name] = true
		}
	}
	if o.configPath != "" {
		file, err := loadConfigFile(o.configPath)
		if err != nil {
			return err
		}
		for _, name := range o.names() {
			if v, ok := file[name]; ok && !set[name] {
				if err := o.fs.Set(name, v); err != nil {
					return fmt.Errorf("%s: %s: %w", o.configPath, name, err)
				}
			}
		}
	}
	tp, err := parseTenantPasswords(o.tenantPw)
	if err != nil {
		return err
	}
	o.cfg.TenantPasswords = tp
	return nil
}

func (o *options) names() []string {
	var names []string
	o.fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "config" && f.Name != "conf" && f.Name != "version" {
			names = append(names, f.Name)
		}
	})
	return names
}

func envName(flagName string) string {
	return "COMETQL_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func parseTenantPasswords(list []string) (map[int64]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	out := make(map[int64]string, len(list))
	for _, item := range list {
		dev, pw, ok := strings.Cut(item, "=")
		id, err := strconv.ParseInt(strings.TrimSpace(dev), 10, 64)
		if !ok || err != nil || id < 0 || pw == "" {
			return nil, fmt.Errorf("tenant-password %q: want DEV=PASSWORD with a numeric dev id", redact(item))
		}
		out[id] = pw
	}
	return out, nil
}

// redact hides the password part of a DEV=PASSWORD item.
func redact(item string) string {
	if dev, _, ok := strings.Cut(item, "="); ok {
		return dev + "=***"
	}
	return "***"
}

// loadConfigFile reads an INI file: our own keys (flag names, '-' or '_')
// at the top level, and CppComet's comet.ini sections [main] password,
// [ws] ip/port/host and [cometql] ip/port. Unknown top-level keys are errors
// (typos should not pass silently); CppComet settings we have no use for are
// ignored.
func loadConfigFile(path string) (map[string]string, error) {
	f, err := ini.LoadSources(ini.LoadOptions{
		SpaceBeforeInlineComment: true,
		AllowShadows:             true,
		Insensitive:              false,
	}, path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("config file %s: not found", path)
		}
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	known := map[string]bool{}
	newOptions(io.Discard).fs.VisitAll(func(fl *flag.Flag) { known[fl.Name] = true })

	out := map[string]string{}
	var unknown []string
	for _, k := range f.Section(ini.DefaultSection).Keys() {
		name := strings.ReplaceAll(strings.ToLower(k.Name()), "_", "-")
		if !known[name] || name == "config" || name == "conf" || name == "version" {
			unknown = append(unknown, k.Name())
			continue
		}
		out[name] = k.String()
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("config file %s: unknown keys %s", path, strings.Join(unknown, ", "))
	}

	// CppComet's comet.ini.
	if s, err := f.GetSection("main"); err == nil {
		if k, err := s.GetKey("password"); err == nil && out["password"] == "" {
			out["password"] = k.String()
		}
	}
	if addr, ok := iniAddr(f, "ws"); ok {
		if _, set := out["http-addr"]; !set {
			out["http-addr"] = addr
		}
	}
	if addr, ok := iniAddr(f, "cometql"); ok {
		if _, set := out["ql-addr"]; !set {
			out["ql-addr"] = addr
		}
	}
	if s, err := f.GetSection("ws"); err == nil {
		if k, err := s.GetKey("host"); err == nil && strings.TrimSpace(k.String()) != "*" {
			if _, set := out["allowed-origins"]; !set {
				out["allowed-origins"] = k.String()
			}
		}
	}
	return out, nil
}

// iniAddr joins a CppComet section's ip and port into host:port.
func iniAddr(f *ini.File, section string) (string, bool) {
	s, err := f.GetSection(section)
	if err != nil {
		return "", false
	}
	port := strings.TrimSpace(s.Key("port").String())
	if port == "" {
		return "", false
	}
	ip := strings.TrimSpace(s.Key("ip").String())
	if ip == "" {
		ip = "0.0.0.0"
	}
	return net.JoinHostPort(ip, port), true
}
