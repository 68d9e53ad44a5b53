package rules

import (
	"fmt"
	"math/rand/v2"
	"strconv"
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
