package jsapi

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cometql/cometql/pipes"
)

// Browser connections for the benchmarks come from a child process (this
// test binary again, with memClientEnv set), so that the server's memory
// and CPU are measured alone.
//
//	go test -run '^$' -bench 'IdleConnMemory|Fanout' -benchtime 1x ./jsapi
//
// The child reads "<addr> <n> <pipe>" from memClientEnv, opens n WebSockets
// subscribed to pipe, prints "ready", then for each line "expect <k>" on
// stdin prints "done" once k text frames arrived in total. It exits when
// stdin closes.
const memClientEnv = "JSAPI_MEM_CLIENT"

func memClientMain() int {
	var addr, pipe string
	var n int
	if _, err := fmt.Sscan(os.Getenv(memClientEnv), &addr, &n, &pipe); err != nil {
		fmt.Fprintln(os.Stderr, "bad", memClientEnv, err)
		return 2
	}
	var frames atomic.Int64
	conns := make([]net.Conn, 0, n)
	sem := make(chan struct{}, 64)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			nc, br, err := memClientConn(addr, i, pipe)
			if err != nil {
				failed.Store(err)
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			go func() {
				for {
					op, err := skipFrame(br)
					if err != nil {
						return
					}
					if op == opText {
						frames.Add(1)
					}
				}
			}()
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		return 1
	}
	frames.Store(0)
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var k int64
		if _, err := fmt.Sscanf(in.Text(), "expect %d", &k); err != nil {
			continue
		}
		for frames.Load() < k {
			time.Sleep(time.Millisecond)
		}
		frames.Add(-k)
		fmt.Println("done")
	}
	for _, c := range conns {
		c.Close()
	}
	return 0
}

// memClientConn opens one WebSocket, waits for serverInfo, subscribes and
// waits until the subscription is applied (a pipe_count reply).
func memClientConn(addr string, i int, pipe string) (net.Conn, *bufio.Reader, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	path := fmt.Sprintf("/ws/sesion=&myid=0&devid=0&v=4.08&uuid=bench%d&api=js", i)
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench\r\nOrigin: http://bench.example\r\nAccept-Language: en-US,en;q=0.9\r\n\r\n", path, addr)
	br := bufio.NewReaderSize(nc, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, nil, fmt.Errorf("upgrade: %v %v", resp, err)
	}
	if _, err := skipFrame(br); err != nil { // serverInfo
		nc.Close()
		return nil, nil, err
	}
	key := [4]byte{1, 2, 3, 4}
	nc.Write(clientFrame(true, opText, []byte("subscription\n"+pipe+"\nweb_bench_"+strconv.Itoa(i%10)), key))
	nc.Write(clientFrame(true, opText, []byte("pipe_count\nweb_x\nm\n"), key))
	if _, err := skipFrame(br); err != nil { // the pipe_count reply
		nc.Close()
		return nil, nil, err
	}
	return nc, br, nil
}

// skipFrame reads one server frame and returns its opcode.
func skipFrame(br *bufio.Reader) (byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, err
	}
	n := int64(h[1] & 0x7F)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return 0, err
		}
		n = int64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return 0, err
		}
		n = int64(binary.BigEndian.Uint64(l[:]))
	}
	_, err := br.Discard(int(n))
	return h[0] & 0x0F, err
}

// childClients starts the client process.
type childClients struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startClients(tb testing.TB, addr string, n int, pipe string) *childClients {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %s", memClientEnv, addr, n, pipe))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	c := &childClients{cmd: cmd, in: in, out: bufio.NewScanner(outp)}
	tb.Cleanup(c.stop)
	c.wait(tb, "ready")
	return c
}

func (c *childClients) wait(tb testing.TB, line string) {
	tb.Helper()
	for c.out.Scan() {
		if c.out.Text() == line {
			return
		}
	}
	tb.Fatalf("client process ended before %q: %v", line, c.out.Err())
}

func (c *childClients) stop() {
	c.in.Close()
	c.cmd.Wait()
}

// serverMemory is the memory the process holds: the Go runtime's in-use
// memory (heap spans, stacks, runtime structures) and the resident set.
func serverMemory() (runtimeBytes, rss uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	runtimeBytes = m.HeapInuse + m.StackInuse + m.MSpanInuse + m.MCacheInuse + m.GCSys + m.OtherSys + m.BuckHashSys
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			rss = kb << 10
		}
	}
	return runtimeBytes, rss
}

// BenchmarkIdleConnMemory measures the server's memory per idle WebSocket:
// each connected, authenticated as anonymous, subscribed to two pipes, with
// User-Agent, Origin and Accept-Language as browsers send them.
func BenchmarkIdleConnMemory(b *testing.B) {
	if raceEnabled {
		b.Skip("memory figures mean nothing under the race detector")
	}
	n := 2000 // JSAPI_MEM_CONNS overrides; mind the limit on open files
	if v, err := strconv.Atoi(os.Getenv("JSAPI_MEM_CONNS")); err == nil && v > 0 {
		n = v
	}
	ts := newTestServer(b, Config{MaxConnsPerIP: 1 << 20}, pipes.Config{})
	startClients(b, ts.addr, 50, "warm").stop() // warm pools, maps, the table
	for ts.hub.SessionCount() != 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if os.Getenv("JSAPI_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	rt0, rss0 := serverMemory()
	b.ResetTimer()
	startClients(b, ts.addr, n, "idle")
	for ts.hub.SessionCount() != n {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let the last workers and flushes end
	rt1, rss1 := serverMemory()
	b.StopTimer()
	if p := os.Getenv("JSAPI_HEAPPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
	g := runtime.NumGoroutine()
	b.ReportMetric(float64(rt1-rt0)/float64(n), "runtime-B/conn")
	b.ReportMetric(float64(int64(rss1)-int64(rss0))/float64(n), "rss-B/conn")
	b.ReportMetric(float64(g), "goroutines")
	b.Logf("%d idle connections: runtime %+d B (%.0f B/conn), RSS %+d B (%.0f B/conn), %d goroutines in the process",
		n, int64(rt1-rt0), float64(rt1-rt0)/float64(n), int64(rss1)-int64(rss0), float64(int64(rss1)-int64(rss0))/float64(n), g)
}

// BenchmarkFanout measures deliveries per second: one pipe with 5,000
// WebSocket subscribers in the child process, messages published in-process
// (each reaching every subscriber), until the child received them all.
func BenchmarkFanout(b *testing.B) {
	const subs = 5000
	ts := newTestServer(b, Config{MaxConnsPerIP: 1 << 20}, pipes.Config{})
	cl := startClients(b, ts.addr, subs, "fan")
	for ts.hub.LocalCount(0, "fan") != subs {
		time.Sleep(10 * time.Millisecond)
	}
	const msgs = 200
	data := strings.Repeat("m", 100)
	ctx := context.Background()
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	var total int64
	for range b.N {
		for range msgs {
			if _, err := ts.hub.Publish(ctx, 0, "fan", "ev", data); err != nil {
				b.Fatal(err)
			}
		}
		fmt.Fprintf(cl.in, "expect %d\n", msgs*subs)
		cl.wait(b, "done")
		total += msgs * subs
	}
	el, cpu := time.Since(start), processCPU()-cpu0
	b.ReportMetric(float64(total)/el.Seconds(), "deliveries/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(total), "server-cpu-ns/delivery")
}

// processCPU is the CPU time (user and system) this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
