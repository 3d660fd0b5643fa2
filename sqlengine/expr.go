package sqlengine

import (
	"math"
	"time"
)

// env is what an expression is evaluated against: the current row of the
// table (nil outside a table), the prepared statement's arguments and the
// session (for variables and functions).
type env struct {
	row  []any
	args []any
	sess *Session
	aggs []any // values of the select list's aggregates
}

// expr is a translated scalar expression. Translation has already resolved
// column names to row indexes and checked function names, so evaluation
// cannot fail on names; it can only produce NULL.
type expr interface {
	eval(e *env) any
}

type (
	// constExpr is a literal.
	constExpr struct{ v any }
	// paramExpr is a prepared-statement placeholder (0-based).
	paramExpr struct{ i int }
	// colExpr is a column of the current row.
	colExpr struct{ i int }
	// cmpExpr is a comparison: = != < > <= >= <=>.
	cmpExpr struct {
		op   cmpOp
		l, r expr
	}
	// logicExpr is AND, OR or XOR with three-valued logic.
	logicExpr struct {
		op   logicOp
		l, r expr
	}
	// notExpr is NOT x.
	notExpr struct{ x expr }
	// inExpr is x [NOT] IN (list).
	inExpr struct {
		x    expr
		list []expr
		not  bool
	}
	// likeExpr is x [NOT] LIKE pattern [ESCAPE c].
	likeExpr struct {
		x, pattern expr
		esc        rune
		not        bool
	}
	// isNullExpr is x IS [NOT] NULL.
	isNullExpr struct {
		x   expr
		not bool
	}
	// isTruthExpr is x IS [NOT] TRUE|FALSE.
	isTruthExpr struct {
		x     expr
		truth bool
		not   bool
	}
	// betweenExpr is x [NOT] BETWEEN lo AND hi.
	betweenExpr struct {
		x, lo, hi expr
		not       bool
	}
	// arithExpr is + - * / DIV %.
	arithExpr struct {
		op   byte // '+', '-', '*', '/', 'd' (DIV), '%'
		l, r expr
	}
	// negExpr is unary minus.
	negExpr struct{ x expr }
	// sysVarExpr is @@name.
	sysVarExpr struct{ name string }
	// userVarExpr is @name.
	userVarExpr struct{ name string }
	// funcExpr is one of the supported functions without arguments.
	funcExpr struct{ name string }
	// aggRefExpr is the value of an aggregate of the select list.
	aggRefExpr struct{ i int }
)

type cmpOp uint8

const (
	opEQ cmpOp = iota
	opNE
	opLT
	opGT
	opLE
	opGE
	opNullEQ // <=>
)

type logicOp uint8

const (
	opAnd logicOp = iota
	opOr
	opXor
)

func (x constExpr) eval(*env) any { return x.v }

func (x paramExpr) eval(e *env) any {
	if x.i < len(e.args) {
		return e.args[x.i]
	}
	return nil
}

func (x colExpr) eval(e *env) any {
	if x.i < len(e.row) {
		return e.row[x.i]
	}
	return nil
}

func (x cmpExpr) eval(e *env) any {
	a, b := x.l.eval(e), x.r.eval(e)
	if x.op == opNullEQ {
		switch {
		case a == nil && b == nil:
			return int64(1)
		case a == nil || b == nil:
			return int64(0)
		}
		return boolValue(compare(a, b) == 0)
	}
	if a == nil || b == nil {
		return nil
	}
	c := compare(a, b)
	switch x.op {
	case opEQ:
		return boolValue(c == 0)
	case opNE:
		return boolValue(c != 0)
	case opLT:
		return boolValue(c < 0)
	case opGT:
		return boolValue(c > 0)
	case opLE:
		return boolValue(c <= 0)
	case opGE:
		return boolValue(c >= 0)
	}
	return nil
}

func (x logicExpr) eval(e *env) any {
	a, aok := truth(x.l.eval(e))
	switch x.op {
	case opAnd:
		if aok && !a {
			return int64(0)
		}
		b, bok := truth(x.r.eval(e))
		switch {
		case bok && !b:
			return int64(0)
		case aok && bok:
			return int64(1)
		}
		return nil
	case opOr:
		if aok && a {
			return int64(1)
		}
		b, bok := truth(x.r.eval(e))
		switch {
		case bok && b:
			return int64(1)
		case aok && bok:
			return int64(0)
		}
		return nil
	default: // XOR
		b, bok := truth(x.r.eval(e))
		if !aok || !bok {
			return nil
		}
		return boolValue(a != b)
	}
}

func (x notExpr) eval(e *env) any {
	t, ok := truth(x.x.eval(e))
	if !ok {
		return nil
	}
	return boolValue(!t)
}

func (x inExpr) eval(e *env) any {
	v := x.x.eval(e)
	if v == nil {
		return nil
	}
	sawNull := false
	for _, it := range x.list {
		w := it.eval(e)
		if w == nil {
			sawNull = true
			continue
		}
		if compare(v, w) == 0 {
			return boolValue(!x.not)
		}
	}
	if sawNull {
		return nil
	}
	return boolValue(x.not)
}

func (x likeExpr) eval(e *env) any {
	v, p := x.x.eval(e), x.pattern.eval(e)
	if v == nil || p == nil {
		return nil
	}
	return boolValue(likeMatch(toString(v), toString(p), x.esc) != x.not)
}

func (x isNullExpr) eval(e *env) any {
	return boolValue((x.x.eval(e) == nil) != x.not)
}

func (x isTruthExpr) eval(e *env) any {
	t, ok := truth(x.x.eval(e))
	r := ok && t == x.truth
	return boolValue(r != x.not)
}

func (x betweenExpr) eval(e *env) any {
	v, lo, hi := x.x.eval(e), x.lo.eval(e), x.hi.eval(e)
	if v == nil || lo == nil || hi == nil {
		return nil
	}
	in := compare(v, lo) >= 0 && compare(v, hi) <= 0
	return boolValue(in != x.not)
}

func (x negExpr) eval(e *env) any {
	switch v := x.x.eval(e).(type) {
	case nil:
		return nil
	case int64:
		if v == math.MinInt64 {
			return -float64(v)
		}
		return -v
	case uint64:
		if v == 1<<63 {
			return int64(math.MinInt64)
		}
		return -float64(v)
	case float64:
		return -v
	case string:
		return -parseNumericPrefix(v)
	}
	return nil
}

func (x arithExpr) eval(e *env) any {
	a, b := x.l.eval(e), x.r.eval(e)
	if a == nil || b == nil {
		return nil
	}
	ai, aInt := a.(int64)
	bi, bInt := b.(int64)
	if aInt && bInt {
		switch x.op {
		case '+':
			if s := ai + bi; (s > ai) == (bi > 0) {
				return s
			}
		case '-':
			if s := ai - bi; (s < ai) == (bi > 0) {
				return s
			}
		case '*':
			if ai == 0 || bi == 0 {
				return int64(0)
			}
			if p := ai * bi; p/bi == ai && !(ai == -1 && bi == math.MinInt64) && !(bi == -1 && ai == math.MinInt64) {
				return p
			}
		case 'd':
			if bi == 0 {
				return nil
			}
			if !(ai == math.MinInt64 && bi == -1) {
				return ai / bi
			}
		case '%':
			if bi == 0 {
				return nil
			}
			if bi == -1 {
				return int64(0)
			}
			return ai % bi
		}
	}
	fa, fb := toFloat(a), toFloat(b)
	switch x.op {
	case '+':
		return fa + fb
	case '-':
		return fa - fb
	case '*':
		return fa * fb
	case '/':
		if fb == 0 {
			return nil
		}
		return fa / fb
	case 'd':
		if fb == 0 {
			return nil
		}
		q := math.Trunc(fa / fb)
		if q >= math.MinInt64 && q <= math.MaxInt64 {
			return int64(q)
		}
		return q
	case '%':
		if fb == 0 {
			return nil
		}
		return math.Mod(fa, fb)
	}
	return nil
}

func (x aggRefExpr) eval(e *env) any {
	if x.i < len(e.aggs) {
		return e.aggs[x.i]
	}
	return nil
}

func (x sysVarExpr) eval(e *env) any {
	if e.sess == nil {
		return nil
	}
	return e.sess.sysVar(x.name)
}

func (x userVarExpr) eval(e *env) any {
	if e.sess == nil {
		return nil
	}
	return e.sess.userVars[x.name]
}

// functions lists the functions the dialect knows, all without arguments.
var functions = map[string]bool{
	"database": true, "schema": true, "version": true, "connection_id": true,
	"user": true, "current_user": true, "session_user": true, "system_user": true,
	"now": true, "current_timestamp": true, "localtimestamp": true, "sysdate": true,
	"unix_timestamp": true, "utc_timestamp": true, "last_insert_id": true, "row_count": true,
	"found_rows": true, "curdate": true, "current_date": true, "utc_date": true,
}

func (x funcExpr) eval(e *env) any {
	s := e.sess
	switch x.name {
	case "database", "schema":
		if s == nil || s.db == "" {
			return nil
		}
		return s.db
	case "version":
		return ServerVersion()
	case "connection_id":
		if s == nil {
			return int64(0)
		}
		return int64(s.connID)
	case "user", "session_user", "system_user":
		if s == nil {
			return ""
		}
		return s.user + "@" + s.host
	case "current_user":
		if s == nil {
			return ""
		}
		return s.user + "@%"
	case "now", "current_timestamp", "localtimestamp", "sysdate":
		return time.Now().Format(time.DateTime)
	case "utc_timestamp":
		return time.Now().UTC().Format(time.DateTime)
	case "curdate", "current_date":
		return time.Now().Format(time.DateOnly)
	case "utc_date":
		return time.Now().UTC().Format(time.DateOnly)
	case "unix_timestamp":
		return time.Now().Unix()
	case "last_insert_id", "found_rows":
		return int64(0)
	case "row_count":
		return int64(-1)
	}
	return nil
}
