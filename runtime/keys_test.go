package runtime

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/statebackend"
)

// keysOp is a keyed operator with one state of every table kind: two
// word-sized values (inline in the entry table on the memory backend), a
// value in a table of its own, a map and a list.
type keysOp struct {
	op    *processOperator[string, string, string]
	flag  ValueState[bool]
	count ValueState[int64]
	last  ValueState[int64]
	m     MapState[int64, int64]
	l     ListState[int64]
}

// keysStates are keysOp's state names.
var keysStates = []string{"flag", "count", "last", "m", "l"}

func newKeysOp(t testing.TB, b StateBackend, maxP int, r KeyGroupRange, restore *OperatorRestore) *keysOp {
	t.Helper()
	rc := NewRuntimeContext(ContextConfig{MaxParallelism: maxP})
	oc := &opContext{RuntimeContext: *rc, counters: &opCounters{}, keyGroups: r, stateBackend: b}
	op, err := newProcessOperator[string, string, string](oc, nil, StringKey, func(v string) string { return v }, discard[string]{})
	if err != nil {
		t.Fatal(err)
	}
	if op.lsm != nil {
		t.Cleanup(func() { op.lsm.Close() })
	}
	o := &keysOp{op: op}
	if restore != nil {
		if err := op.restore(restore); err != nil {
			t.Fatal(err)
		}
	}
	ctx := op.ctx
	if o.flag, err = GetValueState(ctx, "flag", BoolCodec{}); err != nil {
		t.Fatal(err)
	}
	if o.count, err = GetValueState(ctx, "count", Int64Codec{}); err != nil {
		t.Fatal(err)
	}
	if o.last, err = GetValueState(ctx, "last", Int64Codec{}); err != nil {
		t.Fatal(err)
	}
	if o.m, err = GetMapState(ctx, "m", Int64Codec{}, Int64Codec{}); err != nil {
		t.Fatal(err)
	}
	if o.l, err = GetListState(ctx, "l", Int64Codec{}); err != nil {
		t.Fatal(err)
	}
	return o
}

func (o *keysOp) setKey(k string) {
	h := StringHash(k)
	o.op.ctx.key, o.op.ctx.kg, o.op.ctx.hash = k, o.op.kgOf.of(h), h
}

// keys lists, sorted, the keys ForEachKey visits for state, checking
// that each is visited once as the current key of its key group.
func (o *keysOp) keys(t *testing.T, state string) []string {
	t.Helper()
	var out []string
	err := ForEachKey(o.op.ctx, state, func(k string) error {
		ctx := o.op.ctx
		if ctx.CurrentKey() != k || ctx.hash != StringHash(k) || ctx.kg != KeyGroupForHash(ctx.hash, int(o.op.kgOf.n)) {
			return fmt.Errorf("key %q visited as current key %q in key group %d", k, ctx.CurrentKey(), ctx.kg)
		}
		out = append(out, k)
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", state, err)
	}
	slices.Sort(out)
	if c := slices.Compact(slices.Clone(out)); len(c) != len(out) {
		t.Fatalf("%s: a key was visited twice: %v", state, out)
	}
	return out
}

// keysModel is which keys hold a value in each state.
type keysModel map[string]map[string]bool

func (m keysModel) set(state, k string, on bool) {
	if m[state] == nil {
		m[state] = map[string]bool{}
	}
	if on {
		m[state][k] = true
	} else {
		delete(m[state], k)
	}
}

// want lists m's keys of state that are in the key groups r.
func (m keysModel) want(state string, maxP int, r KeyGroupRange) []string {
	var out []string
	for k := range m[state] {
		if r.Contains(KeyGroupForHash(StringHash(k), maxP)) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// churn writes and clears every state for keys 0..n-1 (some keys long
// enough for a two-byte length prefix on Pebble) and records the outcome.
func (o *keysOp) churn(m keysModel, n, rounds int) {
	for i := range rounds {
		k := fmt.Sprintf("key-%d", i%n)
		if i%n < 3 {
			k += strings.Repeat("x", 150)
		}
		o.setKey(k)
		switch i % 7 {
		case 0:
			o.flag.Update(true)
			m.set("flag", k, true)
		case 1:
			o.count.Update(int64(i))
			o.last.Update(int64(-i))
			m.set("count", k, true)
			m.set("last", k, true)
		case 2:
			o.m.Put(int64(i%3), 1)
			o.m.Put(int64(i%3+1), 2)
			m.set("m", k, true)
		case 3:
			o.l.Add(int64(i))
			m.set("l", k, true)
		case 4:
			o.flag.Clear()
			o.last.Clear()
			m.set("flag", k, false)
			m.set("last", k, false)
		case 5:
			o.m.Remove(int64(i%3 + 1))
			o.m.Remove(int64(i % 3))
			if o.m.Len() == 0 {
				m.set("m", k, false)
			}
		case 6:
			if i%2 == 0 {
				o.l.Clear()
				m.set("l", k, false)
			}
			o.count.Clear()
			m.set("count", k, false)
		}
	}
}

// TestForEachKey runs the same writes on both backends: ForEachKey lists
// exactly the keys holding a value in each state (word, value, map and
// list), a callback may clear the state it iterates, and after a snapshot
// restored at parallelism 3 onto either backend each subtask lists exactly
// its key groups' keys of the snapshot.
func TestForEachKey(t *testing.T) {
	const maxP = 32
	all := KeyGroupRange{First: 0, Last: maxP - 1}
	backends := []StateBackend{{Kind: StateBackendMemory}, {Kind: StateBackendPebble, Dir: t.TempDir()}}
	for _, b := range backends {
		t.Run(b.Kind, func(t *testing.T) {
			o := newKeysOp(t, b, maxP, all, nil)
			m := keysModel{}
			o.churn(m, 400, 5000)
			for _, s := range keysStates {
				if got, want := o.keys(t, s), m.want(s, maxP, all); !slices.Equal(got, want) || len(want) == 0 {
					t.Fatalf("%s: %d keys listed, want %d", s, len(got), len(want))
				}
			}
			sections, err := o.op.snapshot()
			if err != nil {
				t.Fatal(err)
			}
			data, err := statebackend.WriteStateFile(all, sections, nil)
			for _, s := range sections {
				if r, ok := s.(interface{ Release() }); ok {
					r.Release()
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			snap := keysModel{}
			for s, ks := range m {
				snap[s] = maps.Clone(ks)
			}

			// A callback clears the list it iterates and reads the map:
			// every key is still visited once, and the list is empty after.
			o.setKey("outside")
			visited := 0
			err = ForEachKey(o.op.ctx, "l", func(k string) error {
				if len(o.l.Get()) == 0 {
					return fmt.Errorf("key %s holds no list", k)
				}
				if o.m.Len() > 0 != m["m"][k] {
					return fmt.Errorf("key %s: map of %d entries, model %v", k, o.m.Len(), m["m"][k])
				}
				o.l.Clear()
				m.set("l", k, false)
				visited++
				return nil
			})
			if err != nil || visited != len(snap["l"]) {
				t.Fatalf("clearing lists: %v after %d keys, want %d", err, visited, len(snap["l"]))
			}
			if got := o.keys(t, "l"); len(got) != 0 {
				t.Fatalf("lists left after clearing: %v", got)
			}
			if o.op.ctx.CurrentKey() != "outside" {
				t.Fatalf("current key after ForEachKey is %q", o.op.ctx.CurrentKey())
			}
			stop := fmt.Errorf("stop")
			n := 0
			if err := ForEachKey(o.op.ctx, "m", func(string) error { n++; return stop }); err != stop || n != 1 {
				t.Fatalf("a callback's error: %v after %d calls", err, n)
			}
			if err := ForEachKey(o.op.ctx, "nope", func(string) error { return nil }); err == nil || !strings.Contains(err.Error(), `"nope"`) {
				t.Fatalf("an unknown state: %v", err)
			}

			sf, err := statebackend.OpenStateFile(context.Background(), "t.state", int64(len(data)), func(_ context.Context, off, n int64) ([]byte, error) {
				return data[off : off+n], nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, to := range backends {
				total := 0
				for i := range 3 {
					r := KeyGroupRangeForSubtask(maxP, 3, i)
					ks, err := sf.ReadKeyGroups(context.Background(), r)
					if err != nil {
						t.Fatal(err)
					}
					dst := newKeysOp(t, to, maxP, r, &OperatorRestore{Keyed: []*statebackend.KeyedState{ks}})
					for _, s := range keysStates {
						got, want := dst.keys(t, s), snap.want(s, maxP, r)
						if !slices.Equal(got, want) {
							t.Fatalf("restored on %s, subtask %d, %s: keys %v, want %v", to.Kind, i, s, got, want)
						}
						if s == "m" {
							total += len(got)
						}
					}
				}
				if total != len(snap["m"]) {
					t.Fatalf("restored on %s: the subtasks list %d map keys, want %d", to.Kind, total, len(snap["m"]))
				}
			}
		})
	}
}

// BenchmarkForEachKey visits 100,000 keys of a table value state, reading
// each key's value, as the rules job's recount after a restore does.
func BenchmarkForEachKey(b *testing.B) {
	const maxP, keys = 128, 100_000
	all := KeyGroupRange{First: 0, Last: maxP - 1}
	for _, be := range []StateBackend{{Kind: StateBackendMemory}, {Kind: StateBackendPebble, Dir: b.TempDir()}} {
		b.Run(be.Kind, func(b *testing.B) {
			o := newKeysOp(b, be, maxP, all, nil)
			for i := range keys {
				o.setKey(fmt.Sprint("key-", i))
				o.last.Update(int64(i))
			}
			b.ResetTimer()
			for range b.N {
				n := 0
				err := ForEachKey(o.op.ctx, "last", func(string) error {
					if _, ok := o.last.Value(); ok {
						n++
					}
					return nil
				})
				if err != nil || n != keys {
					b.Fatalf("%d keys, %v", n, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/keys, "ns/key")
		})
	}
}
