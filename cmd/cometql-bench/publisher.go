package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// pubGroup is the publishers of a run: one goroutine per connection, each
// a stream with its own seq per pipe, publishing to a random pipe (or the
// only one), as fast as the server answers or at its share of a target
// rate.
type pubGroup struct {
	conns  []publisherConn
	pipes  []string
	event  string
	size   int
	rate   float64 // messages per second over all publishers; 0 = max
	batch  int     // messages per INSERT (rows of one statement)
	window uint64  // messages of a stream that may be in flight (0: no limit)
	lat    *atomicHistogram
	ok     atomic.Uint64
	errs   atomic.Uint64
	perOK  [][]uint64 // [publisher][pipe], owned by the publisher until stop
	stopCh chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	firstErr string

	// The delivery window: seen[w] is the highest seq of stream w that
	// every live subscriber has received (single-pipe runs only).
	seenMu   sync.Mutex
	seenCond *sync.Cond
	seen     []uint64
	stopped  bool
}

// pubRow is one message of a publish.
type pubRow struct {
	pipe, event, message string
}

// batchPublisher publishes several messages in one statement.
type batchPublisher interface {
	publishRows(ctx context.Context, rows []pubRow) error
}

// openPublishers opens n publisher connections.
func openPublishers(ctx context.Context, be backend, n int, pipes []string, event string, size int, rate float64, batch, window int) (*pubGroup, error) {
	g := &pubGroup{pipes: pipes, event: event, size: size, rate: rate, batch: max(batch, 1), lat: newAtomicHistogram(8), stopCh: make(chan struct{})}
	if window > 0 && len(pipes) == 1 {
		g.window = uint64(max(window/n, 1))
	}
	g.seenCond = sync.NewCond(&g.seenMu)
	g.seen = make([]uint64, n)
	for i := range n {
		c, err := be.publisher(ctx)
		if err != nil {
			g.close()
			return nil, fmt.Errorf("publisher %d: %w", i, err)
		}
		g.conns = append(g.conns, c)
		g.perOK = append(g.perOK, make([]uint64, len(pipes)))
	}
	return g, nil
}

// start starts publishing.
func (g *pubGroup) start() {
	for i := range g.conns {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.run(i)
		}()
	}
}

func (g *pubGroup) run(stream int) {
	conn := g.conns[stream]
	ok := g.perOK[stream]
	seq := make([]uint64, len(g.pipes))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(stream)))
	var interval time.Duration
	if g.rate > 0 {
		interval = time.Duration(float64(len(g.conns)*g.batch) / g.rate * float64(time.Second))
	}
	bp, _ := conn.(batchPublisher)
	rows := make([]pubRow, g.batch)
	picked := make([]int, g.batch)
	// Stagger the streams so rate-limited publishers do not fire together.
	next := time.Now().Add(interval * time.Duration(stream) / time.Duration(len(g.conns)))
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var buf []byte
	ctx := context.Background()
	for {
		select {
		case <-g.stopCh:
			return
		default:
		}
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-g.stopCh:
					return
				}
			} else if d < -time.Second {
				next = time.Now() // far behind: do not burst to catch up
			}
			next = next.Add(interval)
		}
		if g.window > 0 && !g.waitWindow(stream, seq[0]+uint64(g.batch)) {
			return
		}
		t0 := time.Now()
		for k := range rows {
			pi := 0
			if len(g.pipes) > 1 {
				pi = rng.IntN(len(g.pipes))
			}
			seq[pi]++
			picked[k] = pi
			buf = encodePayload(buf[:0], t0.UnixNano(), seq[pi], stream, g.size)
			rows[k] = pubRow{g.pipes[pi], g.event, string(buf)}
		}
		var err error
		if bp != nil && len(rows) > 1 {
			err = bp.publishRows(ctx, rows)
		} else {
			for _, r := range rows {
				if err = conn.publish(ctx, r.pipe, r.event, r.message); err != nil {
					break
				}
			}
		}
		g.lat.record(stream, int64(time.Since(t0)))
		if err != nil {
			g.errs.Add(1)
			g.mu.Lock()
			if g.firstErr == "" {
				g.firstErr = err.Error()
			}
			g.mu.Unlock()
			select {
			case <-time.After(10 * time.Millisecond): // do not spin on a broken connection
			case <-g.stopCh:
				return
			}
			continue
		}
		for _, pi := range picked {
			ok[pi]++
		}
		g.ok.Add(uint64(len(rows)))
	}
}

// waitWindow waits until stream may publish up to seq: until every live
// subscriber has received all but window of its messages. It returns false
// when publishing stops.
func (g *pubGroup) waitWindow(stream int, seq uint64) bool {
	g.seenMu.Lock()
	defer g.seenMu.Unlock()
	for !g.stopped && seq > g.seen[stream]+g.window {
		g.seenCond.Wait()
	}
	return !g.stopped
}

// setSeen records what every live subscriber has received: seen[w] is the
// highest seq of stream w they all have.
func (g *pubGroup) setSeen(seen []uint64) {
	g.seenMu.Lock()
	for w := range g.seen {
		if w < len(seen) && seen[w] > g.seen[w] {
			g.seen[w] = seen[w]
		}
	}
	g.seenMu.Unlock()
	g.seenCond.Broadcast()
}

// stop stops publishing and waits for the publishers' last answers.
func (g *pubGroup) stop() {
	select {
	case <-g.stopCh:
	default:
		close(g.stopCh)
	}
	g.seenMu.Lock()
	g.stopped = true
	g.seenMu.Unlock()
	g.seenCond.Broadcast()
	g.wg.Wait()
}

// okPerPipe is how many publishes of each pipe the server acknowledged
// (call after stop).
func (g *pubGroup) okPerPipe() []uint64 {
	out := make([]uint64, len(g.pipes))
	for _, p := range g.perOK {
		for i, n := range p {
			out[i] += n
		}
	}
	return out
}

func (g *pubGroup) close() {
	for _, c := range g.conns {
		c.close()
	}
}
