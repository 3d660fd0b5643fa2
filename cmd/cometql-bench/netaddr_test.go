package main

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"
)

func TestSourceAddrs(t *testing.T) {
	cases := []struct {
		spec, target string
		conns, per   int
		want         []string
		err          bool
	}{
		{"", "127.0.0.1:8087", 2500, 1000, []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}, false},
		{"", "localhost:8087", 10, 1000, []string{"127.0.0.2"}, false},
		{"", "10.0.0.5:8087", 20000, 1000, nil, false},
		{"none", "127.0.0.1:8087", 20000, 1000, nil, false},
		{"127.0.0.5-127.0.0.7", "127.0.0.1:1", 1, 1, []string{"127.0.0.5", "127.0.0.6", "127.0.0.7"}, false},
		{"127.0.0.9, 127.0.0.10", "127.0.0.1:1", 1, 1, []string{"127.0.0.9", "127.0.0.10"}, false},
		{"127.0.0.7-127.0.0.5", "127.0.0.1:1", 1, 1, nil, true},
		{"bogus", "127.0.0.1:1", 1, 1, nil, true},
		{"", "nohostport", 1, 1, nil, true},
	}
	for _, c := range cases {
		got, err := sourceAddrs(c.spec, c.target, c.conns, c.per)
		if (err != nil) != c.err || !slices.Equal(got, c.want) {
			t.Errorf("sourceAddrs(%q, %q, %d, %d) = %v, %v; want %v (err %v)", c.spec, c.target, c.conns, c.per, got, err, c.want, c.err)
		}
	}
	// Auto skips .0 and .255 when it runs past a /24.
	got, _ := sourceAddrs("", "127.0.0.1:1", 300*10, 10)
	for _, a := range got {
		if a == "127.0.1.0" || a == "127.0.0.255" {
			t.Fatalf("auto produced %s", a)
		}
	}
	if len(got) != 300 || got[len(got)-1] != "127.0.1.47" {
		t.Fatalf("%d addresses, last %s", len(got), got[len(got)-1])
	}
}

func TestDialerBindsSource(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		got <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := newDialer("127.0.0.3", 5*time.Second).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Skipf("cannot bind 127.0.0.3 here: %v", err)
	}
	defer c.Close()
	if ip := <-got; ip != "127.0.0.3" {
		t.Fatalf("server saw %s", ip)
	}
}
