package rules

import (
	"maps"
	"slices"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
)

// Indexing rules by an equality on one event field.
//
// Thousands of rules are mostly the same rule for different values: one
// per merchant, country or account class (`e.merchant == "m-17" && e.amount
// > p.max`). An Engine need not run all of them on every event: a rule
// whose pre-filter (`when`) — or, for a filter rule, whose condition —
// starts with `e.<field> == <constant>` (a literal or a param) cannot do
// anything on an event whose field holds another value: expr evaluates
// the left operand of && first, so the rest is not evaluated and cannot
// fail, and a false `when` or filter condition leaves the state as it was.
// The Engine therefore keeps, per group of rules with one key, the guarded
// rules by field and value, and runs on each event the unguarded rules and
// those whose value the event's field holds. The others count the event
// as evaluated (the index evaluated them), so the counts, the alerts and
// the state are those of running every rule.

// guard is a rule's leading equality: e.<field> == value.
type guard struct {
	field string
	value any // normalised: string, float64 or bool
}

// guardOf finds r's guard, if any.
func guardOf(r *Rule) *guard {
	var src string
	switch {
	case r.when != nil:
		src = r.spec.When.Src
	case r.Kind == KindFilter && r.cond != nil:
		src = r.spec.Condition.Src
	default:
		return nil
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return nil
	}
	n := tree.Node
	for {
		b, ok := n.(*ast.BinaryNode)
		if !ok || (b.Operator != "&&" && b.Operator != "and") {
			break
		}
		n = b.Left
	}
	b, ok := n.(*ast.BinaryNode)
	if !ok || b.Operator != "==" {
		return nil
	}
	if f, ok := eventField(b.Left); ok {
		if v, ok := constant(b.Right, r.params); ok {
			return &guard{field: f, value: v}
		}
	}
	if f, ok := eventField(b.Right); ok {
		if v, ok := constant(b.Left, r.params); ok {
			return &guard{field: f, value: v}
		}
	}
	return nil
}

// eventField is the name of e.<field>.
func eventField(n ast.Node) (string, bool) {
	m, ok := n.(*ast.MemberNode)
	if !ok || m.Optional {
		return "", false
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	prop, ok2 := m.Property.(*ast.StringNode)
	if !ok || !ok2 || id.Value != "e" || !plainName.MatchString(prop.Value) || isBuiltin(prop.Value) {
		return "", false
	}
	return prop.Value, true
}

// constant is the value of a literal or of p.<param>, normalised.
func constant(n ast.Node, params map[string]any) (any, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.IntegerNode:
		return float64(x.Value), true
	case *ast.FloatNode:
		return x.Value, true
	case *ast.BoolNode:
		return x.Value, true
	case *ast.MemberNode:
		id, ok := x.Node.(*ast.IdentifierNode)
		prop, ok2 := x.Property.(*ast.StringNode)
		if !ok || !ok2 || x.Optional || id.Value != "p" {
			return nil, false
		}
		v, ok := params[prop.Value]
		if !ok {
			return nil, false
		}
		return indexValue(v)
	}
	return nil, false
}

// indexValue normalises a value the way expr's == compares it: numbers of
// any type as float64; strings and booleans as they are; anything else
// (nil, lists, maps) equals no constant.
func indexValue(v any) (any, bool) {
	switch x := v.(type) {
	case string, bool:
		return x, true
	case float64:
		if x != x { // NaN equals nothing
			return nil, false
		}
		return x, true
	}
	if f, ok := number(v); ok && f == f {
		return f, true
	}
	return nil, false
}

// ruleIndex is a list of rules' guarded ones by field and value;
// positions are indexes into the list.
type ruleIndex struct {
	open   []int // rules without a guard
	fields []string
	by     []map[any][]int // per field
	buf    []int
}

// minIndexed is how many guarded rules a list needs before it is
// indexed: below, running them is as cheap as looking them up.
const minIndexed = 8

// indexRules turns indexing off for tests that compare with running every
// rule.
var indexRules = true

// newRuleIndex indexes rs (the rules of one key, say), or returns nil when
// too few have a guard: then every rule runs on every event.
func newRuleIndex(rs []*Rule) *ruleIndex {
	if !indexRules {
		return nil
	}
	x := &ruleIndex{}
	guarded := 0
	// Sized for the guarded rules up front: a group of 10,000 rules is
	// built again at every change of one of them.
	per := map[string]int{}
	for _, r := range rs {
		if r.guard != nil {
			per[r.guard.field]++
		}
	}
	for i, r := range rs {
		gd := r.guard
		if gd == nil {
			x.open = append(x.open, i)
			continue
		}
		guarded++
		f := slices.Index(x.fields, gd.field)
		if f < 0 {
			f = len(x.fields)
			x.fields = append(x.fields, gd.field)
			x.by = append(x.by, make(map[any][]int, per[gd.field]))
		}
		x.by[f][gd.value] = append(x.by[f][gd.value], i)
	}
	if guarded < minIndexed {
		return nil
	}
	return x
}

// candidates are the positions of the rules that may act on an event
// with fields, in the list's order (so alerts come in the order running
// every rule gives); the others are known to do nothing but count the
// event as evaluated. The slice is reused by the next call.
func (x *ruleIndex) candidates(fields map[string]any) []int {
	c := append(x.buf[:0], x.open...)
	merged := len(c) > 0
	for f, name := range x.fields {
		v, ok := indexValue(fields[name])
		if !ok {
			continue
		}
		if m := x.by[f][v]; len(m) > 0 {
			c = append(c, m...)
			merged = merged || len(c) > len(m)
		}
	}
	if merged {
		slices.Sort(c)
	}
	x.buf = c
	return c
}

// replaced is x with the rules at positions pos replaced by those of rs
// (the group's new list, of the same length): the other positions keep
// their entries. x is not modified (the group it belongs to may still be
// read): the maps and lists that change are copies. It returns nil when
// the result is not an index newRuleIndex would make alike (a guard on a
// new field, too few guarded rules): the caller builds one from scratch.
func (x *ruleIndex) replaced(old, rs []*Rule, pos []int) *ruleIndex {
	y := &ruleIndex{open: x.open, fields: x.fields, by: slices.Clone(x.by)}
	cloned := make([]bool, len(y.by))
	mapOf := func(f int) map[any][]int {
		if !cloned[f] {
			cloned[f], y.by[f] = true, maps.Clone(y.by[f])
		}
		return y.by[f]
	}
	openCloned := false
	for _, i := range pos {
		if g := old[i].guard; g == nil {
			if !openCloned {
				openCloned, y.open = true, slices.Clone(y.open)
			}
			if j, found := slices.BinarySearch(y.open, i); found {
				y.open = slices.Delete(y.open, j, j+1)
			}
		} else {
			f := slices.Index(y.fields, g.field)
			if f < 0 {
				return nil // not indexed as newRuleIndex would have
			}
			m := mapOf(f)
			if l := m[g.value]; len(l) > 0 {
				if j, found := slices.BinarySearch(l, i); found {
					if l = slices.Delete(slices.Clone(l), j, j+1); len(l) == 0 {
						delete(m, g.value)
					} else {
						m[g.value] = l
					}
				}
			}
		}
		if g := rs[i].guard; g == nil {
			if !openCloned {
				openCloned, y.open = true, slices.Clone(y.open)
			}
			j, _ := slices.BinarySearch(y.open, i)
			y.open = slices.Insert(y.open, j, i)
		} else {
			f := slices.Index(y.fields, g.field)
			if f < 0 {
				return nil // a field the index had none of: build anew
			}
			m := mapOf(f)
			l := m[g.value]
			j, _ := slices.BinarySearch(l, i)
			m[g.value] = slices.Insert(slices.Clone(l), j, i)
		}
	}
	if len(rs)-len(y.open) < minIndexed {
		return nil
	}
	return y
}
