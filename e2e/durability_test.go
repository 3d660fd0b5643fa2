package e2e

import (
	"database/sql"
	"fmt"
	"testing"
)

// TestKill9KeepsAcknowledgedWrites: every statement that got an OK is
// present after kill -9 and a restart (SPEC 7).
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	db := s.db(t)
	messages := []string{`{"json":[1,"two"]}`, "it's", `C:\path`, "line1\nline2", "Привет 👋"}
	mustExec(t, db, "INSERT INTO pipes_settings (name, length) VALUES ('durable', 100)")
	for _, m := range messages {
		mustExec(t, db, "INSERT INTO pipes_messages (name, event, message) VALUES ('durable', 'ev', ?)", m)
	}
	mustExec(t, db, "INSERT INTO users_auth (id, hash) VALUES (42, 'hash42')")
	mustExec(t, db, "INSERT INTO users_data (id, data) VALUES (42, 'about 42')")
	mustExec(t, db, "INSERT INTO users_messages (id, event, message) VALUES (43, 'pm', 'queued for 43')")
	mustExec(t, db, "INSERT INTO revoked_tokens (token) VALUES ('tok.en.x')")
	s.kill()

	s2 := startServer(t, dir)
	db2 := s2.db(t)
	rows := queryStrings(t, db2, "SELECT message FROM pipes_messages WHERE name = 'durable' ORDER BY `index`")
	if fmt.Sprint(rows) != fmt.Sprint(messages) {
		t.Errorf("history after kill -9:\n got %q\nwant %q", rows, messages)
	}
	checkOne(t, db2, "SELECT length FROM pipes_settings WHERE name = 'durable'", "100")
	checkOne(t, db2, "SELECT hash FROM users_auth WHERE id = 42", "hash42")
	checkOne(t, db2, "SELECT data FROM users_data WHERE id = 42", "about 42")
	checkOne(t, db2, "SELECT message FROM users_messages WHERE id = 43", "queued for 43")
	checkOne(t, db2, "SELECT COUNT(*) FROM revoked_tokens WHERE token = 'tok.en.x'", "1")
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) sql.Result {
	t.Helper()
	r, err := db.Exec(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return r
}

func queryStrings(t *testing.T, db *sql.DB, q string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v sql.NullString
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v.String)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func checkOne(t *testing.T, db *sql.DB, q, want string) {
	t.Helper()
	got := queryStrings(t, db, q)
	if len(got) != 1 || got[0] != want {
		t.Errorf("%s = %q, want [%q]", q, got, want)
	}
}
