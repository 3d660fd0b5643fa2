package e2e

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Helpers around the server process of harness_test.go.

// signal sends sig to the server process.
func (s *server) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitLog waits until the server's output contains substr.
func (s *server) waitLog(substr string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.logs(), substr) {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-s.exited:
			return strings.Contains(s.logs(), substr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return true
}

// waitExit waits for the process to exit and returns its exit code (-1
// when killed by a signal), or fails the test after timeout.
func (s *server) waitExit(timeout time.Duration) int {
	s.t.Helper()
	select {
	case <-s.exited:
	case <-time.After(timeout):
		s.t.Fatalf("server still running %v later\n%s", timeout, s.logs())
	}
	return s.cmd.ProcessState.ExitCode()
}

// hasExited reports whether the process has exited.
func (s *server) hasExited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// qlGreeting connects to a CometQL address and reads the first packet: the
// greeting (accepted), an error packet (refused with its code), or nothing
// (refused: connection refused or closed).
func qlGreeting(addr string) (accepted bool, detail string, greeting []byte) {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false, err.Error(), nil
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	var h [4]byte
	if _, err := io.ReadFull(nc, h[:]); err != nil {
		return false, "closed: " + err.Error(), nil
	}
	n := int(h[0]) | int(h[1])<<8 | int(h[2])<<16
	p := make([]byte, n)
	if _, err := io.ReadFull(nc, p); err != nil {
		return false, "closed: " + err.Error(), nil
	}
	if len(p) >= 3 && p[0] == 0xff {
		return false, "error " + strconv.Itoa(int(binary.LittleEndian.Uint16(p[1:3]))) + ": " + string(p[3:]), nil
	}
	return true, "greeting", p
}

// greetingCapabilities returns the capability flags of a MySQL protocol 10
// greeting payload.
func greetingCapabilities(p []byte) (uint32, error) {
	if len(p) < 1 || p[0] != 10 {
		return 0, errors.New("not a protocol 10 greeting")
	}
	i := 1 + strings.IndexByte(string(p[1:]), 0) + 1 // server version, NUL
	i += 4 + 8 + 1                                   // connection id, auth data part 1, filler
	if i+2 > len(p) {
		return 0, errors.New("greeting too short")
	}
	caps := uint32(binary.LittleEndian.Uint16(p[i:]))
	i += 2 + 1 + 2 // lower flags, charset, status
	if i+2 <= len(p) {
		caps |= uint32(binary.LittleEndian.Uint16(p[i:])) << 16
	}
	return caps, nil
}

// clientSSL is the CLIENT_SSL capability flag.
const clientSSL = 0x0800

// httpGet does one plain HTTP GET and returns the status (0 when the
// request failed) and the error.
func httpGet(url string) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// metric returns the value of one Prometheus sample from /metrics, e.g.
// metric(addr, `cometql_browser_drops_total{reason="overflow"}`); 0 when
// the sample is absent.
func metric(httpAddr, sample string) (float64, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, sample+" ") {
			return strconv.ParseFloat(strings.TrimSpace(line[len(sample):]), 64)
		}
	}
	return 0, sc.Err()
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it at the end of the test. It skips the test when mounting is not
// allowed (not root, or a container without CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size))
	if err != nil {
		t.Skipf("cannot mount a tmpfs for a full disk (needs root with CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a file in dir until the file system is full and returns
// its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := dir + "/filler"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatalf("fill %s: %v", path, err)
		}
	}
	for _, n := range []int{4096, 512, 1} { // the last partial blocks
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	return path
}
