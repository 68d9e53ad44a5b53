package rulesjob

import (
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/rules/store"
)

// BenchmarkRuleChangeAt10000Rules is one change of one rule of 10,000 on
// its way from the rule source to a subtask, in one process: the source
// makes the delta, it is encoded and decoded, the subtask applies it to
// its latest set and builds the group of the rule key (the 10,000 rules
// share one) from the one before. The whole set is reported for comparison: what a change
// cost when it travelled whole (encode, decode through the compile cache).
func BenchmarkRuleChangeAt10000Rules(b *testing.B) {
	s := &liveSource{log: slog.New(slog.DiscardHandler), last: setTime}
	if err := s.InitializeState(nil, nil); err != nil {
		b.Fatal(err)
	}
	rule := func(id string, v int64, max int) store.Entry {
		return store.Entry{ID: id, Version: v, State: store.Active, Kind: "filter", Source: fmt.Sprintf(
			"id: %s\nkey: [accountId]\nkind: filter\nparams: {m: %s, max: %d}\ncondition: 'e.merchant == p.m && e.amount > p.max'\n", id, id, max)}
	}
	var ids []string
	for i := range 10000 {
		e := rule(fmt.Sprintf("m%d", i), 1, 1000+i%100)
		if err := s.setEntry(e); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	var last Change
	out := collectorFunc(func(c Change) { last = c })
	if err := s.change(out, 1, ids); err != nil {
		b.Fatal(err)
	}
	sets := mapSets{}
	whole := ChangeCodec{}.Append(nil, last)
	first, err := ChangeCodec{}.Decode(whole)
	if err != nil {
		b.Fatal(err)
	}
	if err := applyChange(sets, first, 0); err != nil {
		b.Fatal(err)
	}
	var size int
	g := rules.NewKeyGroup(sets[1].Rules)
	b.Run("delta", func(b *testing.B) {
		cpu0 := cpuTime(b)
		for i := range b.N {
			if err := s.setEntry(rule("m5", int64(2+i), i%7)); err != nil {
				b.Fatal(err)
			}
			if err := s.change(out, int64(2+i), []string{"m5"}); err != nil {
				b.Fatal(err)
			}
			buf := ChangeCodec{}.Append(nil, last)
			size = len(buf)
			c, err := ChangeCodec{}.Decode(buf)
			if err != nil {
				b.Fatal(err)
			}
			if err := applyChange(sets, c, int64(2+i)); err != nil {
				b.Fatal(err)
			}
			g = g.Next(sets[int64(2+i)].Rules) // as the evaluator does
		}
		b.ReportMetric(float64(size), "bytes/change")
		// The process's CPU, GC included: on a shared machine the wall
		// time of ns/op says more about the neighbours.
		b.ReportMetric(float64(cpuTime(b)-cpu0)/1e6/float64(b.N), "cpu-ms/change")
	})
	b.Run("whole-set", func(b *testing.B) {
		for range b.N {
			fresh, err := s.set.With(nil, nil) // a new set: not encoded yet
			if err != nil {
				b.Fatal(err)
			}
			buf := ChangeCodec{}.Append(nil, Change{From: 1, Set: fresh})
			size = len(buf)
			if _, err := (ChangeCodec{}).Decode(buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(size), "bytes/change")
	})
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
