package e2e

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
)

// inQLGreeting reads the server's greeting packet from a raw CometQL
// connection.
func inQLGreeting(t *testing.T, nc net.Conn) {
	t.Helper()
	var hdr [4]byte
	if _, err := io.ReadFull(nc, hdr[:]); err != nil {
		t.Fatalf("no greeting: %v", err)
	}
	n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
	if _, err := io.ReadFull(nc, make([]byte, n)); err != nil {
		t.Fatalf("greeting cut: %v", err)
	}
}

// inQLAuthed returns the socket of an authenticated CometQL connection, to
// write raw bytes on after the handshake.
func inQLAuthed(t *testing.T, s *server) net.Conn {
	t.Helper()
	c, err := client.Connect(s.qlAddr, "root", testPassword, "CometQL_v1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	nc := c.Conn.Conn
	_ = nc.SetDeadline(time.Now().Add(3 * inWait))
	return nc
}

// TestHostileCometQLPort sends what no MySQL client sends to the CometQL
// port: random bytes, truncated packets, a packet announcing 16 MB and
// sending 10 bytes (before and after authentication), a handshake that
// never finishes (silent, or dripping a byte at a time). Each connection
// is closed (at the latest after the handshake timeout), the counters say
// why, a healthy browser and CometQL connection keep working throughout,
// and the server's goroutines and heap come back to where they were.
func TestHostileCometQLPort(t *testing.T) {
	const hs = time.Second
	s := startServer(t, "", "--handshake-timeout", hs.String(), "--pprof")
	canary := newCanary(t, s)
	leaks := inLeakBaseline(t, s)
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	// A closed connection is closed within the handshake timeout plus
	// slack for a loaded machine.
	within := hs + 4*time.Second

	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"random bytes instead of the handshake", func(t *testing.T) {
			for i := range 20 {
				nc := inRaw(t, s.qlAddr)
				inQLGreeting(t, nc)
				nc.Write(random(1 + i*97))
				inClosedWithin(t, nc, within)
			}
		}},
		{"random bytes before reading the greeting", func(t *testing.T) {
			nc := inRaw(t, s.qlAddr)
			nc.Write(random(4096))
			inClosedWithin(t, nc, within)
		}},
		{"truncated handshake response", func(t *testing.T) {
			nc := inRaw(t, s.qlAddr)
			inQLGreeting(t, nc)
			// A header announcing 100 bytes, 50 of them, then the client
			// half-closes.
			nc.Write(append([]byte{100, 0, 0, 1}, random(50)...))
			nc.(*net.TCPConn).CloseWrite()
			inClosedWithin(t, nc, within)
		}},
		{"half a packet header", func(t *testing.T) {
			nc := inRaw(t, s.qlAddr)
			inQLGreeting(t, nc)
			nc.Write([]byte{0x20, 0})
			if d := inClosedWithin(t, nc, within); d < hs/2 {
				t.Errorf("closed after %s, before the handshake timeout", d)
			}
		}},
		{"16 MB announced before authentication", func(t *testing.T) {
			nc := inRaw(t, s.qlAddr)
			inQLGreeting(t, nc)
			nc.Write(append([]byte{0xff, 0xff, 0xff, 1}, "0123456789"...))
			// Over the handshake packet limit: closed at once.
			if d := inClosedWithin(t, nc, within); d > hs {
				t.Errorf("closed after %s", d)
			}
		}},
		{"16 MB announced after authentication", func(t *testing.T) {
			nc := inQLAuthed(t, s)
			nc.Write(append([]byte{0xff, 0xff, 0xff, 0}, "\x03SELECT 1 "...))
			d := inClosedWithin(t, nc, within)
			if d < hs/2 {
				t.Errorf("closed after %s, before the handshake timeout", d)
			}
			inWaitMetric(t, s, "cometql_cometql_read_timeouts_total", 1)
		}},
		{"silent client (slowloris)", func(t *testing.T) {
			nc := inRaw(t, s.qlAddr)
			inQLGreeting(t, nc)
			if d := inClosedWithin(t, nc, within); d < hs/2 {
				t.Errorf("closed after %s, before the handshake timeout", d)
			}
			inWaitMetric(t, s, `cometql_cometql_handshake_failures_total{reason="timeout"}`, 1)
		}},
		{"dripping client (slowloris)", func(t *testing.T) {
			nc := inRaw(t, s.qlAddr)
			inQLGreeting(t, nc)
			// A plausible handshake response, one byte every 100 ms: the
			// handshake deadline is for the whole handshake.
			pkt := append([]byte{200, 0, 0, 1}, random(200)...)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for _, c := range pkt {
					if _, err := nc.Write([]byte{c}); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
			if d := inClosedWithin(t, nc, within); d > within {
				t.Errorf("closed after %s", d)
			}
			nc.Close()
			<-done
		}},
		{"random command packets after authentication", func(t *testing.T) {
			for i := range 12 {
				nc := inQLAuthed(t, s)
				body := random(1 + i*53)
				hdr := binary.LittleEndian.AppendUint32(nil, uint32(len(body)))
				hdr[3] = 0
				nc.Write(append(hdr, body...))
				// Whatever it answers (an error packet for an unknown
				// command, or a close for a broken one), the connection
				// ends when we close it and the server goes on.
				_ = nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				io.Copy(io.Discard, nc)
				nc.Close()
			}
		}},
		{"fifty garbage connections at once", func(t *testing.T) {
			var wg sync.WaitGroup
			for i := range 50 {
				nc := inRaw(t, s.qlAddr)
				payload := random(64 + i)
				wg.Add(1)
				go func() {
					defer wg.Done()
					nc.Write(payload)
					_ = nc.SetReadDeadline(time.Now().Add(within))
					io.Copy(io.Discard, nc)
				}()
			}
			wg.Wait()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t)
			canary.check()
		})
	}
	leaks.check("hostile CometQL input")
	canary.check()
	if n := inMetric(t, s, `cometql_cometql_handshake_failures_total{reason="error"}`); n == 0 {
		t.Error("no handshake error counted")
	}
}
