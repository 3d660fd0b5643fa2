package sqlengine

import (
	"context"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/pipes"
)

// authBackend is what the users_auth, users_data and revoked_tokens tables
// need from auth (the auth service).
type authBackend interface {
	SetHash(ctx context.Context, dev, user int64, hash string) error
	Hashes(ctx context.Context, dev int64, ids []int64) (map[int64]string, error)
	DeleteHash(ctx context.Context, dev, user int64) (int64, error)
	SetUserData(ctx context.Context, dev, user int64, data string) error
	UserData(ctx context.Context, dev int64, ids []int64) (map[int64]string, error)
	DeleteUserData(ctx context.Context, dev, user int64) (int64, error)
	Revoke(ctx context.Context, dev int64, token string) error
	Unrevoke(ctx context.Context, dev int64, token string) (int64, error)
	RevokedTokens(ctx context.Context, dev int64, tokens []string) ([]auth.RevokedToken, error)
}

// insertRow is one validated INSERT row, typed for its table.
type insertRow struct {
	name, event, text string // pipe name / event / message, hash, data or token
	id                int64  // user id
	length            int    // pipes_settings.length
}

// rowValues evaluates an INSERT row into table column order; given[i]
// tells whether column i had a value (DEFAULT counts as none).
func rowValues(st *insertStmt, row []expr, e *env) (vals []any, given []bool) {
	n := len(st.table.cols)
	vals = make([]any, n)
	given = make([]bool, n)
	for i, c := range st.cols {
		if row[i] == nil {
			continue
		}
		vals[c] = row[i].eval(e)
		given[c] = true
	}
	return vals, given
}

// rowReader converts and checks the values of one row.
type rowReader struct {
	t     *tableDef
	vals  []any
	given []bool
	row   int // 1-based, for messages
}

// str reads a text column: missing required columns are 1364, NULL in a
// required column 1048, optional ones default to "".
func (r *rowReader) str(name string) (string, error) {
	i := r.t.colIndex(name)
	c := r.t.cols[i]
	if !r.given[i] {
		if c.required {
			return "", errNoDefault(c.name)
		}
		return "", nil
	}
	v := r.vals[i]
	if v == nil {
		if c.required {
			return "", errBadNull(c.name)
		}
		return "", nil
	}
	return toString(v), nil
}

// int reads an integer column.
func (r *rowReader) int(name string) (int64, error) {
	i := r.t.colIndex(name)
	c := r.t.cols[i]
	if !r.given[i] {
		return 0, errNoDefault(c.name)
	}
	v := r.vals[i]
	if v == nil {
		return 0, errBadNull(c.name)
	}
	switch x := v.(type) {
	case int64:
		return x, nil
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
			return n, nil
		}
	case float64:
		if n, ok := toInt(x); ok {
			return n, nil
		}
	}
	return 0, NewError(ErrCodeInvalidValue, "Incorrect integer value: '%s' for column '%s' at row %d", quoteValue(toString(v)), c.name, r.row)
}

// checkText validates a text value: UTF-8, then length in bytes.
func (r *rowReader) checkText(col, v string, max int) error {
	if !utf8.ValidString(v) {
		return errBadUTF8(col, r.row, v)
	}
	if len(v) > max {
		return errTooLong(col, r.row, max)
	}
	return nil
}

// checkName validates a pipe or event name.
func (r *rowReader) checkName(col, v string, pipe bool) error {
	if !utf8.ValidString(v) {
		return errBadUTF8(col, r.row, v)
	}
	max := maxEventChars
	if pipe {
		max = maxPipeChars
	}
	if utf8.RuneCountInString(v) > max {
		return errTooLong(col, r.row, max)
	}
	if pipe && !pipes.ValidPipeName(v) {
		return errInvalid(col, r.row, v, "pipe names are 2..64 characters of [A-Za-z0-9_-]")
	}
	if !pipe && !pipes.ValidEventName(v) {
		return errInvalid(col, r.row, v, "event names are 0..64 characters of [A-Za-z0-9_-]")
	}
	return nil
}

func (r *rowReader) userID(col string) (int64, error) {
	id, err := r.int(col)
	if err != nil {
		return 0, err
	}
	if !pipes.ValidUserID(id) {
		return 0, errInvalid(col, r.row, strconv.FormatInt(id, 10), "user ids are 1..9007199254740991")
	}
	return id, nil
}

// validate checks one row for its table and returns it typed.
func (s *Session) validate(t *tableDef, r *rowReader) (insertRow, error) {
	var out insertRow
	var err error
	maxMsg := s.eng.cfg.MaxMessageBytes
	switch t.id {
	case tPipesMessages, tUsersMessages:
		if t.id == tPipesMessages {
			if out.name, err = r.str("name"); err != nil {
				return out, err
			}
			if err = r.checkName("name", out.name, true); err != nil {
				return out, err
			}
		} else if out.id, err = r.userID("id"); err != nil {
			return out, err
		}
		if out.event, err = r.str("event"); err != nil {
			return out, err
		}
		if err = r.checkName("event", out.event, false); err != nil {
			return out, err
		}
		if out.text, err = r.str("message"); err != nil {
			return out, err
		}
		err = r.checkText("message", out.text, maxMsg)
	case tPipesSettings:
		if out.name, err = r.str("name"); err != nil {
			return out, err
		}
		if err = r.checkName("name", out.name, true); err != nil {
			return out, err
		}
		n, err := r.int("length")
		if err != nil {
			return out, err
		}
		if n < 0 || n > pipes.MaxLogLength {
			return out, errInvalid("length", r.row, strconv.FormatInt(n, 10), "the history length is 0..1000")
		}
		out.length = int(n)
	case tUsersAuth:
		if out.id, err = r.userID("id"); err != nil {
			return out, err
		}
		if out.text, err = r.str("hash"); err != nil {
			return out, err
		}
		if !utf8.ValidString(out.text) {
			return out, errBadUTF8("hash", r.row, out.text)
		}
		if len(out.text) > maxHashChars {
			return out, errTooLong("hash", r.row, maxHashChars)
		}
		if !auth.ValidHash(out.text) {
			return out, errInvalid("hash", r.row, out.text, "hashes are 1..32 characters of [0-9A-Za-z=+/_]")
		}
	case tUsersData:
		if out.id, err = r.userID("id"); err != nil {
			return out, err
		}
		if out.text, err = r.str("data"); err != nil {
			return out, err
		}
		err = r.checkText("data", out.text, maxMsg)
	case tRevokedTokens:
		if out.text, err = r.str("token"); err != nil {
			return out, err
		}
		if err = r.checkText("token", out.text, maxTokenBytes); err != nil {
			return out, err
		}
		if out.text == "" {
			return out, errInvalid("token", r.row, "", "the token is empty")
		}
	}
	return out, err
}

func (s *Session) execInsert(ctx context.Context, st *insertStmt, e *env) (*Result, error) {
	t := st.table
	rows := make([]insertRow, 0, len(st.rows))
	for i, row := range st.rows {
		vals, given := rowValues(st, row, e)
		r := &rowReader{t: t, vals: vals, given: given, row: i + 1}
		ir, err := s.validate(t, r)
		if err != nil {
			return nil, err
		}
		rows = append(rows, ir)
	}
	res := &Result{}
	delivered := 0
	hub := s.eng.hub
	for _, r := range rows {
		var err error
		switch t.id {
		case tPipesMessages:
			var n int
			n, err = hub.Publish(ctx, s.dev, r.name, r.event, r.text)
			delivered += n
		case tUsersMessages:
			var n int
			n, err = hub.SendPrivate(ctx, s.dev, r.id, r.event, r.text)
			delivered += n
		case tPipesSettings:
			err = hub.Engine().SetLogLength(ctx, s.dev, r.name, r.length)
		case tUsersAuth:
			err = s.eng.auth.SetHash(ctx, s.dev, r.id, r.text)
		case tUsersData:
			err = s.eng.auth.SetUserData(ctx, s.dev, r.id, r.text)
		case tRevokedTokens:
			if err = s.eng.auth.Revoke(ctx, s.dev, r.text); err == nil {
				err = hub.KickToken(ctx, s.dev, r.text)
			}
		}
		if err != nil {
			return nil, err
		}
		res.AffectedRows++
	}
	if t.id == tPipesMessages || t.id == tUsersMessages {
		res.Info = "Delivered: " + strconv.Itoa(delivered)
	}
	return res, nil
}

func (s *Session) execDelete(ctx context.Context, st *deleteStmt, e *env) (*Result, error) {
	t := st.table
	all, err := s.scan(ctx, t, st.where, e)
	if err != nil {
		return nil, err
	}
	perKey := map[any]int{} // rows per pipe or user before filtering
	for _, r := range all {
		perKey[r[t.key]]++
	}
	rows := filter(all, st.where, e)
	orderRows(rows, st.order, e)
	if rows, err = applyLimit(rows, st.limit, nil, e); err != nil {
		return nil, err
	}
	res := &Result{}
	eng := s.eng.hub.Engine()
	switch t.id {
	case tPipesMessages, tUsersMessages:
		matched := map[any]int{}
		var order []any
		for _, r := range rows {
			k := r[t.key]
			if matched[k] == 0 {
				order = append(order, k)
			}
			matched[k]++
		}
		if t.id == tUsersMessages {
			for _, k := range order {
				if matched[k] != perKey[k] {
					return nil, errUnsupported("deleting single queued messages: DELETE FROM users_messages WHERE id = ... clears the user's whole queue")
				}
			}
		}
		for _, k := range order {
			var n int64
			switch {
			case t.id == tUsersMessages:
				n, err = eng.ClearQueue(ctx, s.dev, k.(int64))
			case matched[k] == perKey[k]:
				n, err = eng.ClearHistory(ctx, s.dev, k.(string))
			default:
				for _, r := range rows {
					if r[t.key] != k {
						continue
					}
					var m int64
					if m, err = eng.DeleteMessage(ctx, s.dev, r[0].(string)); err != nil {
						break
					}
					n += m
				}
			}
			if err != nil {
				return nil, err
			}
			res.AffectedRows += uint64(n)
		}
	default:
		for _, r := range rows {
			var n int64 = 1
			switch t.id {
			case tPipesSettings:
				err = eng.SetLogLength(ctx, s.dev, r[0].(string), 0)
			case tUsersAuth:
				id := r[0].(int64)
				if n, err = s.eng.auth.DeleteHash(ctx, s.dev, id); err == nil {
					err = s.eng.hub.KickUser(ctx, s.dev, id)
				}
			case tUsersData:
				n, err = s.eng.auth.DeleteUserData(ctx, s.dev, r[0].(int64))
			case tRevokedTokens:
				n, err = s.eng.auth.Unrevoke(ctx, s.dev, r[0].(string))
			}
			if err != nil {
				return nil, err
			}
			res.AffectedRows += uint64(n)
		}
	}
	return res, nil
}
