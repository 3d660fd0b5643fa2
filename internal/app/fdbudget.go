package app

import (
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cometql/cometql/internal/sockfd"
)

// fdBudget keeps the process's last file descriptors for the CometQL port
// and the health checks, so that browsers alone cannot exhaust them.
//
// It counts the connections accepted on both listeners (budgetListener
// wraps them) on top of a baseline of the other descriptors (the store, the
// epoll loops, the runtime). The baseline is measured in /proc/self/fd at
// start and again whenever the count comes near a threshold, at most four
// times a second, so the count stays exact where it matters and costs two
// atomic operations elsewhere. With limit the soft RLIMIT_NOFILE and N the
// reserve:
//
//   - new browser connections (WebSocket upgrades, long-poll sessions) are
//     refused (503) from limit-N open descriptors on (Admit);
//   - the HTTP listener stops accepting from limit-N/2 on, so that health
//     checks and refusals have N/2 descriptors and cannot take the last ones;
//   - the CometQL listener stops accepting from limit-N/8 on, leaving a few
//     to the store and the process.
//
// A listener that stops accepting leaves new connections in the kernel's
// backlog and looks again every 50 ms; it logs once a second at most, and
// resumes by itself as connections close. A zero reserve disables all of
// this (accept errors are then only waited out, by the front ends).
type fdBudget struct {
	limit   int64
	reserve int64
	log     *slog.Logger

	every      time.Duration // measure at most this often (250 ms)
	conns      atomic.Int64  // accepted connections not yet closed
	baseline   atomic.Int64  // other open descriptors, as last measured
	measuredAt atomic.Int64  // time.Now().UnixNano() of the last measure
	measuring  sync.Mutex

	refused       atomic.Uint64 // browser connections refused
	httpTimeouts  atomic.Uint64 // HTTP connections closed by a read deadline
	acceptPauses  [2]atomic.Uint64
	acceptedTotal [2]atomic.Uint64
}

// Listener classes of an fdBudget.
const (
	classHTTP = iota
	classQL
)

var classNames = [2]string{"http", "cometql"}

// newFDBudget measures the descriptors open now; limit is the soft
// RLIMIT_NOFILE, reserve the number kept from browsers (0: none).
func newFDBudget(limit, reserve int64, log *slog.Logger) *fdBudget {
	b := &fdBudget{limit: limit, reserve: reserve, log: log, every: 250 * time.Millisecond}
	b.measure(true)
	return b
}

// enabled reports whether the budget limits anything.
func (b *fdBudget) enabled() bool { return b.reserve > 0 && b.limit > 0 }

// open is the number of descriptors believed open.
func (b *fdBudget) open() int64 { return b.baseline.Load() + b.conns.Load() }

// below reports whether fewer than max descriptors are open, measuring the
// baseline again when the count is within the reserve of max.
func (b *fdBudget) below(max int64) bool {
	if b.open() >= max-b.reserve {
		b.measure(false)
	}
	return b.open() < max
}

// measure counts /proc/self/fd and sets the baseline; unless forced, at
// most once per 250 ms and never two at a time.
func (b *fdBudget) measure(force bool) {
	now := time.Now().UnixNano()
	if !force && now-b.measuredAt.Load() < int64(b.every) {
		return
	}
	if !b.measuring.TryLock() {
		return
	}
	defer b.measuring.Unlock()
	b.measuredAt.Store(now)
	n, err := countOpenFiles()
	if err != nil {
		return // out of descriptors for the count itself: keep the old baseline
	}
	b.baseline.Store(max(0, n-b.conns.Load()))
}

// countOpenFiles counts the entries of /proc/self/fd (less the one the
// count itself opens) without allocating per entry.
func countOpenFiles() (int64, error) {
	fd, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer syscall.Close(fd)
	var (
		buf [16 << 10]byte
		n   int64
	)
	for {
		k, err := syscall.Getdents(fd, buf[:])
		if err != nil {
			return 0, err
		}
		if k <= 0 {
			break
		}
		for off := 0; off < k; {
			// struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name
			reclen := int(buf[off+16]) | int(buf[off+17])<<8
			name := buf[off+19]
			if name != '.' {
				n++
			}
			if reclen <= 0 {
				break
			}
			off += reclen
		}
	}
	return n - 1, nil
}

// Admit is jsapi's Config.Admit: false when a new browser connection would
// eat into the reserve.
func (b *fdBudget) Admit() bool {
	if !b.enabled() {
		return true
	}
	if b.below(b.limit - b.reserve) {
		return true
	}
	b.refused.Add(1)
	return false
}

// threshold is the number of open descriptors from which a listener of
// class stops accepting.
func (b *fdBudget) threshold(class int) int64 {
	if class == classQL {
		return b.limit - max(b.reserve/8, 1)
	}
	return b.limit - max(b.reserve/2, 1)
}

// listen wraps ln: accepted connections are counted and, when the budget is
// enabled, accepting waits while the class's threshold is reached.
func (b *fdBudget) listen(ln net.Listener, class int) net.Listener {
	return &budgetListener{Listener: ln, b: b, class: class, closed: make(chan struct{})}
}

// budgetListener is a listener whose connections an fdBudget counts.
type budgetListener struct {
	net.Listener
	b         *fdBudget
	class     int
	closed    chan struct{}
	closeOnce sync.Once

	// touched by the accepting goroutine only
	lastLog time.Time
	paused  bool
}

func (l *budgetListener) Accept() (net.Conn, error) {
	b := l.b
	if b.enabled() {
		max := b.threshold(l.class)
		for !b.below(max) {
			if !l.paused {
				l.paused = true
				b.acceptPauses[l.class].Add(1)
			}
			if time.Since(l.lastLog) >= time.Second {
				l.lastLog = time.Now()
				b.log.Warn("file descriptors low: accepting paused until connections close",
					"listener", classNames[l.class], "open", b.open(), "limit", b.limit, "reserve", b.reserve)
			}
			t := time.NewTimer(50 * time.Millisecond)
			select {
			case <-t.C:
			case <-l.closed:
				t.Stop()
				return nil, net.ErrClosed
			}
		}
		if l.paused {
			l.paused = false
			if !l.lastLog.IsZero() && time.Since(l.lastLog) >= time.Second {
				l.lastLog = time.Now()
				b.log.Info("accepting resumed", "listener", classNames[l.class], "open", b.open())
			}
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	b.conns.Add(1)
	b.acceptedTotal[l.class].Add(1)
	return &budgetConn{Conn: c, b: b, http: l.class == classHTTP}, nil
}

// Close closes the listener and ends a wait in Accept.
func (l *budgetListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// budgetConn is an accepted connection counted by an fdBudget until it is
// closed. It passes through what the HTTP server and the WebSocket epoll
// loops look for in a *net.TCPConn (the descriptor, ReadFrom, CloseWrite).
type budgetConn struct {
	net.Conn
	b      *fdBudget
	http   bool
	closed atomic.Bool
	// abort is set while the read deadline is in the past: the HTTP server
	// does that to stop a background read, which is no timeout.
	abort atomic.Bool
}

func (c *budgetConn) Close() error {
	var err error
	if c.Conn != nil { // nil once detached (DetachFD)
		err = c.Conn.Close()
	}
	if c.closed.CompareAndSwap(false, true) {
		c.b.conns.Add(-1)
	}
	return err
}

func (c *budgetConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.http && !c.abort.Load() && os.IsTimeout(err) {
		c.b.httpTimeouts.Add(1)
	}
	return n, err
}

func (c *budgetConn) SetDeadline(t time.Time) error {
	c.noteDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *budgetConn) SetReadDeadline(t time.Time) error {
	c.noteDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *budgetConn) noteDeadline(t time.Time) {
	c.abort.Store(!t.IsZero() && t.Before(time.Now()))
}

// SyscallConn gives the socket's descriptor (jsapi's epoll loops).
func (c *budgetConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, syscall.EINVAL
}

// DetachFD hands the socket over (jsapi's raw WebSockets): it returns a
// duplicate of the descriptor (close on exec) and closes the wrapped
// connection, which releases the runtime's poller state, and drops it (its
// netFD and addresses, ~300 bytes an idle WebSocket would otherwise keep);
// the connection stays counted until Close, as the duplicate holds a
// descriptor. Only Close may be called afterwards.
func (c *budgetConn) DetachFD() (int, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return -1, syscall.EINVAL
	}
	fd, err := sockfd.Dup(sc)
	if err != nil {
		return -1, err
	}
	c.Conn.Close()
	c.Conn = nil
	return fd, nil
}

// ReadFrom lets the HTTP server use sendfile/splice.
func (c *budgetConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite half-closes the connection (the HTTP server's graceful close).
func (c *budgetConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
