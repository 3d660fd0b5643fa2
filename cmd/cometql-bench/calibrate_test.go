package main

import (
	"io"
	"net"
	"testing"
)

// The machine's floor: what the kernel charges for the socket work every
// delivery and every CometQL statement needs, whatever the server does.
// BENCHMARKS.md divides the scenarios' figures by these.

// loopbackPair returns both ends of a TCP connection over 127.0.0.1.
func loopbackPair(b *testing.B) (client, server net.Conn) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		b.Fatal("accept failed")
	}
	b.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// BenchmarkLoopbackWrite: one write of a 130-byte frame (a 100-byte
// message with its WebSocket framing and JSON envelope) to a loopback TCP
// socket whose peer reads as fast as it can: the cost of one delivery's
// syscall when nothing is batched, sender and receiver together.
func BenchmarkLoopbackWrite(b *testing.B) {
	client, server := loopbackPair(b)
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, client)
		close(done)
	}()
	frame := make([]byte, 130)
	b.SetBytes(int64(len(frame)))
	b.ResetTimer()
	for range b.N {
		if _, err := server.Write(frame); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	server.Close()
	<-done
}

// BenchmarkLoopbackRoundTrip: a 100-byte request and a 20-byte answer
// over loopback TCP, one at a time: the floor of one synchronous CometQL
// statement (a client's query and the server's OK), with no work done
// between them.
func BenchmarkLoopbackRoundTrip(b *testing.B) {
	client, server := loopbackPair(b)
	go func() {
		req := make([]byte, 100)
		ok := make([]byte, 20)
		for {
			if _, err := io.ReadFull(server, req); err != nil {
				return
			}
			if _, err := server.Write(ok); err != nil {
				return
			}
		}
	}()
	req := make([]byte, 100)
	ok := make([]byte, 20)
	b.ResetTimer()
	for range b.N {
		if _, err := client.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, ok); err != nil {
			b.Fatal(err)
		}
	}
}
