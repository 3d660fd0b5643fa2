package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// worker is one worker process's state: its subscribers or churn loops.
type worker struct {
	spec workerSpec
	ctx  context.Context
	stop context.CancelFunc

	outMu sync.Mutex
	out   *json.Encoder

	subs    []*sub
	ws      []*wsClient // one per source address
	lp      []*lpClient // one per source address
	lat     *atomicHistogram
	opLat   *atomicHistogram
	closing atomic.Bool

	connected   atomic.Int64
	failed      atomic.Int64
	disconnects atomic.Int64
	deliveries  atomic.Uint64
	pollErrors  atomic.Uint64
	ops         atomic.Uint64
	opErrors    atomic.Uint64

	mu           sync.Mutex
	connect      *histogram
	connectStart int64
	connectEnd   int64
	okPerPipe    []uint64
	errSamples   []string
	churnStop    context.CancelFunc
	churnDone    chan struct{}
}

// sub is one subscriber connection and what it received.
type sub struct {
	idx  int // global index
	pipe int

	mu     sync.Mutex
	tr     subTracker
	recv   uint64 // our messages received, duplicates included
	ready  bool   // connected and subscribed
	gone   bool   // disconnected by the other side
	errs   uint32
	bad    uint32
	closer func()
}

const maxErrSamples = 8

// workerMain runs a worker: commands from in, events to out. It returns the
// process exit code.
func workerMain(in io.Reader, out io.Writer) int {
	w := &worker{out: json.NewEncoder(out)}
	dec := json.NewDecoder(bufio.NewReaderSize(in, 1<<16))
	var c command
	if err := dec.Decode(&c); err != nil || c.Op != "init" || c.Spec == nil {
		w.emit(event{Ev: "error", Msg: fmt.Sprintf("worker: want an init command first (%v)", err)})
		return 2
	}
	w.init(*c.Spec)
	defer w.stop()
	if dir := os.Getenv("COMETQL_BENCH_CPUPROFILE"); dir != "" {
		// Profiling the tool itself: one CPU profile per worker.
		if f, err := os.Create(fmt.Sprintf("%s/worker%d.pprof", dir, w.spec.Worker)); err == nil {
			pprof.StartCPUProfile(f)
			defer func() {
				pprof.StopCPUProfile()
				f.Close()
			}()
		}
	}
	if w.spec.Role == roleSubs {
		go w.connectAll()
	} else {
		w.emit(event{Ev: "ready", Worker: w.spec.Worker})
	}
	for {
		var c command
		if err := dec.Decode(&c); err != nil {
			// The parent is gone (or sent garbage): clean up and leave.
			w.closeAll()
			if errors.Is(err, io.EOF) {
				return 0
			}
			logf("worker %d: bad command: %v", w.spec.Worker, err)
			return 1
		}
		switch c.Op {
		case "mark":
			m := w.mark(c.Reset)
			w.emit(event{Ev: "mark", Worker: w.spec.Worker, ID: c.ID, Mark: &m})
		case "expect":
			w.mu.Lock()
			w.okPerPipe = c.OKPerPipe
			w.mu.Unlock()
		case "report":
			r := w.report()
			w.emit(event{Ev: "report", Worker: w.spec.Worker, ID: c.ID, Report: &r})
		case "churn_start":
			w.startChurn()
		case "churn_stop":
			w.stopChurn()
			w.emit(event{Ev: "churn_stopped", Worker: w.spec.Worker, ID: c.ID})
		case "close":
			w.closeAll()
			w.emit(event{Ev: "closed", Worker: w.spec.Worker, ID: c.ID})
			return 0
		default:
			logf("worker %d: unknown command %q", w.spec.Worker, c.Op)
		}
	}
}

func (w *worker) init(spec workerSpec) {
	w.spec = spec
	if w.spec.Pipes <= 0 {
		w.spec.Pipes = 1
	}
	if w.spec.ConnectConcurrency <= 0 {
		w.spec.ConnectConcurrency = 64
	}
	if w.spec.ConnectTimeout <= 0 {
		w.spec.ConnectTimeout = 10 * time.Second
	}
	w.ctx, w.stop = context.WithCancel(context.Background())
	w.lat = newAtomicHistogram(8)
	w.opLat = newAtomicHistogram(8)
	w.connect = newHistogram()
	if w.spec.Role == roleSubs {
		w.subs = make([]*sub, w.spec.Count)
		for i := range w.subs {
			idx := w.spec.First + i
			w.subs[i] = &sub{idx: idx, pipe: idx % w.spec.Pipes}
		}
	}
	srcs := spec.Src
	if len(srcs) == 0 {
		srcs = []string{""}
	}
	for _, s := range srcs {
		if spec.Transport == "lp" {
			w.lp = append(w.lp, newLPClient(&w.spec, s))
		} else {
			w.ws = append(w.ws, newWSClient(&w.spec, s))
		}
	}
}

// emit writes one event line to the parent.
func (w *worker) emit(e event) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	if err := w.out.Encode(e); err != nil {
		logf("worker %d: writing to parent: %v", w.spec.Worker, err)
	}
}

func (w *worker) noteError(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errSamples) < maxErrSamples {
		w.errSamples = append(w.errSamples, fmt.Sprintf(format, args...))
	}
}

func (w *worker) pipeName(i int) string {
	return fmt.Sprintf("%s%d", w.spec.PipePrefix, i%w.spec.Pipes)
}

// connectAll connects and subscribes every subscriber of this worker,
// ConnectConcurrency at a time, then reports ready.
func (w *worker) connectAll() {
	n := len(w.subs)
	w.mu.Lock()
	w.connectStart = time.Now().UnixNano()
	w.mu.Unlock()

	next := make(chan *sub)
	var wg sync.WaitGroup
	for range min(w.spec.ConnectConcurrency, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range next {
				w.connectOne(s)
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-tick.C:
				w.emit(event{Ev: "progress", Worker: w.spec.Worker, Connected: w.connected.Load(), Failed: w.failed.Load()})
			case <-done:
				return
			}
		}
	}()
	for _, s := range w.subs {
		if w.ctx.Err() != nil {
			break
		}
		next <- s
	}
	close(next)
	wg.Wait()
	close(done)
	w.mu.Lock()
	w.connectEnd = time.Now().UnixNano()
	w.mu.Unlock()
	w.emit(event{Ev: "ready", Worker: w.spec.Worker, Connected: w.connected.Load(), Failed: w.failed.Load()})
	if w.spec.SeenStreams > 0 {
		go w.reportSeen()
	}
}

// seenEvery is how often a worker reports the delivery window.
const seenEvery = 10 * time.Millisecond

// reportSeen sends a seen event whenever what every live subscriber has
// received moves on, until the worker closes.
func (w *worker) reportSeen() {
	t := time.NewTicker(seenEvery)
	defer t.Stop()
	last := make([]uint64, w.spec.SeenStreams)
	cur := make([]uint64, w.spec.SeenStreams)
	sent := false
	for {
		select {
		case <-t.C:
		case <-w.ctx.Done():
			return
		}
		if w.closing.Load() {
			return
		}
		for i := range cur {
			cur[i] = ^uint64(0) // no live subscriber holds anything back
		}
		for _, s := range w.subs {
			s.mu.Lock()
			if s.ready && !s.gone {
				for i := range cur {
					var hi uint64
					if i < len(s.tr.streams) && s.tr.streams[i].next > 0 {
						hi = s.tr.streams[i].next - 1
					}
					cur[i] = min(cur[i], hi)
				}
			}
			s.mu.Unlock()
		}
		if sent && slices.Equal(cur, last) {
			continue
		}
		copy(last, cur)
		sent = true
		w.emit(event{Ev: "seen", Worker: w.spec.Worker, Seen: append([]uint64(nil), cur...)})
	}
}

// connectOne connects one subscriber, retrying a few times.
func (w *worker) connectOne(s *sub) {
	pipe := w.pipeName(s.idx)
	var err error
	for attempt := 0; attempt <= w.spec.ConnectRetries; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 250 * time.Millisecond):
			case <-w.ctx.Done():
				return
			}
		}
		start := time.Now()
		if w.spec.Transport == "lp" {
			err = w.lp[s.idx%len(w.lp)].subscribe(w, s, pipe)
		} else {
			err = w.ws[s.idx%len(w.ws)].subscribe(w, s, pipe)
		}
		if err == nil {
			w.mu.Lock()
			w.connect.record(int64(time.Since(start)))
			w.mu.Unlock()
			w.connected.Add(1)
			return
		}
		if w.ctx.Err() != nil {
			return
		}
	}
	w.failed.Add(1)
	w.noteError("connect %d: %v", s.idx, err)
}

// onFrame handles one server text frame received by s at now (unix nanos).
func (w *worker) onFrame(s *sub, frame []byte, now int64) {
	s.mu.Lock()
	eachObject(frame, func(obj []byte) {
		r := classifyFrame(obj)
		switch r.kind {
		case frameMessage:
			s.recv++
			w.deliveries.Add(1)
			w.lat.record(s.idx, now-r.p.T)
			s.tr.add(r.p.W, r.p.S)
		case frameError:
			s.errs++
			w.noteError("error frame: %.200s", obj)
		case frameBad:
			s.bad++
			w.noteError("unparsable frame: %.200s", obj)
		}
	})
	s.mu.Unlock()
}

// lostConn records that s was disconnected by the server or the network.
func (w *worker) lostConn(s *sub, err error) {
	if w.closing.Load() {
		return
	}
	s.mu.Lock()
	already := s.gone
	s.gone = true
	s.mu.Unlock()
	if !already {
		w.disconnects.Add(1)
		w.noteError("subscriber %d disconnected: %v", s.idx, err)
	}
}

func (w *worker) mark(reset bool) markStats {
	m := markStats{
		At:          time.Now().UnixNano(),
		Deliveries:  w.deliveries.Load(),
		Disconnects: w.disconnects.Load(),
		Live:        w.connected.Load() - w.disconnects.Load(),
		Ops:         w.ops.Load(),
		OpErrors:    w.opErrors.Load(),
	}
	if ps, err := readProc(os.Getpid()); err == nil {
		m.CPUTicks = ps.CPUTicks
	}
	if reset {
		w.lat.reset()
		w.opLat.reset()
	}
	return m
}

func (w *worker) report() workerReport {
	w.mu.Lock()
	r := workerReport{
		ConnectStart: w.connectStart,
		ConnectEnd:   w.connectEnd,
		Connect:      w.connect,
		Errors:       append([]string(nil), w.errSamples...),
	}
	okPerPipe := w.okPerPipe
	w.mu.Unlock()
	r.Connected = w.connected.Load()
	r.Failed = w.failed.Load()
	r.Disconnects = w.disconnects.Load()
	r.PollErrors = w.pollErrors.Load()
	r.Latency = w.lat.snapshot()
	r.Ops = w.ops.Load()
	r.OpErrors = w.opErrors.Load()
	r.OpLatency = w.opLat.snapshot()
	for _, s := range w.subs {
		s.mu.Lock()
		uniq, dup, ooo := s.tr.totals()
		r.Deliveries += s.recv // counted with uniq, so the two agree
		r.Unique += uniq
		r.Duplicated += dup
		r.OutOfOrder += ooo
		r.ErrorFrames += uint64(s.errs)
		r.BadFrames += uint64(s.bad)
		if s.ready && s.pipe < len(okPerPipe) {
			exp := okPerPipe[s.pipe]
			r.Expected += exp
			if exp > uniq {
				r.Lost += exp - uniq
			}
		}
		s.mu.Unlock()
	}
	if ps, err := readProc(os.Getpid()); err == nil {
		r.CPUTicks = ps.CPUTicks
		r.RSSKB = ps.RSSKB
	}
	return r
}

// closeAll closes every connection (ours closing: not counted as lost).
func (w *worker) closeAll() {
	if w.closing.Swap(true) {
		return
	}
	w.stopChurn()
	w.stop()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, s := range w.subs {
		if s == nil {
			continue
		}
		s.mu.Lock()
		c := s.closer
		s.mu.Unlock()
		if c == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			c()
			<-sem
		}()
	}
	wg.Wait()
}

// startChurn starts Count loops of connect + subscribe + close.
func (w *worker) startChurn() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.churnStop != nil {
		return
	}
	ctx, cancel := context.WithCancel(w.ctx)
	w.churnStop = cancel
	w.churnDone = make(chan struct{})
	w.connectStart = time.Now().UnixNano()
	var wg sync.WaitGroup
	for i := range w.spec.Count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.churnLoop(ctx, w.spec.First+i)
		}()
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				w.emit(event{Ev: "progress", Worker: w.spec.Worker, Ops: w.ops.Load(), Failed: int64(w.opErrors.Load())})
			case <-ctx.Done():
				return
			}
		}
	}()
	done := w.churnDone
	go func() {
		wg.Wait()
		close(done)
	}()
}

func (w *worker) stopChurn() {
	w.mu.Lock()
	stop, done := w.churnStop, w.churnDone
	w.churnStop = nil
	w.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	<-done
	w.mu.Lock()
	w.connectEnd = time.Now().UnixNano()
	w.mu.Unlock()
}

// churnLoop connects, subscribes and closes, over and over, until ctx ends.
func (w *worker) churnLoop(ctx context.Context, loop int) {
	for n := 0; ctx.Err() == nil; n++ {
		uuid := fmt.Sprintf("bc%d_%d", loop, n)
		pipe := w.pipeName(loop + n)
		start := time.Now()
		var err error
		if w.spec.Transport == "lp" {
			err = w.lp[(loop+n)%len(w.lp)].churnOnce(ctx, uuid, pipe)
		} else {
			err = w.ws[(loop+n)%len(w.ws)].churnOnce(ctx, uuid, pipe)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.opErrors.Add(1)
			w.noteError("churn: %v", err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return
			}
			continue
		}
		w.ops.Add(1)
		w.opLat.record(loop, int64(time.Since(start)))
	}
}

// logf writes one line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cometql-bench: "+format+"\n", args...)
}
