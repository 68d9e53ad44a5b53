package rules

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkKeyGroupHot is BenchmarkEngineHot's workload as the rules job's
// evaluator runs it: every key's rule states are decoded from keyed state
// before its event and encoded into a new stored value after it (the
// memory backend keeps the *KeyStates; a snapshot serialises it later, off
// this path). The difference to BenchmarkEngineHot is the price of rule
// state that checkpoints carry.
func BenchmarkKeyGroupHot(b *testing.B) {
	const keys = 1000
	r := rand.New(rand.NewPCG(1, 2))
	events := make([]Event, 1<<16)
	for i := range events {
		events[i] = Event{TS: int64(i) * 10, Fields: map[string]any{
			"accountId": float64(r.IntN(keys)), "amount": float64(r.IntN(1000)), "ts": float64(i * 10)}}
	}
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			set := benchSet(b, n)
			g := NewKeyGroup(set.Rules)
			store := make(map[string]*KeyStates, keys)
			var out []Alert
			var err error
			var dropped []Dropped
			step := func(i int) {
				ev := &events[i&(len(events)-1)]
				ev.TS = int64(i) * 10
				k := strconv.FormatFloat(ev.Fields["accountId"].(float64), 'g', -1, 64)
				dropped = g.Load(store[k], dropped[:0])
				if out, err = g.Fire(ev.TS-1, out[:0]); err != nil {
					b.Fatal(err)
				}
				if out, err = g.Process(ev, out); err != nil {
					b.Fatal(err)
				}
				if out, err = g.Fire(ev.TS, out); err != nil {
					b.Fatal(err)
				}
				ks, err := g.Store()
				if err != nil {
					b.Fatal(err)
				}
				store[k] = ks
			}
			warmN := min(len(events), 10*keys)
			for i := range warmN {
				step(i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				step(warmN + i)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/rule-eval")
		})
	}
}

// BenchmarkKeyGroupIndexed is an event of a key through a group of 10,000
// indexed rules (one per merchant, as in the rule-change benchmark of
// cmd/weir) and one look-back aggregate, the events naming no merchant:
// the index runs the aggregate only, so what is left is the price of
// loading, firing and storing a key in a group that size.
func BenchmarkKeyGroupIndexed(b *testing.B) {
	const keys = 1000
	var doc strings.Builder
	for i := range 10_000 {
		fmt.Fprintf(&doc, "---\nid: m%d\nkey: [accountId]\nkind: filter\nparams: {m: m%d, max: %d}\ncondition: 'e.merchant == p.m && e.amount > p.max'\n", i, i, 1000+i%100)
	}
	doc.WriteString("---\nid: agg\nkind: aggregate\nkey: [accountId]\nparams: {max: 2900}\nwindow: {type: lookback, size: 1m}\n" +
		"aggregates: {n: {fn: count}, total: {fn: sum, of: e.amount}}\ncondition: 'agg.total > p.max && agg.n > 2'\n")
	specs, err := Parse("bench.yaml", []byte(doc.String()))
	if err != nil {
		b.Fatal(err)
	}
	set, err := Compile(specs)
	if err != nil {
		b.Fatal(err)
	}
	g := NewKeyGroup(set.Rules)
	if g.index == nil {
		b.Fatal("the group is not indexed")
	}
	r := rand.New(rand.NewPCG(1, 2))
	store := make(map[int]*KeyStates, keys)
	var out []Alert
	var dropped []Dropped
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := r.IntN(keys)
		ev := Event{TS: int64(i) * 10, Fields: map[string]any{"accountId": float64(k), "amount": float64(r.IntN(1000))}}
		dropped = g.Load(store[k], dropped[:0])
		if out, err = g.Fire(ev.TS-1, out[:0]); err != nil {
			b.Fatal(err)
		}
		if out, err = g.Process(&ev, out); err != nil {
			b.Fatal(err)
		}
		if out, err = g.Fire(ev.TS, out); err != nil {
			b.Fatal(err)
		}
		if store[k], err = g.Store(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeyGroupChange is what an evaluator pays for the group of a
// rule key of 10,000 indexed rules when one of them changes: a new group
// (new) or the one before's successor (next).
func BenchmarkKeyGroupChange(b *testing.B) {
	var docs []Doc
	for i := range 10_000 {
		docs = append(docs, Doc{File: "c.yaml", Version: 1, Source: fmt.Appendf(nil,
			"id: m%05d\nkey: [accountId]\nkind: filter\nparams: {m: m%d, max: %d}\ncondition: 'e.merchant == p.m && e.amount > p.max'\n", i, i, 1000+i%100)})
	}
	set, err := CompileDocs(docs)
	if err != nil {
		b.Fatal(err)
	}
	// Two versions of one rule, compiled once: what is measured is the group.
	var sets [2]*Set
	for v := range sets {
		d := docs[5000]
		d.Version = int64(2 + v)
		if sets[v], err = set.With([]Doc{d}, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("new", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			NewKeyGroup(sets[i%2].Rules)
		}
	})
	b.Run("next", func(b *testing.B) {
		g := NewKeyGroup(sets[0].Rules)
		for i := 1; b.Loop(); i++ {
			g = g.Next(sets[i%2].Rules)
		}
	})
}
