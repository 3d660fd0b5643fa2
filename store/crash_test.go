package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cometql/cometql/pipes"
)

// helperEnv names the data directory of TestHelperProcess (when it is unset
// the helper does nothing); helperSyncEnv its Sync mode.
const (
	helperEnv     = "COMETQL_STORE_CRASH_HELPER_DIR"
	helperSyncEnv = "COMETQL_STORE_CRASH_HELPER_SYNC"
)

// TestHelperProcess is not a test: TestCrashDurability runs the test binary
// again with only this function selected and helperEnv set. It writes from
// several goroutines forever and prints "OK <kind> <goroutine> <n>" after
// each write returned nil, until it is killed.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashDurability")
	}
	ctx := context.Background()
	mode := SyncFull
	if os.Getenv(helperSyncEnv) == SyncNormal.String() {
		mode = SyncNormal
	}
	s, err := Open(ctx, Config{Dir: dir, Sync: mode})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	go func() { // never outlive a parent that died without killing us
		time.Sleep(2 * time.Minute)
		os.Exit(3)
	}()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 1; ; i++ {
				var err error
				var kind string
				switch i % 3 {
				case 0:
					kind = "hist"
					err = s.AppendHistory(ctx, &pipes.Message{
						DevID: 0, Pipe: fmt.Sprintf("p%d", g), Seq: int64(i),
						ID: fmt.Sprintf("%d-%d", g, i), Data: fmt.Sprintf("data %d %d", g, i),
					}, 1_000_000)
				case 1:
					kind = "queue"
					_, err = s.Enqueue(ctx, 3, &pipes.QueuedMessage{UserID: int64(g + 1), Data: fmt.Sprintf("q %d %d", g, i)}, 1_000_000)
				case 2:
					kind = "data"
					err = s.SetUserData(ctx, 0, int64(g*1_000_000+i), fmt.Sprintf("u %d %d", g, i))
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "write:", err)
					os.Exit(4)
				}
				fmt.Printf("OK %s %d %d\n", kind, g, i)
			}
		})
	}
	wg.Wait()
}

// TestCrashDurability kills a writing process with SIGKILL and checks that
// every write it acknowledged is in the database, in both Sync modes.
func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	for _, mode := range []Sync{SyncFull, SyncNormal} {
		t.Run(mode.String(), func(t *testing.T) { crashDurability(t, mode) })
	}
}

func crashDurability(t *testing.T, mode Sync) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir, helperSyncEnv+"="+mode.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	type ack struct {
		kind string
		g, i int
	}
	var acks []ack
	const want = 1500
	sc := bufio.NewScanner(out)
	for len(acks) < want && sc.Scan() {
		var a ack
		if n, _ := fmt.Sscanf(sc.Text(), "OK %s %d %d", &a.kind, &a.g, &a.i); n == 3 {
			acks = append(acks, a)
		}
	}
	if len(acks) < want {
		t.Fatalf("child stopped after %d acknowledgements: %v; stderr: %s", len(acks), sc.Err(), stderr.String())
	}
	// SIGKILL while the child is still writing
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = true
	cmd.Wait()
	if cmd.ProcessState.Success() {
		t.Fatal("child exited normally")
	}

	ctx := context.Background()
	s := openTest(t, Config{Dir: dir})
	hist := map[int]map[int64]pipes.Message{}
	for g := range 8 {
		ms, err := s.History(ctx, 0, fmt.Sprintf("p%d", g), 0)
		if err != nil {
			t.Fatal(err)
		}
		hist[g] = map[int64]pipes.Message{}
		for _, m := range ms {
			hist[g][m.Seq] = m
		}
	}
	queued := map[string]bool{}
	all, err := s.Queue(ctx, 3, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range all {
		queued[q.Data] = true
	}
	data, err := s.UserData(ctx, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	lost := 0
	for _, a := range acks {
		ok := false
		switch a.kind {
		case "hist":
			m, found := hist[a.g][int64(a.i)]
			ok = found && m.Data == fmt.Sprintf("data %d %d", a.g, a.i)
		case "queue":
			ok = queued[fmt.Sprintf("q %d %d", a.g, a.i)]
		case "data":
			ok = data[int64(a.g*1_000_000+a.i)] == fmt.Sprintf("u %d %d", a.g, a.i)
		}
		if !ok {
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged write lost: %+v", a)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", lost, len(acks))
	}
	t.Logf("all %d acknowledged writes survived SIGKILL (%d history rows, %d queued, %d user data rows in the database)",
		len(acks), len(hist[0])+len(hist[1])+len(hist[2])+len(hist[3])+len(hist[4])+len(hist[5])+len(hist[6])+len(hist[7]),
		len(all), len(data))
}
