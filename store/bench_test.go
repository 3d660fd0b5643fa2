package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cometql/cometql/pipes"
)

// BenchmarkAppendHistory measures AppendHistory throughput with 32
// concurrent writers, each on a pipe of its own keeping 100 messages of 100
// bytes, with the default durability (SyncFull) and with SyncNormal.
// Message ids grow with time, as pipes.NewMessageID's do.
func BenchmarkAppendHistory(b *testing.B) {
	for _, mode := range []Sync{SyncFull, SyncNormal} {
		b.Run(fmt.Sprintf("writers=32/sync=%s", mode), func(b *testing.B) {
			benchAppend(b, mode, 32)
		})
	}
}

func benchAppend(b *testing.B, mode Sync, writers int) {
	ctx := context.Background()
	s := openTest(b, Config{Sync: mode})
	data := strings.Repeat("x", 100)
	var next atomic.Int64 // hands out the b.N appends
	var ids atomic.Int64
	var wg sync.WaitGroup
	before := s.Stats()
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			pipe := fmt.Sprintf("bench_%d", w)
			for seq := int64(1); next.Add(1) <= int64(b.N); seq++ {
				err := s.AppendHistory(ctx, &pipes.Message{
					Pipe: pipe, Seq: seq, ID: fmt.Sprintf("%012d", ids.Add(1)), Event: "e", Data: data, Time: 1,
				}, 100)
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
	// CPU per append (all goroutines, user+system) depends less on what
	// else the machine runs than throughput does.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/append")
	if commits := st.Commits - before.Commits; commits > 0 {
		b.ReportMetric(float64(st.Writes-before.Writes)/float64(commits), "writes/commit")
		b.ReportMetric(float64((st.CommitTime-before.CommitTime).Microseconds())/float64(st.Writes-before.Writes), "µs-in-tx/write")
	}
	if syncs := st.Syncs - before.Syncs; syncs > 0 {
		b.ReportMetric(float64((st.SyncTime-before.SyncTime).Microseconds())/float64(syncs), "µs/fsync")
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
