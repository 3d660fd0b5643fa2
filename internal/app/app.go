package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/internal/version"
	"github.com/cometql/cometql/jsapi"
	"github.com/cometql/cometql/mysqlproto"
	"github.com/cometql/cometql/pipes"
	"github.com/cometql/cometql/sqlengine"
	"github.com/cometql/cometql/store"
)

// App is one assembled cometql server.
type App struct {
	cfg Config
	log *slog.Logger

	store     *store.Store     // single node
	redisAuth *auth.RedisStore // cluster mode
	auth      *auth.Service
	eng       pipes.Engine
	hub       *pipes.Hub
	sql       *sqlengine.Engine
	ql        *mysqlproto.Server
	web       *jsapi.Server
	reg       *prometheus.Registry

	qlLn, httpLn net.Listener
	fds          *fdBudget

	password     string
	pwFile       string
	pwGenerated  bool
	done         chan error
	shutdownOnce sync.Once
	shutdownErr  error
}

// New opens the store, builds every part and binds both listeners (port 0
// picks a free port; QLAddr and HTTPAddr tell which). Nothing is served
// until Start.
func New(cfg Config, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, done: make(chan error, 2)}
	fileLimit := setFileLimit(log, cfg.MaxOpenFiles)

	ctx := context.Background()
	var (
		authStore auth.Store
		err       error
	)
	if cfg.RedisURL != "" {
		// Cluster mode (SPEC 8.4): the engine and the auth tables live in
		// Redis; no SQLite.
		rs, err := auth.NewRedisStore(auth.RedisConfig{URL: cfg.RedisURL})
		if err != nil {
			return nil, fmt.Errorf("cluster mode: %w", err)
		}
		a.redisAuth, authStore = rs, rs
		if err := a.loadClusterPassword(ctx); err != nil {
			a.closeStore()
			return nil, err
		}
		eng, err := pipes.NewRedisEngine(pipes.RedisConfig{
			URL: cfg.RedisURL, Node: cfg.NodeName, QueueMax: cfg.QueueMax, QueueTTL: cfg.QueueTTL,
		}, log)
		if err != nil {
			a.closeStore()
			return nil, fmt.Errorf("cluster mode: %w", err)
		}
		a.eng = eng
	} else {
		sync, _ := cfg.StoreSync() // checked by Validate
		var st *store.Store
		st, err = store.Open(ctx, store.Config{Dir: cfg.DataDir, Sync: sync, QueueTTL: cfg.QueueTTL})
		if err != nil {
			return nil, fmt.Errorf("open store in %s: %w", cfg.DataDir, err)
		}
		a.store, authStore = st, st
		if err := a.loadPassword(); err != nil {
			a.closeStore()
			return nil, err
		}
		a.eng = pipes.NewMemoryEngine(pipes.MemoryConfig{Node: cfg.NodeName, QueueMax: cfg.QueueMax, QueueTTL: cfg.QueueTTL}, st, log)
	}
	a.auth = auth.New(auth.Config{Password: a.password, TenantPasswords: cfg.TenantPasswords}, authStore)

	a.hub = pipes.New(pipes.Config{
		Server:                version.Server(),
		MaxMessageBytes:       cfg.MaxMessageBytes,
		MaxSubscriptions:      cfg.MaxSubscriptions,
		MaxConnectionsPerUser: cfg.MaxConnectionsPerUser,
		WebPublishRate:        cfg.WebPublishRate,
		WebPublishBurst:       cfg.webPublishBurst(),
	}, a.eng, userDirectory{a.auth}, log)
	if err := a.hub.Start(); err != nil {
		a.closeStore()
		return nil, err
	}

	var tlsCfg *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			a.closeStore()
			return nil, fmt.Errorf("load TLS certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	a.reg = prometheus.NewRegistry()
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	a.sql = sqlengine.New(sqlengine.Config{
		MaxMessageBytes:  cfg.MaxMessageBytes,
		MaxAllowedPacket: int64(cfg.MaxQueryBytes),
		IdleTimeout:      cfg.QLIdleTimeout,
		MaxConnections:   cfg.QLMaxConnections,
		NodeName:         cfg.NodeName,
		TLS:              tlsCfg != nil,
	}, a.hub, a.auth, nil)
	a.ql, err = mysqlproto.New(mysqlproto.Config{
		TLS:              tlsCfg,
		MaxConnections:   cfg.QLMaxConnections,
		HandshakeTimeout: cfg.HandshakeTimeout,
		IdleTimeout:      cfg.QLIdleTimeout,
		MaxQueryBytes:    cfg.MaxQueryBytes,
	}, a.sql, a.auth, log)
	if err != nil {
		a.closeStore()
		return nil, fmt.Errorf("CometQL front end: %w", err)
	}
	a.sql.SetFrontend(a.ql)

	a.web, err = jsapi.New(jsapi.Config{
		AllowedOrigins:      cfg.AllowedOrigins,
		TrustedProxies:      cfg.TrustedProxies,
		PingInterval:        cfg.PingInterval,
		PongTimeout:         cfg.PongTimeout,
		HandshakeTimeout:    cfg.HandshakeTimeout,
		IdleTimeout:         cfg.HTTPIdleTimeout,
		Admit:               func() bool { return a.fds.Admit() },
		MaxFrameBytes:       cfg.MaxMessageBytes + 4<<10,
		MaxConnsPerIP:       cfg.MaxConnsPerIP,
		CommandRate:         cfg.CommandRate,
		CommandBurst:        cfg.CommandBurst,
		LongPollIdle:        cfg.LongPollIdle,
		MaxLongPollSessions: cfg.MaxLongPollSessions,
		NodeName:            cfg.NodeName,
		Version:             version.Version,
		Ready:               a.ready,
		Registerer:          a.reg,
		Gatherer:            a.reg,
		Pprof:               cfg.Pprof,
	}, a.hub, a.auth, log)
	if err != nil {
		a.closeStore()
		return nil, fmt.Errorf("browser front end: %w", err)
	}
	a.reg.MustRegister(newCollector(a))

	qlLn, err := net.Listen("tcp", cfg.QLAddr)
	if err != nil {
		a.closeStore()
		return nil, fmt.Errorf("CometQL listener: %w", err)
	}
	// No TCP keep-alive on browser connections: WebSockets are pinged and
	// idle HTTP connections time out, and enabling it costs four
	// setsockopt calls per accepted connection (measured in the churn
	// benchmark).
	httpLn, err := (&net.ListenConfig{KeepAlive: -1}).Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		qlLn.Close()
		a.closeStore()
		return nil, fmt.Errorf("HTTP listener: %w", err)
	}
	// Counted below TLS: a descriptor is a TCP connection.
	a.fds = newFDBudget(fileLimit, int64(cfg.FDReserve), log)
	a.qlLn = a.fds.listen(qlLn, classQL)
	a.httpLn = a.fds.listen(httpLn, classHTTP)
	if tlsCfg != nil {
		a.httpLn = tls.NewListener(a.httpLn, tlsCfg)
	}
	return a, nil
}

// Start serves both listeners.
func (a *App) Start() error {
	go func() {
		if err := a.ql.Serve(a.qlLn); err != nil {
			a.done <- fmt.Errorf("CometQL listener: %w", err)
		}
	}()
	go func() {
		if err := a.web.Serve(a.httpLn); err != nil {
			a.done <- fmt.Errorf("HTTP listener: %w", err)
		}
	}()
	a.log.Info("listening", "listener", "cometql", "addr", a.QLAddr(), "tls", a.cfg.TLSCert != "")
	a.log.Info("listening", "listener", "http", "addr", a.HTTPAddr(), "tls", a.cfg.TLSCert != "")
	return nil
}

// Done delivers an error when a listener stops serving on its own.
func (a *App) Done() <-chan error { return a.done }

// QLAddr is the CometQL listener's address.
func (a *App) QLAddr() string { return a.qlLn.Addr().String() }

// HTTPAddr is the HTTP listener's address.
func (a *App) HTTPAddr() string { return a.httpLn.Addr().String() }

// Password is the effective CometQL password of dev 0.
func (a *App) Password() string { return a.password }

// PasswordGenerated reports whether the password was generated on this
// start (and saved in PasswordFile).
func (a *App) PasswordGenerated() bool { return a.pwGenerated }

// PasswordFile is where a generated password is kept.
func (a *App) PasswordFile() string { return a.pwFile }

// Hub is the pipes hub (for tests and tools).
func (a *App) Hub() *pipes.Hub { return a.hub }

func (a *App) ready() error {
	if a.store != nil {
		if err := a.store.Ready(); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	if err := a.eng.Ready(); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	return nil
}

// Shutdown stops in order: stop accepting and finish in-flight statements,
// close browser connections with a TCP close, stop the engine, flush and
// close the store. It returns when done or when ctx expires.
func (a *App) Shutdown(ctx context.Context) error {
	a.shutdownOnce.Do(func() {
		var errs []error
		var wg sync.WaitGroup
		var webErr, qlErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			if a.web != nil {
				webErr = a.web.Shutdown(ctx)
			}
		}()
		go func() {
			defer wg.Done()
			if a.ql != nil {
				qlErr = a.ql.Shutdown(ctx)
			}
		}()
		wg.Wait()
		if webErr != nil {
			errs = append(errs, fmt.Errorf("browser front end: %w", webErr))
		}
		if qlErr != nil {
			errs = append(errs, fmt.Errorf("CometQL front end: %w", qlErr))
		}
		if a.hub != nil {
			a.hub.CloseSessions()
		}
		if a.eng != nil {
			if err := a.eng.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("engine: %w", err))
			}
		}
		if err := a.closeStore(); err != nil {
			errs = append(errs, err)
		}
		a.shutdownErr = errors.Join(errs...)
	})
	return a.shutdownErr
}

func (a *App) closeStore() error {
	if a.redisAuth != nil {
		a.redisAuth.Close()
		a.redisAuth = nil
	}
	if a.store == nil {
		return nil
	}
	if err := a.store.Close(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// loadPassword takes the configured password, else the one saved in the
// data directory, else generates one and saves it there (mode 0600) so
// restarts keep it.
func (a *App) loadPassword() error {
	a.pwFile = filepath.Join(a.cfg.DataDir, "password")
	if a.cfg.Password != "" {
		a.password = a.cfg.Password
		return nil
	}
	if b, err := os.ReadFile(a.pwFile); err == nil {
		if pw := strings.TrimSpace(string(b)); pw != "" {
			a.password = pw
			return nil
		}
	}
	var raw [18]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("generate password: %w", err)
	}
	a.password = base64.RawURLEncoding.EncodeToString(raw[:])
	if err := os.WriteFile(a.pwFile, []byte(a.password+"\n"), 0o600); err != nil {
		return fmt.Errorf("save generated password: %w", err)
	}
	a.pwGenerated = true
	return nil
}

// loadClusterPassword takes the configured password, else the cluster's
// shared one from Redis; a cluster without one stores the password saved in
// the data directory, if any, or a generated one, so every node uses the
// same password (and JWT secret).
func (a *App) loadClusterPassword(ctx context.Context) error {
	if a.cfg.Password != "" {
		a.password = a.cfg.Password
		return nil
	}
	candidate, generated := "", false
	if a.cfg.DataDir != "" {
		if b, err := os.ReadFile(filepath.Join(a.cfg.DataDir, "password")); err == nil {
			candidate = strings.TrimSpace(string(b))
		}
	}
	if candidate == "" {
		var raw [18]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return fmt.Errorf("generate password: %w", err)
		}
		candidate, generated = base64.RawURLEncoding.EncodeToString(raw[:]), true
	}
	pw, created, err := a.redisAuth.SharedSecret(ctx, "password", candidate)
	if err != nil {
		return fmt.Errorf("cluster password: %w", err)
	}
	a.password = pw
	a.pwGenerated = created && generated
	a.pwFile = "Redis (the cluster's shared password)"
	return nil
}

// userDirectory gives the hub the users_data of one user.
type userDirectory struct{ svc *auth.Service }

func (u userDirectory) UserData(ctx context.Context, dev, user int64) (string, error) {
	m, err := u.svc.UserData(ctx, dev, []int64{user})
	if err != nil {
		return "", err
	}
	return m[user], nil
}

// setFileLimit sets the soft open-files limit to the hard one, or to max
// when it is positive and lower, logs the result (every connection costs a
// descriptor) and returns the soft limit (0 when unknown).
func setFileLimit(log *slog.Logger, max int) int64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("cannot read the open-files limit", "err", err)
		return 0
	}
	want := lim.Max
	if max > 0 && uint64(max) < want {
		want = uint64(max)
	}
	if lim.Cur != want {
		set := lim
		set.Cur = want
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &set); err == nil {
			lim = set
		} else {
			log.Warn("cannot set the open-files limit", "want", want, "err", err)
		}
	}
	log.Info("open files limit", "soft", lim.Cur, "hard", lim.Max)
	return int64(min(lim.Cur, 1<<31))
}
