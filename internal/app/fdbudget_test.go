package app

import (
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestCountOpenFiles(t *testing.T) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n, err := countOpenFiles()
	if err != nil {
		t.Fatal(err)
	}
	// ReadDir's own descriptor is listed by it, countOpenFiles leaves its
	// own out.
	if want := int64(len(entries) - 1); n != want {
		t.Fatalf("countOpenFiles = %d, /proc/self/fd lists %d", n, want)
	}
}

// TestBudgetListener: connections are counted until closed; the HTTP
// class stops accepting at limit-reserve/2 and resumes when one closes;
// Admit refuses from limit-reserve on.
func TestBudgetListener(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	probe := newFDBudget(1<<20, 0, log)
	base := probe.open()
	const reserve = 8
	b := newFDBudget(base+2*reserve+6, reserve, log) // room for a few connections
	b.every = 0                                      // the clients are in this process: count every time
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := b.listen(raw, classHTTP)
	defer ln.Close()

	accepted := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	dial := func() {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	var server []net.Conn
	for b.Admit() {
		dial()
		select {
		case c := <-accepted:
			server = append(server, c)
		case <-time.After(5 * time.Second):
			t.Fatalf("not accepted with %d open of %d", b.open(), b.limit)
		}
		if len(server) > 100 {
			t.Fatal("Admit never refused")
		}
	}
	// Up to limit-reserve/2 the listener still accepts; then it waits.
	// Each client's own descriptor counts too: the listener sees it or
	// not depending on when it looks, so one below the threshold the next
	// connection may be accepted or wait.
	// fresh counts while no measurement of the listener's is under way
	// (whose own descriptor would count).
	fresh := func() int64 {
		b.measuring.Lock()
		defer b.measuring.Unlock()
		n, err := countOpenFiles()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	acceptWithin := func(d time.Duration) bool {
		select {
		case c := <-accepted:
			server = append(server, c)
			return true
		case <-time.After(d):
			return false
		}
	}
	for fresh() < b.threshold(classHTTP)-1 {
		dial()
		if !acceptWithin(5 * time.Second) {
			t.Fatalf("paused early at %d open (threshold %d)", b.open(), b.threshold(classHTTP))
		}
	}
	if fresh() < b.threshold(classHTTP) {
		dial()
		acceptWithin(300 * time.Millisecond)
	}
	dial()
	if acceptWithin(300 * time.Millisecond) {
		t.Fatalf("accepted at %d open, threshold %d", b.open(), b.threshold(classHTTP))
	}
	if b.acceptPauses[classHTTP].Load() != 1 {
		t.Errorf("pauses = %d", b.acceptPauses[classHTTP].Load())
	}
	// One connection closes (both ends: the clients are in this process
	// too): a waiting one is accepted.
	// (Two, as each costs two descriptors here and the last one accepted
	// may have gone one over.)
	server[0].Close()
	server[0].Close() // counted once
	server[1].Close()
	clients[0].Close()
	clients[1].Close()
	server = server[2:]
	if !acceptWithin(5 * time.Second) {
		n, _ := countOpenFiles()
		t.Fatalf("accepting did not resume: open %d (conns %d, baseline %d, measured %d), threshold %d", b.open(), b.conns.Load(), b.baseline.Load(), n, b.threshold(classHTTP))
	}
	// Stop accepting, then close every accepted connection, including
	// one that may still have been waiting.
	ln.Close()
	for c := range accepted {
		server = append(server, c)
	}
	for _, c := range server {
		c.Close()
	}
	if b.conns.Load() != 0 {
		t.Errorf("%d connections counted after closing all", b.conns.Load())
	}
	if !b.Admit() {
		t.Error("Admit still refuses")
	}
}

// TestBudgetConnPassesThrough: the wrapper keeps what the HTTP server and
// the epoll loops look for, and counts read timeouts of HTTP connections
// but not reads aborted by a past deadline.
func TestBudgetConnPassesThrough(t *testing.T) {
	b := newFDBudget(1<<20, 64, slog.New(slog.DiscardHandler))
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := b.listen(raw, classHTTP)
	defer ln.Close()
	client, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(syscall.Conn); !ok {
		t.Error("no SyscallConn")
	}
	if _, ok := c.(io.ReaderFrom); !ok {
		t.Error("no ReadFrom")
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !os.IsTimeout(err) {
		t.Fatalf("read: %v", err)
	}
	c.SetReadDeadline(time.Unix(1, 0))
	c.Read(make([]byte, 1))
	if got := b.httpTimeouts.Load(); got != 1 {
		t.Errorf("timeouts = %d, want 1", got)
	}
}

// TestBudgetConnDetachFD: the socket is handed over as a working
// descriptor and the connection stays counted until Close.
func TestBudgetConnDetachFD(t *testing.T) {
	b := newFDBudget(1<<20, 64, slog.New(slog.DiscardHandler))
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := b.listen(raw, classHTTP)
	defer ln.Close()
	client, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	d, ok := c.(interface{ DetachFD() (int, error) })
	if !ok {
		t.Fatal("no DetachFD")
	}
	fd, err := d.DetachFD()
	if err != nil {
		t.Fatal(err)
	}
	if n := b.conns.Load(); n != 1 {
		t.Errorf("%d connections counted after DetachFD, want 1", n)
	}
	if _, err := syscall.Write(fd, []byte("hi")); err != nil {
		t.Fatalf("write on the detached descriptor: %v", err)
	}
	buf := make([]byte, 2)
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("client read %q, %v", buf, err)
	}
	syscall.Close(fd)
	c.Close()
	if n := b.conns.Load(); n != 0 {
		t.Errorf("%d connections counted after Close, want 0", n)
	}
}
