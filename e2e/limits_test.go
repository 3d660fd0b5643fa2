package e2e

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLimits: each limit of SPEC 8.3 (and the CometQL ones), set low with
// its flag, refuses with its own clear error and counts in a metric, and
// the refused client (or the server for everyone else) goes on.
func TestLimits(t *testing.T) {
	s := startServer(t, "",
		"--max-message-bytes", "1024", "--max-query-bytes", "4096", "--max-subscriptions", "5",
		"--ql-max-connections", "8", "--web-publish-rate", "1", "--web-publish-burst", "2",
		"--command-rate", "2", "--command-burst", "10", "--max-longpoll-sessions", "3",
		"--ql-idle-timeout", "1s", "--ping-interval", "200ms", "--pong-timeout", "1s",
		"--http-idle-timeout", "1s", "--max-conns-per-ip", "20")
	db := s.db(t)
	db.SetMaxOpenConns(2)
	metric := func(name string) float64 { return inMetric(t, s, name) }

	t.Run("message size", func(t *testing.T) {
		_, err := db.Exec("INSERT INTO pipes_messages (name, event, message) VALUES ('lim', 'e', ?)", strings.Repeat("m", 1025))
		inMyErr(t, err, 1406)
		mustExec(t, db, "INSERT INTO pipes_messages (name, event, message) VALUES ('lim', 'e', ?)", strings.Repeat("m", 1024))
		if metric(`cometql_cometql_errors_total{code="1406"}`) < 1 {
			t.Error("1406 not counted")
		}

		b := inDial(t, s, inWSPath(0, 0, ""), nil)
		b.info()
		b.send("web_pipe2\nweb_lim\ne\n*\n" + strings.Repeat("m", 1025))
		if code, _ := b.sysError(); code != "message_too_large" {
			t.Errorf("web_pipe2 over the limit: %s", code)
		}
		b.sync() // still open
		// A frame over the limit with its command: error frame, TCP close.
		b.send("web_pipe2\nweb_lim\ne\n*\n" + strings.Repeat("m", 1024+4096))
		if code, _ := b.sysError(); code != "message_too_large" {
			t.Errorf("frame over the limit: %s", code)
		}
		if err := b.ended(); err == nil {
			t.Error("still open")
		}
		l := inLPOpen(t, s, "sesion=&v=4.08")
		if st, body := l.send(strings.Repeat("m", 1024+4096+1)); st != 413 {
			t.Errorf("long-poll command over the limit: %d %s", st, body)
		}
		inWaitMetric(t, s, `cometql_browser_errors_total{code="message_too_large"}`, 2)
		inWaitMetric(t, s, "cometql_browser_messages_too_large_total", 2)
		inWaitMetric(t, s, `cometql_browser_drops_total{reason="too_large"}`, 1)
	})

	t.Run("query size", func(t *testing.T) {
		conn, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = conn.ExecContext(context.Background(), "SELECT '"+strings.Repeat("q", 5000)+"'")
		inMyErr(t, err, 1153)
		var one int
		if err := conn.QueryRowContext(context.Background(), "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("same connection after 1153: %v", err)
		}
		inWaitMetric(t, s, `cometql_cometql_errors_total{code="1153"}`, 1)
	})

	t.Run("subscriptions per connection", func(t *testing.T) {
		b := inDial(t, s, inWSPath(0, 0, ""), nil)
		b.info()
		b.send("subscription\ns1\ns2\ns3\ns4\ns5\ns6\ns7")
		code, text := b.sysError()
		if code != "too_many_subscriptions" || !strings.Contains(text, "5") {
			t.Errorf("%s: %s", code, text)
		}
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM users_in_pipes WHERE name IN ('s1','s2','s3','s4','s5','s6','s7')").Scan(&n); err != nil || n != 5 {
			t.Errorf("%d subscribed (%v), want 5", n, err)
		}
		inWaitMetric(t, s, `cometql_browser_errors_total{code="too_many_subscriptions"}`, 1)
	})

	t.Run("web_pipe2 rate", func(t *testing.T) {
		b := inDial(t, s, inWSPath(0, 0, ""), nil)
		b.info()
		for i := range 6 {
			b.send(fmt.Sprintf("web_pipe2\nweb_rate\ne\n*\nm%d", i))
		}
		frames := b.sync()
		answers, limited := 0, 0
		for _, f := range frames {
			if f["pipe"] == "_answer_to_web_rate" {
				answers++
			}
			if d, _ := f["data"].(map[string]any); f["pipe"] == "sys" && d["code"] == "rate_limited" {
				limited++
			}
		}
		if answers < 2 || limited < 3 || answers+limited != 6 {
			t.Errorf("%d published, %d rate limited", answers, limited)
		}
		inWaitMetric(t, s, "cometql_rate_limited_total", 3)
	})

	t.Run("command rate", func(t *testing.T) {
		b := inDial(t, s, inWSPath(0, 0, ""), nil)
		b.info()
		for i := range 40 {
			b.send(fmt.Sprintf("pipe_count\nweb_c\nc%d\n", i))
		}
		time.Sleep(time.Second) // the bucket refills for the sync command
		frames := b.sync()
		answered, limited := 0, 0
		for _, f := range frames {
			if f["event"] == "user_in_pipe" {
				answered++
			}
			if d, _ := f["data"].(map[string]any); f["pipe"] == "sys" && d["code"] == "rate_limited" {
				limited++
			}
		}
		if answered < 10 || limited < 20 || answered+limited != 40 {
			t.Errorf("%d answered, %d rate limited", answered, limited)
		}
		inWaitMetric(t, s, "cometql_browser_rate_limited_commands_total", 20)
	})

	t.Run("long-poll sessions", func(t *testing.T) {
		var sids []string
		defer func() {
			for _, sid := range sids {
				inDo(t, s, http.MethodPost, "/lp/close?sid="+sid, "", nil)
			}
		}()
		refused := false
		for range 4 {
			st, body, _ := inGet(t, s, "/lp/open?sesion=&v=4.08", nil)
			if st == 503 {
				if !strings.Contains(body, "too many long-poll sessions") {
					t.Errorf("refusal: %s", body)
				}
				refused = true
				break
			}
			var r struct{ SID string }
			if st != 200 || json.Unmarshal([]byte(body), &r) != nil {
				t.Fatalf("open: %d %s", st, body)
			}
			sids = append(sids, r.SID)
		}
		if !refused || len(sids) > 3 {
			t.Errorf("%d sessions opened, refused %v", len(sids), refused)
		}
		inWaitMetric(t, s, `cometql_browser_drops_total{reason="lp_limit"}`, 1)
	})

	t.Run("CometQL connections", func(t *testing.T) {
		var conns []*sql.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		var err error
		for range 10 {
			other := inDB(t, s, "root", testPassword)
			var c *sql.Conn
			c, err = other.Conn(context.Background())
			if err == nil {
				err = c.PingContext(context.Background())
			}
			if err != nil {
				break
			}
			conns = append(conns, c)
		}
		inMyErr(t, err, 1040)
		if len(conns) > 8 {
			t.Errorf("%d connections", len(conns))
		}
		inWaitMetric(t, s, `cometql_cometql_errors_total{code="1040"}`, 1)
	})

	t.Run("idle CometQL connection", func(t *testing.T) {
		// The previous part's connections are closed, but the server
		// counts them until it has seen each close.
		inWaitMetricAtMost(t, s, "cometql_cometql_connections", 4)
		nc := inQLAuthed(t, s)
		// After the idle timeout: error 4031, then the close.
		_ = nc.SetReadDeadline(time.Now().Add(inWait))
		data, _ := io.ReadAll(nc)
		if len(data) < 7 || data[4] != 0xff || int(data[5])|int(data[6])<<8 != 4031 {
			t.Errorf("idle connection got %q, want error 4031", data)
		}
		inWaitMetric(t, s, "cometql_cometql_idle_timeouts_total", 1)
		inWaitMetric(t, s, `cometql_cometql_errors_total{code="4031"}`, 1)
	})

	t.Run("WebSocket that stops answering pings", func(t *testing.T) {
		nc, _ := inRawWS(t, s, inWSPath(0, 0, ""))
		// Never read, never answer: dropped after the pong timeout.
		if d := inClosedWithin(t, nc, inWait); d < 500*time.Millisecond {
			t.Errorf("dropped after %s", d)
		}
		inWaitMetric(t, s, `cometql_browser_drops_total{reason="pong_timeout"}`, 1)
		// A browser that answers stays.
		b := inDial(t, s, inWSPath(0, 0, ""), nil)
		b.info()
		time.Sleep(1500 * time.Millisecond)
		b.sync()
	})

	t.Run("idle keep-alive HTTP connection", func(t *testing.T) {
		before := metric("cometql_http_read_timeouts_total")
		nc := inRaw(t, s.httpAddr)
		fmt.Fprintf(nc, "GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(nc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		start := time.Now()
		_ = nc.SetReadDeadline(start.Add(inWait))
		if _, err := io.Copy(io.Discard, br); err != nil {
			t.Fatalf("idle keep-alive not closed: %v", err)
		}
		if d := time.Since(start); d < 500*time.Millisecond {
			t.Errorf("closed after %s", d)
		}
		inWaitMetric(t, s, "cometql_http_read_timeouts_total", before+1)
	})

	t.Run("connections per IP", func(t *testing.T) {
		var open []*inBrowser
		var status int
		for range 25 {
			b, resp, err := inTryDial(t, s, inWSPath(0, 0, ""), nil)
			if err != nil {
				if resp != nil {
					status = resp.StatusCode
				}
				break
			}
			open = append(open, b)
		}
		if status != http.StatusTooManyRequests || len(open) > 20 {
			t.Errorf("%d browsers, then status %d, want 429", len(open), status)
		}
		st, body, _ := inGet(t, s, "/lp/open?sesion=&v=4.08", nil)
		if st != http.StatusTooManyRequests {
			t.Errorf("long-poll open over the per-IP limit: %d %s", st, body)
		}
		inWaitMetric(t, s, `cometql_browser_drops_total{reason="per_ip_limit"}`, 2)
		for _, b := range open {
			b.close()
		}
		// Released: a browser connects again.
		deadline := time.Now().Add(inWait)
		for {
			b, _, err := inTryDial(t, s, inWSPath(0, 0, ""), nil)
			if err == nil {
				b.close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("still refused: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
