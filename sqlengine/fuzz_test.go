package sqlengine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// fuzzSeeds are statements of every kind the dialect knows, and some it
// refuses.
var fuzzSeeds = []string{
	"SELECT 1",
	"select @@version_comment limit 1",
	"SET NAMES utf8mb4",
	"SET autocommit=1, @x = 'a', @@session.sql_mode = DEFAULT",
	"SHOW FULL COLUMNS FROM pipes_messages LIKE 'n%'",
	"SHOW GLOBAL STATUS WHERE Variable_name LIKE 'user%'",
	"DESCRIBE users_auth",
	"USE CometQL_v1",
	"INSERT INTO pipes_settings (name, length) VALUES ('fz_pipe', 3)",
	"INSERT INTO pipes_messages (name, event, message) VALUES ('fz_pipe', 'e', 'it''s'), ('fz_pipe', '', 'a\\nb')",
	"INSERT INTO pipes_messages VALUES (?, ?, ?, ?, ?, ?, ?)",
	"SELECT * FROM pipes_messages WHERE name = 'fz_pipe' AND `index` > 1 ORDER BY `index` DESC LIMIT 1, 2",
	"SELECT COUNT(*), MIN(time), MAX(`index`) FROM pipes_messages WHERE name IN ('fz_pipe', ?)",
	"DELETE FROM pipes_messages WHERE id = 'x' OR name LIKE 'fz%' ORDER BY time LIMIT 1",
	"SELECT name, users FROM pipes WHERE NOT (users < 1) OR name IS NULL",
	"SELECT * FROM users_in_pipes WHERE name = 'track_x'",
	"INSERT INTO users_messages (id, event, message) VALUES (1, 'e', 'm')",
	"DELETE FROM users_messages WHERE id IN (1, 2)",
	"SELECT * FROM users_time WHERE id BETWEEN 1 AND 3",
	"REPLACE INTO users_auth (id, hash) VALUES (1, 'abc'), (2, 'A+/=_')",
	"DELETE FROM users_auth WHERE id = 1",
	"INSERT INTO users_data (id, data) VALUES (1, '{\"a\":1}')",
	"SELECT data FROM users_data WHERE id = '1' AND data LIKE '%a%' ESCAPE '!'",
	"INSERT INTO revoked_tokens (token) VALUES ('a.b.c')",
	"SELECT * FROM revoked_tokens WHERE token <=> NULL XOR 1",
	"SELECT 1 + 2 * 3 DIV 2 % 5 - -1, 'a' = 0, 9223372036854775807 + 1, 18446744073709551615",
	"SELECT ?, ? FROM dual WHERE ? IS NOT TRUE",
	"BEGIN; COMMIT; ROLLBACK",
	"UPDATE pipes SET users = 1",
	"SELECT * FROM pipes a JOIN users_time b",
	"SELEC 1",
	"INSERT INTO pipes_messages (name) VALUES ('ab', 'cd')",
	"SELECT name FROM pipes ORDER BY 3",
	"SHOW PROCESSLIST",
	"SHOW CREATE TABLE users_data",
	"",
	"INSERT INTO pipes_messages (name, event, message) VALUES ('p1', 'e', 'it''s \\ \\n \"q\"')",
	"insert into `pipes_messages`(message, `name`) value (\"a\"\"b\", 'web_x');",
}

// FuzzExecute feeds arbitrary text to the parser, the translator and the
// executor (plain, multi-statement and prepared with arguments): nothing
// may panic, and every error must be a *mysql.MyError.
func FuzzExecute(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	te := newTestEnv(f)
	s := te.session(0)
	args := []any{"fz_pipe", int64(1), "x", nil, int64(-1), "it's", "Привет"}
	check := func(t *testing.T, q string, err error) {
		var me *mysql.MyError
		if err != nil && !errors.As(err, &me) {
			t.Fatalf("%q: error %T %v is not a MyError", q, err, err)
		}
		if me != nil && (me.Code == 0 || len(me.State) != 5) {
			t.Fatalf("%q: bad error %+v", q, me)
		}
	}
	f.Fuzz(func(t *testing.T, q string) {
		// A statement that takes seconds is a hang (or a denial of
		// service): report it with the stacks.
		finished := make(chan struct{})
		defer close(finished)
		go func() {
			select {
			case <-finished:
			case <-time.After(30 * time.Second):
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				panic(fmt.Sprintf("%q hangs:\n%s", q, buf[:n]))
			}
		}()
		before := parserPanics.Load()
		defer func() {
			if parserPanics.Load() != before {
				t.Fatalf("%q: the parser panicked", q)
			}
		}()
		// The hot-statement fast path agrees with the parser.
		checkFastPath(t, q)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := s.Execute(ctx, q)
		check(t, q, err)
		_, err = s.ExecuteMulti(ctx, q)
		check(t, q, err)
		st, err := s.Prepare(q)
		check(t, q, err)
		if err == nil {
			a := make([]any, st.ParamCount())
			for i := range a {
				a[i] = args[(i+len(q))%len(args)]
			}
			_, err = s.ExecuteStmt(ctx, st, a)
			check(t, q, err)
		}
	})
}

// FuzzCompatRewrite: the rewrite of CppComet's spellings never panics,
// changes a query only by adding backquotes around names it reports, and
// leaves a query it did not change byte for byte.
func FuzzCompatRewrite(f *testing.F) {
	for _, s := range []string{
		`insert into pipes_settings ("name", "length") values ('p10', 10)`,
		`select name, index, event from pipes_messages where name='p'`,
		"replace into t (index, 'a') values (1, 'x'); -- index\n",
		`insert into t ("a`, "/* unterminated", `select "x\"index" # index`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		out, changed := compatRewrite(q)
		if !changed {
			if out != q {
				t.Fatalf("unchanged but different: %q -> %q", q, out)
			}
			return
		}
		// Removing every backquote the rewrite may have added, and the
		// quotes it replaced, gives back the same text.
		strip := func(s string) string {
			return strings.NewReplacer("`", "", `"`, "", "'", "").Replace(s)
		}
		if strip(out) != strip(q) || len(out) < len(q) {
			t.Fatalf("rewrite changed more than quoting: %q -> %q", q, out)
		}
	})
}
