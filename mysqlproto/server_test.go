package mysqlproto_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/cometql/cometql/mysqlproto"
	"github.com/cometql/cometql/pipes"
	"github.com/cometql/cometql/sqlengine"
	"github.com/cometql/cometql/store"
)

const (
	rootPassword   = "root-secret"
	tenantPassword = "tenant3-secret"
)

// testServer is a real CometQL server on 127.0.0.1:0 over the real hub,
// store and auth.
type testServer struct {
	addr string
	srv  *mysqlproto.Server
	hub  *pipes.Hub
	eng  *sqlengine.Engine
	done chan error
}

func startServer(tb testing.TB, cfg mysqlproto.Config) *testServer {
	tb.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: tb.TempDir(), Sync: store.SyncNormal})
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("COMETQL_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	me := pipes.NewMemoryEngine(pipes.MemoryConfig{}, st, log)
	hub := pipes.New(pipes.Config{}, me, nil, log)
	if err := hub.Start(); err != nil {
		tb.Fatal(err)
	}
	srv, eng := buildServer(tb, cfg, hub, st, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String(), srv: srv, hub: hub, eng: eng, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		if err := <-ts.done; !errors.Is(err, mysqlproto.ErrServerClosed) {
			tb.Errorf("serve: %v", err)
		}
		st.Close()
	})
	return ts
}

// dsn builds a go-sql-driver DSN; extra holds more parameters.
func (ts *testServer) dsn(user, pw, extra string) string {
	d := fmt.Sprintf("%s:%s@tcp(%s)/?interpolateParams=false&timeout=5s", user, pw, ts.addr)
	if extra != "" {
		d += "&" + extra
	}
	return d
}

func (ts *testServer) open(tb testing.TB, user, pw, extra string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("mysql", ts.dsn(user, pw, extra))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// conn returns one dedicated connection (errors must not hide behind the
// pool's reconnects).
func (ts *testServer) conn(tb testing.TB, user, pw, extra string) *sql.Conn {
	tb.Helper()
	db := ts.open(tb, user, pw, extra)
	c, err := db.Conn(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func mustExec(tb testing.TB, c *sql.Conn, q string, args ...any) sql.Result {
	tb.Helper()
	r, err := c.ExecContext(context.Background(), q, args...)
	if err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
	return r
}

// query returns rows as strings ("NULL" for NULL), joined "a,b;c,d".
func query(tb testing.TB, c *sql.Conn, q string, args ...any) string {
	tb.Helper()
	rows, err := c.QueryContext(context.Background(), q, args...)
	if err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	return rowsString(tb, rows)
}

func rowsString(tb testing.TB, rows *sql.Rows) string {
	tb.Helper()
	cols, err := rows.Columns()
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			tb.Fatal(err)
		}
		parts := make([]string, len(cols))
		for i, v := range vals {
			if v.Valid {
				parts[i] = v.String
			} else {
				parts[i] = "NULL"
			}
		}
		out = append(out, strings.Join(parts, ","))
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return strings.Join(out, ";")
}

// myErr checks that err is a MySQL error with code and SQLSTATE.
func myErr(tb testing.TB, err error, code uint16, state string) *gomysql.MySQLError {
	tb.Helper()
	var me *gomysql.MySQLError
	if !errors.As(err, &me) {
		tb.Fatalf("want MySQL error %d, got %v", code, err)
	}
	if me.Number != code || string(me.SQLState[:]) != state {
		tb.Fatalf("want %d (%s), got %d (%s): %s", code, state, me.Number, me.SQLState, me.Message)
	}
	return me
}

func TestStatementsOverTCP(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{})
	c := ts.conn(t, "root", rootPassword, "allowNativePasswords=true")
	ctx := context.Background()
	if err := c.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"SET NAMES utf8mb4", "SET autocommit=1", "SET SESSION sql_mode='TRADITIONAL'", "SET @@session.wait_timeout = 10",
		"SET unknown_var = 3", "START TRANSACTION", "BEGIN", "COMMIT", "ROLLBACK", "USE CometQL_v1",
		"INSERT INTO pipes_settings (name, length) VALUES ('web_chat', 5)",
		"REPLACE INTO pipes_settings (name, length) VALUES ('web_chat', 10)",
		"INSERT INTO users_auth (id, hash) VALUES (1, 'hash1'), (2, 'hash2')",
		"REPLACE INTO users_auth VALUES (2, 'hash22')",
		"INSERT INTO users_data (id, data) VALUES (1, 'data1')",
		"INSERT INTO revoked_tokens (token) VALUES ('t1')",
		"INSERT INTO users_messages (id, event, message) VALUES (9, 'ev', 'queued')",
	} {
		mustExec(t, c, q)
	}
	r := mustExec(t, c, "INSERT INTO pipes_messages (name, event, message) VALUES ('web_chat', 'msg', 'one'), ('web_chat', 'msg', 'two')")
	if n, _ := r.RowsAffected(); n != 2 {
		t.Errorf("affected %d", n)
	}
	for q, want := range map[string]string{
		"SELECT 1":                     "1",
		"SELECT DATABASE()":            "CometQL_v1",
		"SELECT @@version_comment":     "cometql " + strings.TrimPrefix(sqlengine.ServerVersion(), "8.0.36-cometql-"),
		"SELECT @@max_allowed_packet":  "16777214",
		"SHOW DATABASES":               "CometQL_v1",
		"SHOW WARNINGS":                "",
		"SELECT * FROM pipes_settings": "web_chat,10",
		"SELECT name, users FROM pipes WHERE name = 'web_chat'":                                    "web_chat,0",
		"SELECT * FROM users_auth ORDER BY id DESC":                                                "2,hash22;1,hash1",
		"SELECT data FROM users_data WHERE id IN (1, 5)":                                           "data1",
		"SELECT token FROM revoked_tokens":                                                         "t1",
		"SELECT id, event, message FROM users_messages":                                            "9,ev,queued",
		"SELECT * FROM users_time WHERE id = 9":                                                    "9,-1",
		"SELECT COUNT(*) FROM users_in_pipes":                                                      "0",
		"SELECT message FROM pipes_messages WHERE name = 'web_chat' ORDER BY `index` DESC LIMIT 1": "two",
		"SELECT `index`, message FROM pipes_messages WHERE name = 'web_chat' LIMIT 1, 1":           "2,two",
		"SELECT COUNT(*) AS n FROM pipes_messages WHERE name = 'web_chat' AND message LIKE 't%'":   "1",
		"SHOW STATUS LIKE 'server_online'":                                                         "server_online,1",
		"DESCRIBE users_data":                                                                      "id,bigint,NO,PRI,NULL,;data,text,NO,,NULL,",
	} {
		if got := query(t, c, q); got != want {
			t.Errorf("%s: %q, want %q", q, got, want)
		}
	}
	if got := query(t, c, "SHOW TABLES"); strings.Count(got, ";") != 8 {
		t.Errorf("show tables: %q", got)
	}
	if got := query(t, c, "SHOW PROCESSLIST"); !strings.Contains(got, "root") || !strings.Contains(got, "SHOW PROCESSLIST") {
		t.Errorf("processlist: %q", got)
	}
	for _, q := range []string{"SHOW FULL COLUMNS FROM pipes", "SHOW TABLE STATUS", "SHOW VARIABLES LIKE 'version%'", "SHOW GLOBAL STATUS",
		"SELECT @@session.auto_increment_increment AS auto_increment_increment, @@character_set_client AS character_set_client, @@character_set_connection AS character_set_connection, @@character_set_results AS character_set_results, @@character_set_server AS character_set_server, @@collation_server AS collation_server, @@collation_connection AS collation_connection, @@init_connect AS init_connect, @@interactive_timeout AS interactive_timeout, @@license AS license, @@lower_case_table_names AS lower_case_table_names, @@max_allowed_packet AS max_allowed_packet, @@net_write_timeout AS net_write_timeout, @@performance_schema AS performance_schema, @@query_cache_size AS query_cache_size, @@query_cache_type AS query_cache_type, @@sql_mode AS sql_mode, @@system_time_zone AS system_time_zone, @@time_zone AS time_zone, @@transaction_isolation AS transaction_isolation, @@wait_timeout AS wait_timeout",
	} {
		query(t, c, q)
	}
	// Deletes report what they deleted.
	for _, d := range []struct {
		q    string
		want int64
	}{
		{"DELETE FROM users_auth WHERE id = 1", 1},
		{"DELETE FROM users_auth WHERE id = 1", 0},
		{"DELETE FROM pipes_messages WHERE name='web_chat'", 2},
		{"DELETE FROM users_messages WHERE id = 9", 1},
		{"DELETE FROM revoked_tokens WHERE token = 't1'", 1},
		{"DELETE FROM users_data", 1},
		{"DELETE FROM pipes_settings WHERE name='web_chat'", 1},
	} {
		q, want := d.q, d.want
		if n, _ := mustExec(t, c, q).RowsAffected(); n != want {
			t.Errorf("%s: affected %d, want %d", q, n, want)
		}
	}
}

func TestErrorsOverTCP(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{})
	c := ts.conn(t, "root", rootPassword, "")
	ctx := context.Background()
	cases := []struct {
		q     string
		code  uint16
		state string
	}{
		{"SELEC 1", 1064, "42000"},
		{"UPDATE pipes SET users=1", 1235, "42000"},
		{"INSERT INTO pipes (name, users) VALUES ('ab', 1)", 1288, "HY000"},
		{"INSERT INTO pipes_messages (name, event, message) VALUES ('" + strings.Repeat("x", 65) + "', '', 'm')", 1406, "22001"},
		{"INSERT INTO pipes_messages (name, event, message) VALUES ('bad name', '', 'm')", 1366, "HY000"},
		{"INSERT INTO users_messages (id, event, message) VALUES (0, '', 'm')", 1366, "HY000"},
		{"INSERT INTO users_auth (id, hash) VALUES (1, 'no spaces')", 1366, "HY000"},
		{"INSERT INTO pipes_messages (event, message) VALUES ('', 'm')", 1364, "HY000"},
		{"SELECT nope FROM pipes", 1054, "42S22"},
		{"INSERT INTO pipes_messages (name, message) VALUES ('ab')", 1136, "21S01"},
		{"SELECT * FROM nope", 1146, "42S02"},
		{"USE nope", 1049, "42000"},
		{"SELECT * FROM nope.pipes", 1049, "42000"},
	}
	for _, tc := range cases {
		_, err := c.ExecContext(ctx, tc.q)
		me := myErr(t, err, tc.code, tc.state)
		if !strings.Contains(me.Message, "(CometQL error ") {
			t.Errorf("%s: %q has no CometQL code", tc.q, me.Message)
		}
		if got := query(t, c, "SELECT 1"); got != "1" {
			t.Fatalf("after %s: %q", tc.q, got)
		}
	}
	// Invalid UTF-8 in a literal and in an argument.
	_, err := c.ExecContext(ctx, "INSERT INTO users_data (id, data) VALUES (1, 'bad \xff\xfe')")
	myErr(t, err, 1366, "HY000")
	_, err = c.ExecContext(ctx, "INSERT INTO users_data (id, data) VALUES (?, ?)", 1, []byte("bad \xff\xfe"))
	myErr(t, err, 1366, "HY000")
	// Errors of prepared statements keep their code.
	_, err = c.ExecContext(ctx, "INSERT INTO pipes_messages (name, event, message) VALUES (?, ?, ?)", "bad name", "", "m")
	myErr(t, err, 1366, "HY000")
	_, err = c.QueryContext(ctx, "SELECT nope FROM pipes WHERE name = ?", "x")
	myErr(t, err, 1054, "42S22")
	if got := query(t, c, "SELECT ?", "still fine"); got != "still fine" {
		t.Fatalf("after errors: %q", got)
	}
}

// roundTripValues are the payloads that must come back byte-equal.
var roundTripValues = []string{`{"text":"hi","n":[1,2.5,null],"q":"\"quoted\""}`, "it's", `C:\path\to`, "line1\nline2\r\n", "Привет 👋"}

// sqlQuote writes a MySQL string literal the way a careful backend would.
func sqlQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "'", "''", "\n", `\n`, "\r", `\r`, "\x00", `\0`)
	return "'" + r.Replace(s) + "'"
}

func TestRoundTrip(t *testing.T) {
	// Server-side prepared statements, and the driver's own escaping.
	for _, mode := range []string{"", "interpolateParams=true"} {
		t.Run("params="+mode, func(t *testing.T) { roundTrip(t, mode) })
	}
}

func roundTrip(t *testing.T, mode string) {
	ts := startServer(t, mysqlproto.Config{})
	c := ts.conn(t, "root", rootPassword, mode)
	mustExec(t, c, "INSERT INTO pipes_settings (name, length) VALUES ('log_pipe', 100)")
	check := func(label, q string, args []any, want []string) {
		t.Helper()
		got := []string{}
		rows, err := c.QueryContext(context.Background(), q, args...)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			got = append(got, s)
		}
		rows.Close()
		if strings.Join(got, "\x01") != strings.Join(want, "\x01") {
			t.Errorf("%s: got %q, want %q", label, got, want)
		}
	}
	var lit, args []string
	for i, v := range roundTripValues {
		mustExec(t, c, "INSERT INTO pipes_messages (name, event, message) VALUES ('log_pipe', 'lit', "+sqlQuote(v)+")")
		mustExec(t, c, "INSERT INTO pipes_messages (name, event, message) VALUES (?, ?, ?)", "log_pipe", "arg", v)
		mustExec(t, c, fmt.Sprintf("INSERT INTO users_messages (id, event, message) VALUES (%d, 'lit', %s)", 100, sqlQuote(v)))
		mustExec(t, c, "INSERT INTO users_messages (id, event, message) VALUES (?, ?, ?)", 200, "arg", v)
		mustExec(t, c, fmt.Sprintf("INSERT INTO users_data (id, data) VALUES (%d, %s)", 1000+i, sqlQuote(v)))
		mustExec(t, c, "INSERT INTO users_data (id, data) VALUES (?, ?)", 2000+i, v)
		lit = append(lit, v)
		args = append(args, v)
	}
	// 'it\'s' (backslash escape) is the same value as 'it''s'.
	mustExec(t, c, `INSERT INTO users_data (id, data) VALUES (3000, 'it\'s')`)
	check("backslash quote", "SELECT data FROM users_data WHERE id = 3000", nil, []string{"it's"})
	check("history literal", "SELECT message FROM pipes_messages WHERE name = 'log_pipe' AND event = 'lit'", nil, lit)
	check("history args", "SELECT message FROM pipes_messages WHERE name = ? AND event = ?", []any{"log_pipe", "arg"}, args)
	check("queue literal", "SELECT message FROM users_messages WHERE id = 100", nil, lit)
	check("queue args", "SELECT message FROM users_messages WHERE id = ?", []any{200}, args)
	check("data literal", "SELECT data FROM users_data WHERE id >= 1000 AND id < 2000", nil, lit)
	check("data args", "SELECT data FROM users_data WHERE id >= ? AND id < ?", []any{2000, 3000}, args)
	for _, v := range roundTripValues {
		check("where literal", "SELECT data FROM users_data WHERE id < 2000 AND data = "+sqlQuote(v), nil, []string{v})
		check("where arg", "SELECT data FROM users_data WHERE id < 2000 AND data = ?", []any{v}, []string{v})
	}
}

func TestPreparedTypes(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{})
	c := ts.conn(t, "root", rootPassword, "")
	ctx := context.Background()
	mustExec(t, c, "INSERT INTO users_data (id, data) VALUES (?, ?), (?, ?)", int64(7), "seven", uint8(8), []byte("eight"))
	rows, err := c.QueryContext(ctx, "SELECT id, data FROM users_data WHERE id IN (?, ?) ORDER BY id LIMIT ?", 7, "8", 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		var data string
		if err := rows.Scan(&id, &data); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if fmt.Sprint(ids) != "[7 8]" {
		t.Errorf("ids %v", ids)
	}
	// Column types: BIGINT scans into int64 directly, NULLs are NULL.
	var id int64
	var n sql.NullString
	if err := c.QueryRowContext(ctx, "SELECT id, @nothing FROM users_data WHERE id = ?", 7).Scan(&id, &n); err != nil || id != 7 || n.Valid {
		t.Errorf("scan: %v %d %v", err, id, n)
	}
	colTypes, err := func() ([]*sql.ColumnType, error) {
		rows, err := c.QueryContext(ctx, "SELECT * FROM pipes_messages WHERE name = ?", "nothing")
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		return rows.ColumnTypes()
	}()
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ct := range colTypes {
		types = append(types, ct.Name()+":"+ct.DatabaseTypeName())
	}
	if got := strings.Join(types, " "); got != "id:VARCHAR time:BIGINT name:VARCHAR index:BIGINT event:VARCHAR message:TEXT user_id:BIGINT" {
		t.Errorf("column types %s", got)
	}
	// A statement prepared once and run many times.
	st, err := c.PrepareContext(ctx, "SELECT data FROM users_data WHERE id = ?")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for range 3 {
		var s string
		if err := st.QueryRowContext(ctx, 8).Scan(&s); err != nil || s != "eight" {
			t.Fatalf("%v %q", err, s)
		}
	}
}

func TestMultiStatements(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{})
	c := ts.conn(t, "root", rootPassword, "multiStatements=true")
	ctx := context.Background()
	mustExec(t, c, "INSERT INTO users_data VALUES (1, 'a'); INSERT INTO users_data VALUES (2, 'b')")
	rows, err := c.QueryContext(ctx, "SELECT data FROM users_data WHERE id = 1; SELECT data FROM users_data WHERE id = 2")
	if err != nil {
		t.Fatal(err)
	}
	first := rowsString(t, rows)
	if !rows.NextResultSet() {
		t.Fatal("no second result set")
	}
	second := rowsString(t, rows)
	rows.Close()
	if first != "a" || second != "b" {
		t.Errorf("results %q %q", first, second)
	}
	_, err = c.ExecContext(ctx, "INSERT INTO users_data VALUES (3, 'c'); SELECT nope FROM pipes")
	myErr(t, err, 1054, "42S22")
	if got := query(t, c, "SELECT data FROM users_data WHERE id = 3"); got != "c" {
		t.Errorf("first statement of a failed batch: %q", got)
	}
	// Without the capability, several statements are a syntax error.
	c2 := ts.conn(t, "root", rootPassword, "")
	_, err = c2.ExecContext(ctx, "SELECT 1; SELECT 2")
	myErr(t, err, 1064, "42000")
}

func TestAuthentication(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{})
	ctx := context.Background()
	for _, u := range []struct{ user, pw string }{{"root", "wrong"}, {"nobody", rootPassword}, {"3", rootPassword + "x"}, {"root", ""}} {
		db := ts.open(t, u.user, u.pw, "")
		err := db.PingContext(ctx)
		me := myErr(t, err, 1045, "28000")
		using := "YES"
		if u.pw == "" {
			using = "NO"
		}
		if me.Message != "Access denied for user '"+u.user+"'@'127.0.0.1' (using password: "+using+")" {
			t.Errorf("message %q", me.Message)
		}
	}
	// Tenant 3 logs in with its own password and sees only its own data.
	root := ts.conn(t, "root", rootPassword, "")
	t3 := ts.conn(t, "3", tenantPassword, "")
	mustExec(t, root, "INSERT INTO users_data (id, data) VALUES (1, 'root data')")
	mustExec(t, t3, "INSERT INTO users_data (id, data) VALUES (2, 'tenant data')")
	if got := query(t, root, "SELECT * FROM users_data"); got != "1,root data" {
		t.Errorf("root sees %q", got)
	}
	if got := query(t, t3, "SELECT * FROM users_data"); got != "2,tenant data" {
		t.Errorf("tenant 3 sees %q", got)
	}
	// A tenant without its own password uses the global one.
	t5 := ts.conn(t, "5", rootPassword, "")
	if got := query(t, t5, "SELECT COUNT(*) FROM users_data"); got != "0" {
		t.Errorf("tenant 5 sees %q", got)
	}
	// A database in the DSN is checked after the password.
	db, _ := sql.Open("mysql", fmt.Sprintf("root:%s@tcp(%s)/CometQL_v1", rootPassword, ts.addr))
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		t.Errorf("CometQL_v1 in DSN: %v", err)
	}
	db2, _ := sql.Open("mysql", fmt.Sprintf("root:%s@tcp(%s)/otherdb", rootPassword, ts.addr))
	defer db2.Close()
	myErr(t, db2.PingContext(ctx), 1049, "42000")
	db3, _ := sql.Open("mysql", fmt.Sprintf("root:bad@tcp(%s)/otherdb", ts.addr))
	defer db3.Close()
	myErr(t, db3.PingContext(ctx), 1045, "28000")
}

func TestCachingSHA2(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{AuthPlugin: "caching_sha2_password"})
	// Twice: full authentication (RSA key exchange), then the fast path.
	for i := range 2 {
		c := ts.conn(t, "root", rootPassword, "allowNativePasswords=false")
		if got := query(t, c, "SELECT 1"); got != "1" {
			t.Fatalf("round %d: %q", i, got)
		}
	}
	db := ts.open(t, "root", "wrong", "allowNativePasswords=false")
	myErr(t, db.PingContext(context.Background()), 1045, "28000")
	// Native clients still log in on a caching_sha2 server.
	c := ts.conn(t, "3", tenantPassword, "allowNativePasswords=true")
	if got := query(t, c, "SELECT 2"); got != "2" {
		t.Fatalf("native on sha2 server: %q", got)
	}
}

func TestConcurrentConnections(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{})
	mustExec(t, ts.conn(t, "root", rootPassword, ""), "INSERT INTO pipes_settings (name, length) VALUES ('busy_pipe', 1000)")
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := sql.Open("mysql", ts.dsn("root", rootPassword, ""))
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			db.SetMaxOpenConns(1)
			ctx := context.Background()
			for j := range 5 {
				if _, err := db.ExecContext(ctx, "INSERT INTO pipes_messages (name, event, message) VALUES (?, 'e', ?)", "busy_pipe", fmt.Sprintf("%d-%d", i, j)); err != nil {
					errs <- err
					return
				}
				var s string
				if err := db.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&s); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := query(t, ts.conn(t, "root", rootPassword, ""), "SELECT COUNT(*) FROM pipes_messages WHERE name = 'busy_pipe'"); got != "500" {
		t.Errorf("stored %s", got)
	}
}

func TestLimits(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{MaxConnections: 2, MaxQueryBytes: 1024})
	ctx := context.Background()
	c := ts.conn(t, "root", rootPassword, "")
	// Too large: 1153, and the connection goes on (plain and prepared).
	_, err := c.ExecContext(ctx, "INSERT INTO users_data (id, data) VALUES (1, '"+strings.Repeat("x", 2000)+"')")
	myErr(t, err, 1153, "08S01")
	if got := query(t, c, "SELECT 'alive'"); got != "alive" {
		t.Fatalf("after too large: %q", got)
	}
	_, err = c.ExecContext(ctx, "INSERT INTO users_data (id, data) VALUES (?, ?)", 1, strings.Repeat("y", 4000))
	myErr(t, err, 1153, "08S01")
	if got := query(t, c, "SELECT 'alive'"); got != "alive" {
		t.Fatalf("after too large args: %q", got)
	}
	// The third connection is refused with 1040.
	c2 := ts.conn(t, "root", rootPassword, "")
	query(t, c2, "SELECT 1")
	db := ts.open(t, "root", rootPassword, "")
	myErr(t, db.PingContext(ctx), 1040, "08S01")
}

func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{IdleTimeout: 200 * time.Millisecond})
	c := ts.conn(t, "root", rootPassword, "")
	query(t, c, "SELECT 1")
	deadline := time.Now().Add(5 * time.Second)
	for ts.srv.ConnectionCount() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle connection not closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.ExecContext(context.Background(), "SELECT 1"); err == nil {
		t.Fatal("query on a timed-out connection succeeded")
	}
}

func TestShutdownClosesIdle(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{})
	c := ts.conn(t, "root", rootPassword, "")
	query(t, c, "SELECT 1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ts.srv.ConnectionCount() != 0 {
		t.Fatalf("%d connections after shutdown", ts.srv.ConnectionCount())
	}
	if _, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}
