package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// runner is one run of a scenario.
type runner struct {
	o      *options
	stderr io.Writer
	srv    *serverWatch
	res    result
	pool   *pool
	be     backend
	pubs   *pubGroup
	src    []string

	before, after serverSample // around the measurement
	win0, win1    serverSample // the measuring window
	self0, self1  procSample   // this process over the window
	mark0, mark1  markStats    // the workers over the window
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.stderr, "cometql-bench: "+format+"\n", args...)
}

// runScenario runs o's scenario and prints its result line (also when the
// run fails, with the error in "errors"); the exit code is 0 on success.
func runScenario(o *options, stdout, stderr io.Writer) int {
	r := &runner{o: o, stderr: stderr}
	r.res = result{
		Scenario:  o.Scenario,
		Label:     o.Label,
		Timestamp: time.Now().UTC().Format(time.RFC3339),
		Commit:    o.Commit,
		Params:    o.params(),
	}
	if o.Soak {
		r.res.Scenario = scSoak
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			r.logf("interrupted: stopping workers")
			if p := r.pool; p != nil {
				p.kill()
			}
			os.Exit(130)
		}
	}()

	r.watchServer()
	err := r.scenario()
	r.finish()
	if err != nil {
		r.res.Errors = append(r.res.Errors, err.Error())
		r.logf("%s failed: %v", o.Scenario, err)
	}
	b, _ := json.Marshal(r.res)
	fmt.Fprintf(stdout, "%s\n", b)
	if err != nil {
		return 1
	}
	return 0
}

func (r *runner) scenario() error {
	o := r.o
	total := o.Subs
	if o.Scenario == scChurn {
		total = o.Concurrency * 4 // closed connections linger in TIME_WAIT: spread wider
	}
	src, err := sourceAddrs(o.Src, o.HTTPAddr, total, o.ConnsPerAddr)
	if err != nil {
		return err
	}
	r.src = src
	switch o.Scenario {
	case scIdle:
		return r.idle()
	case scChurn:
		return r.churn()
	default:
		return r.traffic()
	}
}

// watchServer finds the server process and checks /metrics.
func (r *runner) watchServer() {
	pid := r.o.ServerPID
	if pid == 0 {
		p, err := findListenerPID(r.o.HTTPAddr)
		if err != nil {
			r.logf("server RSS/CPU not measured: %v (use --server-pid)", err)
		} else {
			pid = p
		}
	}
	r.srv = &serverWatch{pid: pid, metricsURL: r.o.MetricsURL, hc: &http.Client{Timeout: 5 * time.Second}}
	if r.srv.metricsURL != "" {
		if _, err := r.srv.goroutines(); err != nil {
			r.logf("server goroutines not measured: %v", err)
			r.srv.metricsURL = ""
		}
	}
	if pid > 0 {
		r.logf("server pid %d", pid)
	}
}

// finish closes everything and fills the server and bench reports.
func (r *runner) finish() {
	if r.pubs != nil {
		r.pubs.stop()
		r.pubs.close()
	}
	if r.pool != nil {
		r.pool.close(2 * time.Minute)
	}
	if r.be != nil {
		r.be.close()
	}
	if r.srv.pid <= 0 || !r.before.ok {
		return
	}
	// Let the server notice the closed connections: wait (up to 15 s) until
	// its open files are back to where they were, so the end sample shows
	// what stays (a leak) and not what is still closing.
	end := r.srv.sample()
	for deadline := time.Now().Add(15 * time.Second); end.ok && end.proc.FDs > r.before.proc.FDs+2 && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		end = r.srv.sample()
	}
	time.Sleep(250 * time.Millisecond)
	end = r.srv.sample()
	if !r.after.ok {
		r.after = end
	}
	s := &serverReport{
		PID:              r.srv.pid,
		RSSBeforeKB:      r.before.proc.RSSKB,
		RSSAfterKB:       r.after.proc.RSSKB,
		RSSPeakKB:        end.proc.HWMKB,
		RSSEndKB:         end.proc.RSSKB,
		FDsBefore:        r.before.proc.FDs,
		FDsAfter:         r.after.proc.FDs,
		FDsEnd:           end.proc.FDs,
		Threads:          r.after.proc.Threads,
		GoroutinesBefore: optInt(r.before.goroutines),
		GoroutinesAfter:  optInt(r.after.goroutines),
		GoroutinesEnd:    optInt(end.goroutines),
	}
	if r.win0.ok && r.win1.ok {
		s.CPUPct = cpuPercent(r.win0.proc, r.win1.proc)
		s.CPUSeconds = round3(float64(r.win1.proc.CPUTicks-r.win0.proc.CPUTicks) / clockTicks)
	}
	r.res.Server = s
}

// specs splits total connections (or churn loops) over worker processes.
func (r *runner) specs(role string, total int) []workerSpec {
	o := r.o
	per := o.PerWorker
	if lim := fdLimit(); lim > 0 && per > lim-300 {
		per = max(lim-300, 1)
		r.logf("--per-worker lowered to %d: the open-file limit is %d", per, lim)
	}
	n := o.Workers
	if n <= 0 {
		n = max(1, (total+per-1)/per)
	}
	n = min(n, max(total, 1))
	base := workerSpec{
		Role:               role,
		Transport:          o.Transport,
		HTTPAddr:           o.HTTPAddr,
		PathPrefix:         o.PathPrefix,
		Origin:             o.Origin,
		Key:                o.Key,
		UserID:             o.UserID,
		DevID:              o.DevID,
		PipePrefix:         o.Prefix,
		Pipes:              o.Pipes,
		Src:                r.src,
		ConnectConcurrency: o.ConnectConcurrency,
		ConnectTimeout:     o.ConnectTimeout,
		ConnectRetries:     o.ConnectRetries,
		ReadBuffer:         o.ReadBuffer,
		WriteBuffer:        o.WriteBuffer,
	}
	if role == roleSubs && o.Window > 0 && o.Pipes == 1 && o.Scenario != scIdle {
		base.SeenStreams = o.Publishers
	}
	specs := make([]workerSpec, n)
	first := 0
	for i := range specs {
		cnt := total / n
		if i < total%n {
			cnt++
		}
		specs[i] = base
		specs[i].First, specs[i].Count = first, cnt
		first += cnt
	}
	r.res.Bench.Workers = n
	return specs
}

// connect starts the workers and waits until every subscriber is
// connected (or given up on).
func (r *runner) connect() (*connResults, error) {
	o := r.o
	specs := r.specs(roleSubs, o.Subs)
	r.logf("%s: connecting %d %s subscribers to %d pipe(s) from %d worker process(es), %d source address(es)",
		o.Scenario, o.Subs, o.Transport, o.Pipes, len(specs), max(len(r.src), 1))
	p, err := startPool(specs)
	if err != nil {
		return nil, err
	}
	r.pool = p
	start := time.Now()
	cpu0 := r.srv.sample()
	_, err = p.await("ready", 0, 30*time.Minute, func() {
		if !o.Quiet {
			c, f, _ := p.totals()
			r.logf("connecting: %d/%d connected, %d failed, %.0f/s", c, o.Subs, f, float64(c)/time.Since(start).Seconds())
		}
	})
	if err != nil {
		return nil, err
	}
	cpu1 := r.srv.sample()
	rep, err := r.report()
	if err != nil {
		return nil, err
	}
	c := &connResults{
		Requested:   o.Subs,
		Connected:   rep.Connected,
		Failed:      rep.Failed,
		LatencyMS:   rep.Connect.summary(),
		Workers:     len(specs),
		SourceAddrs: max(len(r.src), 1),
	}
	if rep.ConnectEnd > rep.ConnectStart {
		c.Seconds = round3(float64(rep.ConnectEnd-rep.ConnectStart) / 1e9)
		c.PerSec = perSec(float64(rep.Connected), c.Seconds)
	}
	if cpu0.ok && cpu1.ok {
		c.ServerCPUS = round3(float64(cpu1.proc.CPUTicks-cpu0.proc.CPUTicks) / clockTicks)
	}
	r.logf("connected %d/%d in %.1fs (%.0f/s), %d failed", c.Connected, o.Subs, c.Seconds, c.PerSec, c.Failed)
	r.res.Errors = append(r.res.Errors, rep.Errors...)
	if c.Connected == 0 {
		return c, errors.New("no subscriber could connect")
	}
	return c, nil
}

// report asks every worker for its report and merges them.
func (r *runner) report() (workerReport, error) {
	evs, err := r.pool.request(command{Op: "report"}, "report", 2*time.Minute, nil)
	if err != nil {
		return workerReport{}, err
	}
	rep := mergeReports(evs)
	r.res.Bench.RSSKB = rep.RSSKB
	return rep, nil
}

// mark takes a snapshot of the workers' counters (resetting their latency
// histograms when reset).
func (r *runner) mark(reset bool) (markStats, error) {
	evs, err := r.pool.request(command{Op: "mark", Reset: reset}, "mark", time.Minute, nil)
	if err != nil {
		return markStats{}, err
	}
	return sumMarks(evs), nil
}

// openWindow and closeWindow bracket the measuring window.
func (r *runner) openWindow() error {
	m, err := r.mark(true)
	if err != nil {
		return err
	}
	r.mark0 = m
	r.win0 = r.srv.sample()
	r.self0, _ = readProc(os.Getpid())
	return nil
}

func (r *runner) closeWindow() error {
	r.win1 = r.srv.sample()
	r.self1, _ = readProc(os.Getpid())
	m, err := r.mark(false)
	if err != nil {
		return err
	}
	r.mark1 = m
	d := r.win1.proc.At.Sub(r.win0.proc.At).Seconds()
	if d > 0 {
		ticks := float64(r.mark1.CPUTicks-r.mark0.CPUTicks) + float64(r.self1.CPUTicks-r.self0.CPUTicks)
		r.res.Bench.CPUPct = round3(ticks / clockTicks / d * 100)
	}
	return nil
}

func (r *runner) windowSeconds() float64 { return r.win1.proc.At.Sub(r.win0.proc.At).Seconds() }

// waitSubscribed waits until the server counts want subscriptions on our
// pipes (SELECT name, users FROM pipes), then --settle more.
func (r *runner) waitSubscribed(want int64) {
	if r.be != nil {
		deadline := time.Now().Add(r.o.SettleTimeout)
		last := -1
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			n, err := r.be.pipeUsers(ctx, r.o.Prefix)
			cancel()
			if err != nil {
				r.logf("cannot count subscriptions (%v): waiting --settle only", err)
				break
			}
			if int64(n) >= want {
				r.logf("server counts %d subscriptions", n)
				break
			}
			if time.Now().After(deadline) {
				r.logf("warning: the server counts %d of %d subscriptions after %v", n, want, r.o.SettleTimeout)
				r.res.Errors = append(r.res.Errors, fmt.Sprintf("server counted %d of %d subscriptions", n, want))
				break
			}
			if n != last && !r.o.Quiet {
				r.logf("server counts %d/%d subscriptions", n, want)
				last = n
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	time.Sleep(r.o.Settle)
}

func (r *runner) pipeNames() []string {
	names := make([]string, r.o.Pipes)
	for i := range names {
		names[i] = fmt.Sprintf("%s%d", r.o.Prefix, i)
	}
	return names
}

// idle: connect, settle, measure RSS per connection.
func (r *runner) idle() error {
	o := r.o
	if be, err := openBackend(o); err != nil {
		r.logf("no CometQL connection (%v): subscriptions are not verified", err)
	} else {
		r.be = be
	}
	r.before = r.srv.sample()
	conn, err := r.connect()
	r.res.Results.Connections = conn
	if err != nil {
		return err
	}
	// The window is the settled, idle time: server CPU there is the cost of
	// keeping connections open (pings, timers).
	if err := r.openWindow(); err != nil {
		return err
	}
	r.waitSubscribed(conn.Connected)
	r.after = r.srv.sample()
	if o.Hold > 0 {
		r.logf("holding %d connections for %v", conn.Connected, o.Hold)
		time.Sleep(o.Hold)
	}
	if err := r.closeWindow(); err != nil {
		return err
	}
	rep, err := r.report()
	if err != nil {
		return err
	}
	conn.Disconnects = rep.Disconnects
	if rep.ErrorFrames > 0 {
		r.res.Errors = append(r.res.Errors, fmt.Sprintf("%d error frames", rep.ErrorFrames))
	}
	idle := &idleResults{}
	if r.before.ok && r.after.ok {
		n := float64(conn.Connected)
		idle.RSSPerConnBytes = round3(float64(r.after.proc.RSSKB-r.before.proc.RSSKB) * 1024 / n)
		idle.FDsPerConn = round3(float64(r.after.proc.FDs-r.before.proc.FDs) / n)
		if r.before.goroutines >= 0 && r.after.goroutines >= 0 {
			g := round3(float64(r.after.goroutines-r.before.goroutines) / n)
			idle.GoroutinesPerConn = &g
		}
		r.logf("server RSS %d kB -> %d kB: %.0f bytes per connection", r.before.proc.RSSKB, r.after.proc.RSSKB, idle.RSSPerConnBytes)
	}
	r.res.Results.Idle = idle
	return nil
}

// traffic runs fanout, publish, manypipes and history (and soak).
func (r *runner) traffic() error {
	o := r.o
	be, err := openBackend(o)
	if err != nil {
		return err
	}
	r.be = be
	pipes := r.pipeNames()
	if o.Scenario == scHistory {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		for _, p := range pipes {
			q := fmt.Sprintf("INSERT INTO pipes_settings (name, length) VALUES (%s, %d)", quoteSQL(p), o.HistoryLength)
			if err := be.exec(ctx, q); err != nil {
				cancel()
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		cancel()
		r.logf("history on for %d pipe(s), length %d", len(pipes), o.HistoryLength)
	}
	r.before = r.srv.sample()
	conn, err := r.connect()
	r.res.Results.Connections = conn
	if err != nil {
		return err
	}
	r.waitSubscribed(conn.Connected)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	pubs, err := openPublishers(ctx, be, o.Publishers, pipes, o.Event, o.Size, o.Rate, o.Batch, o.Window)
	cancel()
	if err != nil {
		return err
	}
	r.pubs = pubs
	if pubs.window > 0 {
		r.pool.setOnSeen(pubs.setSeen)
	}
	rate := "max rate"
	if o.Rate > 0 {
		rate = fmt.Sprintf("%.0f msg/s", o.Rate)
	}
	if pubs.window > 0 {
		rate += fmt.Sprintf(" (at most %d in flight per publisher)", pubs.window)
	}
	if o.Batch > 1 {
		rate += fmt.Sprintf(", %d per INSERT", o.Batch)
	}
	r.logf("publishing %d-byte messages from %d connection(s) at %s: warm-up %v, window %v", o.Size, o.Publishers, rate, o.Warmup, o.Duration)
	pubs.start()
	time.Sleep(o.Warmup)

	if err := r.openWindow(); err != nil {
		return err
	}
	ok0 := pubs.ok.Load()
	pubs.lat.reset()
	var soak *soakResults
	if o.Soak {
		soak = r.soakWindow()
	} else {
		r.sleepWithProgress(o.Duration, func() string {
			return fmt.Sprintf("published %d", pubs.ok.Load()-ok0)
		})
	}
	if err := r.closeWindow(); err != nil {
		return err
	}
	ok1 := pubs.ok.Load()
	pubLat := pubs.lat.snapshot()
	pubs.stop()
	win := r.windowSeconds()
	if soak != nil {
		soak.add(r.win1, win)
		r.res.Results.Soak = soak
	}
	r.res.Results.Publish = &publishResults{
		Published:  pubs.ok.Load(),
		InWindow:   ok1 - ok0,
		Errors:     pubs.errs.Load(),
		PerSec:     perSec(float64(ok1-ok0), win),
		LatencyMS:  pubLat.summary(),
		FirstError: pubs.firstErr,
	}

	// Drain: wait for the deliveries still on their way.
	if err := r.pool.broadcast(command{Op: "expect", OKPerPipe: pubs.okPerPipe()}); err != nil {
		return err
	}
	drainStart := time.Now()
	var rep workerReport
	for {
		if rep, err = r.report(); err != nil {
			return err
		}
		if rep.Lost == 0 || time.Since(drainStart) >= o.Drain {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	r.after = r.srv.sample()
	conn.Disconnects = rep.Disconnects
	r.res.Results.Delivery = &deliveryResults{
		Subscribers:  rep.Connected,
		Expected:     rep.Expected,
		Received:     rep.Deliveries,
		Lost:         rep.Lost,
		Duplicated:   rep.Duplicated,
		OutOfOrder:   rep.OutOfOrder,
		PerSec:       perSec(float64(r.mark1.Deliveries-r.mark0.Deliveries), win),
		LatencyMS:    rep.Latency.summary(),
		ErrorFrames:  rep.ErrorFrames,
		BadFrames:    rep.BadFrames,
		PollErrors:   rep.PollErrors,
		DrainSeconds: round3(time.Since(drainStart).Seconds()),
	}
	d := r.res.Results.Delivery
	r.logf("window %.1fs: %.0f inserts/s, %.0f deliveries/s, latency p50 %.2f ms p99 %.2f ms max %.2f ms; lost %d, duplicated %d, out of order %d, disconnects %d",
		win, r.res.Results.Publish.PerSec, d.PerSec, d.LatencyMS.P50, d.LatencyMS.P99, d.LatencyMS.Max, d.Lost, d.Duplicated, d.OutOfOrder, rep.Disconnects)
	for _, e := range rep.Errors {
		r.logf("  %s", e)
	}
	r.res.Errors = append(r.res.Errors, rep.Errors...)
	if pubs.firstErr != "" {
		r.res.Errors = append(r.res.Errors, "publish: "+pubs.firstErr)
	}
	return nil
}

// sleepWithProgress sleeps d, logging status() every 5 seconds.
func (r *runner) sleepWithProgress(d time.Duration, status func() string) {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return
		}
		step := min(left, 5*time.Second)
		time.Sleep(step)
		if !r.o.Quiet && time.Until(end) > 0 {
			r.logf("%.0fs left: %s", time.Until(end).Seconds(), status())
		}
	}
}

// soakWindow runs the window, sampling the server every --sample-interval.
func (r *runner) soakWindow() *soakResults {
	s := &soakResults{}
	s.add(r.win0, 0)
	start := r.win0.proc.At
	end := start.Add(r.o.Duration)
	for {
		next := time.Now().Add(r.o.SampleEvery)
		if next.After(end) {
			time.Sleep(time.Until(end))
			return s
		}
		time.Sleep(time.Until(next))
		smp := r.srv.sample()
		s.add(smp, smp.proc.At.Sub(start).Seconds())
		r.logf("soak %4.0fs: RSS %.1f MB, goroutines %d, fds %d, published %d",
			smp.proc.At.Sub(start).Seconds(), float64(smp.proc.RSSKB)/1024, smp.goroutines, smp.proc.FDs, r.pubs.ok.Load())
	}
}

// add appends a sample and recomputes the summaries.
func (s *soakResults) add(smp serverSample, at float64) {
	s.Series = append(s.Series, [4]int64{int64(at), smp.proc.RSSKB, int64(smp.goroutines), int64(smp.proc.FDs)})
	s.Samples = len(s.Series)
	var rss, gor, fds []int64
	for _, p := range s.Series {
		rss = append(rss, p[1])
		if p[2] >= 0 {
			gor = append(gor, p[2])
		}
		fds = append(fds, p[3])
	}
	s.RSSKB, s.FDs = newDrift(rss), newDrift(fds)
	s.Goroutines = nil
	if len(gor) > 0 {
		g := newDrift(gor)
		s.Goroutines = &g
	}
}

// churn: K loops of connect + subscribe + close.
func (r *runner) churn() error {
	o := r.o
	r.before = r.srv.sample()
	specs := r.specs(roleChurn, o.Concurrency)
	p, err := startPool(specs)
	if err != nil {
		return err
	}
	r.pool = p
	if _, err := p.await("ready", 0, time.Minute, nil); err != nil {
		return err
	}
	r.logf("churn: %d concurrent %s connect+subscribe+close loops: warm-up %v, window %v", o.Concurrency, o.Transport, o.Warmup, o.Duration)
	if err := p.broadcast(command{Op: "churn_start"}); err != nil {
		return err
	}
	time.Sleep(o.Warmup)
	if err := r.openWindow(); err != nil {
		return err
	}
	r.sleepWithProgress(o.Duration, func() string {
		_, f, ops := p.totals()
		return fmt.Sprintf("%d ops, %d errors", ops, f)
	})
	if err := r.closeWindow(); err != nil {
		return err
	}
	if _, err := p.request(command{Op: "churn_stop"}, "churn_stopped", time.Minute, nil); err != nil {
		return err
	}
	rep, err := r.report()
	if err != nil {
		return err
	}
	win := r.windowSeconds()
	c := &churnResults{
		Ops:       r.mark1.Ops - r.mark0.Ops,
		Errors:    r.mark1.OpErrors - r.mark0.OpErrors,
		LatencyMS: rep.OpLatency.summary(),
	}
	c.PerSec = perSec(float64(c.Ops), win)
	r.res.Results.Churn = c
	r.res.Errors = append(r.res.Errors, rep.Errors...)
	r.logf("churn: %.0f ops/s, p50 %.2f ms, p99 %.2f ms, %d errors", c.PerSec, c.LatencyMS.P50, c.LatencyMS.P99, c.Errors)
	time.Sleep(o.Settle) // let the server finish closing before the after sample
	r.after = r.srv.sample()
	return nil
}
