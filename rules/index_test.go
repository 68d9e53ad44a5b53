package rules

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	goruntime "runtime"
	"slices"
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
	for i := range 40 { // 82 rules: more than denseStates
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

	// The job's evaluator, a KeyGroup over stored state, uses the index
	// too and gives the alerts of running every rule.
	k := newKeyedRun(t, set)
	for _, g := range k.groups {
		if g.index == nil {
			t.Fatal("the key group has no index")
		}
	}
	k.run(events)
	if g, w := sortedJSON(t, k.alerts), sortedJSON(t, a2); !slices.Equal(g, w) {
		t.Errorf("keyed run with the index: %d alerts, running every rule: %d", len(g), len(w))
	}
}

// BenchmarkEngineIndexed is events/s through n rules of the HanSight kind
// on 100 000 keys: one rule per merchant (n/2 filters `e.merchant == p.m
// && e.amount > p.max`, n/2 one-minute look-backs with `when: e.merchant
// == p.m`), events spread over n/2 merchants, with the index (indexed)
// and running every rule (all); and the compiled set's heap per rule.
func BenchmarkEngineIndexed(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000, 10_000} {
		var doc strings.Builder
		for i := range n {
			m := i / 2
			if i%2 == 0 {
				fmt.Fprintf(&doc, "---\nid: f%d\nkind: filter\nkey: [accountId]\nparams: {m: m%d, max: %d}\ncondition: 'e.merchant == p.m && e.amount > p.max'\n", i, m, 990+i%10)
			} else {
				fmt.Fprintf(&doc, "---\nid: a%d\nkind: aggregate\nkey: [accountId]\nparams: {m: m%d, max: %d}\nwhen: 'e.merchant == p.m'\nwindow: {type: lookback, size: 1m}\n"+
					"aggregates: {n: {fn: count}, total: {fn: sum, of: e.amount}}\ncondition: 'agg.total > p.max && agg.n > 2'\n", i, m, 2900+i%10)
			}
		}
		var ms0, ms1 goruntime.MemStats
		goruntime.GC()
		goruntime.ReadMemStats(&ms0)
		specs, err := Parse("bench.yaml", []byte(doc.String()))
		if err != nil {
			b.Fatal(err)
		}
		set, err := Compile(specs)
		if err != nil {
			b.Fatal(err)
		}
		goruntime.GC()
		goruntime.ReadMemStats(&ms1)
		perRule := float64(ms1.HeapAlloc-ms0.HeapAlloc) / float64(n)
		r := rand.New(rand.NewPCG(1, 2))
		events := make([]Event, 1<<16)
		for i := range events {
			events[i] = Event{Fields: map[string]any{"accountId": float64(r.IntN(100_000)), "amount": float64(r.IntN(1000)),
				"merchant": fmt.Sprintf("m%d", r.IntN(max(n/2, 1)))}}
		}
		for _, indexed := range []bool{false, true} {
			name := map[bool]string{false: "all", true: "indexed"}[indexed]
			b.Run(fmt.Sprintf("rules=%d/%s", n, name), func(b *testing.B) {
				if !indexed && n == 10_000 && b.N > 200 {
					b.Skip("minutes")
				}
				indexRules = indexed
				e := NewEngine(set)
				indexRules = true
				var out []Alert
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					ev := &events[i&(len(events)-1)]
					ev.TS = int64(i) * 10
					if out, err = e.Advance(ev.TS-1, out[:0]); err != nil {
						b.Fatal(err)
					}
					if out, err = e.Process(ev, out); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(perRule, "B/rule")
			})
		}
		goruntime.KeepAlive(set)
	}
}

// TestKeyGroupNextEqualsNewKeyGroup: a group made by Next from the one
// before, after rules replaced in place (a new guard value, a guard on the
// other field, none, a pause, a resume), indexes and books its rules as
// NewKeyGroup does, and the group before is left as it was.
func TestKeyGroupNextEqualsNewKeyGroup(t *testing.T) {
	src := func(i, v int, state string) Doc {
		var d string
		switch v % 3 {
		case 0:
			d = fmt.Sprintf("id: r%03d\nkind: filter\nkey: [acct]\nparams: {m: m%d}\ncondition: 'e.merchant == p.m && e.amount > 1'\n", i, (i+v)%7)
		case 1:
			d = fmt.Sprintf("id: r%03d\nkind: filter\nkey: [acct]\ncondition: 'e.country == \"c%d\" && e.amount > 1'\n", i, (i+v)%3)
		default:
			d = fmt.Sprintf("id: r%03d\nkind: filter\nkey: [acct]\ncondition: 'e.amount > %d'\n", i, v)
		}
		return Doc{File: "n.yaml", Source: []byte(d), Version: int64(v + 1), State: state}
	}
	var docs []Doc
	for i := range 120 {
		docs = append(docs, src(i, i%3*3, "active")) // merchants, countries, unguarded alike
	}
	set, err := CompileDocs(docs)
	if err != nil {
		t.Fatal(err)
	}
	events := []map[string]any{{"acct": "a"}}
	for m := range 8 {
		for c := range 4 {
			events = append(events, map[string]any{"acct": "a", "merchant": fmt.Sprintf("m%d", m), "country": fmt.Sprintf("c%d", c)})
		}
	}
	candidates := func(g *KeyGroup) [][]int {
		var out [][]int
		for _, ev := range events {
			out = append(out, slices.Clone(g.index.candidates(ev)))
		}
		return out
	}
	r := rand.New(rand.NewPCG(3, 4))
	g := NewKeyGroup(set.Rules)
	for step := range 30 {
		before := candidates(g)
		var changed []Doc
		picked := map[int]bool{}
		for range 1 + r.IntN(4) {
			i := r.IntN(len(docs))
			if picked[i] {
				continue
			}
			picked[i] = true
			state := []string{"active", "paused", "shadow"}[r.IntN(3)]
			docs[i] = src(i, int(docs[i].Version)+r.IntN(3), state)
			changed = append(changed, docs[i])
		}
		next, err := set.With(changed, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, want := g.Next(next.Rules), NewKeyGroup(next.Rules)
		if !sameLists(candidates(n), candidates(want)) {
			t.Fatalf("step %d: Next's index finds other rules than a new group's", step)
		}
		if !slices.Equal(n.ids, want.ids) || !reflect.DeepEqual(n.byID, want.byID) || !slices.Equal(n.paused, want.paused) ||
			!slices.Equal(n.all, want.all) || n.active != want.active || !reflect.DeepEqual(n.StatsView(), want.StatsView()) {
			t.Fatalf("step %d: Next's bookkeeping differs from a new group's", step)
		}
		if !sameLists(candidates(g), before) {
			t.Fatalf("step %d: Next changed the group before", step)
		}
		set, g = next, n
	}
}

func sameLists(a, b [][]int) bool {
	return slices.EqualFunc(a, b, func(x, y []int) bool { return slices.Equal(x, y) })
}
