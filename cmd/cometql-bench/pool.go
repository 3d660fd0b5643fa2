package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// pool is the parent's handle on its worker processes: the same binary
// re-executed with workerEnv=1, one JSON line per command or event.
type pool struct {
	procs  []*proc
	events chan event
	nextID int
	closed bool

	// onSeen, when set before workers send seen events, gets the merged
	// delivery window: per stream the lowest seq reported by any worker.
	onSeen  func(seen []uint64)
	seenMu  sync.Mutex
	seenBy  [][]uint64 // per worker, its last seen event
	seenAll int        // workers that have reported

	// progress of each worker, from its progress events
	connected []int64
	failed    []int64
	ops       []uint64
}

type proc struct {
	i     int
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed when the process has exited
	mu    sync.Mutex
	enc   *json.Encoder
}

// selfExe is the binary workers run; a variable for tests.
var selfExe = os.Executable

// startPool starts one worker per spec and sends each its spec.
func startPool(specs []workerSpec) (*pool, error) {
	exe, err := selfExe()
	if err != nil {
		return nil, fmt.Errorf("finding own executable: %w", err)
	}
	p := &pool{
		events:    make(chan event, 1<<16),
		connected: make([]int64, len(specs)),
		failed:    make([]int64, len(specs)),
		ops:       make([]uint64, len(specs)),
	}
	for i, spec := range specs {
		spec.Worker = i
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), workerEnv+"=1")
		cmd.Stderr = os.Stderr
		dieWithParent(cmd)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			p.kill()
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			p.kill()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			p.kill()
			return nil, fmt.Errorf("starting worker %d: %w", i, err)
		}
		pr := &proc{i: i, cmd: cmd, stdin: stdin, done: make(chan struct{}), enc: json.NewEncoder(stdin)}
		p.procs = append(p.procs, pr)
		go p.readEvents(pr, stdout)
		if err := pr.send(command{Op: "init", Spec: &spec}); err != nil {
			p.kill()
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
	}
	return p, nil
}

func (p *pool) readEvents(pr *proc, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			p.events <- event{Ev: "error", Worker: pr.i, Msg: fmt.Sprintf("bad event line: %v: %.200s", err, sc.Bytes())}
			continue
		}
		e.Worker = pr.i
		if e.Ev == "seen" {
			p.seen(e)
			continue
		}
		p.events <- e
	}
	err := pr.cmd.Wait()
	close(pr.done)
	p.events <- event{Ev: "exit", Worker: pr.i, Msg: fmt.Sprint(err)}
}

func (pr *proc) send(c command) error {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.enc.Encode(c)
}

// broadcast sends c to every worker.
func (p *pool) broadcast(c command) error {
	for _, pr := range p.procs {
		if err := pr.send(c); err != nil {
			return fmt.Errorf("worker %d: %w", pr.i, err)
		}
	}
	return nil
}

// request sends op to every worker and waits for each one's reply event.
func (p *pool) request(c command, reply string, timeout time.Duration, progress func()) ([]event, error) {
	p.nextID++
	c.ID = p.nextID
	if err := p.broadcast(c); err != nil {
		return nil, err
	}
	return p.await(reply, c.ID, timeout, progress)
}

// await waits for event ev (with id, 0 for any) from every worker, keeping
// progress counters; progress (if not nil) is called every two seconds.
func (p *pool) await(ev string, id int, timeout time.Duration, progress func()) ([]event, error) {
	got := make([]event, len(p.procs))
	have := make([]bool, len(p.procs))
	left := len(p.procs)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for left > 0 {
		select {
		case e := <-p.events:
			switch {
			case e.Ev == "progress":
				p.connected[e.Worker] = e.Connected
				p.failed[e.Worker] = e.Failed
				p.ops[e.Worker] = e.Ops
			case e.Ev == "error":
				return nil, fmt.Errorf("worker %d: %s", e.Worker, e.Msg)
			case e.Ev == "exit":
				return nil, fmt.Errorf("worker %d exited: %s", e.Worker, e.Msg)
			case e.Ev == ev && (id == 0 || e.ID == id) && !have[e.Worker]:
				if ev == "ready" {
					p.connected[e.Worker] = e.Connected
					p.failed[e.Worker] = e.Failed
				}
				got[e.Worker], have[e.Worker] = e, true
				left--
			}
		case <-tick.C:
			if progress != nil {
				progress()
			}
		case <-deadline.C:
			return nil, fmt.Errorf("timed out after %v waiting for %q from %d of %d workers", timeout, ev, left, len(p.procs))
		}
	}
	return got, nil
}

// totals sums the progress counters.
func (p *pool) totals() (connected, failed int64, ops uint64) {
	for i := range p.procs {
		connected += p.connected[i]
		failed += p.failed[i]
		ops += p.ops[i]
	}
	return
}

// close asks every worker to close its connections and exit, and waits up
// to timeout for them to go; stragglers are killed. Workers that already
// died are skipped.
func (p *pool) close(timeout time.Duration) {
	if p.closed {
		return
	}
	p.closed = true
	for _, pr := range p.procs {
		select {
		case <-pr.done:
		default:
			pr.send(command{Op: "close"}) // an error means it is exiting anyway
		}
		pr.stdin.Close() // EOF also makes a worker close everything and exit
	}
	deadline := time.After(timeout)
	for _, pr := range p.procs {
		select {
		case <-pr.done:
		case <-deadline:
			logf("workers did not exit within %v: killing them", timeout)
			p.kill()
			return
		}
	}
}

// kill kills the worker processes it started.
func (p *pool) kill() {
	p.closed = true
	for _, pr := range p.procs {
		if pr.cmd.Process != nil {
			pr.cmd.Process.Kill()
		}
	}
}

// mergeReports adds up the workers' reports.
func mergeReports(evs []event) workerReport {
	var r workerReport
	r.Connect, r.Latency, r.OpLatency = newHistogram(), newHistogram(), newHistogram()
	for _, e := range evs {
		w := e.Report
		if w == nil {
			continue
		}
		r.Connected += w.Connected
		r.Failed += w.Failed
		r.Disconnects += w.Disconnects
		if w.ConnectStart != 0 && (r.ConnectStart == 0 || w.ConnectStart < r.ConnectStart) {
			r.ConnectStart = w.ConnectStart
		}
		r.ConnectEnd = max(r.ConnectEnd, w.ConnectEnd)
		r.Connect.merge(w.Connect)
		r.Deliveries += w.Deliveries
		r.Expected += w.Expected
		r.Unique += w.Unique
		r.Lost += w.Lost
		r.Duplicated += w.Duplicated
		r.OutOfOrder += w.OutOfOrder
		r.ErrorFrames += w.ErrorFrames
		r.BadFrames += w.BadFrames
		r.PollErrors += w.PollErrors
		r.Latency.merge(w.Latency)
		r.Ops += w.Ops
		r.OpErrors += w.OpErrors
		r.OpLatency.merge(w.OpLatency)
		for _, s := range w.Errors {
			if len(r.Errors) < maxErrSamples {
				r.Errors = append(r.Errors, fmt.Sprintf("worker %d: %s", e.Worker, s))
			}
		}
		r.CPUTicks += w.CPUTicks
		r.RSSKB += w.RSSKB
	}
	return r
}

// sumMarks adds up the workers' marks (At is the latest).
func sumMarks(evs []event) markStats {
	var m markStats
	for _, e := range evs {
		if e.Mark == nil {
			continue
		}
		m.At = max(m.At, e.Mark.At)
		m.Deliveries += e.Mark.Deliveries
		m.Disconnects += e.Mark.Disconnects
		m.Live += e.Mark.Live
		m.Ops += e.Mark.Ops
		m.OpErrors += e.Mark.OpErrors
		m.CPUTicks += e.Mark.CPUTicks
	}
	return m
}

// seen merges a worker's seen event into the delivery window: the window
// moves once every worker has reported, to the lowest of their seqs.
func (p *pool) seen(e event) {
	p.seenMu.Lock()
	if p.seenBy == nil {
		p.seenBy = make([][]uint64, len(p.procs))
	}
	if p.seenBy[e.Worker] == nil {
		p.seenAll++
	}
	p.seenBy[e.Worker] = e.Seen
	var merged []uint64
	if p.seenAll == len(p.procs) {
		merged = append([]uint64(nil), p.seenBy[0]...)
		for _, s := range p.seenBy[1:] {
			for i := range merged {
				if i >= len(s) {
					merged[i] = 0
				} else if s[i] < merged[i] {
					merged[i] = s[i]
				}
			}
		}
	}
	f := p.onSeen
	p.seenMu.Unlock()
	if merged != nil && f != nil {
		f(merged)
	}
}

// setOnSeen sets the receiver of the merged delivery window.
func (p *pool) setOnSeen(f func([]uint64)) {
	p.seenMu.Lock()
	p.onSeen = f
	p.seenMu.Unlock()
}
