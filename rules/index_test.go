package rules

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestGuards(t *testing.T) {
	for src, want := range map[string]*guard{
		`e.merchant == "m1" && e.amount > p.max`:     {"merchant", "m1"},
		`e.merchant == p.m and e.amount > 1`:         {"merchant", "m-p"},
		`p.n == e.n && true && false`:                {"n", 3.0},
		`e.vip == true`:                              {"vip", true},
		`e.amount > 1 && e.merchant == "m1"`:         nil, // not the first operand
		`e.merchant == "m1" || e.amount > 1`:         nil,
		`e?.merchant == "m1"`:                        nil,
		`e.merchant == e.other`:                      nil,
		`e.merchant != "m1"`:                         nil,
		`(e.merchant == "m1" && e.a > 0) && e.b > 0`: {"merchant", "m1"},
	} {
		specs, err := Parse("g.yaml", []byte(fmt.Sprintf("id: g\nkind: filter\nkey: [k]\nparams: {max: 1, m: m-p, n: 3}\ncondition: '%s'\n", strings.ReplaceAll(src, "'", "''"))))
		if err != nil {
			t.Fatal(err)
		}
		set, err := Compile(specs)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got := set.Rules[0].guard; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: guard %+v, want %+v", src, got, want)
		}
	}
}

// TestIndexedEngineEqualsRunningEveryRule: a set of guarded filter rules,
// guarded look-back rules (by when) and unguarded ones gives the same
// alerts, in the same order, and the same counts with the index as
// without.
func TestIndexedEngineEqualsRunningEveryRule(t *testing.T) {
	var doc strings.Builder
	for i := range 30 {
		fmt.Fprintf(&doc, "---\nid: f%d\nkind: filter\nkey: [acct]\nparams: {m: m%d, max: %d}\ncondition: 'e.merchant == p.m && e.amount > p.max'\n", i, i%10, 100*(i%3))
		fmt.Fprintf(&doc, "---\nid: a%d\nkind: aggregate\nkey: [acct]\nwhen: 'e.country == \"c%d\"'\nwindow: {type: lookback, size: 10s}\n"+
			"aggregates: {n: {fn: count}}\ncondition: 'agg.n >= 2'\nemit: {dedupe: {for: 5s}}\n", i, i%4)
	}
	doc.WriteString("---\nid: open\nkind: filter\nkey: [acct]\ncondition: 'e.amount > 250'\n")
	doc.WriteString("---\nid: fails\nkind: filter\nkey: [acct]\ncondition: 'e.merchant == \"m3\" && e.amount > \"x\"'\n")
	specs, err := Parse("idx.yaml", []byte(doc.String()))
	if err != nil {
		t.Fatal(err)
	}
	set, err := Compile(specs)
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	for i := range 400 {
		f := map[string]any{"acct": float64(i % 7), "merchant": fmt.Sprintf("m%d", i%13), "amount": float64(i * 37 % 400), "country": fmt.Sprintf("c%d", i%5)}
		if i%50 == 0 {
			f["merchant"] = 3.0 // a number where the rules compare strings
		}
		events = append(events, Event{Fields: f, TS: int64(i) * 300, Line: i + 1})
	}
	run := func(indexed bool) ([]Alert, []RuleStats, int) {
		indexRules = indexed
		defer func() { indexRules = true }()
		alerts, eng, errs := Run(set, events)
		if idx := eng.groups[0].index; (idx != nil) != indexed {
			t.Fatalf("indexed %v: index %v", indexed, idx)
		}
		return alerts, eng.Stats(), len(errs)
	}
	a1, s1, e1 := run(true)
	a2, s2, e2 := run(false)
	if len(a1) == 0 || e1 == 0 {
		t.Fatalf("%d alerts, %d errors: the test shows nothing", len(a1), e1)
	}
	if !reflect.DeepEqual(a1, a2) {
		t.Errorf("alerts differ: %d indexed, %d not", len(a1), len(a2))
	}
	if !reflect.DeepEqual(s1, s2) || e1 != e2 {
		t.Errorf("stats differ:\n%+v\n%+v\nerrors %d, %d", s1, s2, e1, e2)
	}
}
