package jsapi

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseLPRequest(t *testing.T) {
	const max = 24
	tests := []struct {
		method, op, query, body string
		status                  int // 0: accepted
		check                   func(t *testing.T, r lpRequest)
	}{
		{method: "GET", op: "open", query: "sesion=k&myid=5&devid=3&v=4.08&uuid=U1", check: func(t *testing.T, r lpRequest) {
			if r.herr != nil || r.params.UserID != 5 || r.params.DevID != 3 || r.params.Key != "k" || r.params.UUID != "U1" {
				t.Errorf("%+v", r)
			}
		}},
		{method: "POST", op: "open", query: "v=4.08", check: func(t *testing.T, r lpRequest) {
			if r.herr == nil || r.herr.code != codeNoSession {
				t.Errorf("herr %v", r.herr)
			}
		}},
		{method: "GET", op: "poll", query: "sid=S&ack=7&callback=cb.x", check: func(t *testing.T, r lpRequest) {
			if r.sid != "S" || r.ack != 7 || r.cb != "cb.x" {
				t.Errorf("%+v", r)
			}
		}},
		{method: "GET", op: "poll", query: "sid=S&ack=-1", status: 400},
		{method: "GET", op: "poll", query: "sid=S&ack=x", status: 400},
		{method: "POST", op: "poll", query: "sid=S", status: 405},
		{method: "PUT", op: "send", query: "sid=S", status: 405},
		{method: "GET", op: "nope", status: 404},
		{method: "GET", op: "poll", query: "callback=1bad", status: 400},
		{method: "GET", op: "poll", query: "callback=" + strings.Repeat("a", 65), status: 400},
		{method: "POST", op: "send", query: "sid=S", body: "subscription\nweb_a", check: func(t *testing.T, r lpRequest) {
			if r.cmd != "subscription\nweb_a" || r.sid != "S" {
				t.Errorf("%+v", r)
			}
		}},
		{method: "POST", op: "send", query: "sid=S", body: strings.Repeat("x", max+1), status: 413},
		{method: "GET", op: "send", query: "sid=S&cmd=pipe_count%0Aweb_a%0Am1", check: func(t *testing.T, r lpRequest) {
			if r.cmd != "pipe_count\nweb_a\nm1" {
				t.Errorf("%q", r.cmd)
			}
		}},
		{method: "GET", op: "send", query: "sid=S", status: 400},
		{method: "GET", op: "send", query: "sid=S&cmd=" + strings.Repeat("x", max+1), status: 413},
		{method: "GET", op: "close", query: "sid=S%zz&sid=T", check: func(t *testing.T, r lpRequest) {
			if r.sid != "T" {
				t.Errorf("sid %q", r.sid)
			}
		}},
	}
	for _, tc := range tests {
		r, err := parseLPRequest(tc.method, tc.op, tc.query, []byte(tc.body), max)
		switch {
		case tc.status == 0 && err != nil:
			t.Errorf("%s /lp/%s?%s: %d %s", tc.method, tc.op, tc.query, err.status, err.text)
		case tc.status != 0 && (err == nil || err.status != tc.status):
			t.Errorf("%s /lp/%s?%s: %+v, want %d", tc.method, tc.op, tc.query, err, tc.status)
		case tc.check != nil:
			tc.check(t, r)
		}
	}
}

// FuzzParseLPRequest: any long-poll call decodes without panicking, into
// either a refusal with a client-error status or a request that respects
// the limits (a valid callback, a command within the size limit, a
// non-negative ack, connection parameters as SPEC 3.1 has them).
func FuzzParseLPRequest(f *testing.F) {
	f.Add("GET", "open", "sesion=abc&myid=15&devid=3&v=4.08&uuid=Abc_-123&api=js&callback=jp", "")
	f.Add("GET", "poll", "sid=AAAA&ack=12&callback=cometApi.cb_1", "")
	f.Add("POST", "send", "sid=AAAA", "web_pipe2\nweb_chat\nmsg\n*\nhello\nworld")
	f.Add("GET", "send", "sid=AAAA&cmd=subscription%0Aweb_a%0Atrack_b", "")
	f.Add("POST", "close", "sid=%zz&sid=", "")
	f.Add("HEAD", "poll", "ack=99999999999999999999", "")
	f.Add("DELETE", "../lp", "callback=%00&&&=", "\xff\xfe")
	f.Fuzz(func(t *testing.T, method, op, query, body string) {
		const max = 64
		r, err := parseLPRequest(method, op, query, []byte(body), max)
		if r.cb != "" && !validCallback(r.cb) {
			t.Fatalf("callback %q kept", r.cb)
		}
		if err != nil {
			switch err.status {
			case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge:
			default:
				t.Fatalf("status %d", err.status)
			}
			if err.early && r.cb != "" {
				t.Fatal("early error with a callback")
			}
			return
		}
		if r.op != op {
			t.Fatalf("op %q for %q", r.op, op)
		}
		switch op {
		case "open":
			if r.herr == nil {
				p := r.params
				if len(p.UUID) == 0 || len(p.UUID) > maxUUID || sanitizeUUID(p.UUID) != p.UUID ||
					p.UserID < 0 || p.UserID > 1<<53-1 || p.DevID < 0 || len(p.Key) > maxKeyBytes {
					t.Fatalf("params %+v", p)
				}
			}
		case "poll":
			if r.ack < 0 {
				t.Fatalf("ack %d", r.ack)
			}
		case "send":
			if len(r.cmd) > max {
				t.Fatalf("command of %d bytes", len(r.cmd))
			}
		case "close":
		default:
			t.Fatalf("op %q accepted", op)
		}
	})
}
