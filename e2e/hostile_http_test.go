package e2e

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// inRawWS upgrades a raw TCP connection on path and returns it with the
// reader positioned after the 101 response.
func inRawWS(t *testing.T, s *server, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc := inRaw(t, s.httpAddr)
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, s.httpAddr)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	return nc, br
}

// inMaskedFrame encodes a client frame: b0 is FIN/RSV/opcode, the length
// field is encoded as announced (which may differ from len(payload)).
func inMaskedFrame(b0 byte, announced uint64, payload []byte) []byte {
	out := []byte{b0}
	switch {
	case announced < 126:
		out = append(out, 0x80|byte(announced))
	case announced < 1<<16:
		out = append(out, 0x80|126, byte(announced>>8), byte(announced))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, announced)
	}
	mask := [4]byte{1, 2, 3, 4}
	out = append(out, mask[:]...)
	for i, c := range payload {
		out = append(out, c^mask[i%4])
	}
	return out
}

// inServerFrames reads what the server sends until it closes, and reports
// whether a Close frame (opcode 8) was among it (SPEC 3.3 rule 1: never).
func inServerFrames(t *testing.T, br *bufio.Reader, nc net.Conn, limit time.Duration) (texts []string, closeFrame bool) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(limit))
	data, err := io.ReadAll(br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s", limit)
	}
	for len(data) >= 2 {
		op := data[0] & 0x0f
		l, h := int(data[1]&0x7f), 2
		switch l {
		case 126:
			l, h = int(binary.BigEndian.Uint16(data[2:])), 4
		case 127:
			l, h = int(binary.BigEndian.Uint64(data[2:])), 10
		}
		if len(data) < h+l {
			break
		}
		if op == 8 {
			closeFrame = true
		}
		if op == 1 {
			texts = append(texts, string(data[h:h+l]))
		}
		data = data[h+l:]
	}
	return texts, closeFrame
}

// TestHostileHTTPPort sends garbage to the HTTP port: non-HTTP bytes,
// oversized headers, requests that never finish (slowloris), WebSocket
// frames that break RFC 6455 or announce a gigabyte, half a frame, and
// long-poll calls with nonsense parameters. Each gets a status (400, 431,
// 404...) or a TCP close, never a hang past the handshake timeout and never
// a WebSocket Close frame; a healthy browser and CometQL connection keep
// working, and goroutines and heap come back.
func TestHostileHTTPPort(t *testing.T) {
	const hs = time.Second
	s := startServer(t, "", "--handshake-timeout", hs.String(), "--pprof")
	canary := newCanary(t, s)
	leaks := inLeakBaseline(t, s)
	rng := rand.New(rand.NewPCG(3, 4))
	within := hs + 4*time.Second
	statusOf := func(t *testing.T, nc net.Conn) int {
		t.Helper()
		_ = nc.SetReadDeadline(time.Now().Add(within))
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil {
			return 0 // closed without a response
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"not HTTP", func(t *testing.T) {
			nc := inRaw(t, s.httpAddr)
			io.WriteString(nc, "HELLO THERE\r\n\r\n")
			if st := statusOf(t, nc); st != 400 {
				t.Errorf("status %d, want 400", st)
			}
		}},
		{"random bytes", func(t *testing.T) {
			for i := range 20 {
				nc := inRaw(t, s.httpAddr)
				b := make([]byte, 16+i*211)
				for j := range b {
					b[j] = byte(rng.Uint32())
				}
				b = append(b, "\r\n\r\n"...)
				nc.Write(b)
				if st := statusOf(t, nc); st != 0 && st != 400 && st != 431 {
					t.Errorf("status %d", st)
				}
				inClosedWithin(t, nc, within)
			}
		}},
		{"oversized headers", func(t *testing.T) {
			nc := inRaw(t, s.httpAddr)
			fmt.Fprintf(nc, "GET /info HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 100<<10))
			if st := statusOf(t, nc); st != 431 {
				t.Errorf("status %d, want 431", st)
			}
		}},
		{"oversized URL", func(t *testing.T) {
			nc := inRaw(t, s.httpAddr)
			fmt.Fprintf(nc, "GET /ws/%s HTTP/1.1\r\nHost: x\r\n\r\n", strings.Repeat("sesion=x&", 20<<10))
			if st := statusOf(t, nc); st != 431 && st != 414 {
				t.Errorf("status %d, want 431 or 414", st)
			}
		}},
		{"many headers", func(t *testing.T) {
			nc := inRaw(t, s.httpAddr)
			var b strings.Builder
			b.WriteString("GET /info HTTP/1.1\r\nHost: x\r\n")
			for i := range 5000 {
				fmt.Fprintf(&b, "X-H%d: v\r\n", i)
			}
			b.WriteString("\r\n")
			io.WriteString(nc, b.String())
			if st := statusOf(t, nc); st != 431 {
				t.Errorf("status %d, want 431", st)
			}
		}},
		{"headers never finished (slowloris)", func(t *testing.T) {
			before := inMetric(t, s, "cometql_http_read_timeouts_total")
			nc := inRaw(t, s.httpAddr)
			io.WriteString(nc, "GET /info HTTP/1.1\r\nHost: x\r\n")
			stop := make(chan struct{})
			go func() { // a header byte now and then
				for {
					select {
					case <-stop:
						return
					case <-time.After(200 * time.Millisecond):
						if _, err := nc.Write([]byte("X")); err != nil {
							return
						}
					}
				}
			}()
			d := inClosedWithin(t, nc, within)
			close(stop)
			if d < hs/2 {
				t.Errorf("closed after %s, before the handshake timeout", d)
			}
			inWaitMetric(t, s, "cometql_http_read_timeouts_total", before+1)
		}},
		{"silent connection", func(t *testing.T) {
			nc := inRaw(t, s.httpAddr)
			inClosedWithin(t, nc, within)
		}},
		{"half a WebSocket frame", func(t *testing.T) {
			nc, br := inRawWS(t, s, inWSPath(0, 0, ""))
			frame := inMaskedFrame(0x81, 100, bytes.Repeat([]byte("x"), 100))
			nc.Write(frame[:20])
			start := time.Now()
			texts, closeFrame := inServerFrames(t, br, nc, within)
			if d := time.Since(start); d < hs/2 {
				t.Errorf("closed after %s, before the handshake timeout (frames %q)", d, texts)
			}
			if closeFrame {
				t.Error("the server sent a WebSocket Close frame")
			}
			inWaitMetric(t, s, `cometql_browser_drops_total{reason="read_timeout"}`, 1)
		}},
		{"WebSocket frames breaking RFC 6455", func(t *testing.T) {
			bad := map[string][]byte{
				"unmasked":              {0x81, 0x02, 'h', 'i'},
				"reserved bits":         inMaskedFrame(0xC1, 2, []byte("hi")),
				"reserved opcode":       inMaskedFrame(0x83, 2, []byte("hi")),
				"long control frame":    inMaskedFrame(0x89, 200, bytes.Repeat([]byte("p"), 200)),
				"fragmented control":    inMaskedFrame(0x09, 2, []byte("hi")),
				"stray continuation":    inMaskedFrame(0x80, 2, []byte("hi")),
				"message inside a frag": append(inMaskedFrame(0x01, 2, []byte("hi")), inMaskedFrame(0x81, 2, []byte("hi"))...),
				"length with the MSB":   append([]byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1}, 1, 2, 3, 4),
			}
			for name, frame := range bad {
				nc, br := inRawWS(t, s, inWSPath(0, 0, ""))
				nc.Write(frame)
				if _, closeFrame := inServerFrames(t, br, nc, within); closeFrame {
					t.Errorf("%s: the server sent a WebSocket Close frame", name)
				}
			}
			inWaitMetric(t, s, `cometql_browser_drops_total{reason="protocol_error"}`, float64(len(bad)))
		}},
		{"a frame announcing a gigabyte", func(t *testing.T) {
			nc, br := inRawWS(t, s, inWSPath(0, 0, ""))
			nc.Write(inMaskedFrame(0x81, 1<<30, []byte("tiny")))
			texts, closeFrame := inServerFrames(t, br, nc, within)
			if closeFrame {
				t.Error("the server sent a WebSocket Close frame")
			}
			if !strings.Contains(strings.Join(texts, "\n"), `"code":"message_too_large"`) {
				t.Errorf("no message_too_large error frame: %q", texts)
			}
		}},
		{"a gigabyte of fragments", func(t *testing.T) {
			nc, br := inRawWS(t, s, inWSPath(0, 0, ""))
			chunk := bytes.Repeat([]byte("f"), 60000)
			go func() {
				nc.Write(inMaskedFrame(0x01, uint64(len(chunk)), chunk))
				for range 1000 {
					if _, err := nc.Write(inMaskedFrame(0x00, uint64(len(chunk)), chunk)); err != nil {
						return
					}
				}
			}()
			texts, _ := inServerFrames(t, br, nc, within)
			if !strings.Contains(strings.Join(texts, "\n"), `"code":"message_too_large"`) {
				t.Errorf("no message_too_large error frame: %q", texts)
			}
		}},
		{"ping flood", func(t *testing.T) {
			nc, br := inRawWS(t, s, inWSPath(0, 0, ""))
			var flood []byte
			for range 20000 {
				flood = append(flood, inMaskedFrame(0x89, 125, bytes.Repeat([]byte("p"), 125))...)
			}
			go nc.Write(flood)
			// Not reading: the server must neither block nor grow without
			// bound. Then the connection still works.
			time.Sleep(500 * time.Millisecond)
			cmd := []byte("pipe_count\nweb_flood\nm1\n")
			nc.Write(inMaskedFrame(0x81, uint64(len(cmd)), cmd))
			_ = nc.SetReadDeadline(time.Now().Add(within))
			var seen bytes.Buffer
			buf := make([]byte, 64<<10)
			for !bytes.Contains(seen.Bytes(), []byte(`"marker":"m1"`)) {
				n, err := br.Read(buf)
				if err != nil {
					t.Fatalf("no answer after a ping flood: %v", err)
				}
				seen.Write(buf[:n])
				if seen.Len() > 8<<20 {
					seen.Next(seen.Len() - 1024)
				}
			}
		}},
		{"long-poll nonsense", func(t *testing.T) {
			for _, c := range []struct {
				method, path string
				want         int
			}{
				{"GET", "/lp/poll?sid=nope&ack=1", 404},
				{"GET", "/lp/poll?sid=nope&ack=-1", 400},
				{"GET", "/lp/poll?ack=%zz%00", 404},
				{"GET", "/lp/open?callback=alert(1)", 400},
				{"GET", "/lp/send?sid=x", 400},
				{"POST", "/lp/send?sid=x", 404},
				{"DELETE", "/lp/open", 405},
				{"GET", "/lp/../../etc/passwd", 404},
				{"GET", "/lp/%ff%fe", 404},
				{"PUT", "/ws/sesion=&v=4.08", 400},
			} {
				st, body, _ := inDo(t, s, c.method, c.path, "", nil)
				if st != c.want {
					t.Errorf("%s %s: %d %s, want %d", c.method, c.path, st, body, c.want)
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t)
			canary.check()
		})
	}
	inHTTP.CloseIdleConnections()
	leaks.check("hostile HTTP input")
	canary.check()
}
