package runtime

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/statebackend"
)

// entryOp is a keyed operator with string keys and three value states:
// the first two word-sized, so inline in the key's entry, the third in a
// table of its own.
type entryOp struct {
	op    *processOperator[string, string, string]
	flag  ValueState[bool]
	count ValueState[int64]
	last  ValueState[int64]
	fired []timerKey[string]
}

func newEntryOp(t *testing.T, maxP int, r KeyGroupRange, restore *OperatorRestore) *entryOp {
	t.Helper()
	rc := NewRuntimeContext(ContextConfig{MaxParallelism: maxP})
	oc := &opContext{RuntimeContext: *rc, counters: &opCounters{}, keyGroups: r}
	op, err := newProcessOperator[string, string, string](oc, nil, StringKey, func(v string) string { return v }, discard[string]{})
	if err != nil {
		t.Fatal(err)
	}
	e := &entryOp{op: op}
	if restore != nil {
		if err := e.op.restore(restore); err != nil {
			t.Fatal(err)
		}
	}
	if e.flag, err = GetValueState(e.op.ctx, "flag", BoolCodec{}); err != nil {
		t.Fatal(err)
	}
	if e.count, err = GetValueState(e.op.ctx, "count", Int64Codec{}); err != nil {
		t.Fatal(err)
	}
	if e.last, err = GetValueState(e.op.ctx, "last", Int64Codec{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.flag.(*wordState[string, bool]); !ok {
		t.Fatalf("flag is a %T, want a word state", e.flag)
	}
	if _, ok := e.last.(*valueState[string, int64]); !ok {
		t.Fatalf("the third state is a %T, want a value table's", e.last)
	}
	return e
}

func (e *entryOp) setKey(k string) {
	h := StringHash(k)
	e.op.ctx.key, e.op.ctx.kg, e.op.ctx.hash = k, e.op.kgOf.of(h), h
}

// TestEntryStateAndTimersAcrossParallelism writes inline and table value
// states and one or two timers per key (the second goes to the heap) on
// one operator, churns them, snapshots, churns more, and restores the
// snapshot into three subtasks: each holds exactly its keys' values, and
// firing every timer gives exactly its keys' timers at the snapshot.
func TestEntryStateAndTimersAcrossParallelism(t *testing.T) {
	const maxP = 32
	all := KeyGroupRange{First: 0, Last: maxP - 1}
	src := newEntryOp(t, maxP, all, nil)
	type state struct {
		flag, hasFlag, hasCount, hasLast bool
		count, last                      int64
		timers                           []int64
	}
	model := map[string]*state{}
	for i := range 3000 {
		k := fmt.Sprintf("key-%d", i%700)
		if i%700 < 5 { // keys whose length takes a two-byte prefix
			k += strings.Repeat("x", 200)
		}
		src.setKey(k)
		st := model[k]
		if st == nil {
			st = &state{}
			model[k] = st
		}
		switch i % 5 {
		case 0, 1:
			src.flag.Update(i%2 == 0)
			st.flag, st.hasFlag = i%2 == 0, true
			src.count.Update(int64(i))
			st.hasCount, st.count = true, int64(i)
			ts := int64(1000 + i%50)
			src.op.ctx.RegisterProcessingTimeTimer(ts)
			if !slices.Contains(st.timers, ts) {
				st.timers = append(st.timers, ts)
			}
		case 2:
			src.last.Update(-int64(i))
			st.hasLast, st.last = true, -int64(i)
		case 3:
			for _, ts := range st.timers {
				src.op.ctx.DeleteProcessingTimeTimer(ts)
			}
			st.timers = nil
			src.count.Clear()
			st.hasCount = false
		case 4:
			if len(st.timers) > 0 {
				src.op.ctx.DeleteProcessingTimeTimer(st.timers[0])
				st.timers = st.timers[1:]
			}
		}
	}
	sections, err := src.op.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := statebackend.WriteStateFile(all, sections, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 700 { // after the snapshot: not in it
		src.setKey(fmt.Sprintf("key-%d", i))
		src.count.Update(-1)
		src.op.ctx.RegisterProcessingTimeTimer(5)
	}
	sf, err := statebackend.OpenStateFile(context.Background(), "t.state", int64(len(data)), func(_ context.Context, off, n int64) ([]byte, error) {
		return data[off : off+n], nil
	})
	if err != nil {
		t.Fatal(err)
	}
	keys, timers := 0, 0
	for i := range 3 {
		r := KeyGroupRangeForSubtask(maxP, 3, i)
		ks, err := sf.ReadKeyGroups(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		dst := newEntryOp(t, maxP, r, &OperatorRestore{Keyed: []*statebackend.KeyedState{ks}})
		want := map[timerKey[string]]bool{}
		for k, st := range model {
			h := StringHash(k)
			if !r.Contains(KeyGroupForHash(h, maxP)) {
				continue
			}
			keys++
			dst.setKey(k)
			if v, ok := dst.flag.Value(); v != st.flag || ok != st.hasFlag {
				t.Fatalf("subtask %d key %s: flag %v %v, want %v %v", i, k, v, ok, st.flag, st.hasFlag)
			}
			if v, ok := dst.count.Value(); ok != st.hasCount || (ok && v != st.count) {
				t.Fatalf("subtask %d key %s: count %v %v, want %v %v", i, k, v, ok, st.count, st.hasCount)
			}
			if v, ok := dst.last.Value(); ok != st.hasLast || (ok && v != st.last) {
				t.Fatalf("subtask %d key %s: last %v %v, want %v %v", i, k, v, ok, st.last, st.hasLast)
			}
			for _, ts := range st.timers {
				want[timerKey[string]{ts: ts, key: k}] = true
			}
		}
		got := map[timerKey[string]]bool{}
		prev := int64(-1 << 63)
		for dst.op.ctx.timers.len() > 0 {
			e := dst.op.ctx.timers.pop()
			if e.ts < prev || got[e.timerKey] || e.hash != StringHash(e.key) || e.kg != KeyGroupForHash(e.hash, maxP) {
				t.Fatalf("subtask %d: fired %+v after time %d (twice: %v)", i, e, prev, got[e.timerKey])
			}
			prev = e.ts
			got[e.timerKey] = true
		}
		if len(got) != len(want) {
			t.Fatalf("subtask %d: %d timers fired, want %d", i, len(got), len(want))
		}
		for tk := range want {
			if !got[tk] {
				t.Fatalf("subtask %d: timer %v lost", i, tk)
			}
		}
		timers += len(got)
	}
	if keys != len(model) || timers == 0 {
		t.Fatalf("the subtasks hold %d keys (want %d) and %d timers", keys, len(model), timers)
	}
}
