package mysqlproto_test

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/cometql/cometql/mysqlproto"
)

// waitStats polls the server's counters until ok holds.
func waitStats(t *testing.T, ts *testServer, ok func(mysqlproto.Stats) bool) mysqlproto.Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := ts.srv.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters never matched: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStalledPacket: an authenticated client that announces a 16 MB packet
// and sends 10 bytes of it is closed after HandshakeTimeout (not after the
// idle timeout), and counted.
func TestStalledPacket(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{HandshakeTimeout: 300 * time.Millisecond, MaxQueryBytes: 1 << 20})
	c, err := client.Connect(ts.addr, "root", rootPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nc := c.Conn.Conn
	start := time.Now()
	// length 0xFFFFFF, sequence 0, then 10 bytes of a COM_QUERY.
	if _, err := nc.Write(append([]byte{0xff, 0xff, 0xff, 0}, []byte("\x03SELECT 1 ")...)); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(nc); err != nil {
		t.Fatalf("stalled connection not closed: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %s", d)
	}
	waitStats(t, ts, func(s mysqlproto.Stats) bool { return s.ReadTimeouts == 1 && s.IdleTimeouts == 0 })
}

// TestStatsCount: error packets are counted by code, handshake timeouts
// and idle timeouts separately.
func TestStatsCount(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{MaxConnections: 4, MaxQueryBytes: 1024,
		HandshakeTimeout: 200 * time.Millisecond, IdleTimeout: 400 * time.Millisecond})
	ctx := context.Background()
	c := ts.conn(t, "root", rootPassword, "")
	_, err := c.ExecContext(ctx, "SELECT '"+strings.Repeat("x", 2000)+"'")
	myErr(t, err, 1153, "08S01")
	_, err = c.ExecContext(ctx, "SELEKT 1")
	myErr(t, err, 1064, "42000")
	db := ts.open(t, "root", "wrong", "")
	myErr(t, db.PingContext(ctx), 1045, "28000")
	db.Close()

	// A silent client (room is left under MaxConnections: the refused
	// login's connection may not be released yet on a loaded machine): the handshake times out.
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(nc)

	st := waitStats(t, ts, func(s mysqlproto.Stats) bool { return s.HandshakeTimeouts == 1 && s.IdleTimeouts == 1 })
	for code, want := range map[uint16]uint64{1153: 1, 1064: 1, 1045: 1, 4031: 1} {
		if st.Errors[code] != want {
			t.Errorf("errors[%d] = %d, want %d (%v)", code, st.Errors[code], want, st.Errors)
		}
	}
}

// TestIdleTimeoutTellsTheClient: an idle client receives error 4031 before
// the close (go-mysql closes the socket as soon as the read fails, so the
// packet is queued by the guard).
func TestIdleTimeoutTellsTheClient(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{IdleTimeout: 300 * time.Millisecond})
	c, err := client.Connect(ts.addr, "root", rootPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nc := c.Conn.Conn
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	data, _ := io.ReadAll(nc)
	// An error packet (sequence 0, as MySQL 8 sends it; clients accept
	// error packets out of sequence), then the close.
	if len(data) < 7 || data[4] != 0xff || int(data[5])|int(data[6])<<8 != 4031 {
		t.Fatalf("idle client got %q, want error 4031", data)
	}
	if !strings.Contains(string(data), "inactivity") {
		t.Errorf("message %q", data[13:])
	}
}
