package sqlengine

import (
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
)

func TestCompatRewrite(t *testing.T) {
	for _, c := range []struct {
		in, want string
		changed  bool
	}{
		{`insert into pipes_settings ("name", "length") values ('p10', 10)`,
			"insert into pipes_settings (`name`, `length`) values ('p10', 10)", true},
		{`INSERT INTO pipes_settings ('name', 'length') VALUES ('web_chat_pipe', 10);`,
			"INSERT INTO pipes_settings (`name`, `length`) VALUES ('web_chat_pipe', 10);", true},
		{`insert ignore into CometQL_v1.users_auth (id, "hash") values (1, 'h')`,
			"insert ignore into CometQL_v1.users_auth (id, `hash`) values (1, 'h')", true},
		{`select name, index, event, message from pipes_messages where name='p10'`,
			"select name, `index`, event, message from pipes_messages where name='p10'", true},
		{`SELECT * FROM users_messages WHERE id = 1 ORDER BY INDEX DESC`,
			"SELECT * FROM users_messages WHERE id = 1 ORDER BY `INDEX` DESC", true},
		// Both at once, out of order; and a second statement.
		{`select 1; replace into t (index, "name") values (1, 'x')`,
			"select 1; replace into t (`index`, `name`) values (1, 'x')", true},
		// Left alone: strings that are values, names that are not plain,
		// index inside strings, comments and backquotes, an INSERT that is
		// not at a statement's start.
		{`insert into t (name) values ("name", 'index')`, `insert into t (name) values ("name", 'index')`, false},
		{`insert into t ("na me") values (1)`, `insert into t ("na me") values (1)`, false},
		{"select `index` from t -- index\n", "select `index` from t -- index\n", false},
		{`select 'insert into t ("a") values (1)'`, `select 'insert into t ("a") values (1)'`, false},
		{`select "it\"s index"`, `select "it\"s index"`, false},
		{`insert into t ("a"`, `insert into t ("a"`, false},
		{`insert into t ("a" "b") values (1)`, `insert into t ("a" "b") values (1)`, false},
		{`/* index */ select 1`, `/* index */ select 1`, false},
	} {
		got, changed := compatRewrite(c.in)
		if got != c.want || changed != c.changed {
			t.Errorf("compatRewrite(%q) = %q, %v; want %q, %v", c.in, got, changed, c.want, c.changed)
		}
	}
}

// The statements of CppComet's documentation that MySQL's grammar refuses
// run as they did there; statements MySQL accepts keep MySQL's meaning.
func TestCppCometSpellings(t *testing.T) {
	te := newTestEnv(t)
	s := te.session(0)
	run(t, s, `insert into pipes_settings ("name", "length") values ('p10', 10)`)
	run(t, s, `INSERT INTO pipes_settings ('name', 'length') VALUES ('web_chat_pipe', 10);`)
	if got := rowsText(run(t, s, "select name, length from pipes_settings where name in ('p10', 'web_chat_pipe') order by name")); got != "p10,10;web_chat_pipe,10" {
		t.Fatalf("pipes_settings = %q", got)
	}
	run(t, s, `insert into pipes_messages (name, event, message) values ('p10', 'e', 'one')`)
	if got := rowsText(run(t, s, `select name, index, event, message from pipes_messages where name='p10'`)); got != "p10,1,e,one" {
		t.Fatalf("history with a bare index = %q", got)
	}
	// A quoted name in a select list is a string in MySQL, and stays one.
	if got := rowsText(run(t, s, `select 'name' from pipes_settings where name = 'p10'`)); got != "name" {
		t.Fatalf("select 'name' = %q", got)
	}
	// A statement that stays wrong reports the error of the text as sent.
	me := mustFail(t, s, `insert into pipes_settings ("name", "length") valuez ('p11', 10)`, mysql.ER_PARSE_ERROR)
	if want := `"name"`; !strings.Contains(me.Message, want) {
		t.Fatalf("error %q does not quote the statement as sent", me.Message)
	}
}
