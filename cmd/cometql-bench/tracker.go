package main

// seqRange is the inclusive seq range [lo, hi].
type seqRange struct{ lo, hi uint64 }

// maxGaps bounds the gap list of one stream; past it the oldest gap is
// forgotten, and a seq that arrives from below every remaining gap is
// counted as late (out of order), not as a duplicate.
const maxGaps = 4096

// seqTracker follows the seqs of one publisher stream as one subscriber
// receives them. Seqs start at 1. Every seq is classified exactly once as
// new (in order or filling a gap) or duplicate:
//
//   - in order: s is above everything seen so far (skipped seqs become gaps);
//   - out of order: s fills a gap (it arrived after a higher seq);
//   - duplicate: s was seen before.
//
// Unique counts in-order plus out-of-order arrivals, so lost = published -
// unique once the stream has drained.
type seqTracker struct {
	next  uint64     // highest seq seen + 1; 0 means 1 (nothing seen)
	floor uint64     // seqs below floor were in forgotten gaps
	uniq  uint64     // distinct seqs seen
	dup   uint64     // seqs seen again
	ooo   uint64     // seqs that filled a gap
	gaps  []seqRange // seqs below next not seen yet, ascending
}

// add records seq s and says what it was.
func (t *seqTracker) add(s uint64) (dup, ooo bool) {
	if t.next == 0 {
		t.next = 1
	}
	if s >= t.next {
		if s > t.next {
			t.gaps = append(t.gaps, seqRange{t.next, s - 1})
			if len(t.gaps) > maxGaps {
				t.floor = t.gaps[0].hi + 1
				t.gaps = append(t.gaps[:0], t.gaps[1:]...)
			}
		}
		t.next = s + 1
		t.uniq++
		return false, false
	}
	// Below the high-water mark: a late seq fills a gap, anything else is a
	// duplicate. Late seqs are usually recent, so search from the end.
	for i := len(t.gaps) - 1; i >= 0; i-- {
		g := &t.gaps[i]
		if s > g.hi {
			break
		}
		if s < g.lo {
			continue
		}
		switch {
		case g.lo == g.hi:
			t.gaps = append(t.gaps[:i], t.gaps[i+1:]...)
		case s == g.lo:
			g.lo++
		case s == g.hi:
			g.hi--
		default:
			rest := seqRange{s + 1, g.hi}
			g.hi = s - 1
			t.gaps = append(t.gaps, seqRange{})
			copy(t.gaps[i+2:], t.gaps[i+1:])
			t.gaps[i+1] = rest
		}
		t.uniq++
		t.ooo++
		return false, true
	}
	if s < t.floor {
		t.uniq++
		t.ooo++
		return false, true
	}
	t.dup++
	return true, false
}

// missing is how many seqs up to the high-water mark were not seen.
func (t *seqTracker) missing() uint64 {
	var n uint64
	for _, g := range t.gaps {
		n += g.hi - g.lo + 1
	}
	return n
}

// subTracker holds the trackers of one subscriber, one per stream.
type subTracker struct {
	streams []seqTracker
}

// add records a message of stream w with seq s.
func (st *subTracker) add(w int, s uint64) (dup, ooo bool) {
	if w >= len(st.streams) {
		n := max(w+1, 2*len(st.streams))
		ns := make([]seqTracker, n)
		copy(ns, st.streams)
		st.streams = ns
	}
	return st.streams[w].add(s)
}

// totals sums the subscriber's counts over its streams.
func (st *subTracker) totals() (uniq, dup, ooo uint64) {
	for i := range st.streams {
		t := &st.streams[i]
		uniq += t.uniq
		dup += t.dup
		ooo += t.ooo
	}
	return uniq, dup, ooo
}
