package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/cometql/cometql/pipes"
)

func msg(dev int64, pipe string, seq int64) *pipes.Message {
	return &pipes.Message{
		DevID: dev, Pipe: pipe, Seq: seq,
		ID:    fmt.Sprintf("%s-%d", pipe, seq),
		Event: "ev", Data: fmt.Sprintf("data %d", seq),
		UserID: seq % 3, Time: 1700000000 + seq,
	}
}

func seqs(ms []pipes.Message) []int64 {
	out := []int64{}
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

// historyStep is one action of a history scenario, then the expected kept
// sequences and LastSeq.
type historyStep struct {
	do      func(ctx context.Context, s *Store) error
	want    []int64
	wantSeq int64
}

func appendStep(seq int64, keep int, want []int64, last int64) historyStep {
	return historyStep{
		do:   func(ctx context.Context, s *Store) error { return s.AppendHistory(ctx, msg(0, "p", seq), keep) },
		want: want, wantSeq: last,
	}
}

func TestHistoryScenarios(t *testing.T) {
	tests := []struct {
		name  string
		steps []historyStep
	}{
		{"append and read oldest first", []historyStep{
			appendStep(1, 10, []int64{1}, 1),
			appendStep(2, 10, []int64{1, 2}, 2),
			appendStep(3, 10, []int64{1, 2, 3}, 3),
		}},
		{"trim to keep", []historyStep{
			appendStep(1, 2, []int64{1}, 1),
			appendStep(2, 2, []int64{1, 2}, 2),
			appendStep(3, 2, []int64{2, 3}, 3),
			appendStep(4, 2, []int64{3, 4}, 4),
		}},
		{"trim with gaps in seq keeps exactly keep", []historyStep{
			appendStep(10, 3, []int64{10}, 10),
			appendStep(20, 3, []int64{10, 20}, 20),
			appendStep(21, 3, []int64{10, 20, 21}, 21),
			appendStep(50, 3, []int64{20, 21, 50}, 50),
		}},
		{"keep shrinks", []historyStep{
			appendStep(1, 5, []int64{1}, 1),
			appendStep(2, 5, []int64{1, 2}, 2),
			appendStep(3, 5, []int64{1, 2, 3}, 3),
			appendStep(4, 1, []int64{4}, 4),
		}},
		{"keep 0 stores nothing but the seq", []historyStep{
			appendStep(1, 0, []int64{}, 1),
			appendStep(2, 3, []int64{2}, 2),
		}},
		{"last seq survives clear", []historyStep{
			appendStep(1, 5, []int64{1}, 1),
			appendStep(2, 5, []int64{1, 2}, 2),
			{do: func(ctx context.Context, s *Store) error {
				n, err := s.ClearHistory(ctx, 0, "p")
				if err == nil && n != 2 {
					err = fmt.Errorf("ClearHistory removed %d, want 2", n)
				}
				return err
			}, want: []int64{}, wantSeq: 2},
			appendStep(3, 5, []int64{3}, 3),
		}},
		{"last seq survives log length 0", []historyStep{
			{do: func(ctx context.Context, s *Store) error { return s.SetLogLength(ctx, 0, "p", 5) }, want: []int64{}, wantSeq: 0},
			appendStep(1, 5, []int64{1}, 1),
			appendStep(7, 5, []int64{1, 7}, 7),
			{do: func(ctx context.Context, s *Store) error { return s.SetLogLength(ctx, 0, "p", 0) }, want: []int64{}, wantSeq: 7},
			appendStep(8, 5, []int64{8}, 8),
		}},
		{"out of order appends", []historyStep{
			appendStep(2, 2, []int64{2}, 2),
			appendStep(1, 2, []int64{1, 2}, 2), // last seq stays the highest
			appendStep(4, 2, []int64{2, 4}, 4),
			appendStep(3, 2, []int64{3, 4}, 4),
			appendStep(5, 2, []int64{4, 5}, 5),
			appendStep(1, 2, []int64{4, 5}, 5), // older than everything kept: trimmed at once
		}},
		{"duplicate seq fails and changes nothing", []historyStep{
			appendStep(1, 3, []int64{1}, 1),
			{do: func(ctx context.Context, s *Store) error {
				m := msg(0, "p", 1)
				m.ID = "other"
				if err := s.AppendHistory(ctx, m, 3); err == nil || !errors.Is(err, pipes.ErrStore) {
					return fmt.Errorf("duplicate seq: %v, want a store error", err)
				}
				return nil
			}, want: []int64{1}, wantSeq: 1},
			appendStep(2, 3, []int64{1, 2}, 2),
		}},
		{"set log length trims", []historyStep{
			appendStep(1, 10, []int64{1}, 1),
			appendStep(2, 10, []int64{1, 2}, 2),
			appendStep(3, 10, []int64{1, 2, 3}, 3),
			{do: func(ctx context.Context, s *Store) error { return s.SetLogLength(ctx, 0, "p", 2) }, want: []int64{2, 3}, wantSeq: 3},
			{do: func(ctx context.Context, s *Store) error { return s.SetLogLength(ctx, 0, "p", 10) }, want: []int64{2, 3}, wantSeq: 3},
		}},
		{"delete message then trim keeps exactly keep", []historyStep{
			appendStep(1, 3, []int64{1}, 1),
			appendStep(2, 3, []int64{1, 2}, 2),
			appendStep(3, 3, []int64{1, 2, 3}, 3),
			{do: func(ctx context.Context, s *Store) error {
				n, err := s.DeleteMessage(ctx, 0, "p-2")
				if err == nil && n != 1 {
					err = fmt.Errorf("DeleteMessage removed %d, want 1", n)
				}
				return err
			}, want: []int64{1, 3}, wantSeq: 3},
			{do: func(ctx context.Context, s *Store) error {
				n, err := s.DeleteMessage(ctx, 0, "p-2")
				if err == nil && n != 0 {
					err = fmt.Errorf("second DeleteMessage removed %d, want 0", n)
				}
				return err
			}, want: []int64{1, 3}, wantSeq: 3},
			appendStep(4, 3, []int64{1, 3, 4}, 4),
			appendStep(5, 3, []int64{3, 4, 5}, 5),
		}},
		{"duplicate id fails and changes nothing", []historyStep{
			appendStep(1, 3, []int64{1}, 1),
			{do: func(ctx context.Context, s *Store) error {
				m := msg(0, "p", 2)
				m.ID = "p-1"
				if err := s.AppendHistory(ctx, m, 3); err == nil || !errors.Is(err, pipes.ErrStore) {
					return fmt.Errorf("duplicate id: %v, want a store error", err)
				}
				return nil
			}, want: []int64{1}, wantSeq: 1},
			appendStep(2, 3, []int64{1, 2}, 2),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := openTest(t, Config{})
			for i, st := range tt.steps {
				if err := st.do(ctx, s); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				hist, err := s.History(ctx, 0, "p", 0)
				if err != nil {
					t.Fatalf("step %d: History: %v", i, err)
				}
				if got := seqs(hist); !reflect.DeepEqual(got, st.want) {
					t.Fatalf("step %d: kept %v, want %v", i, got, st.want)
				}
				last, err := s.LastSeq(ctx, 0, "p")
				if err != nil || last != st.wantSeq {
					t.Fatalf("step %d: LastSeq = %d, %v; want %d", i, last, err, st.wantSeq)
				}
			}
		})
	}
}

func TestHistoryFields(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{})
	for seq := int64(1); seq <= 5; seq++ {
		if err := s.AppendHistory(ctx, msg(0, "p", seq), 10); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		since int64
		want  []int64
	}{{0, []int64{1, 2, 3, 4, 5}}, {2, []int64{3, 4, 5}}, {5, []int64{}}, {-1, []int64{1, 2, 3, 4, 5}}}
	for _, tt := range tests {
		hist, err := s.History(ctx, 0, "p", tt.since)
		if err != nil {
			t.Fatal(err)
		}
		if got := seqs(hist); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("History since %d = %v, want %v", tt.since, got, tt.want)
		}
		for _, m := range hist {
			want := *msg(0, "p", m.Seq)
			want.Kind = pipes.KindPipe
			if !reflect.DeepEqual(m, want) {
				t.Errorf("message %+v, want %+v", m, want)
			}
		}
	}
	if hist, err := s.History(ctx, 0, "other", 0); err != nil || len(hist) != 0 {
		t.Errorf("unknown pipe: %v, %v", hist, err)
	}
	if last, err := s.LastSeq(ctx, 0, "other"); err != nil || last != 0 {
		t.Errorf("unknown pipe LastSeq = %d, %v", last, err)
	}
	if n, err := s.ClearHistory(ctx, 0, "other"); err != nil || n != 0 {
		t.Errorf("ClearHistory of unknown pipe = %d, %v", n, err)
	}
}

func TestAppendHistoryDoesNotModifyMessage(t *testing.T) {
	s := openTest(t, Config{})
	m := msg(0, "p", 1)
	before := *m
	if err := s.AppendHistory(context.Background(), m, 1); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*m, before) {
		t.Errorf("message changed: %+v", *m)
	}
}

func TestLogSettings(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{})
	steps := []struct {
		dev    int64
		pipe   string
		length int
	}{{0, "b", 10}, {0, "a", 5}, {3, "a", 7}, {0, "b", 20}, {0, "c", 1}, {0, "c", 0}, {0, "never", 0}}
	for _, st := range steps {
		if err := s.SetLogLength(ctx, st.dev, st.pipe, st.length); err != nil {
			t.Fatalf("SetLogLength(%d, %q, %d): %v", st.dev, st.pipe, st.length, err)
		}
	}
	got, err := s.LogSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64][]pipes.PipeSetting{
		0: {{Pipe: "a", Length: 5}, {Pipe: "b", Length: 20}},
		3: {{Pipe: "a", Length: 7}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LogSettings = %v, want %v", got, want)
	}
	if err := s.SetLogLength(ctx, 0, "x", -1); !errors.Is(err, pipes.ErrInvalidLength) {
		t.Errorf("negative length: %v, want ErrInvalidLength", err)
	}
}

func TestHistoryTenancy(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{})
	// the same pipe name and message id in two tenants
	if err := s.AppendHistory(ctx, msg(0, "p", 1), 10); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendHistory(ctx, msg(3, "p", 1), 10); err != nil {
		t.Fatalf("same id in another tenant: %v", err)
	}
	if err := s.AppendHistory(ctx, msg(3, "p", 2), 10); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLogLength(ctx, 3, "p", 10); err != nil {
		t.Fatal(err)
	}
	check := func(dev int64, want []int64, last int64) {
		t.Helper()
		hist, err := s.History(ctx, dev, "p", 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := seqs(hist); !reflect.DeepEqual(got, want) {
			t.Errorf("dev %d history %v, want %v", dev, got, want)
		}
		for _, m := range hist {
			if m.DevID != dev {
				t.Errorf("dev %d got a message of dev %d", dev, m.DevID)
			}
		}
		if got, err := s.LastSeq(ctx, dev, "p"); err != nil || got != last {
			t.Errorf("dev %d LastSeq = %d, %v; want %d", dev, got, err, last)
		}
	}
	check(0, []int64{1}, 1)
	check(3, []int64{1, 2}, 2)
	if n, err := s.DeleteMessage(ctx, 0, "p-2"); err != nil || n != 0 {
		t.Errorf("dev 0 deleted dev 3's message: %d, %v", n, err)
	}
	if n, err := s.ClearHistory(ctx, 0, "p"); err != nil || n != 1 {
		t.Errorf("ClearHistory dev 0 = %d, %v", n, err)
	}
	check(0, []int64{}, 1)
	check(3, []int64{1, 2}, 2)
	if err := s.SetLogLength(ctx, 0, "p", 0); err != nil {
		t.Fatal(err)
	}
	check(3, []int64{1, 2}, 2)
	settings, err := s.LogSettings(ctx)
	if err != nil || len(settings[0]) != 0 || len(settings[3]) != 1 {
		t.Errorf("LogSettings = %v, %v", settings, err)
	}
}

// TestLazyTrim checks the bounds of lazy trimming: a pipe never holds more
// than keep+slack rows, reads show exactly the newest keep, and neither a
// larger keep nor a deleted message brings a trimmed message back.
func TestLazyTrim(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{})
	rows := func() int {
		t.Helper()
		var n int
		if err := s.rdb.QueryRow("SELECT COUNT(*) FROM history WHERE dev_id = 0 AND pipe = 'p'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	visible := func(want []int64) {
		t.Helper()
		hist, err := s.History(ctx, 0, "p", 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := seqs(hist); !reflect.DeepEqual(got, want) {
			t.Fatalf("visible %v, want %v", got, want)
		}
	}
	span := func(from, to int64) []int64 {
		out := []int64{}
		for i := from; i <= to; i++ {
			out = append(out, i)
		}
		return out
	}
	const keep = 20
	seq := int64(0)
	maxRows := 0
	for range 100 {
		seq++
		if err := s.AppendHistory(ctx, msg(0, "p", seq), keep); err != nil {
			t.Fatal(err)
		}
		maxRows = max(maxRows, rows())
		visible(span(max(1, seq-keep+1), seq))
	}
	if maxRows != keep+keep/4 {
		t.Errorf("at most %d rows held, want %d (keep plus slack)", maxRows, keep+keep/4)
	}
	// A larger keep does not bring trimmed rows back.
	for rows() == keep {
		seq++
		if err := s.AppendHistory(ctx, msg(0, "p", seq), keep); err != nil {
			t.Fatal(err)
		}
	}
	seq++
	if err := s.AppendHistory(ctx, msg(0, "p", seq), 50); err != nil {
		t.Fatal(err)
	}
	visible(span(seq-keep, seq))
	// Neither does a larger log length ...
	for rows() <= 50 {
		seq++
		if err := s.AppendHistory(ctx, msg(0, "p", seq), 50); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetLogLength(ctx, 0, "p", 100); err != nil {
		t.Fatal(err)
	}
	visible(span(seq-49, seq))
	// ... nor deleting a kept message: the pipe holds one fewer.
	for rows() <= 100 {
		seq++
		if err := s.AppendHistory(ctx, msg(0, "p", seq), 100); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.DeleteMessage(ctx, 0, fmt.Sprintf("p-%d", seq)); err != nil || n != 1 {
		t.Fatalf("DeleteMessage = %d, %v", n, err)
	}
	visible(span(seq-99, seq-1))
	// A trimmed message cannot be deleted, and ClearHistory counts only
	// the kept ones.
	if n, err := s.DeleteMessage(ctx, 0, fmt.Sprintf("p-%d", seq-100)); err != nil || n != 0 {
		t.Errorf("DeleteMessage of a trimmed message = %d, %v", n, err)
	}
	for rows() <= 99 {
		seq++
		if err := s.AppendHistory(ctx, msg(0, "p", seq), 100); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.ClearHistory(ctx, 0, "p"); err != nil || n != 100 {
		t.Errorf("ClearHistory = %d, %v; want 100", n, err)
	}
	visible([]int64{})
}
