package jsapi

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cometql/cometql/pipes"
)

func TestAcceptKey(t *testing.T) {
	// RFC 6455, section 1.3.
	if got := string(appendAcceptKey(nil, "dGhlIHNhbXBsZSBub25jZQ==")); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("accept key %q", got)
	}
	for key, ok := range map[string]bool{
		"dGhlIHNhbXBsZSBub25jZQ==": true,
		"dGhlIHNhbXBsZSBub25jZQ":   false, // unpadded
		"dGhlIHNhbXBsZSBub25jZQ=x": false,
		"":                         false,
		"aGVsbG8=":                 false, // 5 bytes
	} {
		if validChallengeKey(key) != ok {
			t.Errorf("validChallengeKey(%q) = %v", key, !ok)
		}
	}
	h := http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"WebSocket"}}
	if !headerHasToken(h, "connection", "upgrade") || !headerHasToken(h, "Upgrade", "websocket") || headerHasToken(h, "Connection", "close") {
		t.Fatal("headerHasToken")
	}
}

// Handshakes that are not version-13 WebSocket GETs get HTTP errors, and a
// good one gets the 101 response with the serverInfo frame.
func TestUpgradeHandshake(t *testing.T) {
	ts := newTestServer(t, Config{}, pipes.Config{})
	send := func(req string) (*http.Response, *rawConn) {
		t.Helper()
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetDeadline(time.Now().Add(waitFor))
		if _, err := nc.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(nc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp, &rawConn{t: t, nc: nc, br: br}
	}
	head := "GET " + anonPath() + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	for name, c := range map[string]struct {
		req    string
		status int
	}{
		"version 8": {head + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", 400},
		"bad key":   {head + "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
		"POST": {strings.Replace(head, "GET", "POST", 1) + "Content-Length: 0\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 405},
	} {
		if resp, _ := send(c.req); resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d", name, resp.StatusCode, c.status)
		}
	}
	resp, r := send(head + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("upgrade: %s %v", resp.Status, resp.Header)
	}
	if p := r.nextText(); !strings.Contains(string(p), `"event":"serverInfo"`) {
		t.Fatalf("first frame %s", p)
	}
}
