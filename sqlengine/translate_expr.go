package sqlengine

import (
	"strconv"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/opcode"
	"github.com/pingcap/tidb/pkg/parser/test_driver"
)

// Translation of scalar expressions (WHERE, select lists, VALUES, LIMIT)
// from the TiDB AST into expr trees.

// dependsOnRow reports whether an expression reads a column.
func dependsOnRow(e expr) bool {
	switch x := e.(type) {
	case colExpr:
		return true
	case cmpExpr:
		return dependsOnRow(x.l) || dependsOnRow(x.r)
	case logicExpr:
		return dependsOnRow(x.l) || dependsOnRow(x.r)
	case arithExpr:
		return dependsOnRow(x.l) || dependsOnRow(x.r)
	case notExpr:
		return dependsOnRow(x.x)
	case negExpr:
		return dependsOnRow(x.x)
	case isNullExpr:
		return dependsOnRow(x.x)
	case isTruthExpr:
		return dependsOnRow(x.x)
	case likeExpr:
		return dependsOnRow(x.x) || dependsOnRow(x.pattern)
	case betweenExpr:
		return dependsOnRow(x.x) || dependsOnRow(x.lo) || dependsOnRow(x.hi)
	case inExpr:
		if dependsOnRow(x.x) {
			return true
		}
		for _, it := range x.list {
			if dependsOnRow(it) {
				return true
			}
		}
	}
	return false
}

// aggregate translates an aggregate function of the select list.
func (tr *translator) aggregate(agg *ast.AggregateFuncExpr, sc *scope) (expr, error) {
	if !tr.allowAgg {
		return nil, NewError(ErrCodeInvalidGroup, "Invalid use of group function")
	}
	if agg.Distinct {
		return nil, errUnsupported(strings.ToUpper(agg.F) + "(DISTINCT ...)")
	}
	if len(agg.Args) != 1 {
		return nil, errUnsupported(strings.ToUpper(agg.F) + " with several arguments")
	}
	spec := aggSpec{col: Column{Type: TypeBigInt, Length: 21}}
	switch strings.ToLower(agg.F) {
	case ast.AggFuncCount:
		spec.kind = aggCount
	case ast.AggFuncMin:
		spec.kind = aggMin
	case ast.AggFuncMax:
		spec.kind = aggMax
	default:
		return nil, errUnsupported("the aggregate function " + strings.ToUpper(agg.F))
	}
	v, isConst := agg.Args[0].(*test_driver.ValueExpr)
	if spec.kind != aggCount || !isConst || v.Kind() == test_driver.KindNull {
		// Aggregates do not nest.
		tr.allowAgg = false
		arg, err := tr.expr(agg.Args[0], sc)
		tr.allowAgg = true
		if err != nil {
			return nil, err
		}
		spec.arg = arg
		if spec.kind != aggCount {
			spec.col = exprColumn(arg, sc, "")
			spec.col.Nullable = true
		}
	}
	tr.aggs = append(tr.aggs, spec)
	return aggRefExpr{len(tr.aggs) - 1}, nil
}

// fieldText is the SQL text of a select field without its alias.
func fieldText(f *ast.SelectField) string {
	t := strings.TrimSpace(f.Text())
	if t == "" {
		return restore(f.Expr)
	}
	return t
}

// exprColumn describes the result column of an expression.
func exprColumn(e expr, sc *scope, name string) Column {
	switch x := e.(type) {
	case colExpr:
		c := sc.cols[x.i]
		c.Name = name
		return c
	case constExpr:
		switch v := x.v.(type) {
		case nil:
			return Column{Name: name, Type: TypeVarChar, Nullable: true}
		case int64:
			return Column{Name: name, Type: TypeBigInt, Length: 21}
		case string:
			return Column{Name: name, Type: TypeVarChar, Length: uint32(len(v))}
		}
		return Column{Name: name, Type: TypeVarChar, Length: 64}
	case cmpExpr, logicExpr, notExpr, inExpr, likeExpr, isNullExpr, isTruthExpr, betweenExpr:
		return Column{Name: name, Type: TypeBigInt, Length: 1, Nullable: true}
	case funcExpr:
		switch x.name {
		case "connection_id", "unix_timestamp", "last_insert_id", "row_count", "found_rows":
			return Column{Name: name, Type: TypeBigInt, Length: 21}
		}
	}
	return Column{Name: name, Type: TypeVarChar, Length: 255, Nullable: true}
}

// expr translates a scalar expression.
func (tr *translator) expr(n ast.ExprNode, sc *scope) (expr, error) {
	switch x := n.(type) {
	case *test_driver.ParamMarkerExpr:
		return tr.param(x), nil
	case *test_driver.ValueExpr:
		return constExpr{datumValue(x)}, nil
	case *ast.ColumnNameExpr:
		return sc.resolve(x.Name)
	case *ast.ParenthesesExpr:
		return tr.expr(x.Expr, sc)
	case *ast.BinaryOperationExpr:
		l, err := tr.expr(x.L, sc)
		if err != nil {
			return nil, err
		}
		r, err := tr.expr(x.R, sc)
		if err != nil {
			return nil, err
		}
		switch x.Op {
		case opcode.EQ:
			return cmpExpr{opEQ, l, r}, nil
		case opcode.NE:
			return cmpExpr{opNE, l, r}, nil
		case opcode.LT:
			return cmpExpr{opLT, l, r}, nil
		case opcode.GT:
			return cmpExpr{opGT, l, r}, nil
		case opcode.LE:
			return cmpExpr{opLE, l, r}, nil
		case opcode.GE:
			return cmpExpr{opGE, l, r}, nil
		case opcode.NullEQ:
			return cmpExpr{opNullEQ, l, r}, nil
		case opcode.LogicAnd:
			return logicExpr{opAnd, l, r}, nil
		case opcode.LogicOr:
			return logicExpr{opOr, l, r}, nil
		case opcode.LogicXor:
			return logicExpr{opXor, l, r}, nil
		case opcode.Plus:
			return arithExpr{'+', l, r}, nil
		case opcode.Minus:
			return arithExpr{'-', l, r}, nil
		case opcode.Mul:
			return arithExpr{'*', l, r}, nil
		case opcode.Div:
			return arithExpr{'/', l, r}, nil
		case opcode.IntDiv:
			return arithExpr{'d', l, r}, nil
		case opcode.Mod:
			return arithExpr{'%', l, r}, nil
		}
		return nil, errUnsupported("the operator " + x.Op.String())
	case *ast.UnaryOperationExpr:
		v, err := tr.expr(x.V, sc)
		if err != nil {
			return nil, err
		}
		switch x.Op {
		case opcode.Minus:
			if c, ok := v.(constExpr); ok {
				return constExpr{negExpr{c}.eval(&env{})}, nil
			}
			return negExpr{v}, nil
		case opcode.Plus:
			return v, nil
		case opcode.Not, opcode.Not2:
			return notExpr{v}, nil
		}
		return nil, errUnsupported("the operator " + x.Op.String())
	case *ast.PatternInExpr:
		if x.Sel != nil {
			return nil, errUnsupported("subqueries")
		}
		v, err := tr.expr(x.Expr, sc)
		if err != nil {
			return nil, err
		}
		in := inExpr{x: v, not: x.Not, list: make([]expr, 0, len(x.List))}
		for _, it := range x.List {
			e, err := tr.expr(it, sc)
			if err != nil {
				return nil, err
			}
			in.list = append(in.list, e)
		}
		return in, nil
	case *ast.PatternLikeOrIlikeExpr:
		if !x.IsLike {
			return nil, errUnsupported("ILIKE")
		}
		v, err := tr.expr(x.Expr, sc)
		if err != nil {
			return nil, err
		}
		p, err := tr.expr(x.Pattern, sc)
		if err != nil {
			return nil, err
		}
		return likeExpr{x: v, pattern: p, esc: rune(x.Escape), not: x.Not}, nil
	case *ast.IsNullExpr:
		v, err := tr.expr(x.Expr, sc)
		if err != nil {
			return nil, err
		}
		return isNullExpr{x: v, not: x.Not}, nil
	case *ast.IsTruthExpr:
		v, err := tr.expr(x.Expr, sc)
		if err != nil {
			return nil, err
		}
		return isTruthExpr{x: v, truth: x.True != 0, not: x.Not}, nil
	case *ast.BetweenExpr:
		v, err := tr.expr(x.Expr, sc)
		if err != nil {
			return nil, err
		}
		lo, err := tr.expr(x.Left, sc)
		if err != nil {
			return nil, err
		}
		hi, err := tr.expr(x.Right, sc)
		if err != nil {
			return nil, err
		}
		return betweenExpr{x: v, lo: lo, hi: hi, not: x.Not}, nil
	case *ast.VariableExpr:
		if x.Value != nil {
			return nil, errUnsupported("assignments in expressions")
		}
		if x.IsSystem {
			return sysVarExpr{strings.ToLower(x.Name)}, nil
		}
		return userVarExpr{strings.ToLower(x.Name)}, nil
	case *ast.FuncCallExpr:
		name := x.FnName.L
		if functions[name] && len(x.Args) == 0 {
			return funcExpr{name}, nil
		}
		return nil, errUnsupported("the function " + strings.ToUpper(x.FnName.O) + "()")
	case *ast.DefaultExpr:
		return nil, errUnsupported("DEFAULT here")
	case *ast.AggregateFuncExpr:
		return tr.aggregate(x, sc)
	}
	return nil, errUnsupported("the expression " + restore(n))
}

// datumValue converts a literal to an engine value.
func datumValue(v *test_driver.ValueExpr) any {
	switch v.Kind() {
	case test_driver.KindNull:
		return nil
	case test_driver.KindInt64:
		return v.GetInt64()
	case test_driver.KindUint64:
		return normalize(v.GetUint64())
	case test_driver.KindFloat32, test_driver.KindFloat64:
		return v.GetFloat64()
	case test_driver.KindString, test_driver.KindBytes:
		return v.GetString()
	case test_driver.KindMysqlDecimal:
		f, err := strconv.ParseFloat(v.GetMysqlDecimal().String(), 64)
		if err != nil {
			return nil
		}
		return f
	case test_driver.KindBinaryLiteral, test_driver.KindMysqlBit:
		return string(v.GetBytes())
	}
	return normalize(v.GetValue())
}
