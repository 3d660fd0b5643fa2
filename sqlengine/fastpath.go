package sqlengine

import "strings"

// The hot statement, a single-row publish
//
//	INSERT INTO pipes_messages (name, event, message) VALUES ('...', '...', '...')
//
// is recognised by a small hand-written scanner that builds the same
// insertStmt the TiDB parser path builds, at a fraction of the cost. It
// accepts only that shape: the three (or two: name, message) columns in any
// order, optionally back-quoted, string literals in single or double quotes
// with MySQL's escapes, spaces, and an optional final semicolon. Anything
// else (comments, numbers, expressions, several rows, charset introducers,
// adjacent literals...) returns ok=false and goes through the TiDB parser,
// which is also the oracle the fast path is tested (and fuzzed) against.

type scanner struct {
	s string
	i int
}

func (sc *scanner) space() {
	for sc.i < len(sc.s) {
		switch sc.s[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

// keyword consumes a case-insensitive keyword followed by a non-identifier
// byte.
func (sc *scanner) keyword(kw string) bool {
	if len(sc.s)-sc.i < len(kw) || !strings.EqualFold(sc.s[sc.i:sc.i+len(kw)], kw) {
		return false
	}
	j := sc.i + len(kw)
	if j < len(sc.s) && isIdentByte(sc.s[j]) {
		return false
	}
	sc.i = j
	return true
}

func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

func (sc *scanner) punct(c byte) bool {
	sc.space()
	if sc.i < len(sc.s) && sc.s[sc.i] == c {
		sc.i++
		return true
	}
	return false
}

// ident reads a plain or back-quoted identifier (no escapes inside).
func (sc *scanner) ident() (string, bool) {
	sc.space()
	if sc.i < len(sc.s) && sc.s[sc.i] == '`' {
		j := strings.IndexByte(sc.s[sc.i+1:], '`')
		if j < 0 {
			return "", false
		}
		id := sc.s[sc.i+1 : sc.i+1+j]
		sc.i += j + 2
		if sc.i < len(sc.s) && sc.s[sc.i] == '`' { // `` escape: leave it to the parser
			return "", false
		}
		return id, true
	}
	start := sc.i
	for sc.i < len(sc.s) && isIdentByte(sc.s[sc.i]) {
		sc.i++
	}
	if sc.i == start {
		return "", false
	}
	return sc.s[start:sc.i], true
}

// str reads a quoted string literal with MySQL's escapes.
func (sc *scanner) str() (string, bool) {
	sc.space()
	if sc.i >= len(sc.s) {
		return "", false
	}
	q := sc.s[sc.i]
	if q != '\'' && q != '"' {
		return "", false
	}
	sc.i++
	start := sc.i
	// Fast case: no escapes, no doubled quotes.
	for sc.i < len(sc.s) {
		c := sc.s[sc.i]
		if c == '\\' {
			break
		}
		if c == q {
			if sc.i+1 < len(sc.s) && sc.s[sc.i+1] == q {
				break
			}
			v := sc.s[start:sc.i]
			sc.i++
			return v, true
		}
		sc.i++
	}
	var b strings.Builder
	b.WriteString(sc.s[start:sc.i])
	for sc.i < len(sc.s) {
		c := sc.s[sc.i]
		switch {
		case c == '\\':
			if sc.i+1 >= len(sc.s) {
				return "", false
			}
			e := sc.s[sc.i+1]
			sc.i += 2
			switch e {
			case '0':
				b.WriteByte(0)
			case 'b':
				b.WriteByte('\b')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'Z':
				b.WriteByte(0x1a)
			case '%', '_':
				b.WriteByte('\\')
				b.WriteByte(e)
			default:
				if e >= 0x80 {
					return "", false // an escaped multi-byte character: the parser's business
				}
				b.WriteByte(e)
			}
		case c == q:
			if sc.i+1 < len(sc.s) && sc.s[sc.i+1] == q {
				b.WriteByte(q)
				sc.i += 2
				continue
			}
			sc.i++
			return b.String(), true
		default:
			b.WriteByte(c)
			sc.i++
		}
	}
	return "", false
}

// fastInsert recognises the hot statement; ok is false for anything else.
func fastInsert(q string) (*insertStmt, bool) {
	sc := &scanner{s: q}
	sc.space()
	if !sc.keyword("insert") {
		return nil, false
	}
	sc.space()
	if !sc.keyword("into") {
		return nil, false
	}
	name, ok := sc.ident()
	if !ok || !strings.EqualFold(name, "pipes_messages") {
		return nil, false
	}
	t := tableByName["pipes_messages"]
	if !sc.punct('(') {
		return nil, false
	}
	var cols []int
	seen := 0
	for {
		c, ok := sc.ident()
		if !ok {
			return nil, false
		}
		i := t.colIndex(c)
		if i != 2 && i != 4 && i != 5 || seen&(1<<i) != 0 {
			return nil, false
		}
		seen |= 1 << i
		cols = append(cols, i)
		if sc.punct(')') {
			break
		}
		if !sc.punct(',') {
			return nil, false
		}
	}
	if seen&(1<<2) == 0 || seen&(1<<5) == 0 {
		return nil, false
	}
	sc.space()
	if !sc.keyword("values") && !sc.keyword("value") {
		return nil, false
	}
	if !sc.punct('(') {
		return nil, false
	}
	row := make([]expr, 0, len(cols))
	for k := range cols {
		v, ok := sc.str()
		if !ok {
			return nil, false
		}
		row = append(row, constExpr{v})
		if k < len(cols)-1 && !sc.punct(',') {
			return nil, false
		}
	}
	if !sc.punct(')') {
		return nil, false
	}
	sc.punct(';')
	sc.space()
	if sc.i != len(sc.s) {
		return nil, false
	}
	return &insertStmt{table: t, cols: cols, rows: [][]expr{row}}, true
}
