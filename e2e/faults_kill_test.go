package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// longRun reports whether the long forms of the fault tests were asked for
// (COMETQL_LONG=1; see RELIABILITY.md).
func longRun() bool { return os.Getenv("COMETQL_LONG") == "1" }

// TestFaultKill9UnderLoad: publishers into logging pipes, private messages
// to offline users, settings, hashes, user data and revoked tokens are
// written by concurrent connections while the server is killed with
// SIGKILL at a random moment, several rounds on one data directory. After
// each restart every acknowledged write is present, nothing is present
// twice, nothing appears that was never sent, history keeps the order of
// acknowledgements with strictly increasing sequence numbers (never reused
// across restarts), and writes that were not acknowledged are present at
// most once (SPEC 7).
func TestFaultKill9UnderLoad(t *testing.T) {
	rounds := 5
	if longRun() {
		rounds = 20
	}
	stopUnderLoad(t, rounds, "killed", (*server).kill)
}

// TestFaultSIGTERMUnderLoad is TestFaultKill9UnderLoad with a graceful
// shutdown (SIGTERM) in place of kill -9: the same guarantees, and the
// server exits with 0 in the middle of the load.
func TestFaultSIGTERMUnderLoad(t *testing.T) {
	stopUnderLoad(t, 2, "stopped", func(s *server) {
		s.signal(syscall.SIGTERM)
		if code := s.waitExit(15 * time.Second); code != 0 {
			s.t.Errorf("exit code %d after SIGTERM under load, want 0\n%s", code, s.logs())
		}
	})
}

// stopUnderLoad runs rounds of load on one data directory, each ended by
// stop at a random moment, and checks the data after each restart.
func stopUnderLoad(t *testing.T, rounds int, verb string, stop func(*server)) {
	dir := t.TempDir()
	led := newLedger()
	s := startServer(t, dir)
	for r := range rounds {
		db := s.db(t)
		after := time.Duration(300+rand.IntN(1200)) * time.Millisecond
		n := led.load(t, s, db, r, after, stop)
		s = startServer(t, dir)
		db = s.db(t)
		led.verify(t, db, r)
		t.Logf("round %d: %s after %v, %d statements acknowledged this round, %d records checked",
			r, verb, after, n, led.records())
		if t.Failed() {
			return
		}
	}
}

// stream is the writes of one ordered sequence (a pipe's history, a user's
// queue): acked in the order of their acknowledgements, attempted = sent.
type stream struct {
	acked     []string
	attempted map[string]bool
}

// kvWrite is a keyed upsert (a hash, user data, a setting, a token).
type kvWrite struct {
	value string
	acked bool
}

// ledger tracks every write sent to the server and which were acknowledged.
type ledger struct {
	mu     sync.Mutex
	hist   map[string]*stream // by pipe
	queues map[string]*stream // by user id
	kv     map[string]*kvWrite
}

func newLedger() *ledger {
	return &ledger{hist: map[string]*stream{}, queues: map[string]*stream{}, kv: map[string]*kvWrite{}}
}

func (l *ledger) records() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.kv)
	for _, s := range l.hist {
		n += len(s.acked)
	}
	for _, s := range l.queues {
		n += len(s.acked)
	}
	return n
}

func (l *ledger) stream(m map[string]*stream, key string) *stream {
	s := m[key]
	if s == nil {
		s = &stream{attempted: map[string]bool{}}
		m[key] = s
	}
	return s
}

func (l *ledger) ackedKey(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.kv[key]
	return w != nil && w.acked
}

// send records payloads as attempted on a stream, runs exec and records
// them as acknowledged when it returns nil.
func (l *ledger) send(m map[string]*stream, key string, payloads []string, exec func() error) error {
	l.mu.Lock()
	s := l.stream(m, key)
	for _, p := range payloads {
		s.attempted[p] = true
	}
	l.mu.Unlock()
	if err := exec(); err != nil {
		return err
	}
	l.mu.Lock()
	s.acked = append(s.acked, payloads...)
	l.mu.Unlock()
	return nil
}

func (l *ledger) put(key, value string, exec func() error) error {
	l.mu.Lock()
	if _, ok := l.kv[key]; !ok {
		l.kv[key] = &kvWrite{value: value}
	}
	l.mu.Unlock()
	if err := exec(); err != nil {
		return err
	}
	l.mu.Lock()
	l.kv[key].acked = true
	l.mu.Unlock()
	return nil
}

// load runs the writers of round r against s until stop ends it, killAfter
// after they started, and returns the number of statements acknowledged.
func (l *ledger) load(t *testing.T, s *server, db *sql.DB, r int, killAfter time.Duration, stop func(*server)) int64 {
	t.Helper()
	ctx := context.Background()
	var killed atomic.Bool
	var acks atomic.Int64
	var wg sync.WaitGroup
	// fail reports an error that is not the kill's doing; every writer
	// stops at its first error.
	fail := func(who string, err error) {
		if !killed.Load() {
			t.Errorf("round %d: %s failed before the kill: %v", r, who, err)
		}
	}
	conn := func(who string) *sql.Conn {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatalf("round %d: %s: %v", r, who, err)
		}
		return c
	}

	// History: writer k owns pipe fh<k>r<r> (logging, length 1000);
	// writer 3 sends three rows per statement. From round 1 on, each first
	// appends to its pipe of the previous round, whose sequence must go on
	// past the restart.
	for k := range 4 {
		who := fmt.Sprintf("history writer %d", k)
		c := conn(who)
		wg.Go(func() {
			defer c.Close()
			pipe := fmt.Sprintf("fh%dr%d", k, r)
			prev := fmt.Sprintf("fh%dr%d", k, r-1)
			if r > 0 && l.ackedKey("setting:"+prev) {
				p := fmt.Sprintf("%s-after-restart-%d", prev, rand.Uint64())
				if err := l.send(l.hist, prev, []string{p}, func() error {
					_, err := c.ExecContext(ctx, "INSERT INTO pipes_messages (name, event, message) VALUES (?, 'e', ?)", prev, p)
					return err
				}); err != nil {
					fail(who, err)
					return
				}
				acks.Add(1)
			}
			if err := l.put("setting:"+pipe, "1000", func() error {
				_, err := c.ExecContext(ctx, "INSERT INTO pipes_settings (name, length) VALUES (?, 1000)", pipe)
				return err
			}); err != nil {
				fail(who, err)
				return
			}
			acks.Add(1)
			for i := 0; i < 900; {
				var batch []string
				per := 1
				if k == 3 {
					per = 3
				}
				for j := range per {
					batch = append(batch, fmt.Sprintf("%s-%d-%d", pipe, i+j, rand.Uint32()))
				}
				err := l.send(l.hist, pipe, batch, func() error {
					q := "INSERT INTO pipes_messages (name, event, message) VALUES " +
						strings.TrimSuffix(strings.Repeat("(?, 'e', ?),", per), ",")
					args := make([]any, 0, 2*per)
					for _, p := range batch {
						args = append(args, pipe, p)
					}
					_, err := c.ExecContext(ctx, q, args...)
					return err
				})
				if err != nil {
					fail(who, err)
					return
				}
				acks.Add(1)
				i += per
			}
		})
	}

	// Private messages to offline users: writer k owns users
	// 10000+100r+10k .. +9, and sends to them in turn.
	for k := range 2 {
		who := fmt.Sprintf("private writer %d", k)
		c := conn(who)
		wg.Go(func() {
			defer c.Close()
			for i := 0; ; i++ {
				user := 10000 + 100*r + 10*k + i%10
				p := fmt.Sprintf("pm-r%d-u%d-%d-%d", r, user, i, rand.Uint32())
				err := l.send(l.queues, fmt.Sprint(user), []string{p}, func() error {
					_, err := c.ExecContext(ctx, "INSERT INTO users_messages (id, event, message) VALUES (?, 'pm', ?)", user, p)
					return err
				})
				if err != nil {
					fail(who, err)
					return
				}
				acks.Add(1)
			}
		})
	}

	// Keyed rows: each id once, so each acknowledged row must be there
	// with its value.
	{
		who := "keyed writer"
		c := conn(who)
		wg.Go(func() {
			defer c.Close()
			for i := 0; ; i++ {
				id := 500000 + 10000*r + i
				writes := []struct{ key, value, q string }{
					{fmt.Sprintf("hash:%d", id), fmt.Sprintf("h%d", id), "INSERT INTO users_auth (id, hash) VALUES (%d, '%s')"},
					{fmt.Sprintf("data:%d", id), fmt.Sprintf("data of %d", id), "INSERT INTO users_data (id, data) VALUES (%d, '%s')"},
					{fmt.Sprintf("setting:fs%d", id), fmt.Sprint(1 + id%1000), "INSERT INTO pipes_settings (name, length) VALUES ('fs%d', %s)"},
					{fmt.Sprintf("token:tok-%d", id), "1", "INSERT INTO revoked_tokens (token) VALUES ('tok-%d')"},
				}
				for _, w := range writes {
					var q string
					switch {
					case strings.HasPrefix(w.key, "setting:"):
						q = fmt.Sprintf(w.q, id, w.value)
					case strings.HasPrefix(w.key, "token:"):
						q = fmt.Sprintf(w.q, id)
					default:
						q = fmt.Sprintf(w.q, id, w.value)
					}
					if err := l.put(w.key, w.value, func() error {
						_, err := c.ExecContext(ctx, q)
						return err
					}); err != nil {
						fail(who, err)
						return
					}
					acks.Add(1)
				}
			}
		})
	}

	time.Sleep(killAfter)
	killed.Store(true)
	stop(s)
	wg.Wait()
	return acks.Load()
}

// verify compares the database with the ledger after a restart. What is
// present from then on counts as acknowledged (it was committed) and what
// is missing can never appear later.
func (l *ledger) verify(t *testing.T, db *sql.DB, r int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()

	hist := map[string][]string{}
	rows, err := db.Query("SELECT name, message, `index` FROM pipes_messages WHERE name LIKE 'fh%' ORDER BY name, `index`")
	if err != nil {
		t.Fatalf("round %d: select history: %v", r, err)
	}
	last := map[string]int64{}
	for rows.Next() {
		var name, msg string
		var idx int64
		if err := rows.Scan(&name, &msg, &idx); err != nil {
			t.Fatal(err)
		}
		if prev, ok := last[name]; ok && idx <= prev {
			t.Errorf("round %d: pipe %s: index %d after %d: sequence numbers must strictly increase", r, name, idx, prev)
		}
		last[name] = idx
		hist[name] = append(hist[name], msg)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	l.checkStreams(t, r, "history of pipe", l.hist, hist)

	queues := map[string][]string{}
	for _, row := range queryRows(t, db, "SELECT id, message FROM users_messages ORDER BY id, `index`") {
		queues[row[0]] = append(queues[row[0]], row[1])
	}
	l.checkStreams(t, r, "offline queue of user", l.queues, queues)

	present := map[string]string{}
	for _, row := range queryRows(t, db, "SELECT id, hash FROM users_auth") {
		present["hash:"+row[0]] = row[1]
	}
	for _, row := range queryRows(t, db, "SELECT id, data FROM users_data") {
		present["data:"+row[0]] = row[1]
	}
	for _, row := range queryRows(t, db, "SELECT name, length FROM pipes_settings") {
		present["setting:"+row[0]] = row[1]
	}
	for _, row := range queryRows(t, db, "SELECT token FROM revoked_tokens") {
		present["token:"+row[0]] = "1"
	}
	for key, w := range l.kv {
		got, ok := present[key]
		switch {
		case ok && got != w.value:
			t.Errorf("round %d: %s = %q, want %q", r, key, got, w.value)
		case !ok && w.acked:
			t.Errorf("round %d: acknowledged %s = %q is missing after kill -9", r, key, w.value)
		case !ok:
			delete(l.kv, key) // lost before its commit: must never appear
		default:
			w.acked = true
		}
	}
	for key, v := range present {
		if _, ok := l.kv[key]; !ok {
			t.Errorf("round %d: %s = %q present but never sent (or lost in an earlier round)", r, key, v)
		}
	}
}

// checkStreams checks each stream against the rows present (in stored
// order), then makes what is present the stream's acknowledged list.
func (l *ledger) checkStreams(t *testing.T, r int, what string, want map[string]*stream, got map[string][]string) {
	t.Helper()
	for key, s := range want {
		present := got[key]
		seen := map[string]bool{}
		for _, p := range present {
			if seen[p] {
				t.Errorf("round %d: %s %s: %q is present twice", r, what, key, p)
			}
			seen[p] = true
			if !s.attempted[p] {
				t.Errorf("round %d: %s %s: %q present but never sent (or lost in an earlier round)", r, what, key, p)
			}
		}
		var missing []string
		for _, p := range s.acked {
			if !seen[p] {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			t.Errorf("round %d: %s %s: %d acknowledged messages missing after kill -9, first %q", r, what, key, len(missing), missing[0])
		}
		// The acknowledged messages keep their order among what is present.
		i := 0
		for _, p := range present {
			if i < len(s.acked) && p == s.acked[i] {
				i++
			}
		}
		if len(missing) == 0 && i != len(s.acked) {
			t.Errorf("round %d: %s %s: acknowledged messages out of order:\n got %q\nwant (in order) %q", r, what, key, present, s.acked)
		}
		s.acked = slices.Clone(present)
		s.attempted = seen
	}
	for key, list := range got {
		if _, ok := want[key]; !ok {
			t.Errorf("round %d: %s %s: %d messages present but never sent", r, what, key, len(list))
		}
	}
}

// queryRows runs a query and returns every row as strings (NULL as "").
func queryRows(t *testing.T, db *sql.DB, q string, args ...any) [][]string {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = v.String
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}
