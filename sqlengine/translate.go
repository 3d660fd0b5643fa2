package sqlengine

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/format"
	"github.com/pingcap/tidb/pkg/parser/test_driver"
)

// The statement types the dialect executes. Translation from the TiDB AST
// whitelists node types: anything not listed here is refused with 1235.
type (
	// selectStmt is SELECT over one virtual table, or without a table.
	selectStmt struct {
		table     *tableDef // nil: SELECT without FROM
		fields    []selectField
		where     expr // nil: every row
		order     []orderItem
		limit     expr      // nil: no limit
		offset    expr      // nil: 0
		aggregate bool      // one row of aggregates
		aggs      []aggSpec // the aggregates the fields refer to (aggRefExpr)
	}
	// insertStmt is INSERT or REPLACE ... VALUES.
	insertStmt struct {
		table   *tableDef
		replace bool
		cols    []int    // table column of each value
		rows    [][]expr // nil entry: DEFAULT
	}
	// deleteStmt is DELETE FROM t [WHERE] [ORDER BY] [LIMIT].
	deleteStmt struct {
		table *tableDef
		where expr
		order []orderItem
		limit expr
	}
	// setStmt is SET: user variables are kept, system variables accepted
	// and ignored.
	setStmt struct {
		vars []userAssign
	}
	// showStmt is SHOW ... (and DESCRIBE).
	showStmt struct {
		what   showKind
		full   bool
		table  *tableDef // SHOW COLUMNS
		like   expr      // LIKE pattern, nil when none
		where  expr      // WHERE over the SHOW result, nil when none
		schema []Column  // the result columns (WHERE resolves against them)
	}
	// useStmt is USE db.
	useStmt struct{ db string }
	// noopStmt is a statement accepted without effect (BEGIN, COMMIT...).
	noopStmt struct{}
)

type selectField struct {
	col Column
	e   expr
	agg bool // e refers to aggregates
}

// aggSpec is an aggregate function over the selected rows; fields read its
// value through aggRefExpr.
type aggSpec struct {
	kind aggKind
	arg  expr // nil for COUNT(*)
	col  Column
}

type aggKind uint8

const (
	aggCount aggKind = iota + 1
	aggMin
	aggMax
)

type orderItem struct {
	e    expr
	desc bool
}

type userAssign struct {
	name string
	e    expr
}

type showKind uint8

const (
	showDatabases showKind = iota
	showTables
	showColumns
	showStatus
	showVariables
	showProcessList
	showTableStatus
	showWarnings
	showCollation
	showCharset
	showEngines
	showCreateTable
	showIndex
	showCreateDatabase
)

// scope resolves column names while translating an expression.
type scope struct {
	table *tableDef // nil outside a table
	alias string    // the table's alias, "" when none
	cols  []Column  // columns by index (the table's or a SHOW result's)
	where string    // "field list", "where clause", "order clause"
}

func (sc *scope) resolve(n *ast.ColumnName) (expr, error) {
	name := n.Name.O
	full := name
	if n.Table.O != "" {
		full = n.Table.O + "." + name
	}
	if n.Schema.O != "" {
		full = n.Schema.O + "." + full
		if !strings.EqualFold(n.Schema.O, DatabaseName) {
			return nil, errUnknownColumn(full, sc.where)
		}
	}
	if n.Table.O != "" && sc.table != nil {
		if !strings.EqualFold(n.Table.O, sc.table.name) && !strings.EqualFold(n.Table.O, sc.alias) {
			return nil, errUnknownColumn(full, sc.where)
		}
	}
	for i, c := range sc.cols {
		if strings.EqualFold(c.Name, name) {
			return colExpr{i}, nil
		}
	}
	return nil, errUnknownColumn(full, sc.where)
}

// translator turns one parsed statement into a statement value. It counts
// the placeholders it meets.
type translator struct {
	params   int
	aggs     []aggSpec // aggregates of the select list being translated
	allowAgg bool      // aggregates are allowed here (select list)
}

func restore(n ast.Node) string {
	var b strings.Builder
	if err := n.Restore(format.NewRestoreCtx(format.DefaultRestoreFlags, &b)); err != nil {
		return fmt.Sprintf("%T", n)
	}
	s := b.String()
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

// markerCollector lists the placeholders of a statement.
type markerCollector struct {
	list []*test_driver.ParamMarkerExpr
}

func (c *markerCollector) Enter(n ast.Node) (ast.Node, bool) {
	if p, ok := n.(*test_driver.ParamMarkerExpr); ok {
		c.list = append(c.list, p)
	}
	return n, false
}

func (c *markerCollector) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// numberMarkers numbers the placeholders of a statement in text order (the
// parser leaves that to the planner).
func numberMarkers(n ast.StmtNode) {
	c := &markerCollector{}
	n.Accept(c)
	sort.SliceStable(c.list, func(i, j int) bool { return c.list[i].Offset < c.list[j].Offset })
	for i, p := range c.list {
		p.Order = i
	}
}

func (tr *translator) statement(n ast.StmtNode) (any, error) {
	numberMarkers(n)
	switch s := n.(type) {
	case *ast.SelectStmt:
		return tr.selectStmt(s)
	case *ast.InsertStmt:
		return tr.insertStmt(s)
	case *ast.DeleteStmt:
		return tr.deleteStmt(s)
	case *ast.SetStmt:
		return tr.setStmt(s)
	case *ast.ShowStmt:
		return tr.showStmt(s)
	case *ast.ExplainStmt:
		if sh, ok := s.Stmt.(*ast.ShowStmt); ok && sh.Tp == ast.ShowColumns {
			return tr.showStmt(sh)
		}
		return nil, errUnsupported("EXPLAIN")
	case *ast.UseStmt:
		return &useStmt{db: s.DBName}, nil
	case *ast.BeginStmt, *ast.CommitStmt, *ast.RollbackStmt:
		return &noopStmt{}, nil
	case *ast.UpdateStmt:
		return nil, errUnsupported("UPDATE (use INSERT or REPLACE)")
	}
	return nil, errUnsupported(statementName(n))
}

// statementName names a statement type for an error message.
func statementName(n ast.StmtNode) string {
	name := fmt.Sprintf("%T", n)
	name = strings.TrimPrefix(name, "*ast.")
	name = strings.TrimSuffix(name, "Stmt")
	return strings.ToUpper(name) + " statements"
}

// tableRef resolves a FROM/INTO clause to one virtual table. dual (and no
// clause) gives nil.
func tableRef(refs *ast.TableRefsClause) (*tableDef, string, error) {
	if refs == nil || refs.TableRefs == nil {
		return nil, "", nil
	}
	j := refs.TableRefs
	if j.Right != nil {
		return nil, "", errUnsupported("JOIN")
	}
	ts, ok := j.Left.(*ast.TableSource)
	if !ok {
		return nil, "", errUnsupported("JOIN")
	}
	tn, ok := ts.Source.(*ast.TableName)
	if !ok {
		return nil, "", errUnsupported("subqueries")
	}
	t, err := lookupTableName(tn)
	return t, ts.AsName.O, err
}

func lookupTableName(tn *ast.TableName) (*tableDef, error) {
	if tn.Schema.O != "" && !strings.EqualFold(tn.Schema.O, DatabaseName) {
		return nil, errUnknownDB(tn.Schema.O)
	}
	if tn.Schema.O == "" && tn.Name.L == "dual" {
		return nil, nil
	}
	t := lookupTable(tn.Name.O)
	if t == nil {
		return nil, errUnknownTable(tn.Name.O)
	}
	return t, nil
}

func (tr *translator) selectStmt(s *ast.SelectStmt) (*selectStmt, error) {
	switch {
	case s.Kind != ast.SelectStmtKindSelect:
		return nil, errUnsupported("TABLE and VALUES statements")
	case s.With != nil:
		return nil, errUnsupported("WITH")
	case s.Distinct:
		return nil, errUnsupported("DISTINCT")
	case s.GroupBy != nil:
		return nil, errUnsupported("GROUP BY")
	case s.Having != nil:
		return nil, errUnsupported("HAVING")
	case len(s.WindowSpecs) > 0:
		return nil, errUnsupported("window functions")
	case s.SelectIntoOpt != nil:
		return nil, errUnsupported("SELECT ... INTO")
	}
	t, alias, err := tableRef(s.From)
	if err != nil {
		return nil, err
	}
	st := &selectStmt{table: t}
	sc := &scope{table: t, alias: alias, where: "field list"}
	if t != nil {
		sc.cols = t.columns()
	}
	hasPlain := false
	for _, f := range s.Fields.Fields {
		if f.WildCard != nil {
			if t == nil {
				return nil, NewError(ErrCodeNoTablesUsed, "No tables used")
			}
			if f.WildCard.Table.O != "" && !strings.EqualFold(f.WildCard.Table.O, t.name) && !strings.EqualFold(f.WildCard.Table.O, alias) {
				return nil, errUnknownTable(f.WildCard.Table.O)
			}
			for i, c := range sc.cols {
				st.fields = append(st.fields, selectField{col: c, e: colExpr{i}})
			}
			hasPlain = true
			continue
		}
		sf, err := tr.selectField(f, sc)
		if err != nil {
			return nil, err
		}
		if sf.agg {
			st.aggregate = true
		}
		if dependsOnRow(sf.e) {
			hasPlain = true
		}
		st.fields = append(st.fields, sf)
	}
	st.aggs, tr.aggs, tr.allowAgg = tr.aggs, nil, false
	if st.aggregate && hasPlain {
		return nil, NewError(ErrCodeMixAggregate, "In aggregated query without GROUP BY, the SELECT list mixes aggregates and columns")
	}
	if s.Where != nil {
		sc.where = "where clause"
		if st.where, err = tr.expr(s.Where, sc); err != nil {
			return nil, err
		}
	}
	if s.OrderBy != nil {
		sc.where = "order clause"
		if st.order, err = tr.orderBy(s.OrderBy, sc, st.fields); err != nil {
			return nil, err
		}
	}
	if s.Limit != nil {
		if st.limit, st.offset, err = tr.limit(s.Limit); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func (tr *translator) selectField(f *ast.SelectField, sc *scope) (selectField, error) {
	name := f.AsName.O
	tr.allowAgg = true
	first := len(tr.aggs)
	e, err := tr.expr(f.Expr, sc)
	if err != nil {
		return selectField{}, err
	}
	if name == "" {
		switch x := f.Expr.(type) {
		case *ast.ColumnNameExpr:
			name = x.Name.Name.O
			if c, ok := e.(colExpr); ok {
				name = sc.cols[c.i].Name
			}
		case *test_driver.ValueExpr:
			if x.Kind() == test_driver.KindString {
				name = x.GetString()
			} else {
				name = fieldText(f)
			}
		default:
			name = fieldText(f)
		}
	}
	sf := selectField{col: exprColumn(e, sc, name), e: e, agg: len(tr.aggs) > first}
	if r, ok := e.(aggRefExpr); ok {
		sf.col = tr.aggs[r.i].col
		sf.col.Name = name
	}
	return sf, nil
}

func (tr *translator) orderBy(ob *ast.OrderByClause, sc *scope, fields []selectField) ([]orderItem, error) {
	var out []orderItem
	for _, it := range ob.Items {
		item := orderItem{desc: it.Desc}
		switch x := it.Expr.(type) {
		case *ast.PositionExpr:
			if x.P != nil {
				return nil, errUnsupported("placeholders in ORDER BY")
			}
			if pos := int64(x.N); pos >= 1 {
				if int(pos) > len(fields) {
					return nil, errUnknownColumn(strconv.FormatInt(pos, 10), "order clause")
				}
				f := fields[pos-1]
				if f.agg {
					continue // one row: nothing to order
				}
				item.e = f.e
				out = append(out, item)
				continue
			}
		case *ast.ColumnNameExpr:
			if x.Name.Table.O == "" {
				found := false
				for _, f := range fields {
					if !f.agg && strings.EqualFold(f.col.Name, x.Name.Name.O) {
						item.e = f.e
						found = true
						break
					}
				}
				if found {
					out = append(out, item)
					continue
				}
			}
		}
		e, err := tr.expr(it.Expr, sc)
		if err != nil {
			return nil, err
		}
		item.e = e
		out = append(out, item)
	}
	return out, nil
}

func (tr *translator) limit(l *ast.Limit) (count, offset expr, err error) {
	one := func(n ast.ExprNode) (expr, error) {
		switch x := n.(type) {
		case *test_driver.ParamMarkerExpr:
			return tr.param(x), nil
		case *test_driver.ValueExpr:
			v := normalize(x.GetValue())
			if _, ok := v.(int64); !ok {
				return nil, errSyntax("LIMIT takes non-negative integers")
			}
			return constExpr{v}, nil
		}
		return nil, errSyntax("LIMIT takes non-negative integers")
	}
	if l.Count != nil {
		if count, err = one(l.Count); err != nil {
			return nil, nil, err
		}
	}
	if l.Offset != nil {
		if offset, err = one(l.Offset); err != nil {
			return nil, nil, err
		}
	}
	return count, offset, nil
}

func (tr *translator) param(p *test_driver.ParamMarkerExpr) expr {
	if p.Order+1 > tr.params {
		tr.params = p.Order + 1
	}
	return paramExpr{p.Order}
}

func (tr *translator) insertStmt(s *ast.InsertStmt) (*insertStmt, error) {
	switch {
	case s.Select != nil:
		return nil, errUnsupported("INSERT ... SELECT")
	case s.IgnoreErr:
		return nil, errUnsupported("INSERT IGNORE")
	case len(s.OnDuplicate) > 0:
		return nil, errUnsupported("ON DUPLICATE KEY UPDATE (use REPLACE)")
	case len(s.PartitionNames) > 0:
		return nil, errUnsupported("PARTITION")
	}
	t, _, err := tableRef(s.Table)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, errUnknownTable("dual")
	}
	if t.readOnly {
		return nil, errReadOnly(t.name)
	}
	if s.IsReplace && !t.primary {
		return nil, errUnsupported(fmt.Sprintf("REPLACE INTO %s: the table has no key, use INSERT", t.name))
	}
	st := &insertStmt{table: t, replace: s.IsReplace}
	if len(s.Columns) == 0 {
		for i := range t.cols {
			st.cols = append(st.cols, i)
		}
	} else {
		seen := make(map[int]bool, len(s.Columns))
		for _, c := range s.Columns {
			if c.Table.O != "" && !strings.EqualFold(c.Table.O, t.name) {
				return nil, errUnknownColumn(c.Table.O+"."+c.Name.O, "field list")
			}
			i := t.colIndex(c.Name.O)
			if i < 0 {
				return nil, errUnknownColumn(c.Name.O, "field list")
			}
			if seen[i] {
				return nil, NewError(ErrCodeFieldTwice, "Column '%s' specified twice", t.cols[i].name)
			}
			seen[i] = true
			st.cols = append(st.cols, i)
		}
	}
	sc := &scope{where: "field list"}
	for r, list := range s.Lists {
		if len(list) != len(st.cols) {
			return nil, errColumnCount(r + 1)
		}
		row := make([]expr, len(list))
		for i, n := range list {
			if _, ok := n.(*ast.DefaultExpr); ok {
				continue
			}
			e, err := tr.expr(n, sc)
			if err != nil {
				return nil, err
			}
			row[i] = e
		}
		st.rows = append(st.rows, row)
	}
	return st, nil
}

func (tr *translator) deleteStmt(s *ast.DeleteStmt) (*deleteStmt, error) {
	switch {
	case s.IsMultiTable:
		return nil, errUnsupported("multi-table DELETE")
	case s.With != nil:
		return nil, errUnsupported("WITH")
	}
	t, alias, err := tableRef(s.TableRefs)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, errUnknownTable("dual")
	}
	if t.readOnly {
		return nil, errReadOnly(t.name)
	}
	st := &deleteStmt{table: t}
	sc := &scope{table: t, alias: alias, cols: t.columns(), where: "where clause"}
	if s.Where != nil {
		if st.where, err = tr.expr(s.Where, sc); err != nil {
			return nil, err
		}
	}
	if s.Order != nil {
		sc.where = "order clause"
		if st.order, err = tr.orderBy(s.Order, sc, nil); err != nil {
			return nil, err
		}
	}
	if s.Limit != nil {
		if st.limit, _, err = tr.limit(s.Limit); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func (tr *translator) setStmt(s *ast.SetStmt) (*setStmt, error) {
	st := &setStmt{}
	for _, v := range s.Variables {
		if v.IsSystem || v.Name == ast.SetNames || v.Name == ast.SetCharset {
			continue // accepted and ignored
		}
		if v.Value == nil {
			continue
		}
		e, err := tr.expr(v.Value, &scope{where: "field list"})
		if err != nil {
			return nil, err
		}
		st.vars = append(st.vars, userAssign{name: strings.ToLower(v.Name), e: e})
	}
	return st, nil
}

func (tr *translator) showStmt(s *ast.ShowStmt) (*showStmt, error) {
	st := &showStmt{full: s.Full}
	switch s.Tp {
	case ast.ShowDatabases:
		st.what = showDatabases
	case ast.ShowTables:
		st.what = showTables
		if s.DBName != "" && !strings.EqualFold(s.DBName, DatabaseName) {
			return nil, errUnknownDB(s.DBName)
		}
	case ast.ShowColumns:
		st.what = showColumns
		if s.Table == nil {
			return nil, errSyntax("SHOW COLUMNS needs a table")
		}
		tn := *s.Table
		if s.DBName != "" {
			tn.Schema = ast.NewCIStr(s.DBName)
		}
		t, err := lookupTableName(&tn)
		if err != nil {
			return nil, err
		}
		if t == nil {
			return nil, errUnknownTable(tn.Name.O)
		}
		st.table = t
	case ast.ShowStatus:
		st.what = showStatus
	case ast.ShowVariables:
		st.what = showVariables
	case ast.ShowProcessList:
		st.what = showProcessList
	case ast.ShowTableStatus:
		st.what = showTableStatus
		if s.DBName != "" && !strings.EqualFold(s.DBName, DatabaseName) {
			return nil, errUnknownDB(s.DBName)
		}
	case ast.ShowWarnings, ast.ShowErrors:
		st.what = showWarnings
		if s.CountWarningsOrErrors {
			return nil, errUnsupported("SHOW COUNT(*) WARNINGS")
		}
	case ast.ShowCollation:
		st.what = showCollation
	case ast.ShowCharset:
		st.what = showCharset
	case ast.ShowEngines:
		st.what = showEngines
	case ast.ShowCreateDatabase:
		st.what = showCreateDatabase
		if !strings.EqualFold(s.DBName, DatabaseName) {
			return nil, errUnknownDB(s.DBName)
		}
	case ast.ShowIndex:
		st.what = showIndex
		tn := *s.Table
		if s.DBName != "" {
			tn.Schema = ast.NewCIStr(s.DBName)
		}
		t, err := lookupTableName(&tn)
		if err != nil {
			return nil, err
		}
		if t == nil {
			return nil, errUnknownTable(tn.Name.O)
		}
		st.table = t
	case ast.ShowCreateTable:
		st.what = showCreateTable
		t, err := lookupTableName(s.Table)
		if err != nil {
			return nil, err
		}
		if t == nil {
			return nil, errUnknownTable(s.Table.Name.O)
		}
		st.table = t
	default:
		return nil, errUnsupported("this SHOW statement")
	}
	st.schema = showSchema(st)
	sc := &scope{cols: st.schema, where: "where clause"}
	if s.Pattern != nil {
		if !s.Pattern.IsLike {
			return nil, errUnsupported("ILIKE")
		}
		p, err := tr.expr(s.Pattern.Pattern, sc)
		if err != nil {
			return nil, err
		}
		st.like = p
	}
	if s.Where != nil {
		w, err := tr.expr(s.Where, sc)
		if err != nil {
			return nil, err
		}
		st.where = w
	}
	return st, nil
}
