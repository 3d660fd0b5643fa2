package sqlengine

import (
	"context"
	"sort"
	"strconv"

	"github.com/cometql/cometql/pipes"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// selectColumns is the result schema of a SELECT.
func selectColumns(st *selectStmt) []Column {
	out := make([]Column, len(st.fields))
	for i, f := range st.fields {
		out[i] = f.col
	}
	return out
}

// pushdownKeys finds a condition on the table's key among the top-level AND
// terms of where (key = v, v = key, key IN (v, ...)) whose values do not
// depend on the row, and evaluates them. ok is false when there is none; then
// the table is scanned whole. The full WHERE is still applied to the rows.
func pushdownKeys(t *tableDef, where expr, e *env) (keys []any, ok bool) {
	if where == nil {
		return nil, false
	}
	var vals []expr
	var find func(x expr) bool
	find = func(x expr) bool {
		switch c := x.(type) {
		case logicExpr:
			if c.op == opAnd {
				return find(c.l) || find(c.r)
			}
		case cmpExpr:
			if c.op != opEQ && c.op != opNullEQ {
				return false
			}
			if k, isCol := c.l.(colExpr); isCol && k.i == t.key && !dependsOnRow(c.r) {
				vals = []expr{c.r}
				return true
			}
			if k, isCol := c.r.(colExpr); isCol && k.i == t.key && !dependsOnRow(c.l) {
				vals = []expr{c.l}
				return true
			}
		case inExpr:
			if k, isCol := c.x.(colExpr); isCol && k.i == t.key && !c.not {
				for _, it := range c.list {
					if dependsOnRow(it) {
						return false
					}
				}
				vals = c.list
				return true
			}
		}
		return false
	}
	if !find(where) {
		return nil, false
	}
	seenI := map[int64]bool{}
	seenS := map[string]bool{}
	for _, ve := range vals {
		v := ve.eval(e)
		if v == nil {
			continue
		}
		if t.intKey {
			n, isInt := toInt(v)
			if !isInt || !pipes.ValidUserID(n) || seenI[n] {
				continue
			}
			seenI[n] = true
			keys = append(keys, n)
			continue
		}
		s, isStr := v.(string)
		if !isStr {
			// 'abc' = 0 is true in MySQL: a number cannot pick string
			// keys, so scan.
			return nil, false
		}
		if !seenS[s] {
			seenS[s] = true
			keys = append(keys, s)
		}
	}
	return keys, true
}

func intKeys(keys []any) []int64 {
	out := make([]int64, len(keys))
	for i, k := range keys {
		out[i] = k.(int64)
	}
	return out
}

func strKeys(keys []any) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.(string)
	}
	return out
}

// scan reads the rows of a table that where may select, using the key
// condition when there is one.
func (s *Session) scan(ctx context.Context, t *tableDef, where expr, e *env) ([][]any, error) {
	keys, byKey := pushdownKeys(t, where, e)
	if byKey && len(keys) == 0 {
		return nil, nil
	}
	eng := s.eng.hub.Engine()
	dev := s.dev
	var rows [][]any
	switch t.id {
	case tPipesMessages:
		names, err := s.pipeNames(ctx, keys, byKey, true)
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			msgs, err := eng.History(ctx, dev, name, 0)
			if err != nil {
				return nil, err
			}
			for _, m := range msgs {
				rows = append(rows, []any{m.ID, m.Time, m.Pipe, m.Seq, m.Event, m.Data, m.UserID})
			}
		}
	case tPipes:
		if byKey {
			for _, name := range strKeys(keys) {
				n, err := eng.MemberCount(ctx, dev, name)
				if err != nil {
					return nil, err
				}
				rows = append(rows, []any{name, int64(n)})
			}
			break
		}
		list, err := eng.ActivePipes(ctx, dev)
		if err != nil {
			return nil, err
		}
		for _, p := range list {
			rows = append(rows, []any{p.Pipe, int64(p.Users)})
		}
	case tUsersInPipes:
		names, err := s.pipeNames(ctx, keys, byKey, false)
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			ms, err := eng.Members(ctx, dev, name)
			if err != nil {
				return nil, err
			}
			for _, m := range ms {
				rows = append(rows, []any{name, m.UserID, m.UUID, m.UserAgent, m.IP, m.Origin, m.Language})
			}
		}
	case tPipesSettings:
		if byKey {
			for _, name := range strKeys(keys) {
				n, err := eng.LogLength(ctx, dev, name)
				if err != nil {
					return nil, err
				}
				if n > 0 {
					rows = append(rows, []any{name, int64(n)})
				}
			}
			break
		}
		list, err := eng.LogSettings(ctx, dev)
		if err != nil {
			return nil, err
		}
		for _, p := range list {
			rows = append(rows, []any{p.Pipe, int64(p.Length)})
		}
	case tUsersMessages:
		users := []int64{0}
		if byKey {
			users = intKeys(keys)
		}
		for _, u := range users {
			q, err := eng.Queue(ctx, dev, u)
			if err != nil {
				return nil, err
			}
			for _, m := range q {
				rows = append(rows, []any{m.UserID, m.Index, m.Event, m.Data, m.Time})
			}
		}
	case tUsersTime:
		var ids []int64
		if byKey {
			ids = intKeys(keys)
		}
		list, err := eng.UsersTime(ctx, dev, ids)
		if err != nil {
			return nil, err
		}
		for _, u := range list {
			rows = append(rows, []any{u.UserID, u.Time})
		}
	case tUsersAuth, tUsersData:
		var ids []int64
		if byKey {
			ids = intKeys(keys)
		}
		get := s.eng.auth.Hashes
		if t.id == tUsersData {
			get = s.eng.auth.UserData
		}
		m, err := get(ctx, dev, ids)
		if err != nil {
			return nil, err
		}
		if ids == nil {
			for id := range m {
				ids = append(ids, id)
			}
			sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		}
		for _, id := range ids {
			if v, ok := m[id]; ok {
				rows = append(rows, []any{id, v})
			}
		}
	case tRevokedTokens:
		var tokens []string
		if byKey {
			tokens = strKeys(keys)
		}
		list, err := s.eng.auth.RevokedTokens(ctx, dev, tokens)
		if err != nil {
			return nil, err
		}
		for _, r := range list {
			rows = append(rows, []any{r.Token, r.Time})
		}
	}
	return rows, nil
}

// pipeNames lists the pipes a pipes_messages or users_in_pipes scan reads:
// the requested ones, or all logging (history) or active (members) pipes.
func (s *Session) pipeNames(ctx context.Context, keys []any, byKey, history bool) ([]string, error) {
	if byKey {
		var out []string
		for _, k := range strKeys(keys) {
			if pipes.ValidPipeName(k) {
				out = append(out, k)
			}
		}
		return out, nil
	}
	eng := s.eng.hub.Engine()
	var out []string
	if history {
		list, err := eng.LogSettings(ctx, s.dev)
		if err != nil {
			return nil, err
		}
		for _, p := range list {
			out = append(out, p.Pipe)
		}
		return out, nil
	}
	list, err := eng.ActivePipes(ctx, s.dev)
	if err != nil {
		return nil, err
	}
	for _, p := range list {
		out = append(out, p.Pipe)
	}
	return out, nil
}

// filter keeps the rows where is true for.
func filter(rows [][]any, where expr, e *env) [][]any {
	if where == nil {
		return rows
	}
	out := rows[:0]
	for _, r := range rows {
		e.row = r
		if t, ok := truth(where.eval(e)); ok && t {
			out = append(out, r)
		}
	}
	e.row = nil
	return out
}

// orderRows sorts rows by the ORDER BY items (stable: ties keep the table's
// order).
func orderRows(rows [][]any, order []orderItem, e *env) {
	if len(order) == 0 || len(rows) < 2 {
		return
	}
	type keyed struct {
		keys []any
		row  []any
	}
	ks := make([]keyed, len(rows))
	for i, r := range rows {
		e.row = r
		k := make([]any, len(order))
		for j, o := range order {
			k[j] = o.e.eval(e)
		}
		ks[i] = keyed{k, r}
	}
	e.row = nil
	sort.SliceStable(ks, func(a, b int) bool {
		for j, o := range order {
			c := sortCompare(ks[a].keys[j], ks[b].keys[j])
			if c == 0 {
				continue
			}
			if o.desc {
				return c > 0
			}
			return c < 0
		}
		return false
	})
	for i := range ks {
		rows[i] = ks[i].row
	}
}

// limitValue evaluates a LIMIT or OFFSET operand.
func limitValue(x expr, e *env) (int64, error) {
	v := x.eval(e)
	n, ok := toInt(v)
	if !ok || n < 0 {
		return 0, NewError(ErrCodeWrongArguments, "Incorrect arguments to LIMIT: %s", quoteValue(toString(v)))
	}
	return n, nil
}

func applyLimit(rows [][]any, limit, offset expr, e *env) ([][]any, error) {
	if offset != nil {
		off, err := limitValue(offset, e)
		if err != nil {
			return nil, err
		}
		if off >= int64(len(rows)) {
			return nil, nil
		}
		rows = rows[off:]
	}
	if limit != nil {
		n, err := limitValue(limit, e)
		if err != nil {
			return nil, err
		}
		if n < int64(len(rows)) {
			rows = rows[:n]
		}
	}
	return rows, nil
}

func (s *Session) execSelect(ctx context.Context, st *selectStmt, e *env) (*Result, error) {
	var rows [][]any
	if st.table == nil {
		rows = [][]any{nil}
	} else {
		var err error
		if rows, err = s.scan(ctx, st.table, st.where, e); err != nil {
			return nil, err
		}
	}
	rows = filter(rows, st.where, e)
	res := &Result{Columns: selectColumns(st)}
	if st.aggregate {
		e.aggs = make([]any, len(st.aggs))
		for i, a := range st.aggs {
			e.aggs[i] = aggregate(a, rows, e)
		}
		e.row = nil
		out := make([]any, len(st.fields))
		for i, f := range st.fields {
			out[i] = resultValue(f.e.eval(e))
		}
		rows = [][]any{out}
		var err error
		if rows, err = applyLimit(rows, st.limit, st.offset, e); err != nil {
			return nil, err
		}
		res.Rows = rows
		if res.Rows == nil {
			res.Rows = [][]any{}
		}
		return res, nil
	}
	orderRows(rows, st.order, e)
	rows, err := applyLimit(rows, st.limit, st.offset, e)
	if err != nil {
		return nil, err
	}
	res.Rows = make([][]any, 0, len(rows))
	for _, r := range rows {
		e.row = r
		out := make([]any, len(st.fields))
		for i, f := range st.fields {
			out[i] = resultValue(f.e.eval(e))
		}
		res.Rows = append(res.Rows, out)
	}
	e.row = nil
	if st.table == nil && len(res.Rows) == 1 {
		refineTypes(res.Columns, res.Rows[0])
	}
	return res, nil
}

// resultValue renders values a result row cannot hold (floats, huge
// unsigned integers) as strings.
func resultValue(v any) any {
	switch v.(type) {
	case float64, uint64:
		return toString(v)
	}
	return v
}

// refineTypes types the columns of a SELECT without a table (variables,
// functions) by the values it returned: integers as BIGINT, the rest as
// VARCHAR.
func refineTypes(cols []Column, row []any) {
	for i, v := range row {
		switch x := v.(type) {
		case int64:
			cols[i].Type, cols[i].Length = TypeBigInt, 21
		case uint64:
			row[i] = toString(x)
			cols[i].Type, cols[i].Length = TypeVarChar, 20
		case float64:
			row[i] = toString(x)
			cols[i].Type, cols[i].Length = TypeVarChar, 32
		case string:
			cols[i].Type = TypeVarChar
			if n := uint32(len(x)); n > cols[i].Length {
				cols[i].Length = n
			}
		}
	}
}

func aggregate(a aggSpec, rows [][]any, e *env) any {
	var acc any
	n := int64(0)
	for _, r := range rows {
		if a.arg == nil {
			n++
			continue
		}
		e.row = r
		v := a.arg.eval(e)
		if v == nil {
			continue
		}
		n++
		switch {
		case acc == nil:
			acc = v
		case a.kind == aggMin && compare(v, acc) < 0:
			acc = v
		case a.kind == aggMax && compare(v, acc) > 0:
			acc = v
		}
	}
	e.row = nil
	if a.kind == aggCount {
		return n
	}
	return acc
}
