package store

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cometql/cometql/pipes"
)

// fakeClock is a settable clock for Config.Now.
type fakeClock struct{ unix atomic.Int64 }

func (c *fakeClock) Now() time.Time { return time.Unix(c.unix.Load(), 0) }
func (c *fakeClock) Set(unix int64) { c.unix.Store(unix) }

func indexes(ms []pipes.QueuedMessage) []int64 {
	out := []int64{}
	for _, m := range ms {
		out = append(out, m.Index)
	}
	return out
}

// queueStep enqueues a message (at the clock time now, queued at time at,
// 0 meaning now), then checks the dropped count and the queue's indexes.
type queueStep struct {
	now, at     int64
	max         int
	wantDropped int
	wantIndexes []int64
}

func TestEnqueueScenarios(t *testing.T) {
	const t0 = 1_700_000_000
	tests := []struct {
		name  string
		ttl   time.Duration
		steps []queueStep
	}{
		{"indexes increase", time.Hour, []queueStep{
			{now: t0, max: 10, wantIndexes: []int64{1}},
			{now: t0, max: 10, wantIndexes: []int64{1, 2}},
			{now: t0 + 1, max: 10, wantIndexes: []int64{1, 2, 3}},
		}},
		{"cap drops oldest", time.Hour, []queueStep{
			{now: t0, max: 2, wantIndexes: []int64{1}},
			{now: t0, max: 2, wantIndexes: []int64{1, 2}},
			{now: t0, max: 2, wantDropped: 1, wantIndexes: []int64{2, 3}},
			{now: t0, max: 2, wantDropped: 1, wantIndexes: []int64{3, 4}},
			{now: t0, max: 1, wantDropped: 2, wantIndexes: []int64{5}},
			{now: t0, max: 0, wantIndexes: []int64{5, 6}}, // no cap
		}},
		{"ttl drops expired", time.Hour, []queueStep{
			{now: t0, max: 10, wantIndexes: []int64{1}},
			{now: t0 + 1800, max: 10, wantIndexes: []int64{1, 2}},
			{now: t0 + 3600, max: 10, wantIndexes: []int64{1, 2, 3}}, // exactly ttl old: kept
			{now: t0 + 3601, max: 10, wantDropped: 1, wantIndexes: []int64{2, 3, 4}},
			{now: t0 + 9000, max: 10, wantDropped: 3, wantIndexes: []int64{5}},
		}},
		{"already expired message is dropped", time.Hour, []queueStep{
			{now: t0, at: t0 - 7200, max: 10, wantDropped: 1, wantIndexes: []int64{}},
			{now: t0, max: 10, wantIndexes: []int64{2}},
		}},
		{"ttl and cap together", time.Hour, []queueStep{
			{now: t0, max: 3, wantIndexes: []int64{1}},
			{now: t0 + 10, max: 3, wantIndexes: []int64{1, 2}},
			{now: t0 + 20, max: 3, wantIndexes: []int64{1, 2, 3}},
			{now: t0 + 3605, max: 1, wantDropped: 3, wantIndexes: []int64{4}}, // 1 expired, 2 and 3 beyond the cap
		}},
		{"negative ttl never expires", -1, []queueStep{
			{now: t0, max: 10, wantIndexes: []int64{1}},
			{now: t0 + 1e8, max: 10, wantIndexes: []int64{1, 2}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			clock := &fakeClock{}
			s := openTest(t, Config{QueueTTL: tt.ttl, Now: clock.Now})
			for i, st := range tt.steps {
				clock.Set(st.now)
				q := &pipes.QueuedMessage{UserID: 7, Event: "e", Data: "d", Time: st.at}
				dropped, err := s.Enqueue(ctx, 0, q, st.max)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if dropped != st.wantDropped {
					t.Errorf("step %d: dropped %d, want %d", i, dropped, st.wantDropped)
				}
				wantTime := st.at
				if wantTime == 0 {
					wantTime = st.now
				}
				if q.Index != int64(i+1) || q.Time != wantTime {
					t.Errorf("step %d: Index %d Time %d, want %d %d", i, q.Index, q.Time, i+1, wantTime)
				}
				got, err := s.Queue(ctx, 0, 7, 0)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(indexes(got), st.wantIndexes) {
					t.Fatalf("step %d: queue %v, want %v", i, indexes(got), st.wantIndexes)
				}
			}
		})
	}
}

func TestEnqueueInvalidUser(t *testing.T) {
	s := openTest(t, Config{})
	for _, user := range []int64{0, -1} {
		if _, err := s.Enqueue(context.Background(), 0, &pipes.QueuedMessage{UserID: user}, 10); !errors.Is(err, pipes.ErrInvalidUser) {
			t.Errorf("user %d: %v, want ErrInvalidUser", user, err)
		}
	}
}

func TestQueueTake(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{}
	s := openTest(t, Config{Now: clock.Now})
	enqueue := func(dev, user, at int64, data string) {
		t.Helper()
		clock.Set(at)
		if _, err := s.Enqueue(ctx, dev, &pipes.QueuedMessage{UserID: user, Event: "ev", Data: data}, 100); err != nil {
			t.Fatal(err)
		}
	}
	enqueue(0, 1, 100, "a")
	enqueue(0, 2, 101, "b")
	enqueue(0, 1, 102, "c")
	enqueue(0, 1, 103, "d")
	enqueue(3, 1, 104, "other tenant")

	tests := []struct {
		name      string
		user      int64
		notBefore int64
		want      []pipes.QueuedMessage
	}{
		{"one user", 1, 0, []pipes.QueuedMessage{
			{UserID: 1, Index: 1, Event: "ev", Data: "a", Time: 100},
			{UserID: 1, Index: 2, Event: "ev", Data: "c", Time: 102},
			{UserID: 1, Index: 3, Event: "ev", Data: "d", Time: 103},
		}},
		{"not before", 1, 102, []pipes.QueuedMessage{
			{UserID: 1, Index: 2, Event: "ev", Data: "c", Time: 102},
			{UserID: 1, Index: 3, Event: "ev", Data: "d", Time: 103},
		}},
		{"every user oldest first", 0, 0, []pipes.QueuedMessage{
			{UserID: 1, Index: 1, Event: "ev", Data: "a", Time: 100},
			{UserID: 2, Index: 1, Event: "ev", Data: "b", Time: 101},
			{UserID: 1, Index: 2, Event: "ev", Data: "c", Time: 102},
			{UserID: 1, Index: 3, Event: "ev", Data: "d", Time: 103},
		}},
		{"unknown user", 99, 0, nil},
	}
	for _, tt := range tests {
		got, err := s.Queue(ctx, 0, tt.user, tt.notBefore)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Queue = %+v, want %+v", tt.name, got, tt.want)
		}
	}

	// AckQueue removes what was delivered, up to an index, and nothing after
	if n, err := s.AckQueue(ctx, 0, 1, 2); err != nil || n != 2 {
		t.Errorf("AckQueue up to 2 = %d, %v", n, err)
	}
	if rest, err := s.Queue(ctx, 0, 1, 0); err != nil || !reflect.DeepEqual(indexes(rest), []int64{3}) {
		t.Errorf("queue after ack: %+v, %v", rest, err)
	}
	if n, err := s.AckQueue(ctx, 0, 1, 3); err != nil || n != 1 {
		t.Errorf("AckQueue up to 3 = %d, %v", n, err)
	}
	if n, err := s.AckQueue(ctx, 0, 1, 3); err != nil || n != 0 {
		t.Errorf("second AckQueue = %d, %v", n, err)
	}
	// other users and tenants are untouched
	if q, err := s.Queue(ctx, 0, 2, 0); err != nil || len(q) != 1 {
		t.Errorf("user 2 queue: %+v, %v", q, err)
	}
	if q, err := s.Queue(ctx, 3, 1, 0); err != nil || len(q) != 1 || q[0].Data != "other tenant" {
		t.Errorf("dev 3 queue: %+v, %v", q, err)
	}
	// indexes keep increasing after the ack
	enqueue(0, 1, 200, "e")
	if q, err := s.Queue(ctx, 0, 1, 0); err != nil || !reflect.DeepEqual(indexes(q), []int64{4}) {
		t.Errorf("index after ack: %+v, %v", q, err)
	}

	// ClearQueue
	if n, err := s.ClearQueue(ctx, 0, 1); err != nil || n != 1 {
		t.Errorf("ClearQueue = %d, %v", n, err)
	}
	enqueue(0, 5, 300, "f")
	if n, err := s.ClearQueue(ctx, 0, 0); err != nil || n != 2 {
		t.Errorf("ClearQueue every user = %d, %v; want 2", n, err)
	}
	if q, err := s.Queue(ctx, 3, 0, 0); err != nil || len(q) != 1 {
		t.Errorf("dev 3 queue after dev 0 clear: %+v, %v", q, err)
	}
}

func TestQueueLarge(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{})
	const n = 1000
	for i := range n {
		if _, err := s.Enqueue(ctx, 0, &pipes.QueuedMessage{UserID: 1, Data: string(rune('a' + i%26))}, n); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Queue(ctx, 0, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("queued %d, want %d", len(got), n)
	}
	for i, m := range got {
		if m.Index != int64(i+1) || m.Data != string(rune('a'+i%26)) {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
}
