package mysqlproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// guardConn sits between the socket and go-mysql's packet reader and writer.
// go-mysql reads whole packets of any size into memory, writes one syscall
// per packet and has no notion of idle or busy; the guard adds what the
// server needs, working on the MySQL packet framing of the byte stream:
//
//   - inbound: packets larger than the limit are dropped as they stream in
//     and replaced by a one-byte synthetic command (cmdTooLarge) that the
//     handler answers with 1153, so the connection survives; the answer's
//     sequence numbers are shifted to follow the client's last packet.
//   - inbound, handshake: the client's auth plugin is read from its
//     handshake response (go-mysql does not expose it before asking for the
//     credential); after an SSLRequest the stream is passed through.
//   - outbound: packets are buffered and flushed once per command (and
//     before any read), so a result set costs one write, not one per row; the
//     greeting advertises CLIENT_MULTI_STATEMENTS, which the handler
//     implements.
//   - lifecycle: idle (waiting for a command) or busy, for graceful
//     shutdown.
//
// Only the goroutine serving the connection calls Read, Write and flush;
// shutdown calls closeIfIdle from another goroutine.
type guardConn struct {
	net.Conn
	limit        int // largest accepted command payload
	writeTimeout time.Duration
	stallTimeout time.Duration // a started command packet must progress this often

	// inbound framing
	phase    phase
	hdr      [4]byte
	hn       int  // header bytes collected (held back until complete)
	left     int  // payload bytes of the current packet still to pass or drop
	dropping bool // the current logical packet is being dropped
	cont     bool // the current packet continues a max-size packet
	dropCmd  int  // first payload byte of the dropped packet, -1 unknown
	dropSeq  byte
	hready   bool      // hdr is complete and being handed out
	hemit    int       // header bytes handed out
	out      []byte    // bytes to hand out before anything else (synthetic packet)
	rbuf     *[]byte   // pooled read buffer, held only while it has bytes
	small    [512]byte // read buffer between packets
	src      []byte    // bytes read from the socket, not yet filtered
	srcErr   error     // the error of the read that filled src
	tooLarge bool      // a synthetic cmdTooLarge packet was handed out
	longData bool      // the dropped packet was COM_STMT_SEND_LONG_DATA

	// handshake sniffing
	first   []byte // the first handshake packet's payload (capped)
	sniffed bool
	plugin  string // auth plugin named by the client's handshake response

	// outbound
	wbuf     []byte
	greeted  bool
	seqShift byte
	writeErr error
	readErr  error
	stalled  bool // readErr is the deadline of a read inside a command packet
	// idlePacket, when set, is written (before the close that follows) when
	// the wait for a command ends at its deadline: the 4031 error MySQL 8
	// sends. go-mysql closes the connection as soon as a read fails, so
	// the guard must queue it then.
	idlePacket []byte
	idleSent   bool

	mu      sync.Mutex
	busy    bool
	closing bool
}

type phase uint8

const (
	phaseHandshake phase = iota
	phaseCommand
	phasePassthrough // TLS: the stream is encrypted, nothing to see
)

const (
	// cmdTooLarge is the synthetic command byte that replaces a dropped
	// packet; it is no MySQL command.
	cmdTooLarge = 0xF3
	// handshakeLimit caps packets before authentication.
	handshakeLimit = 64 << 10
	sniffCap       = 4 << 10
	maxPayload     = 1<<24 - 1
	flushAt        = 64 << 10
)

var errHandshakeTooLarge = errors.New("mysqlproto: handshake packet too large")

func newGuardConn(c net.Conn, limit int, writeTimeout time.Duration) *guardConn {
	return &guardConn{Conn: c, limit: limit, writeTimeout: writeTimeout, dropCmd: -1}
}

// Read implements net.Conn for go-mysql's packet reader.
func (g *guardConn) Read(p []byte) (int, error) {
	for {
		if len(g.out) > 0 {
			n := copy(p, g.out)
			g.out = g.out[n:]
			return n, nil
		}
		if g.phase == phasePassthrough {
			if len(g.src) > 0 {
				n := copy(p, g.src)
				g.src = g.src[n:]
				g.releaseSrc()
				return n, nil
			}
			if err := g.flush(); err != nil {
				return 0, err
			}
			n, err := g.Conn.Read(p)
			g.noteRead(n, err)
			return n, err
		}
		if len(g.src) > 0 || g.hready {
			n, err := g.filterTo(p)
			g.releaseSrc()
			if err != nil {
				return 0, err
			}
			if n > 0 {
				return n, nil
			}
			continue
		}
		if g.srcErr != nil {
			err := g.srcErr
			g.srcErr = nil
			return 0, err
		}
		if err := g.flush(); err != nil {
			return 0, err
		}
		// Between packets (where an idle connection waits) the read goes
		// to a small buffer of the connection's own; inside a packet, more
		// bytes are on their way and a pooled 16 KiB buffer takes them.
		buf := g.small[:]
		inPacket := g.left > 0 || g.hn > 0
		if inPacket {
			if g.rbuf == nil {
				g.rbuf = readBufs.Get().(*[]byte)
			}
			buf = *g.rbuf
			if g.phase == phaseCommand && g.stallTimeout > 0 {
				// A client that announced a packet must keep sending it
				// (the idle deadline only applies between commands).
				_ = g.Conn.SetReadDeadline(time.Now().Add(g.stallTimeout))
			}
		}
		n, err := g.Conn.Read(buf)
		g.noteRead(n, err)
		if err != nil && g.phase == phaseCommand {
			switch {
			case inPacket:
				g.stalled = true
			case g.idlePacket != nil && errors.Is(err, os.ErrDeadlineExceeded) && !g.closingNow():
				g.wbuf = append(g.wbuf, g.idlePacket...)
				g.idleSent = true
			}
		}
		g.src = buf[:n]
		g.srcErr = err
		g.releaseSrc()
	}
}

var readBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// releaseSrc returns the read buffer to the pool once it is drained, so an
// idle connection holds none.
func (g *guardConn) releaseSrc() {
	if len(g.src) == 0 && g.rbuf != nil {
		readBufs.Put(g.rbuf)
		g.rbuf = nil
		g.src = nil
	}
}

func (g *guardConn) noteRead(n int, err error) {
	if err != nil {
		g.readErr = err
	}
	if n > 0 && g.phase != phaseHandshake {
		g.mu.Lock()
		g.busy = true
		g.mu.Unlock()
	}
}

// filterTo moves bytes from g.src to dst through the framing state machine
// and returns how many it wrote. It stops early when a synthetic packet was
// queued in g.out (it must be handed out before what follows).
func (g *guardConn) filterTo(dst []byte) (int, error) {
	n := 0
	for n < len(dst) {
		if g.hready {
			k := copy(dst[n:], g.hdr[g.hemit:])
			g.hemit += k
			n += k
			if g.hemit < 4 {
				continue
			}
			g.hready = false
			if g.left == 0 && g.endPacket() {
				return n, nil
			}
			continue
		}
		if g.phase == phasePassthrough {
			k := copy(dst[n:], g.src)
			g.src = g.src[k:]
			return n + k, nil
		}
		if len(g.src) == 0 {
			return n, nil
		}
		if g.left == 0 {
			k := copy(g.hdr[g.hn:], g.src)
			g.src = g.src[k:]
			g.hn += k
			if g.hn < 4 {
				continue
			}
			g.hn = 0
			length := int(g.hdr[0]) | int(g.hdr[1])<<8 | int(g.hdr[2])<<16
			if err := g.startPacket(length); err != nil {
				return 0, err
			}
			if !g.dropping {
				g.hready, g.hemit = true, 0
			}
			continue
		}
		k := min(g.left, len(g.src))
		if g.dropping {
			if g.dropCmd < 0 && !g.cont {
				g.dropCmd = int(g.src[0])
			}
		} else {
			k = min(k, len(dst)-n)
			if g.phase == phaseHandshake && !g.sniffed && len(g.first) < sniffCap {
				g.first = append(g.first, g.src[:min(k, sniffCap-len(g.first))]...)
			}
			copy(dst[n:], g.src[:k])
			n += k
		}
		g.src = g.src[k:]
		g.left -= k
		if g.left == 0 && g.endPacket() {
			return n, nil
		}
	}
	return n, nil
}

// startPacket decides what to do with a packet whose header was just read.
func (g *guardConn) startPacket(length int) error {
	seq := g.hdr[3]
	g.left = length
	switch g.phase {
	case phaseHandshake:
		if length > handshakeLimit {
			return errHandshakeTooLarge
		}
	case phaseCommand:
		if !g.cont {
			g.seqShift = 0 // a new command: its answer starts at 1
			if length > g.limit+1 {
				g.dropping = true
				g.dropCmd = -1
			}
		}
		if g.dropping {
			g.dropSeq = seq
		}
	}
	return nil
}

// endPacket runs when a packet's payload is complete. It reports whether
// filtering must stop to hand out a synthetic packet.
func (g *guardConn) endPacket() bool {
	length := int(g.hdr[0]) | int(g.hdr[1])<<8 | int(g.hdr[2])<<16
	g.cont = length == maxPayload
	switch g.phase {
	case phaseHandshake:
		if g.sniffed {
			return false
		}
		g.sniffed = true
		if g.hdr[3] == 1 && length == 32 {
			// SSLRequest: TLS follows, the rest is opaque.
			g.phase = phasePassthrough
			g.first = nil
			return false
		}
		g.plugin = pluginFromHandshake(g.first)
		g.first = nil
	case phaseCommand:
		if g.dropping && !g.cont {
			g.dropping = false
			g.tooLarge = true
			g.longData = g.dropCmd == int(mysql.COM_STMT_SEND_LONG_DATA)
			g.seqShift = g.dropSeq
			g.out = []byte{1, 0, 0, 0, cmdTooLarge}
			return true
		}
	}
	return false
}

// pluginFromHandshake reads the auth plugin name from a HandshakeResponse41
// payload; "" when it names none or cannot be read. A client that sends no
// auth data expects to be switched to its plugin with a fresh scramble
// (MariaDB's caching_sha2_password does that when the greeting proposed
// another plugin): for it the answer is "" too, and the greeting's plugin is
// used, which the client then gets switched to.
func pluginFromHandshake(p []byte) string {
	if len(p) < 32 {
		return ""
	}
	capab := binary.LittleEndian.Uint32(p)
	pos := 32
	i := bytes.IndexByte(p[pos:], 0) // user
	if i < 0 {
		return ""
	}
	pos += i + 1
	if pos >= len(p) {
		return ""
	}
	switch {
	case capab&mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0:
		n, isNull, k := mysql.LengthEncodedInt(p[pos:])
		if isNull || k == 0 || n == 0 {
			return ""
		}
		pos += k + int(n)
	case capab&mysql.CLIENT_SECURE_CONNECTION != 0:
		if p[pos] == 0 {
			return ""
		}
		pos += 1 + int(p[pos])
	default:
		i := bytes.IndexByte(p[pos:], 0)
		if i < 0 {
			return ""
		}
		pos += i + 1
	}
	if pos > len(p) {
		return ""
	}
	if capab&mysql.CLIENT_CONNECT_WITH_DB != 0 {
		if pos == len(p) {
			return ""
		}
		i := bytes.IndexByte(p[pos:], 0)
		if i < 0 {
			return ""
		}
		pos += i + 1
	}
	if capab&mysql.CLIENT_PLUGIN_AUTH == 0 || pos >= len(p) {
		return ""
	}
	i = bytes.IndexByte(p[pos:], 0)
	if i < 0 {
		return string(p[pos:])
	}
	return string(p[pos : pos+i])
}

// Write implements net.Conn: it buffers go-mysql's packets (one per call).
func (g *guardConn) Write(p []byte) (int, error) {
	if g.writeErr != nil {
		return 0, g.writeErr
	}
	if !g.greeted && g.phase == phaseHandshake {
		g.greeted = true
		advertiseMultiStatements(p)
	}
	if g.seqShift != 0 && g.phase == phaseCommand && len(p) >= 4 {
		p[3] += g.seqShift
	}
	g.wbuf = append(g.wbuf, p...)
	if len(g.wbuf) >= flushAt {
		if err := g.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// advertiseMultiStatements sets CLIENT_MULTI_STATEMENTS in a greeting
// packet (header included), which go-mysql does not let us configure.
func advertiseMultiStatements(p []byte) {
	if len(p) < 5 || p[4] != 10 {
		return
	}
	i := bytes.IndexByte(p[5:], 0)
	if i < 0 {
		return
	}
	// version NUL, connection id (4), auth data 1 (8), filler (1), capability
	// low (2), charset (1), status (2), capability high (2)
	pos := 5 + i + 1 + 4 + 8 + 1 + 2 + 1 + 2
	if pos+2 > len(p) {
		return
	}
	p[pos] |= byte(mysql.CLIENT_MULTI_STATEMENTS >> 16)
}

// flush writes the buffered packets.
func (g *guardConn) flush() error {
	if len(g.wbuf) == 0 || g.writeErr != nil {
		return g.writeErr
	}
	if g.writeTimeout > 0 {
		_ = g.Conn.SetWriteDeadline(time.Now().Add(g.writeTimeout))
	}
	_, err := g.Conn.Write(g.wbuf)
	if cap(g.wbuf) > 4*flushAt {
		g.wbuf = nil
	} else {
		g.wbuf = g.wbuf[:0]
	}
	if err != nil {
		g.writeErr = err
	}
	return err
}

// RemoteAddr is the peer's address; its String is the host alone, as MySQL
// names clients in messages ('root'@'127.0.0.1').
func (g *guardConn) RemoteAddr() net.Addr { return hostAddr{g.Conn.RemoteAddr()} }

type hostAddr struct{ net.Addr }

func (a hostAddr) String() string {
	if a.Addr == nil {
		return ""
	}
	return hostOf(a.Addr)
}

// Close flushes what is buffered and closes the socket.
func (g *guardConn) Close() error {
	_ = g.flush()
	return g.Conn.Close()
}

// takeTooLarge reports (once) that the command being handled is the
// synthetic stand-in of a dropped packet, and whether that packet was long
// data (which gets no answer: the connection must then be closed).
func (g *guardConn) takeTooLarge() (tooLarge, longData bool) {
	t, l := g.tooLarge, g.longData
	g.tooLarge, g.longData = false, false
	return t, l
}

// setIdle marks the connection as waiting for its next command. It reports
// false when the server is shutting down.
func (g *guardConn) setIdle() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.busy = false
	return !g.closing
}

// setBusy marks the connection as executing a command.
func (g *guardConn) setBusy() {
	g.mu.Lock()
	g.busy = true
	g.mu.Unlock()
}

// closeIfIdle is called at shutdown: an idle connection is closed now, a
// busy one when its command is done (setIdle reports false).
func (g *guardConn) closeIfIdle() {
	g.mu.Lock()
	g.closing = true
	idle := !g.busy
	g.mu.Unlock()
	if idle {
		// Unblock the pending read; the serving goroutine closes.
		_ = g.Conn.SetReadDeadline(time.Unix(1, 0))
	}
}
