package sqlengine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/pipes"
	"github.com/cometql/cometql/store"
)

// The engine is tested over the real hub and the real SQLite store.

type testEnv struct {
	eng *Engine
	hub *pipes.Hub
	st  *store.Store
}

func newTestEnv(tb testing.TB) *testEnv {
	tb.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: tb.TempDir(), Sync: store.SyncNormal})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	me := pipes.NewMemoryEngine(pipes.MemoryConfig{}, st, log)
	hub := pipes.New(pipes.Config{}, me, nil, log)
	if err := hub.Start(); err != nil {
		tb.Fatal(err)
	}
	eng := newTestEngine(Config{}, hub, st)
	return &testEnv{eng: eng, hub: hub, st: st}
}

func (te *testEnv) session(dev int64) *Session {
	return te.eng.NewSession(dev, "root", 7)
}

func run(t *testing.T, s *Session, q string) *Result {
	t.Helper()
	r, err := s.Execute(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return r
}

func mustFail(t *testing.T, s *Session, q string, code uint16) *mysql.MyError {
	t.Helper()
	_, err := s.Execute(context.Background(), q)
	var me *mysql.MyError
	if !errors.As(err, &me) {
		t.Fatalf("%s: want MyError %d, got %v", q, code, err)
	}
	if me.Code != code {
		t.Fatalf("%s: want code %d, got %v", q, code, me)
	}
	if me.State != sqlStates[code] || me.State == "" {
		t.Fatalf("%s: state %q, want %q", q, me.State, sqlStates[code])
	}
	return me
}

// rowsText renders rows as "a,b;c,d" with NULL for nil.
func rowsText(r *Result) string {
	var b strings.Builder
	for i, row := range r.Rows {
		if i > 0 {
			b.WriteByte(';')
		}
		for j, v := range row {
			if j > 0 {
				b.WriteByte(',')
			}
			if v == nil {
				b.WriteString("NULL")
			} else {
				fmt.Fprint(&b, v)
			}
		}
	}
	return b.String()
}

func TestHousekeeping(t *testing.T) {
	te := newTestEnv(t)
	s := te.session(0)
	for _, q := range []string{
		"SET NAMES utf8mb4", "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'", "SET autocommit=1",
		"SET SESSION sql_mode='STRICT_TRANS_TABLES'", "SET @@session.wait_timeout=100", "SET whatever_unknown = 5",
		"SET character_set_results = NULL", "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
		"BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK", "set autocommit = ON",
	} {
		r := run(t, s, q)
		if r.IsResultSet() {
			t.Fatalf("%s: result set", q)
		}
	}
	cases := []struct{ q, want string }{
		{"SELECT 1", "1"},
		{"select @@version_comment limit 1", "cometql "},
		{"SELECT DATABASE()", "NULL"},
		{"SELECT @@max_allowed_packet, @@session.autocommit, @@GLOBAL.wait_timeout", "67108864,1,28800"},
		{"SELECT @@no_such_variable", "NULL"},
		{"SELECT VERSION()", "8.0.36-cometql-"},
		{"SELECT CONNECTION_ID()", "7"},
		{"SELECT USER()", "root@localhost"},
		{"SELECT CURRENT_USER()", "root@%"},
		{"SHOW DATABASES", "CometQL_v1"},
		{"SHOW WARNINGS", ""},
		{"SELECT 1+2, -3, 'it''s', 'it\\'s', \"a\\\"b\", 'a\\nb\\\\c\\0d\\Ze'", "3,-3,it's,it's,a\"b,a\nb\\c\x00d\x1ae"},
		{"select 2 > 1, 'a' = 'a', 'a' = 'A', 1 = '1', 'abc' = 0, NULL = NULL, NULL <=> NULL", "1,1,0,1,1,NULL,1"},
		{"select 5 in (1, 5), 5 not in (1, NULL), 'ab' like 'a%', 'a_c' like 'a\\_c', 'abc' like 'a\\_c'", "1,NULL,1,1,0"},
		{"select 3 between 1 and 5, null is null, 1 is not null, not 0, 1 and null, 0 and null, 1 or null", "1,1,1,1,NULL,0,1"},
	}
	for _, c := range cases {
		r := run(t, s, c.q)
		if got := rowsText(r); !strings.HasPrefix(got, c.want) || (c.want == "" && got != "") {
			t.Errorf("%s: got %q, want prefix %q", c.q, got, c.want)
		}
	}
	r := run(t, s, "SELECT @@version_comment AS vc, 1 AS one")
	if r.Columns[0].Name != "vc" || r.Columns[1].Type != TypeBigInt {
		t.Errorf("columns %+v", r.Columns)
	}
	r = run(t, s, "select @@version_comment")
	if r.Columns[0].Name != "@@version_comment" {
		t.Errorf("column name %q", r.Columns[0].Name)
	}
	mustFail(t, s, "USE other", ErrCodeUnknownDB)
	run(t, s, "USE CometQL_v1")
	if got := rowsText(run(t, s, "SELECT DATABASE()")); got != "CometQL_v1" {
		t.Errorf("database() = %q", got)
	}
	run(t, s, "SET @x = 'hello', @y = 2")
	if got := rowsText(run(t, s, "SELECT @x, @y, @z")); got != "hello,2,NULL" {
		t.Errorf("user vars = %q", got)
	}
	if got := rowsText(run(t, s, "SHOW TABLES")); got != "pipes_messages;pipes;users_in_pipes;pipes_settings;users_messages;users_time;users_auth;users_data;revoked_tokens" {
		t.Errorf("show tables = %q", got)
	}
	if got := rowsText(run(t, s, "SHOW COLUMNS FROM pipes")); got != "name,varchar(64),NO,,,;users,int,NO,,," {
		t.Errorf("show columns = %q", got)
	}
	if got := rowsText(run(t, s, "DESCRIBE users_auth")); !strings.HasPrefix(got, "id,bigint,NO,PRI") {
		t.Errorf("describe = %q", got)
	}
	if r := run(t, s, "SHOW FULL COLUMNS FROM CometQL_v1.pipes_messages"); len(r.Rows) != 7 || len(r.Columns) != 9 {
		t.Errorf("show full columns: %d rows %d cols", len(r.Rows), len(r.Columns))
	}
	if got := rowsText(run(t, s, "SHOW STATUS LIKE 'user%'")); got != "user_online,0" {
		t.Errorf("show status like = %q", got)
	}
	r = run(t, s, "SHOW GLOBAL STATUS")
	want := []string{"user_online", "server_online", "messages", "uptime"}
	for i, w := range want {
		if r.Rows[i][0] != w {
			t.Errorf("status row %d = %v, want %s", i, r.Rows[i][0], w)
		}
	}
	if got := rowsText(run(t, s, "SHOW VARIABLES LIKE 'max_allowed_packet'")); got != "max_allowed_packet,67108864" {
		t.Errorf("show variables = %q", got)
	}
	if got := rowsText(run(t, s, "SHOW SESSION VARIABLES WHERE Variable_name = 'autocommit'")); got != "autocommit,1" {
		t.Errorf("show variables where = %q", got)
	}
	if r := run(t, s, "SHOW TABLE STATUS"); len(r.Rows) != 9 {
		t.Errorf("table status rows = %d", len(r.Rows))
	}
	run(t, s, "SHOW PROCESSLIST")
	run(t, s, "SHOW COLLATION")
	run(t, s, "SHOW CREATE TABLE users_auth")
	if got := rowsText(run(t, s, "SHOW INDEX FROM users_auth")); !strings.HasPrefix(got, "users_auth,0,PRIMARY,1,id") {
		t.Errorf("show index %q", got)
	}
	if r := run(t, s, "SHOW KEYS FROM pipes"); len(r.Rows) != 0 {
		t.Errorf("show keys of pipes: %v", r.Rows)
	}
	run(t, s, "SHOW CREATE DATABASE CometQL_v1")
	mustFail(t, s, "SHOW CREATE DATABASE other", ErrCodeUnknownDB)
}

func TestErrors(t *testing.T) {
	te := newTestEnv(t)
	s := te.session(0)
	cases := []struct {
		q    string
		code uint16
		text string
	}{
		{"SELEC 1", ErrCodeSyntax, "(CometQL error 3)"},
		{"", ErrCodeEmptyQuery, ""},
		{"UPDATE pipes SET users = 1", ErrCodeUnsupported, "(CometQL error 2)"},
		{"SELECT * FROM pipes JOIN users_time", ErrCodeUnsupported, "JOIN"},
		{"SELECT DISTINCT name FROM pipes", ErrCodeUnsupported, "DISTINCT"},
		{"SELECT SLEEP(1)", ErrCodeUnsupported, "SLEEP"},
		{"INSERT INTO pipes (name, users) VALUES ('ab', 1)", ErrCodeReadOnly, "Table 'pipes' is read only (CometQL error 10)"},
		{"DELETE FROM users_time WHERE id = 1", ErrCodeReadOnly, "(CometQL error 10)"},
		{"INSERT INTO users_in_pipes (name) VALUES ('ab')", ErrCodeReadOnly, ""},
		{"INSERT INTO pipes_messages (name, event, message) VALUES ('" + strings.Repeat("a", 65) + "', 'e', 'm')", ErrCodeTooLong, "(CometQL error 11)"},
		{"INSERT INTO pipes_messages (name, event, message) VALUES ('a b', 'e', 'm')", ErrCodeInvalidValue, "(CometQL error 12)"},
		{"INSERT INTO pipes_messages (name, event, message) VALUES ('ab', 'e e', 'm')", ErrCodeInvalidValue, ""},
		{"INSERT INTO pipes_messages (name, event, message) VALUES ('ab', 'e', 'bad \xff utf8')", ErrCodeInvalidValue, "UTF-8"},
		{"INSERT INTO pipes_messages (event, message) VALUES ('e', 'm')", ErrCodeNoDefault, "Field 'name'"},
		{"INSERT INTO pipes_messages (name, event, message) VALUES (NULL, 'e', 'm')", ErrCodeBadNull, ""},
		{"INSERT INTO pipes_messages (name, nope, message) VALUES ('ab', 'e', 'm')", ErrCodeUnknownColumn, "(CometQL error 14)"},
		{"INSERT INTO pipes_messages (name, event, message) VALUES ('ab', 'e')", ErrCodeColumnCount, "(CometQL error 14)"},
		{"INSERT INTO pipes_messages VALUES ('ab', 'e')", ErrCodeColumnCount, ""},
		{"SELECT * FROM nope", ErrCodeUnknownTable, "(CometQL error 15)"},
		{"SELECT * FROM other.pipes", ErrCodeUnknownDB, "(CometQL error 15)"},
		{"SELECT nope FROM pipes", ErrCodeUnknownColumn, "field list"},
		{"SELECT * FROM pipes WHERE nope = 1", ErrCodeUnknownColumn, "where clause"},
		{"INSERT INTO users_messages (id, event, message) VALUES (0, 'e', 'm')", ErrCodeInvalidValue, ""},
		{"INSERT INTO users_messages (id, event, message) VALUES (9007199254740992, 'e', 'm')", ErrCodeInvalidValue, ""},
		{"INSERT INTO users_messages (id, event, message) VALUES ('x', 'e', 'm')", ErrCodeInvalidValue, "integer"},
		{"INSERT INTO users_auth (id, hash) VALUES (1, 'bad hash!')", ErrCodeInvalidValue, ""},
		{"INSERT INTO users_auth (id, hash) VALUES (1, '')", ErrCodeInvalidValue, ""},
		{"INSERT INTO users_auth (id, hash) VALUES (1, '" + strings.Repeat("a", 33) + "')", ErrCodeTooLong, ""},
		{"INSERT INTO pipes_settings (name, length) VALUES ('ab', 1001)", ErrCodeInvalidValue, "0..1000"},
		{"REPLACE INTO pipes_messages (name, event, message) VALUES ('ab', 'e', 'm')", ErrCodeUnsupported, "REPLACE"},
		{"INSERT INTO users_data (id, id) VALUES (1, 2)", ErrCodeFieldTwice, ""},
		{"SELECT ?", ErrCodeSyntax, "placeholders"},
		{"SELECT 1; SELECT 2", ErrCodeSyntax, "multi-statements"},
		{"SELECT name, COUNT(*) FROM pipes", ErrCodeMixAggregate, ""},
		{"SELECT name FROM pipes WHERE COUNT(*) > 1", ErrCodeInvalidGroup, ""},
		{"SELECT MAX(COUNT(*)) FROM pipes", ErrCodeInvalidGroup, ""},
		{"SELECT SUM(users) FROM pipes", ErrCodeUnsupported, "SUM"},
		{"SHOW COLUMNS FROM nope", ErrCodeUnknownTable, ""},
		{"INSERT INTO pipes_messages (name, event, message) VALUES ('ab', 'e', '" + strings.Repeat("m", 64<<10+1) + "')", ErrCodeTooLong, "message"},
		{"INSERT INTO users_data (id, data) VALUES (1, '" + strings.Repeat("d", 64<<10+1) + "')", ErrCodeTooLong, "data"},
		{"INSERT INTO revoked_tokens (token) VALUES ('')", ErrCodeInvalidValue, "empty"},
		{"DELETE FROM pipes", ErrCodeReadOnly, ""},
		{"DELETE FROM users_in_pipes WHERE name = 'x'", ErrCodeReadOnly, ""},
		{"INSERT INTO pipes_messages (name, event, message) VALUES ('ab', 'e', 'm'), ('a', 'e', 'm')", ErrCodeInvalidValue, "row 2"},
	}
	for _, c := range cases {
		me := mustFail(t, s, c.q, c.code)
		if !strings.Contains(me.Message, c.text) {
			t.Errorf("%s: message %q lacks %q", c.q, me.Message, c.text)
		}
		// The session keeps working after every error.
		if got := rowsText(run(t, s, "SELECT 1")); got != "1" {
			t.Fatalf("after %q: %q", c.q, got)
		}
	}
	// A multi-row insert with one bad row applies nothing.
	mustFail(t, s, "INSERT INTO users_data (id, data) VALUES (1, 'a'), (2, 'b'), (0, 'c')", ErrCodeInvalidValue)
	if got := rowsText(run(t, s, "SELECT COUNT(*) FROM users_data")); got != "0" {
		t.Errorf("half-applied insert: %s", got)
	}
}

func TestPipesMessagesHistory(t *testing.T) {
	te := newTestEnv(t)
	s := te.session(0)
	r := run(t, s, "INSERT INTO pipes_settings (name, length) VALUES ('log_pipe', 10)")
	if r.AffectedRows != 1 {
		t.Fatalf("affected %d", r.AffectedRows)
	}
	if got := rowsText(run(t, s, "SELECT * FROM pipes_settings")); got != "log_pipe,10" {
		t.Fatalf("settings = %q", got)
	}
	values := []string{`{"a":[1,2,"x"]}`, "it's", `C:\path`, "line1\nline2", "Привет 👋", ""}
	inserts := []string{
		`INSERT INTO pipes_messages (name, event, message) VALUES ('log_pipe', 'ev', '{"a":[1,2,"x"]}')`,
		`INSERT INTO pipes_messages (name, event, message) VALUES ('log_pipe', 'ev', 'it''s')`,
		`INSERT INTO pipes_messages (name, event, message) VALUES ('log_pipe', 'ev', 'C:\\path')`,
		`INSERT INTO pipes_messages (name, event, message) VALUES ('log_pipe', 'ev', 'line1\nline2')`,
		`INSERT INTO pipes_messages (name, event, message) VALUES ('log_pipe', 'ev', 'Привет 👋')`,
		`INSERT INTO pipes_messages (name, message) VALUES ('log_pipe', '')`,
	}
	for _, q := range inserts {
		r := run(t, s, q)
		if r.AffectedRows != 1 || r.Info != "Delivered: 0" {
			t.Fatalf("%s: %+v", q, r)
		}
	}
	r = run(t, s, "SELECT message, event, name, `index`, user_id FROM pipes_messages WHERE name = 'log_pipe'")
	if len(r.Rows) != len(values) {
		t.Fatalf("rows %d", len(r.Rows))
	}
	for i, v := range values {
		if r.Rows[i][0] != v {
			t.Errorf("row %d: %q, want %q", i, r.Rows[i][0], v)
		}
		if r.Rows[i][3] != int64(i+1) || r.Rows[i][4] != int64(0) {
			t.Errorf("row %d: index %v user %v", i, r.Rows[i][3], r.Rows[i][4])
		}
	}
	if r.Columns[3].Type != TypeBigInt || r.Columns[0].Type != TypeText || r.Columns[1].Type != TypeVarChar {
		t.Errorf("types %+v", r.Columns)
	}
	// 'it\'s' is the same as 'it''s'.
	run(t, s, `INSERT INTO pipes_messages (name, event, message) VALUES ('log_pipe', 'ev', 'it\'s')`)
	if got := rowsText(run(t, s, "SELECT COUNT(*) FROM pipes_messages WHERE message = 'it''s'")); got != "2" {
		t.Errorf("count = %q", got)
	}
	// ORDER BY, LIMIT forms.
	for q, want := range map[string]string{
		"SELECT `index` FROM pipes_messages WHERE name='log_pipe' ORDER BY `index` DESC LIMIT 2":           "7;6",
		"SELECT `index` FROM pipes_messages WHERE name='log_pipe' ORDER BY `index` LIMIT 1, 2":             "2;3",
		"SELECT `index` FROM pipes_messages WHERE name='log_pipe' ORDER BY 1 LIMIT 2 OFFSET 5":             "6;7",
		"SELECT `index` AS i FROM pipes_messages WHERE `index` > 2 AND `index` <= 4 ORDER BY i DESC":       "4;3",
		"SELECT `index` FROM pipes_messages WHERE `index` IN (1, 3) OR message LIKE 'line%'":               "1;3;4",
		"SELECT `index` FROM pipes_messages WHERE NOT (`index` < 6) AND name IN ('log_pipe', 'other')":     "6;7",
		"SELECT COUNT(*), MIN(`index`), MAX(`index`) FROM pipes_messages":                                  "7,1,7",
		"SELECT COUNT(*) > 0, MAX(`index`) + 1, 'x', COUNT(message) FROM pipes_messages WHERE `index` > 5": "1,8,x,2",
		"SELECT MIN(message) FROM pipes_messages WHERE `index` > 100":                                      "NULL",
		"SELECT `index` FROM pipes_messages WHERE event != 'ev'":                                           "6",
		"SELECT `index` FROM pipes_messages WHERE event <> 'ev' OR `index` = '2'":                          "2;6",
		"SELECT `index` FROM pipes_messages WHERE message NOT LIKE '%i%' AND `index` < 7":                  "1;3;5;6",
		"SELECT `index` FROM pipes_messages LIMIT 0":                                                       "",
	} {
		if got := rowsText(run(t, s, q)); got != want {
			t.Errorf("%s: %q, want %q", q, got, want)
		}
	}
	// INSERT ... SET is the same as VALUES.
	if r := run(t, s, "INSERT INTO pipes_messages SET name = 'log_pipe', event = 'set', message = 'via set'"); r.AffectedRows != 1 {
		t.Fatal(r)
	}
	if r := run(t, s, "DELETE FROM pipes_messages WHERE event = 'set'"); r.AffectedRows != 1 {
		t.Fatal(r)
	}
	// Delete one message by id, then the rest by name.
	id := run(t, s, "SELECT id FROM pipes_messages WHERE `index` = 3").Rows[0][0].(string)
	if r := run(t, s, "DELETE FROM pipes_messages WHERE id = '"+id+"'"); r.AffectedRows != 1 {
		t.Errorf("delete by id: %d", r.AffectedRows)
	}
	if r := run(t, s, "DELETE FROM pipes_messages WHERE name = 'log_pipe'"); r.AffectedRows != 6 {
		t.Errorf("delete by name: %d", r.AffectedRows)
	}
	if got := rowsText(run(t, s, "SELECT COUNT(*) FROM pipes_messages")); got != "0" {
		t.Errorf("after delete: %s", got)
	}
	if r := run(t, s, "DELETE FROM pipes_settings WHERE name = 'log_pipe'"); r.AffectedRows != 1 {
		t.Errorf("delete settings: %d", r.AffectedRows)
	}
	if got := rowsText(run(t, s, "SELECT * FROM pipes_settings")); got != "" {
		t.Errorf("settings after delete: %q", got)
	}
}

// sink is an in-process browser transport.
type sink struct {
	mu     sync.Mutex
	frames []string
	closed bool
}

func (k *sink) Send(f []byte) { k.mu.Lock(); k.frames = append(k.frames, string(f)); k.mu.Unlock() }
func (k *sink) Close()        { k.mu.Lock(); k.closed = true; k.mu.Unlock() }
func (k *sink) snapshot() ([]string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.frames...), k.closed
}

func TestPublishAndPresenceTables(t *testing.T) {
	te := newTestEnv(t)
	ctx := context.Background()
	s := te.session(0)
	k := &sink{}
	bs, err := te.hub.Open(ctx, pipes.SessionInfo{UUID: "u1", UserAgent: "ua", IP: "10.0.0.1"}, k)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	if errs := bs.Subscribe(ctx, []string{"news", "track_room"}); len(errs) > 0 {
		t.Fatal(errs)
	}
	r := run(t, s, "INSERT INTO pipes_messages (name, event, message) VALUES ('news', 'a', 'one'), ('news', 'b', 'two'), ('empty_pipe', '', 'x')")
	if r.Info != "Delivered: 2" || r.AffectedRows != 3 {
		t.Fatalf("publish: %+v", r)
	}
	frames, _ := k.snapshot()
	if len(frames) < 2 || !strings.Contains(frames[len(frames)-1], `"data":"two"`) {
		t.Fatalf("frames %v", frames)
	}
	if got := rowsText(run(t, s, "SELECT * FROM pipes ORDER BY name")); got != "news,1;track_room,1" {
		t.Errorf("pipes = %q", got)
	}
	if got := rowsText(run(t, s, "SELECT name, users FROM pipes WHERE name IN ('news', 'nobody')")); got != "news,1;nobody,0" {
		t.Errorf("pipes by name = %q", got)
	}
	if got := rowsText(run(t, s, "SELECT name, user_id, user_uuid, user_agent, ip FROM users_in_pipes WHERE name = 'track_room'")); got != "track_room,0,u1,ua,10.0.0.1" {
		t.Errorf("users_in_pipes = %q", got)
	}
	if got := rowsText(run(t, s, "SELECT COUNT(*) FROM users_in_pipes")); got != "2" {
		t.Errorf("users_in_pipes count = %q", got)
	}
	// Tenants are isolated.
	if got := rowsText(run(t, te.session(3), "SELECT * FROM pipes")); got != "" {
		t.Errorf("tenant 3 sees %q", got)
	}
}

func TestUserTables(t *testing.T) {
	te := newTestEnv(t)
	s := te.session(0)
	// users_messages: queued while the user is offline.
	r := run(t, s, "INSERT INTO users_messages (id, event, message) VALUES (5, 'ev', 'hello'), (5, '', 'it''s'), (6, 'x', 'y')")
	if r.Info != "Delivered: 0" || r.AffectedRows != 3 {
		t.Fatalf("private: %+v", r)
	}
	if got := rowsText(run(t, s, "SELECT id, `index`, event, message FROM users_messages WHERE id = 5")); got != "5,1,ev,hello;5,2,,it's" {
		t.Errorf("queue = %q", got)
	}
	if got := rowsText(run(t, s, "SELECT COUNT(*) FROM users_messages")); got != "3" {
		t.Errorf("queue count = %q", got)
	}
	mustFail(t, s, "DELETE FROM users_messages WHERE id = 5 AND `index` = 1", ErrCodeUnsupported)
	if r := run(t, s, "DELETE FROM users_messages WHERE id = 5"); r.AffectedRows != 2 {
		t.Errorf("clear queue: %d", r.AffectedRows)
	}
	// users_time.
	if got := rowsText(run(t, s, "SELECT * FROM users_time WHERE id IN (5, 77)")); got != "5,-1;77,-1" {
		t.Errorf("users_time = %q", got)
	}
	// users_auth: upsert, REPLACE, select, delete kicks.
	run(t, s, "INSERT INTO users_auth (id, hash) VALUES (10, 'abc'), (11, 'A+/=_z')")
	run(t, s, "REPLACE INTO users_auth (id, hash) VALUES (10, 'new')")
	run(t, s, "INSERT INTO users_auth VALUES (12, 'h12')")
	if got := rowsText(run(t, s, "SELECT * FROM users_auth")); got != "10,new;11,A+/=_z;12,h12" {
		t.Errorf("users_auth = %q", got)
	}
	if got := rowsText(run(t, s, "SELECT hash FROM users_auth WHERE id = '11'")); got != "A+/=_z" {
		t.Errorf("users_auth by string id = %q", got)
	}
	if r := run(t, s, "DELETE FROM users_auth WHERE id = 10 OR id = 12"); r.AffectedRows != 2 {
		t.Errorf("delete users_auth: %d", r.AffectedRows)
	}
	// users_data.
	run(t, s, `INSERT INTO users_data (id, data) VALUES (1, '{"name":"Ann"}')`)
	run(t, s, `REPLACE INTO users_data (id, data) VALUES (1, 'C:\\x')`)
	if got := rowsText(run(t, s, "SELECT data FROM users_data WHERE id = 1")); got != `C:\x` {
		t.Errorf("users_data = %q", got)
	}
	if r := run(t, s, "DELETE FROM users_data WHERE id = 1"); r.AffectedRows != 1 {
		t.Errorf("delete users_data: %d", r.AffectedRows)
	}
	// revoked_tokens.
	run(t, s, "INSERT INTO revoked_tokens (token) VALUES ('tok.en.1'), ('tok2')")
	if got := rowsText(run(t, s, "SELECT token FROM revoked_tokens WHERE token = 'tok2'")); got != "tok2" {
		t.Errorf("revoked = %q", got)
	}
	if r := run(t, s, "DELETE FROM revoked_tokens WHERE token LIKE 'tok%'"); r.AffectedRows != 2 {
		t.Errorf("unrevoke: %d", r.AffectedRows)
	}
	// Tenants are isolated.
	run(t, s, "INSERT INTO users_data (id, data) VALUES (2, 'zero')")
	if got := rowsText(run(t, te.session(3), "SELECT * FROM users_data")); got != "" {
		t.Errorf("tenant 3 sees %q", got)
	}
}

func TestPrepared(t *testing.T) {
	te := newTestEnv(t)
	s := te.session(0)
	ctx := context.Background()
	ins, err := s.Prepare("INSERT INTO users_data (id, data) VALUES (?, ?)")
	if err != nil {
		t.Fatal(err)
	}
	if ins.ParamCount() != 2 {
		t.Fatalf("params %d", ins.ParamCount())
	}
	vals := []string{"it's", `it\'s`, `"a\"b"`, "x'); DROP TABLE users_data; --", "Привет 👋", "a\x00b"}
	for i, v := range vals {
		if _, err := s.ExecuteStmt(ctx, ins, []any{int64(i + 1), []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	sel, err := s.Prepare("SELECT data FROM users_data WHERE id = ? AND data = ? LIMIT ?")
	if err != nil {
		t.Fatal(err)
	}
	if len(sel.Columns()) != 1 || sel.Columns()[0].Type != TypeText {
		t.Fatalf("columns %+v", sel.Columns())
	}
	for i, v := range vals {
		r, err := s.ExecuteStmt(ctx, sel, []any{int64(i + 1), v, int64(10)})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Rows) != 1 || r.Rows[0][0] != v {
			t.Errorf("%d: %v, want %q", i, r.Rows, v)
		}
	}
	if _, err := s.ExecuteStmt(ctx, sel, []any{int64(1)}); err == nil {
		t.Error("wrong argument count accepted")
	}
	if _, err := s.ExecuteStmt(ctx, ins, []any{int64(0), "x"}); err == nil {
		t.Error("invalid id accepted")
	}
}

func TestMultiStatements(t *testing.T) {
	te := newTestEnv(t)
	s := te.session(0)
	rs, err := s.ExecuteMulti(context.Background(), "SELECT 1; INSERT INTO users_data VALUES (1, 'x'); SELECT data FROM users_data")
	if err != nil || len(rs) != 3 || rowsText(rs[2]) != "x" || rs[1].AffectedRows != 1 {
		t.Fatalf("multi: %v %v", rs, err)
	}
	rs, err = s.ExecuteMulti(context.Background(), "SELECT 1; SELECT nope FROM pipes; SELECT 3")
	if len(rs) != 1 || err == nil {
		t.Fatalf("multi with error: %v %v", rs, err)
	}
}

func TestLikeMatch(t *testing.T) {
	for _, c := range []struct {
		s, p string
		want bool
	}{
		{"abc", "abc", true}, {"abc", "a%", true}, {"abc", "%c", true}, {"abc", "%b%", true},
		{"abc", "a_c", true}, {"abc", "a_", false}, {"", "%", true}, {"", "_", false},
		{"a%c", `a\%c`, true}, {"abc", `a\%c`, false}, {"Привет", "При%", true}, {"Привет", "П_ивет", true},
		{"aXbXc", "%X%X%", true}, {"abc", "ABC", false},
	} {
		if got := likeMatch(c.s, c.p, '\\'); got != c.want {
			t.Errorf("%q LIKE %q = %v", c.s, c.p, got)
		}
	}
}

func newTestEngine(cfg Config, hub *pipes.Hub, st *store.Store) *Engine {
	return New(cfg, hub, auth.New(auth.Config{Password: "secret"}, st), nil)
}

func TestKicksAndPrivateDelivery(t *testing.T) {
	te := newTestEnv(t)
	ctx := context.Background()
	s := te.session(0)
	byHash, byToken, other := &sink{}, &sink{}, &sink{}
	for _, c := range []struct {
		info pipes.SessionInfo
		k    *sink
	}{
		{pipes.SessionInfo{UserID: 10, Key: "h10"}, byHash},
		{pipes.SessionInfo{UserID: 11, Token: "tok.en.11"}, byToken},
		{pipes.SessionInfo{UserID: 12, Key: "h12"}, other},
	} {
		bs, err := te.hub.Open(ctx, c.info, c.k)
		if err != nil {
			t.Fatal(err)
		}
		defer bs.Close()
	}
	// A private message to a connected user is delivered, not queued.
	r := run(t, s, "INSERT INTO users_messages (id, event, message) VALUES (10, 'ev', 'hi 10'), (12, '', 'hi 12')")
	if r.Info != "Delivered: 2" {
		t.Errorf("private info %q", r.Info)
	}
	if frames, _ := byHash.snapshot(); !strings.Contains(strings.Join(frames, "\n"), `"data":"hi 10"`) {
		t.Errorf("user 10 frames %v", frames)
	}
	if got := rowsText(run(t, s, "SELECT COUNT(*) FROM users_messages")); got != "0" {
		t.Errorf("queued %s", got)
	}
	if got := rowsText(run(t, s, "SELECT * FROM users_time WHERE id IN (10, 13)")); got != "10,0;13,-1" {
		t.Errorf("users_time %q", got)
	}
	// DELETE FROM users_auth disconnects the user; revoking a token
	// disconnects the connections it authorized.
	run(t, s, "INSERT INTO users_auth (id, hash) VALUES (10, 'h10')")
	run(t, s, "DELETE FROM users_auth WHERE id = 10")
	run(t, s, "INSERT INTO revoked_tokens (token) VALUES ('tok.en.11')")
	if _, closed := byHash.snapshot(); !closed {
		t.Error("user 10 not disconnected")
	}
	if _, closed := byToken.snapshot(); !closed {
		t.Error("token connection not disconnected")
	}
	if _, closed := other.snapshot(); closed {
		t.Error("user 12 disconnected")
	}
}
