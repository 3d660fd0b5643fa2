//go:build unix

// Package sockfd takes a socket's descriptor out of a Go connection, for
// the code that serves sockets from its own epoll loop.
package sockfd

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dup returns a duplicate of the connection's socket descriptor, close on
// exec. The connection keeps its own: closing it afterwards leaves the
// socket open through the duplicate, and out of Go's network poller.
func Dup(sc syscall.Conn) (int, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	if fd < 0 {
		return -1, errors.New("sockfd: no descriptor")
	}
	return fd, nil
}
