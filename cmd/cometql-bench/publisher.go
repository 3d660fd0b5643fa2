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
	lat    *atomicHistogram
	ok     atomic.Uint64
	errs   atomic.Uint64
	perOK  [][]uint64 // [publisher][pipe], owned by the publisher until stop
	stopCh chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	firstErr string
}

// openPublishers opens n publisher connections.
func openPublishers(ctx context.Context, be backend, n int, pipes []string, event string, size int, rate float64) (*pubGroup, error) {
	g := &pubGroup{pipes: pipes, event: event, size: size, rate: rate, lat: newAtomicHistogram(8), stopCh: make(chan struct{})}
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
		interval = time.Duration(float64(len(g.conns)) / g.rate * float64(time.Second))
	}
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
		pi := 0
		if len(g.pipes) > 1 {
			pi = rng.IntN(len(g.pipes))
		}
		seq[pi]++
		t0 := time.Now()
		buf = encodePayload(buf[:0], t0.UnixNano(), seq[pi], stream, g.size)
		err := conn.publish(ctx, g.pipes[pi], g.event, string(buf))
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
		ok[pi]++
		g.ok.Add(1)
	}
}

// stop stops publishing and waits for the publishers' last answers.
func (g *pubGroup) stop() {
	select {
	case <-g.stopCh:
	default:
		close(g.stopCh)
	}
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
