//go:build linux

package jsapi

import (
	"net"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cometql/cometql/internal/sockfd"
)

// sockFD is a WebSocket's socket descriptor once it has left Go's network
// poller (see detachSocket). Calls that use the descriptor hold a
// reference; close marks it closing and the descriptor is closed when the
// last reference goes, so a descriptor number is never used after the
// kernel may have given it to another socket.
type sockFD struct {
	state atomic.Int64 // references<<1 | closing
	fd    int32
}

// acquire takes a reference; false once closing.
func (f *sockFD) acquire() bool {
	for {
		s := f.state.Load()
		if s&1 != 0 {
			return false
		}
		if f.state.CompareAndSwap(s, s+2) {
			return true
		}
	}
}

// release drops a reference, closing the descriptor when it was the last
// one of a closing socket.
func (f *sockFD) release() {
	if f.state.Add(-2) == 1 {
		unix.Close(int(f.fd))
	}
}

// close marks the socket closing (idempotent); the descriptor is closed
// now or when the last reference goes. Closing it removes it from every
// epoll set.
func (f *sockFD) close() {
	for {
		s := f.state.Load()
		if s&1 != 0 {
			return
		}
		if f.state.CompareAndSwap(s, s|1) {
			if s == 0 {
				unix.Close(int(f.fd))
			}
			return
		}
	}
}

// detachSocket takes a plain TCP connection's socket out of Go's network
// poller: the descriptor is duplicated (the duplicate shares the
// non-blocking mode) and the connection closed, which frees the runtime's
// poll descriptor, its timers and the net package's objects, about 600
// bytes per idle connection. ok is false for other connections (TLS).
func detachSocket(nc net.Conn) (fd int, ok bool) {
	switch c := nc.(type) {
	case fdDetacher:
		fd, err := c.DetachFD()
		return fd, err == nil
	case *net.TCPConn:
		fd, err := sockfd.Dup(c)
		if err != nil {
			return -1, false
		}
		c.Close()
		return fd, true
	}
	return -1, false
}

// drainAndShutdown ends the sending side (a FIN after what was written) and
// reads and discards what the peer still sends, for at most d or max
// bytes, until it closes. Closing a socket with unread input makes the
// kernel send a reset instead of a FIN, and a reset can overtake the last
// frames (an error frame explaining the close): the peer would see a
// broken connection and no reason. The wait is in Go's network poller, on
// a duplicate of the descriptor, so a lingering connection holds a parked
// goroutine and not an OS thread blocked in a system call.
func (f *sockFD) drainAndShutdown(d time.Duration, max int64) {
	if !f.acquire() {
		return
	}
	dup, err := unix.FcntlInt(uintptr(f.fd), unix.F_DUPFD_CLOEXEC, 0)
	f.release()
	if err != nil {
		return
	}
	file := os.NewFile(uintptr(dup), "")
	nc, err := net.FileConn(file)
	file.Close()
	if err != nil {
		return
	}
	defer nc.Close()
	lingerNetConn(nc, d, max)
}
