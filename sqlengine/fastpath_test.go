package sqlengine

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pingcap/tidb/pkg/parser"
)

// oracle translates q with the TiDB parser.
func oracle(t testing.TB, q string) *insertStmt {
	t.Helper()
	stmts, _, err := parser.New().ParseSQL(q)
	if err != nil || len(stmts) != 1 {
		t.Fatalf("%q: the parser refuses what the fast path accepted: %v", q, err)
	}
	st, err := (&translator{}).statement(stmts[0])
	if err != nil {
		t.Fatalf("%q: translation refuses what the fast path accepted: %v", q, err)
	}
	ins, ok := st.(*insertStmt)
	if !ok {
		t.Fatalf("%q: not an insert: %T", q, st)
	}
	return ins
}

// checkFastPath compares the fast path with the parser on q.
func checkFastPath(t testing.TB, q string) bool {
	t.Helper()
	fast, ok := fastInsert(q)
	if !ok {
		return false
	}
	slow := oracle(t, q)
	if fast.table != slow.table || !reflect.DeepEqual(fast.cols, slow.cols) || !reflect.DeepEqual(fast.rows, slow.rows) || fast.replace {
		t.Fatalf("%q: fast path %+v, parser %+v", q, fast.rows, slow.rows)
	}
	return true
}

func TestFastPath(t *testing.T) {
	accepted := []string{
		hotInsert,
		"INSERT INTO pipes_messages (name, event, message) VALUES ('p1', 'e', 'm')",
		"insert into PIPES_MESSAGES(message,name)values(\"m\",'p1');",
		"  INSERT\tINTO `pipes_messages` ( `name` , `event` , `message` )\nVALUES ( 'p1' , '' , '' ) ; ",
		`INSERT INTO pipes_messages (name, event, message) VALUE ('p1', 'e', 'it''s \'x\' \"y\" "z" \\ \n \r \t \0 \Z \b \% \_ \q \\n')`,
		`INSERT INTO pipes_messages (name, event, message) VALUES ("p1", "e", "a""b \" it's")`,
		"INSERT INTO pipes_messages (name, event, message) VALUES ('p1', 'e', 'Привет 👋 \xff\xfe')",
		"INSERT INTO pipes_messages (name, event, message) VALUES ('p1', 'e', '{\"a\":[1,2]}')",
	}
	for _, q := range accepted {
		if !checkFastPath(t, q) {
			t.Errorf("fast path refused %q", q)
		}
	}
	refused := []string{
		"INSERT INTO pipes_messages (name, event, message) VALUES ('p1', 'e', 'm'), ('p2', 'e', 'm')",
		"INSERT INTO pipes_messages (name, event, message) VALUES ('p1', 'e', 5)",
		"INSERT INTO pipes_messages (name, event, message) VALUES ('p1', 'e' 'f', 'm')",
		"INSERT INTO pipes_messages (name, event, message) VALUES ('p1', 'e', ?)",
		"INSERT INTO pipes_messages (name, event) VALUES ('p1', 'e')",
		"INSERT INTO pipes_messages (name, name, message) VALUES ('p1', 'p1', 'm')",
		"INSERT INTO pipes_messages (name, id, message) VALUES ('p1', 'x', 'm')",
		"INSERT INTO pipes_messages VALUES ('a', 'b', 'c', 'd', 'e', 'f', 'g')",
		"INSERT INTO CometQL_v1.pipes_messages (name, event, message) VALUES ('p1', 'e', 'm')",
		"INSERT INTO pipes_messages (name, event, message) VALUES ('p1', 'e', 'm') /* c */",
		"INSERT INTO pipes_messages (name, event, message) VALUES ('p1', 'e', 'm'); SELECT 1",
		"INSERT INTO pipes_messages (name, event, message) VALUES ('p1', 'e', _utf8mb4'm')",
		"INSERT INTO users_messages (id, event, message) VALUES ('1', 'e', 'm')",
		"INSERT INTO pipes_messages (name, event, message) VALUES ('p1', 'e', 'unterminated)",
		"REPLACE INTO pipes_messages (name, event, message) VALUES ('p1', 'e', 'm')",
		"INSERT INTO pipes_messages (name, event, message) SELECT 'a', 'b', 'c'",
	}
	for _, q := range refused {
		if _, ok := fastInsert(q); ok {
			t.Errorf("fast path accepted %q", q)
		}
	}
	// The escapes MySQL defines, one by one, against the parser.
	for c := range 128 {
		q := "INSERT INTO pipes_messages (name, event, message) VALUES ('p1', 'e', 'a\\" + string(rune(c)) + "b')"
		if strings.ContainsRune("'\"", rune(c)) || c == 0 {
			continue
		}
		checkFastPath(t, q)
	}
}

// FuzzFastPath checks the hot-statement scanner against the parser on
// insert-shaped input.
func FuzzFastPath(f *testing.F) {
	f.Add(hotInsert)
	f.Add(`insert into pipes_messages(message,name)value("a""b\"", 'p_1');`)
	f.Add(`INSERT INTO pipes_messages (name, event, message) VALUES ('p1', 'e', 'a\%b\_c\\d\'e''f')`)
	f.Fuzz(func(t *testing.T, q string) {
		checkFastPath(t, q)
	})
}
