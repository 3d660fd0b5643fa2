package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cometql/cometql/internal/redistest"
)

// Cluster mode (SPEC 8.4): two real cometql processes share one real
// redis-server.

// clusterWS is a browser on one node: its pipe frames, decoded.
type clusterWS struct {
	c      *websocket.Conn
	frames chan map[string]any
}

func dialClusterWS(t *testing.T, httpAddr string, user int64, key string) (*clusterWS, map[string]any) {
	t.Helper()
	u := fmt.Sprintf("ws://%s/ws/sesion=%s&myid=%d&devid=0&v=4.08&uuid=%s&api=js", httpAddr, key, user, newUUIDCluster())
	c, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Origin": []string{"http://" + httpAddr}})
	if err != nil {
		t.Fatalf("dial %s: %v", httpAddr, err)
	}
	w := &clusterWS{c: c, frames: make(chan map[string]any, 1000)}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, first, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("no serverInfo: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	var info map[string]any
	if err := json.Unmarshal(first, &info); err != nil {
		t.Fatalf("serverInfo %s: %v", first, err)
	}
	go func() {
		defer close(w.frames)
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			for _, line := range bytes.Split(msg, []byte("\n")) {
				var f map[string]any
				if json.Unmarshal(line, &f) == nil {
					w.frames <- f
				}
			}
		}
	}()
	return w, info
}

var uuidMu sync.Mutex
var uuidN int

func newUUIDCluster() string {
	uuidMu.Lock()
	defer uuidMu.Unlock()
	uuidN++
	return fmt.Sprintf("cluster%025d", uuidN)
}

func (w *clusterWS) send(t *testing.T, cmd string) {
	t.Helper()
	if err := w.c.WriteMessage(websocket.TextMessage, []byte(cmd)); err != nil {
		t.Fatal(err)
	}
}

// next returns the next frame on pipe, skipping others.
func (w *clusterWS) next(t *testing.T, pipe string) map[string]any {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-w.frames:
			if !ok {
				t.Fatal("connection closed")
			}
			if f["pipe"] == pipe {
				return f
			}
		case <-timeout:
			t.Fatalf("no frame on %s within 10s", pipe)
		}
	}
}

func TestClusterTwoNodes(t *testing.T) {
	srv := redistest.New(t)
	n1 := startServer(t, "", "--redis", srv.URL(), "--node-name", "node-1")
	n2 := startServer(t, "", "--redis", srv.URL(), "--node-name", "node-2")
	db1, db2 := n1.db(t), n2.db(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, s := range []*server{n1, n2} {
		if code, err := httpGet("http://" + s.httpAddr + "/readyz"); err != nil || code != 200 {
			t.Fatalf("readyz = %d, %v\n%s", code, err, s.logs())
		}
	}

	// A browser on node 2; the subscription is counted on node 1.
	b, _ := dialClusterWS(t, n2.httpAddr, 0, "")
	b.send(t, "subscription\nnews")
	deadline := time.Now().Add(10 * time.Second)
	for {
		var users int
		err := db1.QueryRowContext(ctx, "SELECT users FROM pipes WHERE name = 'news'").Scan(&users)
		if err == nil && users == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 1 does not count node 2's subscriber: %d, %v", users, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// CometQL on node 1 reaches the browser on node 2, once each, in order.
	const n = 20
	for i := range n {
		if _, err := db1.ExecContext(ctx, "INSERT INTO pipes_messages (name, event, message) VALUES ('news', 'e', ?)", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		f := b.next(t, "news")
		if f["data"] != fmt.Sprint(i) || f["event"] != "e" {
			t.Fatalf("frame %d: %v", i, f)
		}
	}

	// users_auth written on node 2 authorizes on node 1; a private
	// message sent on node 2 reaches that browser.
	if _, err := db2.ExecContext(ctx, "INSERT INTO users_auth (id, hash) VALUES (5, 'key5')"); err != nil {
		t.Fatal(err)
	}
	u, info := dialClusterWS(t, n1.httpAddr, 5, "key5")
	if info["authorized"] != true {
		t.Fatalf("serverInfo on node 1: %v", info)
	}
	if _, err := db2.ExecContext(ctx, "INSERT INTO users_messages (id, event, message) VALUES (5, 'pm', 'hi there')"); err != nil {
		t.Fatal(err)
	}
	if f := u.next(t, "msg"); f["data"] != "hi there" || f["event"] != "pm" {
		t.Fatalf("private frame: %v", f)
	}
	var online int64 = -1
	if err := db2.QueryRowContext(ctx, "SELECT time FROM users_time WHERE id = 5").Scan(&online); err != nil || online != 0 {
		t.Fatalf("users_time on node 2 = %d, %v", online, err)
	}
}
