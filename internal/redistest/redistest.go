// Package redistest runs real redis-server processes for tests: one shared
// server per test binary (tests keep apart with a unique key prefix each)
// and private ones for tests that stop and restart Redis.
//
// A test skips when the redis-server binary is missing, unless the
// environment variable COMETQL_REQUIRE_CLIENTS is set (as CI sets it): then
// it fails. Servers run without persistence (--save ” --appendonly no) and
// are killed when the test binary exits, even when it crashes.
package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Server is one redis-server process.
type Server struct {
	bin  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the server's redis:// URL (database 0).
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
	prefixes   atomic.Uint64
)

// binary returns the redis-server path, or skips (or fails) the test.
func binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("COMETQL_REQUIRE_CLIENTS") != "" {
			t.Fatalf("COMETQL_REQUIRE_CLIENTS is set but redis-server is missing (apt-get install redis-server): %v", err)
		}
		t.Skipf("redis-server is not installed (apt-get install redis-server): %v", err)
	}
	return bin
}

// Shared returns the test binary's shared server, starting it on first use.
func Shared(t testing.TB) *Server {
	t.Helper()
	bin := binary(t)
	sharedOnce.Do(func() {
		shared = &Server{bin: bin}
		sharedErr = shared.startFree()
	})
	if sharedErr != nil {
		t.Fatalf("start redis-server: %v", sharedErr)
	}
	return shared
}

// New starts a private server, stopped when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{bin: binary(t)}
	if err := s.startFree(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Prefix returns a key prefix no other test of this binary uses.
func Prefix(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_", ":", "_").Replace(t.Name())
	return fmt.Sprintf("t%d_%s", prefixes.Add(1), name)
}

// startFree starts the server on a free port, retrying when another
// process takes the port first.
func (s *Server) startFree() error {
	var err error
	for range 10 {
		var ln net.Listener
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		s.port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if err = s.Start(); err == nil {
			return nil
		}
	}
	return err
}

// Start (re)starts the server on its port and waits until it accepts
// commands.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("redis-server on port %d is running", s.port)
	}
	started := make(chan error, 1)
	// The process gets SIGKILL when the thread that started it exits:
	// start it from a locked thread that lives as long as the process.
	go func() {
		runtime.LockOSThread()
		cmd := exec.Command(s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.StdoutPipe()
		if err != nil {
			started <- err
			return
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		done := make(chan struct{})
		var log strings.Builder
		var logMu sync.Mutex
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				logMu.Lock()
				if log.Len() < 8<<10 {
					log.WriteString(sc.Text() + "\n")
				}
				logMu.Unlock()
			}
		}()
		go func() {
			_ = cmd.Wait()
			close(done)
		}()
		s.cmd, s.done = cmd, done
		deadline := time.Now().Add(10 * time.Second)
		for {
			if ping(s.Addr()) == nil {
				started <- nil
				break
			}
			select {
			case <-done:
				s.cmd = nil
				logMu.Lock()
				started <- fmt.Errorf("redis-server on port %d exited: %s", s.port, log.String())
				logMu.Unlock()
				return
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				<-done
				s.cmd = nil
				started <- fmt.Errorf("redis-server on port %d not answering within 10s", s.port)
				return
			}
		}
		<-done
	}()
	return <-started
}

// Stop kills the server and waits until it is gone; its data is lost.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Do sends one command and returns its reply as text: a status, integer
// or bulk string as is, an array as its elements one per line, an error
// reply as an error (for raw commands in tests, e.g. CLIENT KILL).
func (s *Server) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(c))
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		parts := make([]string, 0, max(n, 0))
		for range n {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}
