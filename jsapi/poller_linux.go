//go:build linux

package jsapi

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// poller is an epoll loop watching idle WebSockets for input. Each socket is
// registered one-shot: when it becomes readable the loop hands it to a
// worker goroutine, which reads, handles what arrived and re-arms it. So a
// connection is read by one goroutine at a time and holds none while idle.
//
// Events carry the connection's table slot and generation, never its file
// descriptor: a descriptor number is reused as soon as its socket closes
// (closing a socket also removes it from the epoll set).
type poller struct {
	srv  *Server
	epfd int
	efd  int // eventfd that wakes the loop at shutdown
}

const (
	armEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT
	wakeSlot  = -1
)

func newPollers(s *Server, n int) ([]*poller, error) {
	ps := make([]*poller, 0, n)
	for range n {
		p, err := newPoller(s)
		if err != nil {
			for _, p := range ps {
				p.close()
			}
			return nil, err
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		s.bg.Add(1)
		go p.run()
	}
	return ps, nil
}

func newPoller(s *Server) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeSlot}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		unix.Close(efd)
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	return &poller{srv: s, epfd: epfd, efd: efd}, nil
}

func (p *poller) run() {
	defer p.srv.bg.Done()
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			p.srv.log.Error("epoll_wait failed: loop stopped", "err", err)
			return
		}
		for i := range events[:n] {
			ev := &events[i]
			if ev.Fd == wakeSlot {
				select {
				case <-p.srv.stop:
					return
				default:
					var b [8]byte
					unix.Read(p.efd, b[:])
					continue
				}
			}
			c := p.srv.conns.acquire(uint32(ev.Fd), uint32(ev.Pad), &p.srv.wg)
			if c == nil {
				continue // a connection closed since
			}
			go c.onReadable(p)
		}
	}
}

// wake makes the loop look at the server's stop channel.
func (p *poller) wake() {
	var one = [8]byte{1}
	unix.Write(p.efd, one[:])
}

func (p *poller) close() {
	unix.Close(p.efd)
	unix.Close(p.epfd)
}

// add registers c's socket.
func (p *poller) add(c *wsConn) error {
	return p.ctl(c, unix.EPOLL_CTL_ADD)
}

// rearm watches c's socket again after a read.
func (p *poller) rearm(c *wsConn) {
	if err := p.ctl(c, unix.EPOLL_CTL_MOD); err != nil {
		c.closeConn("")
	}
}

func (p *poller) ctl(c *wsConn, op int) error {
	return epollCtl(p.epfd, op, c, armEvents)
}

// epollCtl registers (or re-arms) c's socket in an epoll set, naming it by
// its table slot and generation.
func epollCtl(epfd, op int, c *wsConn, events uint32) error {
	if !c.fd.acquire() {
		return errClosedSocket
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(c.slot), Pad: int32(c.gen)}
	err := unix.EpollCtl(epfd, op, int(c.fd.fd), &ev)
	c.fd.release()
	return err
}

// onReadable is a worker: it reads what arrived and re-arms the socket.
func (c *wsConn) onReadable(p *poller) {
	defer c.srv.wg.Done()
	c.rmu.Lock()
	ok := c.readAvailable()
	c.rmu.Unlock()
	if ok {
		p.rearm(c)
	}
}

// readAvailable reads once from the socket without blocking and handles
// the frames; false means the connection is closing.
func (c *wsConn) readAvailable() bool {
	buf := c.rbuf
	if buf == nil {
		buf = getReadBuf()
	}
	var (
		n    int
		rerr error
		err  error
	)
	if c.fd.acquire() {
		n, rerr = unix.Read(int(c.fd.fd), buf[len(buf):cap(buf)])
		c.fd.release()
	} else {
		err = errClosedSocket
	}
	switch {
	case err != nil: // closed under us
		c.rbuf = nil
		putReadBuf(buf)
		c.closeConn("")
		return false
	case rerr == unix.EAGAIN || rerr == unix.EINTR:
		c.keep(buf)
		return true
	case rerr != nil || n <= 0: // error or EOF
		c.rbuf = nil
		putReadBuf(buf)
		c.closeConn("")
		return false
	}
	return c.received(buf[:len(buf)+n])
}

// keep holds buf as the pending input, or returns it to the pool if empty.
func (c *wsConn) keep(buf []byte) {
	if len(buf) == 0 {
		putReadBuf(buf)
		c.rbuf = nil
		return
	}
	c.rbuf = buf
}

// writeNonblock writes b to c's socket without waiting for it to be
// writable: it returns how much the socket took, with errWouldBlock when
// it could not take all of it.
func (c *wsConn) writeNonblock(b []byte) (int, error) {
	if !c.fd.acquire() {
		return 0, errClosedSocket
	}
	defer c.fd.release()
	n := 0
	for n < len(b) {
		k, err := unix.Write(int(c.fd.fd), b[n:])
		switch err {
		case nil:
			n += k
		case unix.EINTR:
		case unix.EAGAIN:
			return n, errWouldBlock
		default:
			return n, err
		}
	}
	return n, nil
}

// wpoller is the epoll loop that watches the raw sockets a writer found
// full: when one becomes writable, its connection goes back to its writer.
type wpoller struct {
	srv  *Server
	epfd int
	efd  int
}

const writeEvents = unix.EPOLLOUT | unix.EPOLLONESHOT

func newWPoller(s *Server) (*wpoller, error) {
	p, err := newPoller(s)
	if err != nil {
		return nil, err
	}
	w := &wpoller{srv: s, epfd: p.epfd, efd: p.efd}
	s.bg.Add(1)
	go w.run()
	return w, nil
}

func (w *wpoller) run() {
	defer w.srv.bg.Done()
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			w.srv.log.Error("epoll_wait failed: write loop stopped", "err", err)
			return
		}
		for i := range events[:n] {
			ev := &events[i]
			if ev.Fd == wakeSlot {
				select {
				case <-w.srv.stop:
					return
				default:
					var b [8]byte
					unix.Read(w.efd, b[:])
					continue
				}
			}
			c := w.srv.conns.acquire(uint32(ev.Fd), uint32(ev.Pad), &w.srv.wg)
			if c == nil {
				continue // closed since
			}
			c.srv.writers[int(c.slot)%len(c.srv.writers)].schedule(c)
			w.srv.wg.Done()
		}
	}
}

// arm watches c's socket until it is writable. c's writer holds its turn.
func (w *wpoller) arm(c *wsConn) error {
	op := unix.EPOLL_CTL_MOD
	if !c.wreg {
		op = unix.EPOLL_CTL_ADD
	}
	if err := epollCtl(w.epfd, op, c, writeEvents); err != nil {
		return err
	}
	c.wreg = true
	return nil
}

func (w *wpoller) wake() {
	var one = [8]byte{1}
	unix.Write(w.efd, one[:])
}

func (w *wpoller) close() {
	unix.Close(w.efd)
	unix.Close(w.epfd)
}
