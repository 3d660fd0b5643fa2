package mysqlproto

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// chunkConn is a net.Conn whose reads return data in chunks of random size.
type chunkConn struct {
	data []byte
	rnd  *rand.Rand
	max  int
	out  bytes.Buffer
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(1+c.rnd.IntN(c.max), len(c.data), len(p))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *chunkConn) Close() error                     { return nil }
func (c *chunkConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *chunkConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *chunkConn) SetDeadline(time.Time) error      { return nil }
func (c *chunkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }

func mkPacket(seq byte, payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

// readAll drains a guard with reads of random sizes.
func readAll(t *testing.T, g *guardConn, rnd *rand.Rand) []byte {
	t.Helper()
	var out []byte
	for {
		p := make([]byte, 1+rnd.IntN(100))
		n, err := g.Read(p)
		out = append(out, p[:n]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestGuardPassesPacketsIntact(t *testing.T) {
	var stream []byte
	for i := range 50 {
		stream = append(stream, mkPacket(0, bytes.Repeat([]byte{byte('a' + i%26)}, i*7))...)
	}
	for seed := range uint64(20) {
		rnd := rand.New(rand.NewPCG(seed, 1))
		c := &chunkConn{data: append([]byte(nil), stream...), rnd: rnd, max: 1 + int(seed)*13}
		g := newGuardConn(c, 1000, 0)
		g.phase = phaseCommand
		if got := readAll(t, g, rnd); !bytes.Equal(got, stream) {
			t.Fatalf("seed %d: stream changed (%d vs %d bytes)", seed, len(got), len(stream))
		}
	}
}

func TestGuardTinyReads(t *testing.T) {
	// Reads of 1..3 bytes: headers are handed out in pieces.
	var stream []byte
	for i := range 20 {
		stream = append(stream, mkPacket(byte(i), bytes.Repeat([]byte{'q'}, i))...)
	}
	stream = append(stream, mkPacket(20, nil)...) // ends with a bare header
	rnd := rand.New(rand.NewPCG(9, 9))
	c := &chunkConn{data: append([]byte(nil), stream...), rnd: rnd, max: 7}
	g := newGuardConn(c, 1000, 0)
	g.phase = phaseCommand
	var got []byte
	for {
		p := make([]byte, 1+rnd.IntN(3))
		n, err := g.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, stream) {
		t.Fatalf("stream changed: %x", got)
	}
}

func TestGuardDropsLargePackets(t *testing.T) {
	small := mkPacket(0, []byte("\x03SELECT 1"))
	big := mkPacket(0, append([]byte{mysql.COM_QUERY}, bytes.Repeat([]byte("x"), 5000)...))
	// A logical packet of two protocol packets (the first of maximum size).
	huge := append(mkPacket(0, bytes.Repeat([]byte("y"), maxPayload)), mkPacket(1, []byte("tail"))...)
	stream := append(append(append(append([]byte{}, small...), big...), small...), huge...)
	stream = append(stream, small...)
	synthetic := []byte{1, 0, 0, 0, cmdTooLarge}
	want := append(append(append(append(append([]byte{}, small...), synthetic...), small...), synthetic...), small...)
	for seed := range uint64(5) {
		rnd := rand.New(rand.NewPCG(seed, 2))
		c := &chunkConn{data: stream, rnd: rnd, max: 70000}
		g := newGuardConn(c, 1000, 0)
		g.phase = phaseCommand
		var got []byte
		shifts := []byte{}
		for {
			p := make([]byte, 1+rnd.IntN(20000))
			n, err := g.Read(p)
			got = append(got, p[:n]...)
			if bytes.HasSuffix(got, synthetic) && n > 0 && p[n-1] == cmdTooLarge {
				tl, _ := g.takeTooLarge()
				if !tl {
					t.Fatal("synthetic packet without tooLarge")
				}
				shifts = append(shifts, g.seqShift)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("seed %d: got %d bytes, want %d", seed, len(got), len(want))
		}
		if !bytes.Equal(shifts, []byte{0, 1}) {
			t.Fatalf("seed %d: sequence shifts %v", seed, shifts)
		}
	}
}

func TestGuardShiftsAnswerSequence(t *testing.T) {
	c := &chunkConn{rnd: rand.New(rand.NewPCG(1, 1)), max: 10}
	g := newGuardConn(c, 1000, 0)
	g.phase = phaseCommand
	g.seqShift = 2
	if _, err := g.Write([]byte{1, 0, 0, 1, 0xff}); err != nil {
		t.Fatal(err)
	}
	if err := g.flush(); err != nil {
		t.Fatal(err)
	}
	if got := c.out.Bytes(); got[3] != 3 {
		t.Fatalf("sequence %d, want 3", got[3])
	}
}

func handshakeResponse(capab uint32, user string, auth []byte, db, plugin string) []byte {
	p := binary.LittleEndian.AppendUint32(nil, capab)
	p = append(p, 0, 0, 0, 1, 45)
	p = append(p, make([]byte, 23)...)
	p = append(p, user...)
	p = append(p, 0)
	if capab&mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
		p = appendLenEncInt(p, uint64(len(auth)))
	} else {
		p = append(p, byte(len(auth)))
	}
	p = append(p, auth...)
	if capab&mysql.CLIENT_CONNECT_WITH_DB != 0 {
		p = append(append(p, db...), 0)
	}
	if capab&mysql.CLIENT_PLUGIN_AUTH != 0 {
		p = append(append(p, plugin...), 0)
	}
	return p
}

func TestPluginFromHandshake(t *testing.T) {
	base := uint32(mysql.CLIENT_PROTOCOL_41 | mysql.CLIENT_SECURE_CONNECTION | mysql.CLIENT_PLUGIN_AUTH)
	scramble := bytes.Repeat([]byte{7}, 20)
	cases := []struct {
		p    []byte
		want string
	}{
		{handshakeResponse(base, "root", scramble, "", "caching_sha2_password"), "caching_sha2_password"},
		{handshakeResponse(base|mysql.CLIENT_CONNECT_WITH_DB, "root", scramble, "CometQL_v1", "mysql_native_password"), "mysql_native_password"},
		{handshakeResponse(base|mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA|mysql.CLIENT_CONNECT_WITH_DB, "3", scramble, "", "caching_sha2_password"), "caching_sha2_password"},
		{handshakeResponse(base, "root", nil, "", "caching_sha2_password"), ""}, // no auth data: switch
		{handshakeResponse(base&^mysql.CLIENT_PLUGIN_AUTH, "root", scramble, "", ""), ""},
		{[]byte{1, 2, 3}, ""},
	}
	for i, c := range cases {
		if got := pluginFromHandshake(c.p); got != c.want {
			t.Errorf("%d: %q, want %q", i, got, c.want)
		}
	}
	// Through the guard, in chunks.
	resp := handshakeResponse(base, "root", scramble, "", "caching_sha2_password")
	c := &chunkConn{data: mkPacket(1, resp), rnd: rand.New(rand.NewPCG(3, 3)), max: 5}
	g := newGuardConn(c, 1000, 0)
	readAll(t, g, rand.New(rand.NewPCG(4, 4)))
	if g.plugin != "caching_sha2_password" {
		t.Errorf("sniffed %q", g.plugin)
	}
}

func TestGuardSSLRequestPassesThrough(t *testing.T) {
	ssl := mkPacket(1, make([]byte, 32))
	tlsBytes := bytes.Repeat([]byte{0x16, 3, 1, 0xff, 0xff, 0xff, 0}, 100) // not MySQL framing
	stream := append(append([]byte{}, ssl...), tlsBytes...)
	c := &chunkConn{data: stream, rnd: rand.New(rand.NewPCG(5, 5)), max: 40}
	g := newGuardConn(c, 10, 0)
	if got := readAll(t, g, rand.New(rand.NewPCG(6, 6))); !bytes.Equal(got, stream) {
		t.Fatal("TLS stream changed")
	}
	if g.phase != phasePassthrough {
		t.Fatal("not passing through")
	}
}

func TestGuardRefusesHugeHandshake(t *testing.T) {
	c := &chunkConn{data: mkPacket(1, make([]byte, handshakeLimit+1)), rnd: rand.New(rand.NewPCG(7, 7)), max: 1000}
	g := newGuardConn(c, 1000, 0)
	if _, err := g.Read(make([]byte, 100)); err != errHandshakeTooLarge {
		t.Fatalf("err %v", err)
	}
}

func TestAdvertiseMultiStatements(t *testing.T) {
	p := []byte{0, 0, 0, 0, 10}
	p = append(p, "8.0.36-x"...)
	p = append(p, 0, 1, 0, 0, 0)             // connection id
	p = append(p, 1, 2, 3, 4, 5, 6, 7, 8, 0) // auth data 1, filler
	p = append(p, 0xff, 0xf7, 45, 2, 0)      // capability low, charset, status
	p = append(p, 0x0e, 0x00, 21)            // capability high, auth data length
	advertiseMultiStatements(p)
	high := binary.LittleEndian.Uint16(p[len(p)-3:])
	if uint32(high)<<16&mysql.CLIENT_MULTI_STATEMENTS == 0 {
		t.Fatalf("capability high %#x", high)
	}
}

func TestCloseIfIdle(t *testing.T) {
	c := &chunkConn{rnd: rand.New(rand.NewPCG(8, 8)), max: 1}
	g := newGuardConn(c, 1000, 0)
	g.setBusy()
	g.closeIfIdle()
	if g.setIdle() {
		t.Fatal("a connection busy at shutdown may go idle again")
	}
}
