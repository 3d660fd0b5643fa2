package jsapi

import (
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cometql/cometql/pipes"
)

// wsConn is one WebSocket after the upgrade, and the pipes.Sink of its
// session.
//
// States: open → closed. closeConn marks a connection closed (frames are
// no longer queued, reads stop) and, once the opener has attached the
// session, runs finish: TCP close (never a Close frame), Session.Close,
// release of the table slot and the per-IP count. A closed connection never
// reopens.
//
// Nothing is held for an idle connection but this struct: no goroutine
// (an epoll loop watches the socket), no read buffer (pooled, taken when
// input arrives, kept only while a frame is incomplete), no write buffer
// (the outbox is a list of shared frames, written by the writer goroutines
// of wswriter.go, or by a goroutine of its own while the socket is full).
type wsConn struct {
	srv *Server
	// nc is the connection as accepted. In raw mode (raw set: a plain TCP
	// socket, with epoll loops) the socket left Go's poller at the
	// upgrade and fd is its descriptor: reads, writes and the closing
	// happen on fd, and nc is only closed at the end (for its listener's
	// bookkeeping; nil when there is none to do). Otherwise (TLS, other
	// systems) a goroutine reads nc and flush writes it.
	nc net.Conn
	fd sockFD
	ip string

	mu              sync.Mutex
	out             *frameList // data frames waiting (shared, immutable)
	ctrl            []byte     // encoded control frames waiting
	queuedBytes     int32      // payload bytes waiting or being written
	queuedFrames    int32
	flushWaiters    *[]flushWaiter // AfterFlush callbacks; nil almost always
	sess            *pipes.Session
	flushing        bool // a writer holds the connection's turn, or a flush goroutine runs
	closed          bool
	attached        bool // the opener is done with the connection
	closeAfterFlush bool // close once the outbox is written (handshake errors)
	lingerClose     bool // closing with an explanation: FIN first, drain the input (see closeSocket)
	raw             bool // set at creation (see nc)
	wreg            bool // raw: registered with the write poller (the writer's only)

	// The read side: touched only by the goroutine reading, one at a time
	// (epoll's one-shot arming makes sure of that; rmu makes it visible to
	// the race detector, and is never contended).
	rmu     sync.Mutex
	rbuf    []byte // an incomplete frame; nil between frames
	asm     assembler
	limiter cmdLimiter

	slot, gen uint32 // position in the server's connTable

	// wpend, in raw mode, is the rest of a write the socket did not take,
	// written first when it is writable again; only the writer holding
	// the connection's turn touches it.
	wpend *pendingWrite

	lastRead     atomic.Int64 // server clock of the last input
	partialSince atomic.Int64 // since when a message is incomplete; 0: none
	writingSince atomic.Int64 // since when a write is in progress; 0: none
	lastPing     int64        // server clock of the last ping (housekeeping only)
}

var (
	_ pipes.Sink          = (*wsConn)(nil)
	_ pipes.FlushNotifier = (*wsConn)(nil)
	_ pipes.OutboxLimiter = (*wsConn)(nil)
)

// flushWaiter is an AfterFlush callback waiting for left more frames to be
// written.
type flushWaiter struct {
	left int
	fn   func()
}

// AfterFlush calls fn once every frame queued so far has been written to
// the socket (pipes.FlushNotifier); never if the connection closes first.
func (c *wsConn) AfterFlush(fn func()) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.queuedFrames == 0 {
		c.mu.Unlock()
		fn()
		return
	}
	if c.flushWaiters == nil {
		c.flushWaiters = new([]flushWaiter)
	}
	*c.flushWaiters = append(*c.flushWaiters, flushWaiter{left: int(c.queuedFrames), fn: fn})
	c.mu.Unlock()
}

// wroteLocked accounts for frames written to the socket and returns the
// AfterFlush callbacks now due, to be called once c.mu is released.
func (c *wsConn) wroteLocked(nframes, payload int) []func() {
	c.queuedFrames -= int32(nframes)
	c.queuedBytes -= int32(payload)
	if c.flushWaiters == nil {
		return nil
	}
	var due []func()
	keep := (*c.flushWaiters)[:0]
	for _, w := range *c.flushWaiters {
		if w.left -= nframes; w.left <= 0 {
			due = append(due, w.fn)
		} else {
			keep = append(keep, w)
		}
	}
	if len(keep) == 0 {
		c.flushWaiters = nil
	} else {
		*c.flushWaiters = keep
	}
	return due
}

func callAll(fns []func()) {
	for _, fn := range fns {
		fn()
	}
}

func newWSConn(s *Server, nc net.Conn, ip string) *wsConn {
	c := &wsConn{srv: s, nc: nc, ip: ip, asm: assembler{max: int32(s.cfg.MaxFrameBytes)}}
	// A plain socket (a *net.TCPConn, or a listener's wrapper of one that
	// can hand over its descriptor) goes raw; TLS connections are read by
	// a goroutine.
	if s.pollers != nil && s.writers != nil {
		if fd, ok := detachSocket(nc); ok {
			c.fd.fd, c.raw = int32(fd), true
			if _, plain := nc.(*net.TCPConn); plain {
				c.nc = nil // closed already; drop its netFD
			}
		}
	}
	now := s.now()
	c.lastRead.Store(now)
	c.lastPing = now
	return c
}

// frameList is a pooled list of queued frames.
type frameList struct{ f [][]byte }

var frameLists = sync.Pool{New: func() any { return &frameList{f: make([][]byte, 0, 16)} }}

func putFrameList(l *frameList) {
	if l == nil {
		return
	}
	clear(l.f)
	l.f = l.f[:0]
	frameLists.Put(l)
}

// Send queues a frame (pipes.Sink). It never blocks: a connection whose
// outbox would pass OutboxBytes or OutboxFrames is closed instead.
func (c *wsConn) Send(frame []byte) {
	c.mu.Lock()
	if c.closed || c.closeAfterFlush {
		c.mu.Unlock()
		return
	}
	if int(c.queuedFrames) >= c.srv.cfg.OutboxFrames || int(c.queuedBytes)+len(frame) > c.srv.cfg.OutboxBytes {
		c.mu.Unlock()
		c.closeConn(dropOverflow)
		return
	}
	if c.out == nil {
		c.out = frameLists.Get().(*frameList)
	}
	c.out.f = append(c.out.f, frame)
	c.queuedFrames++
	c.queuedBytes += int32(len(frame))
	c.startFlushLocked()
	c.mu.Unlock()
}

// Close ends the connection with a TCP close (pipes.Sink).
func (c *wsConn) Close() { c.closeConn("") }

// OutboxLimits returns the outbox caps past which Send closes the
// connection (pipes.OutboxLimiter).
func (c *wsConn) OutboxLimits() (frames, bytes int) {
	return c.srv.cfg.OutboxFrames, c.srv.cfg.OutboxBytes
}

// pingFrame is an encoded empty Ping; its capacity is its length so that
// appending to it copies.
var pingFrame = []byte{finBit | opPing, 0}[:2:2]

// sendControl queues a control frame (Ping, Pong). Control frames go out
// before the data frames waiting.
func (c *wsConn) sendControl(op byte, payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.closeAfterFlush || len(c.ctrl) > 4*(maxControlPayload+2) {
		return // a client flooding Pings gets answers to some of them
	}
	if op == opPing && len(c.ctrl) == 0 {
		c.ctrl = pingFrame
	} else {
		c.ctrl = appendFrameHeader(c.ctrl, op, len(payload))
		c.ctrl = append(c.ctrl, payload...)
	}
	c.startFlushLocked()
}

// startWriting ends the hold its opener put on the writing of a new
// connection (so that the 101 response leaves with the first frames) and
// writes what is queued.
func (c *wsConn) startWriting() {
	c.mu.Lock()
	c.flushing = false
	if !c.closed && (c.out != nil || len(c.ctrl) > 0) {
		c.startFlushLocked()
	}
	c.mu.Unlock()
}

// startFlushLocked starts the flush goroutine unless it runs; c.mu is held
// and c is open.
func (c *wsConn) startFlushLocked() {
	if c.flushing {
		return
	}
	c.flushing = true
	if c.raw {
		c.srv.writers[int(c.slot)%len(c.srv.writers)].schedule(c)
		return
	}
	c.srv.wg.Add(1)
	go c.flush()
}

// flush writes the outbox of a connection that is not raw (TLS, other
// systems) until it is empty, several frames per write, blocking while the
// socket is full.
func (c *wsConn) flush() {
	defer c.srv.wg.Done()
	// Yield once before taking the outbox: when a publish is fanning out to
	// many connections, more frames queue meanwhile and leave in the same
	// write (measured: 2.7 frames per write without, 11 with).
	runtime.Gosched()
	for {
		out, ctrl, ok := c.takeOutbox()
		if !ok {
			return
		}
		var frames [][]byte
		if out != nil {
			frames = out.f
		}
		// A write that blocks (a client that stopped reading but keeps
		// sending, so the pong timeout never fires) is timed by
		// housekeeping.
		c.writingSince.Store(c.srv.now())
		n, err := c.write(ctrl, frames)
		c.writingSince.Store(0)
		c.mu.Lock()
		due := c.wroteLocked(len(frames), n)
		c.mu.Unlock()
		putFrameList(out)
		if err == nil {
			callAll(due)
		}
		if err != nil {
			c.closeConn("")
			return
		}
	}
}

// takeOutbox takes what is queued for the flushing connection. When there
// is nothing (or the connection closed) the flush ends instead: flushing is
// cleared, and a connection waiting to close once flushed is closed; ok is
// false then.
func (c *wsConn) takeOutbox() (out *frameList, ctrl []byte, ok bool) {
	c.mu.Lock()
	out, ctrl = c.out, c.ctrl
	c.out, c.ctrl = nil, nil
	if c.closed || (out == nil && len(ctrl) == 0) {
		c.flushing = false
		closeNow := !c.closed && c.closeAfterFlush
		c.mu.Unlock()
		putFrameList(out)
		if closeNow {
			c.closeConn("")
		}
		return nil, nil, false
	}
	c.mu.Unlock()
	return out, ctrl, true
}

// writeChunk is how many bytes of frames a flush gathers per write.
const writeChunk = 64 << 10

// writeBufs are the gathering buffers of flushes.
var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, writeChunk); return &b }}

// write sends control frames, then data frames (each its own text frame),
// gathered into as few writes as possible; it returns the data payload
// bytes. Gathering into one buffer (rather than a vectored write) copies a
// little, but leaves nothing behind in the connection: the runtime keeps
// the iovec array of a writev in the socket for good.
func (c *wsConn) write(ctrl []byte, frames [][]byte) (int, error) {
	bp := writeBufs.Get().(*[]byte)
	buf := append((*bp)[:0], ctrl...)
	payload := 0
	var err error
	for _, f := range frames {
		if len(buf) > 0 && len(buf)+maxServerHeader+len(f) > writeChunk {
			if _, err = c.nc.Write(buf); err != nil {
				break
			}
			buf = buf[:0]
		}
		buf = appendFrameHeader(buf, opText, len(f))
		buf = append(buf, f...)
		payload += len(f)
	}
	if err == nil && len(buf) > 0 {
		_, err = c.nc.Write(buf)
	}
	if cap(buf) <= 4*writeChunk {
		*bp = buf[:0]
		writeBufs.Put(bp)
	}
	if err != nil {
		return payload, err
	}
	c.srv.metrics.wroteWS(len(frames), payload)
	return payload, nil
}

// closeConn marks the connection closed and, when the opener is done with
// it, finishes it. reason, when not empty, counts as a drop.
func (c *wsConn) closeConn(reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	out := c.out
	c.out, c.ctrl, c.flushWaiters = nil, nil, nil
	run := c.attached
	c.mu.Unlock()
	putFrameList(out)
	if reason != "" {
		c.srv.metrics.drop(reason)
	}
	if run {
		// Not inline: Send calls closeConn under hub locks, and
		// Session.Close takes them.
		go c.finish()
	}
}

// closeAfterFlushing closes the connection once what is queued is written.
func (c *wsConn) closeAfterFlushing() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closeAfterFlush = true
	c.lingerClose = true
	idle := !c.flushing
	c.mu.Unlock()
	if idle {
		c.closeConn("")
	}
}

// attach hands the session to the connection once the opener is done (sess
// is nil when there is none). It reports whether the connection is still
// open; if not, attach finishes it.
func (c *wsConn) attach(sess *pipes.Session) bool {
	c.mu.Lock()
	c.sess = sess
	c.attached = true
	closed := c.closed
	c.mu.Unlock()
	if closed {
		go c.finish()
	}
	return !closed
}

func (c *wsConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *wsConn) session() *pipes.Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// finish releases a closed connection: TCP close, then the session leaves
// the hub. It ends the connection's count in srv.wg.
func (c *wsConn) finish() {
	defer c.srv.wg.Done()
	c.closeSocket()
	if sess := c.session(); sess != nil {
		sess.Close()
	}
	c.srv.conns.remove(c)
	c.srv.perIP.release(c.ip)
	c.srv.metrics.connWS.Dec()
}

// Lingering close of a connection ended with an explanation (an error
// frame): how long and how much of the peer's input is read and discarded
// after the FIN, so the kernel does not answer it with a reset that could
// overtake the explanation.
const (
	lingerTime  = time.Second
	lingerBytes = 1 << 20
)

// closeSocket closes the socket (a TCP close, never a Close frame). A
// connection closed after an error frame shuts its sending side down and
// drains the input first (see sockFD.drainAndShutdown).
func (c *wsConn) closeSocket() {
	c.mu.Lock()
	linger := c.lingerClose
	c.mu.Unlock()
	if linger {
		if c.raw {
			c.fd.drainAndShutdown(lingerTime, lingerBytes)
		} else {
			lingerNetConn(c.nc, lingerTime, lingerBytes)
		}
	}
	if c.raw {
		c.fd.close()
	}
	if c.nc != nil { // nil: a plain socket that went raw (newWSConn)
		c.nc.Close()
	}
}

// lingerNetConn ends a connection's sending side and reads and discards
// its input for at most d or max bytes (see sockFD.drainAndShutdown, which
// uses it for raw sockets; for TLS the close_notify alert is the FIN's
// counterpart).
func lingerNetConn(nc net.Conn, d time.Duration, max int64) {
	type closeWriter interface{ CloseWrite() error }
	cw, ok := nc.(closeWriter)
	if !ok || cw.CloseWrite() != nil {
		return
	}
	if nc.SetReadDeadline(time.Now().Add(d)) != nil {
		return
	}
	io.CopyN(io.Discard, nc, max)
}

// fdDetacher is implemented by a listener's wrapper of a TCP connection
// that can hand over the socket: DetachFD returns a duplicate of its
// descriptor and releases the wrapped connection's poller state, keeping
// what the wrapper accounts for until its Close.
type fdDetacher interface {
	DetachFD() (int, error)
}

// startReading hands the socket to an epoll loop, or to a reading
// goroutine when there is none (TLS, other systems).
func (c *wsConn) startReading() {
	if c.raw {
		p := c.srv.pollers[int(c.slot)%len(c.srv.pollers)]
		if err := p.add(c); err != nil && !c.isClosed() {
			c.srv.log.Warn("epoll registration failed: connection closed", "err", err)
			c.closeConn("")
		}
		return
	}
	c.mu.Lock()
	if !c.closed {
		c.srv.wg.Add(1)
		go c.readLoop()
	}
	c.mu.Unlock()
}

// readLoop reads a connection that no epoll loop watches.
func (c *wsConn) readLoop() {
	defer c.srv.wg.Done()
	for {
		buf := c.rbuf
		if buf == nil {
			buf = getReadBuf()
		}
		n, err := c.nc.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			if !c.received(buf[:len(buf)+n]) {
				return
			}
		} else {
			c.rbuf = buf
		}
		if err != nil {
			c.closeConn("")
			return
		}
	}
}

const readBufSize = 4 << 10

var readBufs = sync.Pool{New: func() any { b := make([]byte, 0, readBufSize); return &b }}

func getReadBuf() []byte { return (*readBufs.Get().(*[]byte))[:0] }

func putReadBuf(b []byte) {
	if cap(b) == readBufSize {
		b = b[:0]
		readBufs.Put(&b)
	}
}

// received processes bytes read into buf (after what c.rbuf held) and
// reports whether the connection stays open.
func (c *wsConn) received(buf []byte) bool {
	now := c.srv.now()
	c.lastRead.Store(now)
	rest, ok := c.consume(buf)
	c.rbuf = rest
	if !ok {
		return false
	}
	if rest == nil && c.asm.fragOp == 0 {
		c.partialSince.Store(0)
	} else if c.partialSince.Load() == 0 {
		c.partialSince.Store(now)
	}
	return true
}

// consume decodes and handles the complete frames in buf. It returns what
// is left of an incomplete frame (nil when nothing is, buf then going back
// to the pool) and whether the connection stays open.
func (c *wsConn) consume(buf []byte) ([]byte, bool) {
	off, need := 0, 0
	for off < len(buf) {
		n, nd, m, err := c.asm.next(buf[off:])
		if err != nil {
			putReadBuf(buf)
			c.protocolError(err)
			return nil, false
		}
		if n == 0 {
			need = nd
			break
		}
		off += n
		if m.op != 0 && (c.isClosed() || !c.handle(m)) {
			putReadBuf(buf)
			return nil, false
		}
	}
	if off == len(buf) {
		putReadBuf(buf)
		return nil, true
	}
	rest := buf[off:]
	if need > cap(buf) {
		nb := make([]byte, len(rest), need)
		copy(nb, rest)
		putReadBuf(buf)
		return nb, true
	}
	if off > 0 {
		copy(buf, rest)
	}
	return buf[:len(rest)], true
}

// protocolError ends a connection that broke RFC 6455 or the size limit.
func (c *wsConn) protocolError(err error) {
	if errors.Is(err, errTooLarge) {
		if s := c.session(); s != nil {
			s.SendError("message_too_large", "message over the limit of "+strconv.Itoa(c.srv.cfg.MaxFrameBytes)+" bytes; closing the connection")
		}
		c.srv.metrics.drop(dropTooLarge)
		c.srv.metrics.tooLarge.Inc()
		c.closeAfterFlushing()
		return
	}
	c.srv.log.Debug("websocket protocol error", "ip", c.ip, "err", err)
	c.closeConn(dropProtocol)
}

// handle acts on a complete message or control frame; false means the
// connection is closing.
func (c *wsConn) handle(m message) bool {
	switch m.op {
	case opText:
		if s := c.session(); s != nil {
			c.command(s, m.payload)
		}
	case opBinary:
		if s := c.session(); s != nil {
			s.SendError("bad_command", "binary frames are not supported: send commands as text")
		}
	case opPing:
		c.sendControl(opPong, m.payload)
	case opPong:
	case opClose:
		// Never answered with a Close frame (SPEC 3.3 rule 1).
		c.closeConn("")
		return false
	}
	return true
}

// command runs one browser command under the connection's rate limit.
func (c *wsConn) command(s *pipes.Session, payload []byte) {
	c.srv.command(s, &c.limiter, string(payload))
}
