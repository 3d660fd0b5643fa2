package main

import (
	"net"
	"os"
	"testing"
	"time"
)

func TestParseStatus(t *testing.T) {
	status := []byte("Name:\tcometql\nState:\tS (sleeping)\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t12\n")
	rss, hwm, th := parseStatus(status)
	if rss != 102400 || hwm != 204800 || th != 12 {
		t.Fatalf("rss %d hwm %d threads %d", rss, hwm, th)
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses must not shift the fields.
	stat := []byte("1234 (weird ) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 1000000 500 18446744073709551615")
	ticks, err := parseStatCPU(stat)
	if err != nil || ticks != 300 {
		t.Fatalf("ticks %d err %v", ticks, err)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1")); err == nil {
		t.Fatal("short stat accepted")
	}
}

func TestReadProcSelf(t *testing.T) {
	p, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.RSSKB <= 0 || p.Threads <= 0 || p.FDs <= 0 {
		t.Fatalf("implausible sample %+v", p)
	}
	a := procSample{At: time.Unix(0, 0), CPUTicks: 100}
	b := procSample{At: time.Unix(2, 0), CPUTicks: 250}
	if got := cpuPercent(a, b); got != 75 {
		t.Fatalf("cpu %v%%, want 75", got)
	}
}

func TestListenInodes(t *testing.T) {
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F97 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F97 0200007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 556 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:0CE4 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 557 1 0000000000000000 100 0 0 10 0
`)
	got := listenInodes(table, 8087)
	if len(got) != 1 || got[0] != "555" {
		t.Fatalf("got %v", got)
	}
}

func TestFindListenerPID(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pid, err := findListenerPID(ln.Addr().String())
	if err != nil {
		t.Skipf("cannot scan /proc here: %v", err)
	}
	if pid != os.Getpid() {
		t.Fatalf("pid %d, want %d", pid, os.Getpid())
	}
}

func TestParseGoroutines(t *testing.T) {
	metrics := []byte(`# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines_other 5
go_goroutines 1234
go_threads 9
`)
	if g, ok := parseGoroutines(metrics); !ok || g != 1234 {
		t.Fatalf("got %d %v", g, ok)
	}
	if g, ok := parseGoroutines([]byte("go_goroutines{instance=\"a\"} 7\n")); !ok || g != 7 {
		t.Fatalf("labelled: got %d %v", g, ok)
	}
	if _, ok := parseGoroutines([]byte("x 1\n")); ok {
		t.Fatal("found goroutines in nothing")
	}
}
