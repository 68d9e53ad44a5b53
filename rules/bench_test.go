package rules

import (
	"fmt"
	"math/rand/v2"
	goruntime "runtime"
	"strings"
	"testing"
	"time"
)

// benchSet is n rules keyed by account: half filters, half one-minute
// look-back aggregates (count and sum), thresholds set so few hit.
func benchSet(b *testing.B, n int) *Set {
	var doc strings.Builder
	for i := range n {
		if i > 0 {
			doc.WriteString("---\n")
		}
		if i%2 == 0 {
			fmt.Fprintf(&doc, "id: f%d\nkind: filter\nkey: [accountId]\nparams: {max: %d}\ncondition: 'e.amount > p.max'\n", i, 990+i%10)
		} else {
			fmt.Fprintf(&doc, "id: a%d\nkind: aggregate\nkey: [accountId]\nparams: {max: %d}\nwindow: {type: lookback, size: 1m}\n"+
				"aggregates: {n: {fn: count}, total: {fn: sum, of: e.amount}}\ncondition: 'agg.total > p.max && agg.n > 2'\n", i, 2900+i%10)
		}
	}
	specs, err := Parse("bench.yaml", []byte(doc.String()))
	if err != nil {
		b.Fatal(err)
	}
	set, err := Compile(specs)
	if err != nil {
		b.Fatal(err)
	}
	return set
}

// BenchmarkEngine is events/s through n rules on 100 000 keys, one
// goroutine, from empty state: most events are a key's first, so this
// includes creating each rule's state for the key.
// 10 000 rules are measured here only: warming 1000 keys up through them
// would take minutes.
func BenchmarkEngine(b *testing.B) { benchEngine(b, 100_000, false, 1, 10, 100, 1000, 10_000) }

// BenchmarkEngineHot is the same on 1000 keys whose states all exist:
// the steady cost of evaluating the rules.
func BenchmarkEngineHot(b *testing.B) { benchEngine(b, 1000, true, 1, 10, 100, 1000) }

func benchEngine(b *testing.B, keys int, warm bool, counts ...int) {
	r := rand.New(rand.NewPCG(1, 2))
	events := make([]Event, 1<<16)
	for i := range events {
		events[i] = Event{TS: int64(i) * 10, Fields: map[string]any{
			"accountId": float64(r.IntN(keys)), "amount": float64(r.IntN(1000)), "ts": float64(i * 10)}}
	}
	for _, n := range counts {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			set := benchSet(b, n)
			e := NewEngine(set)
			var out []Alert
			var err error
			// Event time grows by 10 ms per event, across the warm-up and
			// the laps of the ring, and the watermark follows it as in Run,
			// so look-back entries and their cleanup timers expire steadily.
			step := func(i int) {
				ev := &events[i&(len(events)-1)]
				ev.TS = int64(i) * 10
				if out, err = e.Advance(ev.TS-1, out[:0]); err != nil {
					b.Fatal(err)
				}
				if out, err = e.Process(ev, out); err != nil {
					b.Fatal(err)
				}
			}
			warmN := 0
			if warm {
				warmN = min(len(events), 10*keys) // every key, with high probability
				for i := range warmN {
					step(i)
				}
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

// BenchmarkStateBytes is the heap one key's state takes per rule, for the
// rule mix of BenchmarkEngine (half stateless filters): what bounds
// rules × keys in memory.
func BenchmarkStateBytes(b *testing.B) {
	const rules, keys = 100, 10_000
	set := benchSet(b, rules)
	for range b.N {
		e := NewEngine(set)
		var ms0, ms1 goruntime.MemStats
		goruntime.GC()
		goruntime.ReadMemStats(&ms0)
		var out []Alert
		for k := range keys {
			ev := Event{TS: int64(k), Fields: map[string]any{"accountId": float64(k), "amount": 1.0}}
			out, _ = e.Process(&ev, out[:0])
		}
		goruntime.GC()
		goruntime.ReadMemStats(&ms1)
		b.ReportMetric(float64(ms1.HeapAlloc-ms0.HeapAlloc)/float64(keys*rules/2), "B/aggregate-state")
		goruntime.KeepAlive(e)
	}
}

// BenchmarkCompiledSet is the heap a compiled set of 10 000 rules (the mix
// of BenchmarkEngine) takes per rule, and the time to compile it: what a
// rule change costs the rule source and every subtask, which recompile
// the whole set from its sources.
func BenchmarkCompiledSet(b *testing.B) {
	const n = 10_000
	for range b.N {
		var ms0, ms1 goruntime.MemStats
		goruntime.GC()
		goruntime.ReadMemStats(&ms0)
		start := time.Now()
		set := benchSet(b, n)
		took := time.Since(start)
		goruntime.GC()
		goruntime.ReadMemStats(&ms1)
		b.ReportMetric(float64(ms1.HeapAlloc-ms0.HeapAlloc)/n, "B/rule")
		b.ReportMetric(took.Seconds(), "s/compile")
		goruntime.KeepAlive(set)
	}
}
