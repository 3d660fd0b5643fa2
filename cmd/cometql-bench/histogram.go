package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"sync/atomic"
)

// A log-linear histogram in the manner of HdrHistogram: values below
// 2*subBuckets are counted exactly, larger ones in buckets of
// 2^shift-wide steps with subBuckets steps per power of two, so any value
// is reported within 1/(2*subBuckets) (under 0.8%) of what was recorded.
// Values are int64 nanoseconds in practice, but the histogram does not care.
const (
	subBits    = 6
	subBuckets = 1 << subBits // linear steps per power of two
	exactLimit = 2 * subBuckets
	// numBuckets covers every non-negative int64.
	numBuckets = exactLimit + (63-subBits-1)*subBuckets
)

// bucketOf is the bucket index of v (v >= 0).
func bucketOf(v int64) int {
	if v < exactLimit {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits - 1 // v>>shift in [subBuckets, 2*subBuckets)
	top := int(v >> shift)
	return exactLimit + (shift-1)*subBuckets + (top - subBuckets)
}

// bucketRange is the smallest and largest value counted in bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < exactLimit {
		return int64(i), int64(i)
	}
	shift := (i-exactLimit)/subBuckets + 1
	top := int64((i-exactLimit)%subBuckets + subBuckets)
	lo = top << shift
	hi = lo + (int64(1) << shift) - 1
	return lo, hi
}

// histogram counts values; its zero value is empty and ready. It is not
// safe for concurrent use (see atomicHistogram).
type histogram struct {
	counts [numBuckets]uint64
	n      uint64
	sum    float64
	min    int64
	max    int64
}

func newHistogram() *histogram { return &histogram{} }

// record counts one value (negative values count as 0).
func (h *histogram) record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// count is the number of recorded values.
func (h *histogram) count() uint64 { return h.n }

// merge adds o's values to h.
func (h *histogram) merge(o *histogram) {
	if o == nil || o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// quantile is the value at quantile q (0..1): the smallest recorded value
// such that at least q of all values are at or below it, within the
// bucket precision; the exact max for q >= 1, 0 when empty.
func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return h.max
	}
	if q <= 0 {
		return h.min
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			return max(min(v, h.max), h.min)
		}
	}
	return h.max
}

// mean is the average recorded value, 0 when empty.
func (h *histogram) mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// histJSON is the wire form of a histogram between processes: only the
// non-empty buckets, as [index, count] pairs.
type histJSON struct {
	N       uint64      `json:"n"`
	Sum     float64     `json:"sum"`
	Min     int64       `json:"min"`
	Max     int64       `json:"max"`
	Buckets [][2]uint64 `json:"b,omitempty"`
}

// MarshalJSON writes the sparse form.
func (h *histogram) MarshalJSON() ([]byte, error) {
	w := histJSON{N: h.n, Sum: h.sum, Min: h.min, Max: h.max}
	for i, c := range h.counts {
		if c != 0 {
			w.Buckets = append(w.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the sparse form.
func (h *histogram) UnmarshalJSON(b []byte) error {
	var w histJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*h = histogram{n: w.N, sum: w.Sum, min: w.Min, max: w.Max}
	var total uint64
	for _, p := range w.Buckets {
		if p[0] >= numBuckets {
			return fmt.Errorf("histogram bucket %d out of range", p[0])
		}
		h.counts[p[0]] += p[1]
		total += p[1]
	}
	if total != w.N {
		return fmt.Errorf("histogram: buckets hold %d values, header says %d", total, w.N)
	}
	return nil
}

// latencySummary is how results show a latency histogram, in milliseconds.
type latencySummary struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// summary summarizes a histogram of nanoseconds in milliseconds.
func (h *histogram) summary() latencySummary {
	ms := func(ns int64) float64 { return round3(float64(ns) / 1e6) }
	return latencySummary{
		Count: h.n,
		Mean:  round3(h.mean() / 1e6),
		P50:   ms(h.quantile(0.50)),
		P90:   ms(h.quantile(0.90)),
		P99:   ms(h.quantile(0.99)),
		P999:  ms(h.quantile(0.999)),
		Max:   ms(h.max),
	}
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// atomicHistogram is a histogram many goroutines record into at once,
// spread over shards to keep them off each other's cache lines. Min and sum
// are kept loosely (a reset racing a record may lose that one value).
type atomicHistogram struct {
	shards []atomicShard
}

type atomicShard struct {
	counts [numBuckets]atomic.Uint64
	sum    atomic.Int64
	max    atomic.Int64
	min    atomic.Int64 // math.MaxInt64 when empty
}

func newAtomicHistogram(shards int) *atomicHistogram {
	a := &atomicHistogram{shards: make([]atomicShard, max(shards, 1))}
	for i := range a.shards {
		a.shards[i].min.Store(math.MaxInt64)
	}
	return a
}

// record counts v in the shard chosen by key (any int; callers pass a
// connection number).
func (a *atomicHistogram) record(key int, v int64) {
	if v < 0 {
		v = 0
	}
	s := &a.shards[uint(key)%uint(len(a.shards))]
	s.counts[bucketOf(v)].Add(1)
	s.sum.Add(v)
	for {
		m := s.max.Load()
		if v <= m || s.max.CompareAndSwap(m, v) {
			break
		}
	}
	for {
		m := s.min.Load()
		if v >= m || s.min.CompareAndSwap(m, v) {
			break
		}
	}
}

// snapshot merges the shards into a plain histogram.
func (a *atomicHistogram) snapshot() *histogram {
	h := &histogram{}
	first := true
	for i := range a.shards {
		s := &a.shards[i]
		var n uint64
		for j := range s.counts {
			c := s.counts[j].Load()
			h.counts[j] += c
			n += c
		}
		if n == 0 {
			continue
		}
		h.n += n
		h.sum += float64(s.sum.Load())
		if mx := s.max.Load(); mx > h.max {
			h.max = mx
		}
		if mn := s.min.Load(); first || mn < h.min {
			h.min = mn
		}
		first = false
	}
	return h
}

// reset empties the histogram.
func (a *atomicHistogram) reset() {
	for i := range a.shards {
		s := &a.shards[i]
		for j := range s.counts {
			s.counts[j].Store(0)
		}
		s.sum.Store(0)
		s.max.Store(0)
		s.min.Store(math.MaxInt64)
	}
}
