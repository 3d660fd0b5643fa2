package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

func TestBucketOfRange(t *testing.T) {
	vals := []int64{0, 1, 63, 127, 128, 129, 255, 256, 1000, 1 << 20, 123456789, 1<<40 + 12345, math.MaxInt64}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		vals = append(vals, r.Int64N(1<<uint(r.IntN(62)+1)))
	}
	for _, v := range vals {
		i := bucketOf(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d out of [0,%d)", v, i, numBuckets)
		}
		lo, hi := bucketRange(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d = [%d,%d]", v, i, lo, hi)
		}
		if v >= exactLimit && float64(hi-lo)/float64(lo) > 1.0/subBuckets {
			t.Fatalf("bucket %d [%d,%d] wider than 1/%d", i, lo, hi, subBuckets)
		}
	}
	// Buckets tile the line: each starts right after the previous ends.
	for i := 1; i < numBuckets; i++ {
		_, prevHi := bucketRange(i - 1)
		lo, _ := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, prevHi)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	h := newHistogram()
	var vals []int64
	for range 100000 {
		// Log-normal-ish latencies between ~10µs and ~1s.
		v := int64(math.Exp(r.NormFloat64()*1.5 + 13))
		vals = append(vals, v)
		h.record(v)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := h.quantile(q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.01 {
			t.Errorf("q%.3f = %d, exact %d (%.2f%% off)", q, got, want, rel*100)
		}
	}
	if h.quantile(1) != vals[len(vals)-1] || h.max != vals[len(vals)-1] {
		t.Errorf("max %d, want %d", h.quantile(1), vals[len(vals)-1])
	}
	if h.min != vals[0] || h.quantile(0) != vals[0] {
		t.Errorf("min %d, want %d", h.min, vals[0])
	}
	if h.count() != uint64(len(vals)) {
		t.Errorf("count %d", h.count())
	}
}

func TestHistogramSmallExact(t *testing.T) {
	h := newHistogram()
	for v := int64(1); v <= 100; v++ {
		h.record(v)
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 50}, {0.9, 90}, {0.99, 99}, {0.01, 1}, {1, 100}} {
		if got := h.quantile(c.q); got != c.want {
			t.Errorf("q%v = %d, want %d", c.q, got, c.want)
		}
	}
	if h.mean() != 50.5 {
		t.Errorf("mean %v", h.mean())
	}
	var empty histogram
	if empty.quantile(0.5) != 0 || empty.mean() != 0 {
		t.Error("empty histogram not zero")
	}
	h.record(-5)
	if h.min != 0 {
		t.Errorf("negative value recorded as %d, want 0", h.min)
	}
}

func TestHistogramMergeAndJSON(t *testing.T) {
	a, b, all := newHistogram(), newHistogram(), newHistogram()
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 5000 {
		v := r.Int64N(1e9)
		all.record(v)
		if i%3 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
	}
	// Through the wire form, as workers send them.
	var wa, wb histogram
	for _, p := range []struct {
		h   *histogram
		dst *histogram
	}{{a, &wa}, {b, &wb}} {
		js, err := json.Marshal(p.h)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(js, p.dst); err != nil {
			t.Fatal(err)
		}
	}
	m := newHistogram()
	m.merge(&wa)
	m.merge(&wb)
	m.merge(nil)
	if m.counts != all.counts || m.n != all.n || m.min != all.min || m.max != all.max || math.Abs(m.sum-all.sum) > 1 {
		t.Fatalf("merged histogram differs: n %d/%d min %d/%d max %d/%d", m.n, all.n, m.min, all.min, m.max, all.max)
	}
	var bad histogram
	if err := json.Unmarshal([]byte(`{"n":3,"b":[[1,2]]}`), &bad); err == nil {
		t.Error("inconsistent count accepted")
	}
	if err := json.Unmarshal([]byte(`{"n":1,"b":[[99999,1]]}`), &bad); err == nil {
		t.Error("bucket out of range accepted")
	}
}

func TestAtomicHistogram(t *testing.T) {
	a := newAtomicHistogram(4)
	want := newHistogram()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				v := int64(g*1000 + i)
				a.record(g, v)
				mu.Lock()
				want.record(v)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	s := a.snapshot()
	if s.counts != want.counts || s.n != 8000 || s.min != 0 || s.max != 7999 || s.sum != want.sum {
		t.Fatalf("snapshot n=%d min=%d max=%d sum=%v", s.n, s.min, s.max, s.sum)
	}
	a.reset()
	if s := a.snapshot(); s.n != 0 || s.max != 0 {
		t.Fatalf("after reset n=%d max=%d", s.n, s.max)
	}
	a.record(1, 42)
	if s := a.snapshot(); s.n != 1 || s.min != 42 || s.max != 42 {
		t.Fatalf("after reset+record n=%d min=%d max=%d", s.n, s.min, s.max)
	}
}

func TestSummaryMillis(t *testing.T) {
	h := newHistogram()
	h.record(1_500_000) // 1.5 ms
	s := h.summary()
	if s.Count != 1 || math.Abs(s.P50-1.5) > 0.02 || s.Max != 1.5 {
		t.Fatalf("summary %+v", s)
	}
}
