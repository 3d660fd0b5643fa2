package jsapi

import (
	"errors"
	"sync"
)

// Errors of raw sockets.
var (
	// errWouldBlock reports a non-blocking write the socket could not
	// take whole.
	errWouldBlock = errors.New("jsapi: write would block")
	// errClosedSocket reports a use of a socket being closed.
	errClosedSocket = errors.New("jsapi: socket closed")
)

// The WebSocket write path (raw mode, see wsConn). A connection with frames
// to write is scheduled once on one of a few writer goroutines (its slot
// picks which); the writer gathers the connection's whole outbox into one
// buffer and writes it with one non-blocking write. Frames queued while a
// connection waits for its turn leave in that same write, so under load a
// write carries many frames, and no goroutine is started per flush. When
// the socket cannot take a whole write (the browser reads slowly), the
// rest is kept with the connection and its socket is handed to the write
// poller; once writable, the connection is scheduled again and the rest
// goes first. No goroutine waits for a slow browser.
//
// Connections that are not raw (TLS, other systems) write from a goroutine
// of their own (flush).

// wsWriter is one writer goroutine and its queue of connections.
type wsWriter struct {
	srv  *Server
	mu   sync.Mutex
	q    []*wsConn // connections scheduled, in order
	wake chan struct{}
	buf  []byte // the gathering buffer
}

// writerBufKeep is the size above which a writer drops its gathering buffer
// after a write (a rare large outbox does not stay allocated).
const writerBufKeep = 256 << 10

func newWriters(s *Server, n int) []*wsWriter {
	ws := make([]*wsWriter, n)
	for i := range ws {
		ws[i] = &wsWriter{srv: s, wake: make(chan struct{}, 1)}
		s.bg.Add(1)
		go ws[i].run()
	}
	return ws
}

// schedule queues c for a write.
func (w *wsWriter) schedule(c *wsConn) {
	w.mu.Lock()
	w.q = append(w.q, c)
	first := len(w.q) == 1
	w.mu.Unlock()
	if first {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (w *wsWriter) run() {
	defer w.srv.bg.Done()
	var batch []*wsConn
	for {
		w.mu.Lock()
		batch, w.q = w.q, batch[:0]
		w.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-w.wake:
				continue
			case <-w.srv.stop:
				return
			}
		}
		for i, c := range batch {
			c.writeOut(w)
			batch[i] = nil
		}
	}
}

// writeOut writes c's outbox from a writer: the connection is flushing and
// was scheduled on w.
func (c *wsConn) writeOut(w *wsWriter) {
	if c.wpend != nil && !c.writePending() {
		return
	}
	out, ctrl, ok := c.takeOutbox()
	if !ok {
		return
	}
	var frames [][]byte
	if out != nil {
		frames = out.f
	}
	buf := append(w.buf[:0], ctrl...)
	payload := 0
	for _, f := range frames {
		buf = appendFrameHeader(buf, opText, len(f))
		buf = append(buf, f...)
		payload += len(f)
	}
	nframes := len(frames)
	putFrameList(out)
	n, err := c.writeNonblock(buf)
	switch {
	case err == nil:
		c.wrote(nframes, payload)
		c.next(w)
	case err == errWouldBlock:
		// Kept until the socket is writable again (a copy: buf is the
		// writer's).
		c.wpend = &pendingWrite{b: append([]byte(nil), buf[n:]...), frames: nframes, payload: payload}
		c.waitWritable()
	default:
		c.closeConn("")
	}
	if cap(buf) <= writerBufKeep {
		w.buf = buf[:0]
	} else {
		w.buf = nil
	}
}

// pendingWrite is the rest of a write a raw socket did not take, and the
// frames and payload bytes it finishes.
type pendingWrite struct {
	b               []byte
	frames, payload int
}

// writePending writes what the socket did not take of c's last write; true
// when it is all written. Otherwise c waits for the socket again (or is
// closing) and its writer must leave it.
func (c *wsConn) writePending() bool {
	if c.isClosed() {
		c.abandonWrite()
		return false
	}
	p := c.wpend
	n, err := c.writeNonblock(p.b)
	switch {
	case err == nil:
		c.wpend = nil
		c.writingSince.Store(0)
		c.wrote(p.frames, p.payload)
		return true
	case err == errWouldBlock:
		p.b = p.b[n:]
		c.waitWritable()
	default:
		c.closeConn("")
		c.abandonWrite()
	}
	return false
}

// waitWritable hands c's socket to the write poller; a write that stays
// blocked for the pong timeout ends the connection (housekeeping).
func (c *wsConn) waitWritable() {
	if c.writingSince.Load() == 0 {
		c.writingSince.Store(c.srv.now())
	}
	if err := c.srv.wpoll.arm(c); err != nil {
		c.closeConn("")
		c.abandonWrite()
	}
}

// abandonWrite drops the unwritten rest of a closing connection and ends
// its turn.
func (c *wsConn) abandonWrite() {
	c.wpend = nil
	c.writingSince.Store(0)
	c.mu.Lock()
	c.flushing = false
	c.mu.Unlock()
}

// wrote accounts for a completed write of frames and runs the AfterFlush
// callbacks it satisfied.
func (c *wsConn) wrote(nframes, payload int) {
	c.srv.metrics.wroteWS(nframes, payload)
	c.mu.Lock()
	due := c.wroteLocked(nframes, payload)
	c.mu.Unlock()
	callAll(due)
}

// next ends c's turn after a completed write: it is scheduled again when
// more frames are waiting, else its flushing ends (and a connection
// closing after its last frames closes).
func (c *wsConn) next(w *wsWriter) {
	c.mu.Lock()
	more := !c.closed && (c.out != nil || len(c.ctrl) > 0)
	if !more {
		c.flushing = false
	}
	closeNow := !more && !c.closed && c.closeAfterFlush
	c.mu.Unlock()
	if more {
		w.schedule(c) // behind the others: more frames gather meanwhile
	}
	if closeNow {
		c.closeConn("")
	}
}
