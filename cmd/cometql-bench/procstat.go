package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat: 100
// on every Linux architecture Go supports.
const clockTicks = 100

// procSample is one look at a process.
type procSample struct {
	At       time.Time
	RSSKB    int64  // VmRSS
	HWMKB    int64  // VmHWM (peak RSS)
	Threads  int    // Threads
	CPUTicks uint64 // utime + stime
	FDs      int    // entries in /proc/<pid>/fd (-1 when unreadable)
}

// readProc reads a process's memory, threads, CPU time and open files.
func readProc(pid int) (procSample, error) {
	s := procSample{At: time.Now(), FDs: -1}
	dir := "/proc/" + strconv.Itoa(pid)
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return s, err
	}
	s.RSSKB, s.HWMKB, s.Threads = parseStatus(status)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s, err
	}
	if s.CPUTicks, err = parseStatCPU(stat); err != nil {
		return s, err
	}
	if ents, err := os.ReadDir(dir + "/fd"); err == nil {
		s.FDs = len(ents)
	}
	return s, nil
}

// parseStatus takes VmRSS and VmHWM (kB) and Threads from /proc/<pid>/status.
func parseStatus(b []byte) (rssKB, hwmKB int64, threads int) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rssKB = n
		case "VmHWM":
			hwmKB = n
		case "Threads":
			threads = int(n)
		}
	}
	return rssKB, hwmKB, threads
}

// parseStatCPU returns utime+stime from /proc/<pid>/stat. The command name
// (field 2) may hold spaces and parentheses, so fields are counted from the
// last ')'.
func parseStatCPU(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("stat: too few fields")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: bad utime/stime %q %q", f[11], f[12])
	}
	return ut + st, nil
}

// cpuPercent is the CPU use between two samples, in percent of one core.
func cpuPercent(a, b procSample) float64 {
	d := b.At.Sub(a.At).Seconds()
	if d <= 0 || b.CPUTicks < a.CPUTicks {
		return 0
	}
	return round3(float64(b.CPUTicks-a.CPUTicks) / clockTicks / d * 100)
}

// listenInodes returns the socket inodes listening on port, from the
// contents of /proc/net/tcp or tcp6.
func listenInodes(table []byte, port int) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(table))
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "0A" { // 0A = TCP_LISTEN
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 32)
		if err != nil || int(p) != port {
			continue
		}
		out = append(out, f[9])
	}
	return out
}

// findListenerPID finds the process listening on the TCP port of addr:
// the socket inode from /proc/net/tcp{,6}, then the process holding
// socket:[inode] among /proc/*/fd.
func findListenerPID(addr string) (int, error) {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, ino := range listenInodes(b, port) {
			want["socket:["+ino+"]"] = true
		}
	}
	if len(want) == 0 {
		return 0, fmt.Errorf("no socket listening on port %d", port)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(p + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(p + "/fd/" + fd.Name()); err == nil && want[l] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process found holding the socket listening on port %d", port)
}

// parseGoroutines finds go_goroutines in Prometheus text output.
func parseGoroutines(b []byte) (int, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "go_goroutines")
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if i := strings.IndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		return int(v), true
	}
	return 0, false
}

// serverWatch samples the server process and its /metrics.
type serverWatch struct {
	pid        int
	metricsURL string
	hc         *http.Client
}

// serverSample is one look at the server (fields -1 when unknown).
type serverSample struct {
	proc       procSample
	ok         bool
	goroutines int
}

func (w *serverWatch) sample() serverSample {
	s := serverSample{goroutines: -1}
	if w == nil {
		return s
	}
	if w.pid > 0 {
		if p, err := readProc(w.pid); err == nil {
			s.proc, s.ok = p, true
		}
	}
	if w.metricsURL != "" {
		if g, err := w.goroutines(); err == nil {
			s.goroutines = g
		}
	}
	if !s.ok {
		s.proc.At = time.Now()
	}
	return s
}

func (w *serverWatch) goroutines() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.metricsURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: HTTP %d", resp.StatusCode)
	}
	g, ok := parseGoroutines(b)
	if !ok {
		return 0, errors.New("metrics: no go_goroutines")
	}
	return g, nil
}
