package sqlengine

import (
	"math"
	"strconv"
	"strings"
)

// Values inside the engine are nil (SQL NULL), int64, uint64 (only for
// integers above math.MaxInt64), float64 or string. Strings hold bytes as
// sent; they compare as binary strings (utf8mb4_bin): pipe names and keys are
// case-sensitive in the hub, so comparisons are too.

// normalize converts a Go value from a prepared-statement argument or a
// literal into one of the engine's value kinds.
func normalize(v any) any {
	switch x := v.(type) {
	case nil, int64, float64, string:
		return v
	case int:
		return int64(x)
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint:
		return normalize(uint64(x))
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
		return x
	case float32:
		return float64(x)
	case bool:
		if x {
			return int64(1)
		}
		return int64(0)
	case []byte:
		return string(x)
	}
	return nil
}

// toFloat converts a value to a number the way MySQL does in a numeric
// context: strings by their longest numeric prefix (0 when none).
func toFloat(v any) float64 {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case float64:
		return x
	case string:
		return parseNumericPrefix(x)
	}
	return 0
}

// parseNumericPrefix parses the longest prefix of s that is a decimal number
// (after leading spaces), as MySQL does when it converts a string to a
// number; "12abc" is 12, "abc" is 0.
func parseNumericPrefix(s string) float64 {
	s = strings.TrimLeft(s, " \t\n\r")
	end := 0
	if end < len(s) && (s[end] == '+' || s[end] == '-') {
		end++
	}
	digits := false
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
		digits = true
	}
	if end < len(s) && s[end] == '.' {
		end++
		for end < len(s) && s[end] >= '0' && s[end] <= '9' {
			end++
			digits = true
		}
	}
	if !digits {
		return 0
	}
	if end < len(s) && (s[end] == 'e' || s[end] == 'E') {
		e := end + 1
		if e < len(s) && (s[e] == '+' || s[e] == '-') {
			e++
		}
		if e < len(s) && s[e] >= '0' && s[e] <= '9' {
			for e < len(s) && s[e] >= '0' && s[e] <= '9' {
				e++
			}
			end = e
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(s[:end], "."), 64)
	if err != nil {
		return 0
	}
	return f
}

// toInt converts a value to an integer key when it denotes one exactly:
// integers, integral floats and strings that are numbers. ok is false for
// NULL and for values that no integer equals.
func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case uint64:
		return 0, false
	case float64:
		if x == math.Trunc(x) && x >= math.MinInt64 && x <= math.MaxInt64 {
			return int64(x), true
		}
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
			return n, true
		}
		f := parseNumericPrefix(x)
		if f == math.Trunc(f) && f >= math.MinInt64 && f <= math.MaxInt64 {
			return int64(f), true
		}
	}
	return 0, false
}

// toString renders a value as MySQL does in a string context.
func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return ""
}

// truth is a value's truth in a boolean context: NULL is unknown (ok=false).
func truth(v any) (t, ok bool) {
	switch x := v.(type) {
	case nil:
		return false, false
	case int64:
		return x != 0, true
	case uint64:
		return x != 0, true
	case float64:
		return x != 0, true
	case string:
		return parseNumericPrefix(x) != 0, true
	}
	return false, false
}

func boolValue(b bool) any {
	if b {
		return int64(1)
	}
	return int64(0)
}

// compare orders two non-NULL values with MySQL's rules: two strings compare
// as strings (binary), two integers as integers, anything else as numbers.
func compare(a, b any) int {
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y)
		}
	case int64:
		switch y := b.(type) {
		case int64:
			return cmpOrdered(x, y)
		case uint64:
			if x < 0 {
				return -1
			}
			return cmpOrdered(uint64(x), y)
		}
	case uint64:
		switch y := b.(type) {
		case uint64:
			return cmpOrdered(x, y)
		case int64:
			if y < 0 {
				return 1
			}
			return cmpOrdered(x, uint64(y))
		}
	}
	return cmpOrdered(toFloat(a), toFloat(b))
}

func cmpOrdered[T int64 | uint64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sortCompare orders values for ORDER BY: NULL first, then compare.
func sortCompare(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return compare(a, b)
}

// likeMatch reports whether s matches a LIKE pattern with % and _ wildcards
// and the escape character esc, comparing bytes of runes exactly.
func likeMatch(s, pattern string, esc rune) bool {
	p := []rune(pattern)
	r := []rune(s)
	return likeRunes(r, p, esc)
}

func likeRunes(s, p []rune, esc rune) bool {
	// Iterative matcher with backtracking on the last %.
	si, pi := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		if pi < len(p) {
			c := p[pi]
			switch {
			case c == esc && pi+1 < len(p):
				if s[si] == p[pi+1] {
					si++
					pi += 2
					continue
				}
			case c == '%':
				star, mark = pi, si
				pi++
				continue
			case c == '_':
				si++
				pi++
				continue
			case c == s[si]:
				si++
				pi++
				continue
			}
		}
		if star < 0 {
			return false
		}
		pi = star + 1
		mark++
		si = mark
	}
	for pi < len(p) && p[pi] == '%' {
		pi++
	}
	return pi == len(p)
}
