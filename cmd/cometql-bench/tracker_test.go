package main

import "testing"

func TestSeqTracker(t *testing.T) {
	cases := []struct {
		name                 string
		seqs                 []uint64
		uniq, dup, ooo, miss uint64
	}{
		{"in order", []uint64{1, 2, 3, 4}, 4, 0, 0, 0},
		{"empty", nil, 0, 0, 0, 0},
		{"gap stays lost", []uint64{1, 2, 5, 6}, 4, 0, 0, 2},
		{"first lost", []uint64{2, 3}, 2, 0, 0, 1},
		{"duplicate", []uint64{1, 2, 2, 3, 3, 3}, 3, 3, 0, 0},
		{"late fills gap", []uint64{1, 3, 2, 4}, 4, 0, 1, 0},
		{"late middle of gap", []uint64{1, 6, 3, 2, 5, 4}, 6, 0, 4, 0},
		{"late then dup of late", []uint64{1, 3, 2, 2}, 3, 1, 1, 0},
		{"dup of old", []uint64{1, 2, 3, 1}, 3, 1, 0, 0},
		{"reversed", []uint64{5, 4, 3, 2, 1}, 5, 0, 4, 0},
		{"partial fill", []uint64{10, 5}, 2, 0, 1, 8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tr seqTracker
			for _, s := range c.seqs {
				tr.add(s)
			}
			if tr.uniq != c.uniq || tr.dup != c.dup || tr.ooo != c.ooo || tr.missing() != c.miss {
				t.Fatalf("uniq %d dup %d ooo %d missing %d; want %d %d %d %d (gaps %v)",
					tr.uniq, tr.dup, tr.ooo, tr.missing(), c.uniq, c.dup, c.ooo, c.miss, tr.gaps)
			}
		})
	}
}

func TestSeqTrackerManyGaps(t *testing.T) {
	var tr seqTracker
	// Every other seq lost, far more gaps than are remembered.
	n := uint64(3 * maxGaps)
	for s := uint64(1); s <= 2*n; s += 2 {
		tr.add(s)
	}
	if len(tr.gaps) > maxGaps {
		t.Fatalf("%d gaps kept", len(tr.gaps))
	}
	// A late arrival from a forgotten gap counts as late, not duplicate.
	if dup, ooo := tr.add(2); dup || !ooo {
		t.Fatalf("forgotten-gap seq: dup %v ooo %v", dup, ooo)
	}
	// One from a remembered gap too.
	if dup, ooo := tr.add(2*n - 2); dup || !ooo {
		t.Fatalf("remembered-gap seq: dup %v ooo %v", dup, ooo)
	}
	if dup, _ := tr.add(2*n - 1); !dup {
		t.Fatal("seen seq not a duplicate")
	}
}

func TestSubTrackerStreams(t *testing.T) {
	var st subTracker
	// Two publishers interleaved on one pipe: each in order on its own.
	for s := uint64(1); s <= 100; s++ {
		st.add(0, s)
		st.add(5, s)
	}
	st.add(5, 50) // a duplicate on stream 5
	st.add(3, 2)  // stream 3 lost its seq 1
	u, d, o := st.totals()
	if u != 201 || d != 1 || o != 0 {
		t.Fatalf("uniq %d dup %d ooo %d", u, d, o)
	}
}
