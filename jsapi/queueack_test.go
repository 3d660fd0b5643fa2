package jsapi

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cometql/cometql/pipes"
)

// queueLen is the length of a user's offline queue.
func (ts *testServer) queueLen(user int64) int {
	ts.t.Helper()
	q, err := ts.eng.Queue(context.Background(), 0, user)
	if err != nil {
		ts.t.Fatal(err)
	}
	return len(q)
}

func (ts *testServer) waitQueueLen(user int64, want int) {
	ts.t.Helper()
	deadline := time.Now().Add(waitFor)
	for ts.queueLen(user) != want {
		if time.Now().After(deadline) {
			ts.t.Fatalf("queue of user %d holds %d messages, want %d", user, ts.queueLen(user), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQueueRemovedOnceWritten: a WebSocket's offline queue leaves the store
// once the frames were written to the socket.
func TestQueueRemovedOnceWritten(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	ts.setHash(0, 41, "k41")
	ts.hub.SendPrivate(context.Background(), 0, 41, "e", "offline 1")
	ts.hub.SendPrivate(context.Background(), 0, 41, "e", "offline 2")
	c := ts.dial(userPath(41, "k41"), nil)
	c.info()
	expect(t, c.next(), "data", "offline 1", "fromQueue", true, "uuid", "q41_1")
	expect(t, c.next(), "data", "offline 2", "fromQueue", true, "uuid", "q41_2")
	ts.waitQueueLen(41, 0)
}

// TestLongPollQueueKeptUntilAcknowledged: over long-polling the offline
// queue is removed only when a poll acknowledges the frames; a session that
// ends before that leaves them queued for the next connection.
func TestLongPollQueueKeptUntilAcknowledged(t *testing.T) {
	ts := newTestServer(t, Config{LongPollHold: 200 * time.Millisecond}, pipes.Config{})
	ts.setHash(0, 42, "k42")
	ts.hub.SendPrivate(context.Background(), 0, 42, "e", "to the long poll")
	query := "sesion=k42&myid=42&devid=0&v=4.08&uuid=lpq&api=js"

	c := ts.lpOpen(query)
	r := c.poll(0) // serverInfo and the queued message, not acknowledged yet
	if len(r.Frames) != 2 {
		t.Fatalf("first poll: %d frames", len(r.Frames))
	}
	time.Sleep(50 * time.Millisecond)
	if n := ts.queueLen(42); n != 1 {
		t.Fatalf("queue before the acknowledgement holds %d", n)
	}
	c.do("POST", "/lp/close?sid="+c.sid, "", nil) // the response was lost, say

	c2 := ts.lpOpen(query)
	got := c2.frames(2)
	expect(t, got[1], "data", "to the long poll", "fromQueue", true)
	if n := ts.queueLen(42); n != 1 {
		t.Fatalf("queue before the acknowledgement holds %d", n)
	}
	c2.poll(c2.ack) // acknowledges
	ts.waitQueueLen(42, 0)
}

// TestRepliesLargerThanOutbox: an offline queue or a pipe_log reply longer
// than the outbox holds (frames or bytes) arrives whole and in order, paced
// in chunks, instead of closing the connection for overflow; private
// messages sent meanwhile follow the queue; the queue leaves the store.
func TestRepliesLargerThanOutbox(t *testing.T) {
	const n = 120
	big := strings.Repeat("b", 2000) // 120 × 2 KB: over 64 KiB and over 20 frames
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"frames", Config{OutboxFrames: 20}},
		{"bytes", Config{OutboxBytes: 64 << 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, tc.cfg, pipes.Config{})
			ts.setHash(0, 43, "k43")
			for i := range n {
				if _, err := ts.hub.SendPrivate(ctx, 0, 43, "e", fmt.Sprint(i, big)); err != nil {
					t.Fatal(err)
				}
			}
			c := ts.dial(userPath(43, "k43"), nil)
			expect(t, c.info(), "authorized", true)
			if d, err := ts.hub.SendPrivate(ctx, 0, 43, "live", "after the queue"); err != nil || d != 1 {
				t.Fatalf("live private message: %d, %v", d, err)
			}
			for i := range n {
				expect(t, c.next(), "pipe", "msg", "data", fmt.Sprint(i, big), "fromQueue", true)
			}
			expect(t, c.next(), "event", "live", "data", "after the queue")
			ts.waitQueueLen(43, 0)

			if err := ts.hub.Engine().SetLogLength(ctx, 0, "biglog", n); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				ts.publish("biglog", "ev", fmt.Sprint(i, big))
			}
			// A reply asked for after the replay comes after all of it
			// (CppComet pages and our client's recovery mark the replay's
			// end with such a request), while live messages need not wait.
			c.send("pipe_log\nbiglog\nmark.1\n")
			c.send("user_data\nud.1\n43")
			for i := range n {
				expect(t, c.next(), "pipe", "biglog", "history", true, "data", fmt.Sprint(i, big))
			}
			expect(t, c.next(), "marker", "ud.1")
			c.sync()
			if _, b := httpGet(t, "http://"+ts.addr+"/metrics", nil); regexp.MustCompile(`cometql_browser_drops_total\{[^}]*\} [1-9]`).Match(b) {
				t.Fatalf("a connection was dropped:\n%s", b)
			}
		})
	}
}

// The same over long-polling: the queue arrives whole over several polls.
func TestLongPollQueueLargerThanOutbox(t *testing.T) {
	const n = 120
	ts := newTestServer(t, Config{OutboxFrames: 20, LongPollHold: 200 * time.Millisecond}, pipes.Config{})
	ts.setHash(0, 44, "k44")
	for i := range n {
		if _, err := ts.hub.SendPrivate(context.Background(), 0, 44, "e", fmt.Sprint("q", i)); err != nil {
			t.Fatal(err)
		}
	}
	c := ts.lpOpen("sesion=k44&myid=44&devid=0&v=4.08&uuid=lpbig&api=js")
	got := c.frames(n + 1)
	expect(t, got[0], "event", "serverInfo", "authorized", true)
	for i := range n {
		expect(t, got[i+1], "data", fmt.Sprint("q", i), "fromQueue", true)
	}
	c.poll(c.ack)
	ts.waitQueueLen(44, 0)
}
