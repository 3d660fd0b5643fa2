package jsapi

import (
	"context"
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
	expect(t, c.next(), "data", "offline 1", "fromQueue", true, "uuid", "q1")
	expect(t, c.next(), "data", "offline 2", "fromQueue", true, "uuid", "q2")
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
