package sockfd

import (
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The duplicate outlives the connection: bytes written to it after the
// connection is closed reach the peer, and its close-on-exec flag is set.
func TestDupOutlivesConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(peer)
			return
		}
		peer <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p := <-peer
	if p == nil {
		t.Fatal("not accepted")
	}
	defer p.Close()
	fd, err := Dup(c.(syscall.Conn))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	c.Close()
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("F_GETFD = %#x, %v", flags, err)
	}
	if _, err := unix.Write(fd, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := p.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("peer read %q, %v", buf, err)
	}
}
