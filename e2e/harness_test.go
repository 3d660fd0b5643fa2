// Package e2e runs the real cometql binary as a separate process and talks to
// it over real sockets with real clients: go-sql-driver/mysql, the mariadb
// CLI, gorilla's WebSocket client. It covers what crosses front ends and
// what needs a process boundary (kill -9, signals, restarts).
package e2e

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
)

const testPassword = "e2e-secret"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// serverBinary builds cmd/cometql once per test run.
func serverBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cometql-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "cometql")
		cmd := exec.Command("go", "build", "-race", "-o", binPath, "../cmd/cometql")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// server is one running cometql process.
type server struct {
	t        *testing.T
	cmd      *exec.Cmd
	dataDir  string
	qlAddr   string
	httpAddr string
	exited   chan struct{}
	exitErr  error

	mu     sync.Mutex
	output strings.Builder
}

var readyLine = regexp.MustCompile(`ready: CometQL on (\S+), HTTP on (\S+)`)

// startServer starts the binary on port 0 with a data directory (a new one
// when dataDir is empty) and waits until it is ready.
func startServer(t *testing.T, dataDir string, extra ...string) *server {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	args := append([]string{
		"--ql-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--data-dir", dataDir, "--password", testPassword, "--node-name", "e2e",
	}, extra...)
	cmd := exec.Command(serverBinary(t), args...)
	cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, dataDir: dataDir, exited: make(chan struct{})}
	ready := make(chan [2]string, 1)
	var wg sync.WaitGroup
	scan := func(r io.Reader) {
		defer wg.Done()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.output.WriteString(line + "\n")
			s.mu.Unlock()
			if m := readyLine.FindStringSubmatch(line); m != nil {
				ready <- [2]string{m[1], m[2]}
			}
		}
	}
	wg.Add(2)
	go scan(stdout)
	go scan(stderr)
	go func() {
		wg.Wait()
		s.exitErr = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.stop)
	select {
	case a := <-ready:
		s.qlAddr, s.httpAddr = a[0], a[1]
	case <-s.exited:
		t.Fatalf("server exited before ready: %v\n%s", s.exitErr, s.logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("server not ready within 60s\n%s", s.logs())
	}
	return s
}

func (s *server) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.output.String()
}

// kill sends SIGKILL and waits for the process to go.
func (s *server) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// stop sends SIGTERM and waits; it fails the test when the server does not
// exit cleanly within 15 s or its log shows a data race.
func (s *server) stop() {
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
			s.t.Errorf("server did not stop within 15s of SIGTERM\n%s", s.logs())
		}
	}
	if strings.Contains(s.logs(), "WARNING: DATA RACE") {
		s.t.Errorf("data race in server:\n%s", s.logs())
	}
}

// dsn is a go-sql-driver DSN for the server.
func (s *server) dsn(user string) string {
	return fmt.Sprintf("%s:%s@tcp(%s)/CometQL_v1?allowNativePasswords=true&interpolateParams=false&timeout=5s", user, testPassword, s.qlAddr)
}

func (s *server) db(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", s.dsn("root"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("ping: %v\n%s", err, s.logs())
	}
	return db
}
