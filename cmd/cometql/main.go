// Command cometql is the cometql server: CometQL (the MySQL wire protocol)
// for backends, WebSocket and long-polling for browsers.
//
//	cometql [flags]          run the server (see --help)
//	cometql --version        print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cometql/cometql/internal/app"
	"github.com/cometql/cometql/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	opts := newOptions(stderr)
	if err := opts.parse(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "cometql: %v\n", err)
		return 2
	}
	if opts.version {
		fmt.Fprintln(stdout, version.Server())
		return 0
	}
	cfg := opts.cfg
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "cometql: invalid configuration: %v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)

	a, err := app.New(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "cometql: cannot start: %v\n", err)
		return 1
	}
	if a.PasswordGenerated() {
		fmt.Fprintf(stdout, "cometql: CometQL password (generated, saved in %s): %s\n", a.PasswordFile(), a.Password())
	}
	if err := a.Start(); err != nil {
		fmt.Fprintf(stderr, "cometql: cannot start: %v\n", err)
		a.Shutdown(context.Background())
		return 1
	}
	fmt.Fprintf(stdout, "cometql: %s ready: CometQL on %s, HTTP on %s\n", version.Server(), a.QLAddr(), a.HTTPAddr())

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	var sig os.Signal
	select {
	case sig = <-sigs:
	case err := <-a.Done():
		log.Error("server stopped", "err", err)
		a.Shutdown(context.Background())
		return 1
	}
	log.Info("shutting down", "signal", sig.String(), "timeout", cfg.ShutdownTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			log.Error("shutdown", "err", err)
			return 1
		}
		log.Info("stopped")
		return 0
	case sig = <-sigs:
		log.Warn("second signal: exiting at once", "signal", sig.String())
		return 130
	}
}

func newLogger(cfg app.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
