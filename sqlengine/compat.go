package sqlengine

import (
	"slices"
	"strings"
)

// CppComet's own SQL lexer accepted two spellings that MySQL's grammar
// refuses, and its documentation uses both:
//
//   - column names in quotes in an INSERT's column list:
//     INSERT INTO pipes_settings ("name", "length") VALUES ('p', 10)
//   - the column `index` (a reserved word) without backquotes:
//     SELECT name, index, event, message FROM pipes_messages WHERE ...
//
// compatRewrite returns the query with those spellings made valid MySQL
// (the quoted names and the bare word index backquoted), and whether it
// changed anything. It is tried only on a query the parser refused, so a
// query MySQL accepts always means what it means in MySQL. It scans the
// query's text (quotes, backquotes and comments) and never interprets
// more than these two spellings.
func compatRewrite(query string) (string, bool) {
	toks := scanTokens(query)
	var edits []compatEdit
	for i, t := range toks {
		switch {
		case t.kind == tokWord && strings.EqualFold(t.text(query), "index"):
			edits = append(edits, compatEdit{t.start, t.end, "`" + t.text(query) + "`"})
		case t.kind == tokWord && isInsertVerb(t.text(query)) && statementStart(toks, i):
			edits = append(edits, quotedColumnEdits(query, toks, i)...)
		}
	}
	if len(edits) == 0 {
		return query, false
	}
	slices.SortFunc(edits, func(a, b compatEdit) int { return a.start - b.start })
	var b strings.Builder
	b.Grow(len(query) + 2*len(edits))
	last := 0
	for _, e := range edits {
		b.WriteString(query[last:e.start])
		b.WriteString(e.with)
		last = e.end
	}
	b.WriteString(query[last:])
	return b.String(), true
}

// compatEdit replaces query[start:end] with with.
type compatEdit struct {
	start, end int
	with       string
}

type tokKind uint8

const (
	tokWord   tokKind = iota // identifier or keyword
	tokString                // '...' or "..."
	tokQuoted                // `...`
	tokPunct                 // one character: ( ) , ; . and the rest
)

// token is a span of the query; ch is a punctuation token's character.
type token struct {
	kind       tokKind
	ch         byte
	start, end int
}

func (t token) isPunct(c byte) bool { return t.kind == tokPunct && t.ch == c }

func (t token) text(q string) string { return q[t.start:t.end] }

// scanTokens splits a query into words, strings, backquoted names and
// punctuation, skipping blanks and comments (-- , # and /* */). An
// unterminated string or comment ends the scan.
func scanTokens(q string) []token {
	var toks []token
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '#' || (c == '-' && strings.HasPrefix(q[i:], "-- ")):
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				return toks
			}
			i += j + 1
		case c == '/' && strings.HasPrefix(q[i:], "/*"):
			j := strings.Index(q[i+2:], "*/")
			if j < 0 {
				return toks
			}
			i += j + 4
		case c == '\'' || c == '"' || c == '`':
			end, ok := quotedEnd(q, i)
			if !ok {
				return toks
			}
			kind := tokString
			if c == '`' {
				kind = tokQuoted
			}
			toks = append(toks, token{kind: kind, start: i, end: end})
			i = end
		case isIdentByte(c):
			j := i + 1
			for j < len(q) && isIdentByte(q[j]) {
				j++
			}
			toks = append(toks, token{kind: tokWord, start: i, end: j})
			i = j
		default:
			toks = append(toks, token{kind: tokPunct, ch: c, start: i, end: i + 1})
			i++
		}
	}
	return toks
}

// quotedEnd returns the end of the quoted text starting at q[i]: a doubled
// quote stays inside, and so does a backslash-escaped character in a
// string (not in backquotes).
func quotedEnd(q string, i int) (int, bool) {
	quote := q[i]
	for j := i + 1; j < len(q); j++ {
		switch q[j] {
		case '\\':
			if quote != '`' {
				j++
			}
		case quote:
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1, true
		}
	}
	return 0, false
}

func isInsertVerb(w string) bool {
	return strings.EqualFold(w, "insert") || strings.EqualFold(w, "replace")
}

// statementStart reports whether token i begins a statement.
func statementStart(toks []token, i int) bool {
	return i == 0 || toks[i-1].isPunct(';')
}

// quotedColumnEdits returns the edits that backquote the quoted column
// names of the INSERT or REPLACE at toks[i]: the parenthesized list after
// the table name, when each of its items is a name (bare, backquoted or
// quoted) and a quoted one holds only name characters.
func quotedColumnEdits(q string, toks []token, i int) []compatEdit {
	j := i + 1
	for j < len(toks) && toks[j].kind == tokWord && isInsertModifier(toks[j].text(q)) {
		j++
	}
	if j < len(toks) && toks[j].kind == tokWord && strings.EqualFold(toks[j].text(q), "into") {
		j++
	}
	// The table name: name or db.name.
	if j >= len(toks) || (toks[j].kind != tokWord && toks[j].kind != tokQuoted) {
		return nil
	}
	j++
	if j+1 < len(toks) && toks[j].isPunct('.') && (toks[j+1].kind == tokWord || toks[j+1].kind == tokQuoted) {
		j += 2
	}
	if j >= len(toks) || !toks[j].isPunct('(') {
		return nil
	}
	var edits []compatEdit
	for j++; j < len(toks); j += 2 {
		t := toks[j]
		switch t.kind {
		case tokWord, tokQuoted:
		case tokString:
			name := q[t.start+1 : t.end-1]
			if !isPlainName(name) {
				return nil
			}
			edits = append(edits, compatEdit{t.start, t.end, "`" + name + "`"})
		default:
			return nil
		}
		if j+1 >= len(toks) {
			return nil
		}
		if toks[j+1].isPunct(')') {
			return edits
		}
		if !toks[j+1].isPunct(',') {
			return nil
		}
	}
	return nil
}

// isInsertModifier reports whether w may stand between INSERT and INTO.
func isInsertModifier(w string) bool {
	for _, m := range []string{"low_priority", "delayed", "high_priority", "ignore"} {
		if strings.EqualFold(w, m) {
			return true
		}
	}
	return false
}

// isPlainName reports whether s is a non-empty run of [A-Za-z0-9_].
func isPlainName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && !('0' <= c && c <= '9') && !('a' <= c && c <= 'z') && !('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}
