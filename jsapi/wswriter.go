package jsapi

import (
	"errors"
	"sync"
)

// errWouldBlock reports a non-blocking write the socket could not take
// whole.
var errWouldBlock = errors.New("jsapi: write would block")

// The WebSocket write path. A connection with frames to write is scheduled
// once on one of a few writer goroutines (its slot picks which); the writer
// gathers the connection's whole outbox into one buffer and writes it with
// one non-blocking write. Frames queued while a connection waits for its
// turn leave in that same write, so under load a write carries many frames
// and no goroutine is started per flush. A write the socket cannot take
// whole (the browser reads slowly) hands the connection to a goroutine of
// its own, which blocks on the rest and keeps writing until the outbox is
// empty; then the connection goes back to the writers.
//
// TLS connections, and systems without the epoll loops, always write from a
// goroutine of their own (flush).

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
	c.mu.Lock()
	out, ctrl := c.out, c.ctrl
	c.out, c.ctrl = nil, nil
	if c.closed || (out == nil && len(ctrl) == 0) {
		c.flushing = false
		closeNow := !c.closed && c.closeAfterFlush
		c.mu.Unlock()
		putFrameList(out)
		if closeNow {
			c.closeConn("")
		}
		return
	}
	c.mu.Unlock()

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
	if cap(buf) <= writerBufKeep {
		w.buf = buf[:0]
	} else {
		w.buf = nil
	}
	switch {
	case err == nil && n == len(buf):
		c.srv.metrics.wroteWS(nframes, payload)
		c.mu.Lock()
		due := c.wroteLocked(nframes, payload)
		more := !c.closed && (c.out != nil || len(c.ctrl) > 0)
		if !more {
			c.flushing = false
		}
		closeNow := !more && !c.closed && c.closeAfterFlush
		c.mu.Unlock()
		callAll(due)
		if more {
			w.schedule(c) // behind the others: more frames gather meanwhile
		}
		if closeNow {
			c.closeConn("")
		}
	case err == nil || err == errWouldBlock:
		// The socket is full: a goroutine of the connection's own waits
		// for it and writes the rest.
		rest := append([]byte(nil), buf[n:]...)
		c.srv.wg.Add(1)
		go c.flushRest(rest, nframes, payload)
	default:
		c.closeConn("")
	}
}

// flushRest writes what a writer could not, then goes on as flush.
func (c *wsConn) flushRest(rest []byte, nframes, payload int) {
	c.writingSince.Store(c.srv.now()) // timed by housekeeping, as in flush
	_, err := c.nc.Write(rest)
	c.writingSince.Store(0)
	if err != nil {
		c.srv.wg.Done()
		c.closeConn("")
		return
	}
	c.srv.metrics.wroteWS(nframes, payload)
	c.mu.Lock()
	due := c.wroteLocked(nframes, payload)
	c.mu.Unlock()
	callAll(due)
	c.flush()
}
