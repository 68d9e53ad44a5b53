package runtime

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/pebblestate"
	"github.com/weirstream/weir/statebackend/storage"
)

// opsFn applies the operation a record names to its key's state and
// emits every read of the key's state afterwards: n = op*1000 + arg.
type opsFn struct {
	val ValueState[int64]
	m   MapState[int64, int64]
	l   ListState[int64]
}

func (f *opsFn) Open(ctx *KeyedContext[string]) (err error) {
	if f.val, err = GetValueState(ctx, "v", Int64Codec{}); err != nil {
		return err
	}
	if f.m, err = GetMapState(ctx, "m", Int64Codec{}, Int64Codec{}); err != nil {
		return err
	}
	f.l, err = GetListState(ctx, "l", Int64Codec{})
	return err
}

func (f *opsFn) ProcessElement(r keyed, ctx *KeyedContext[string], out Collector[string]) error {
	op, arg := r.n/1000, r.n%1000
	switch op {
	case 0:
		f.val.Update(arg)
	case 1:
		f.val.Clear()
	case 2:
		f.m.Put(arg%5, arg)
	case 3:
		f.m.Remove(arg % 5)
	case 4:
		f.m.Clear()
	case 5:
		f.l.Add(arg)
	case 6:
		f.l.Update([]int64{arg, arg + 1})
	case 7:
		f.l.Clear()
	case 8:
		ctx.RegisterProcessingTimeTimer(1e15 + arg%3)
	case 9:
		ctx.DeleteProcessingTimeTimer(1e15 + arg%3)
	}
	v, ok := f.val.Value()
	mv, mok := f.m.Get(arg % 5)
	m := maps.Collect(f.m.All())
	keys := slices.Sorted(maps.Keys(m))
	var b strings.Builder
	fmt.Fprintf(&b, "%s op=%d v=%d,%v m[%d]=%d,%v has=%v len=%d", r.key, r.n, v, ok, arg%5, mv, mok, f.m.Contains(arg%5), f.m.Len())
	for _, k := range keys {
		fmt.Fprintf(&b, " %d:%d", k, m[k])
	}
	fmt.Fprintf(&b, " l=%v", f.l.Get())
	out.Collect(b.String())
	return nil
}

func (f *opsFn) OnTimer(int64, *KeyedContext[string], Collector[string]) error { return nil }

func opsGraph(t *testing.T, got *[]string, mu *sync.Mutex) *JobGraph {
	env, _ := NewEnv("ops", 2)
	env.SetMaxParallelism(8)
	src := FromSource(env, "in", func() SourceFunction[keyed] { return &sliceSource[keyed]{} }, keyedCodec{})
	out := Process(KeyBy(src, StringKey, func(k keyed) string { return k.key }), "ops",
		func() KeyedProcessFunction[string, keyed, string] { return &opsFn{} }, nil).UID("ops").Parallelism(1)
	SinkTo(out, "collect", func() SinkFunction[string] { return collectSink[string]{mu, got} }).Parallelism(1)
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// opsIncremental asks runOps for incremental checkpoints.
var opsIncremental bool

// opsNative are the native checkpoints of runOps' latest run.
var opsNative []nativeCheckpoint

type nativeCheckpoint struct {
	location string
	chain    []statebackend.FileRef
}

// restore downloads the checkpoint for a task restoring all key groups.
func (c nativeCheckpoint) restore(t *testing.T) *OperatorRestore {
	t.Helper()
	all := KeyGroupRange{First: 0, Last: 7}
	dir, ks, err := downloadChain(t, c.location, c.chain, all)
	if err != nil {
		t.Fatal(err)
	}
	return &OperatorRestore{Keyed: []*statebackend.KeyedState{ks}, Native: []pebblestate.NativeState{{Dir: dir, KeyGroups: all}}}
}

func keyedRestore(ks *statebackend.KeyedState) *OperatorRestore {
	return &OperatorRestore{Keyed: []*statebackend.KeyedState{ks}}
}

// runOps runs segs through a fresh ops task on backend, restored from
// restore if set, with barrier i+1 after segment i (but the last), and
// returns the output and the state file of each checkpoint.
func runOps(t *testing.T, backend StateBackend, restore *OperatorRestore, segs [][]keyed, dir string) ([]string, []*statebackend.KeyedState) {
	t.Helper()
	var mu sync.Mutex
	var got []string
	g := opsGraph(t, &got, &mu)
	gate := &fakeGate{n: 2, bufs: make(chan *engine.Buffer, 64), errs: make(chan error)}
	rep := &acks{done: make(chan struct{}, 16)}
	tio := TaskIO{Input: gate, LatencyInterval: -1, Checkpoints: rep, StateBackend: backend, Incremental: opsIncremental}
	if restore != nil {
		tio.Restore = &TaskRestore{CheckpointID: 1, Operators: map[string]*OperatorRestore{"ops": restore}}
	}
	task, err := NewTask(g, 1, 0, tio)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- task.Run(ctx) }()
	for i, seg := range segs {
		for _, r := range seg {
			gate.records(0, r)
		}
		if i < len(segs)-1 {
			b := Barrier{ID: int64(i + 1), Location: filepath.Join(dir, fmt.Sprint("chk-", i+1))}
			gate.barrier(0, b)
			gate.barrier(1, b)
			<-rep.done
		}
	}
	gate.end(0)
	gate.end(1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(rep.decline) > 0 {
		t.Fatalf("declined: %v", rep.decline)
	}
	var files []*statebackend.KeyedState
	opsNative = nil
	for _, a := range rep.acked {
		h := a.States[0]
		loc := filepath.Join(dir, fmt.Sprint("chk-", a.CheckpointID))
		if statebackend.NativeChain(h.Chain) {
			opsNative = append(opsNative, nativeCheckpoint{loc, h.Chain})
			continue
		}
		st, err := storage.Open(loc, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		sf, err := statebackend.OpenStateFile(ctx, h.File, h.Size, func(ctx context.Context, off, n int64) ([]byte, error) {
			return st.GetRange(ctx, h.File, off, n)
		})
		if err != nil {
			t.Fatal(err)
		}
		ks, err := sf.ReadKeyGroups(ctx, KeyGroupRange{First: 0, Last: 7})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, ks)
	}
	return got, files
}

// stateContents is a state file's entries, order-free.
func stateContents(t *testing.T, ks *statebackend.KeyedState) []string {
	t.Helper()
	var out []string
	for _, name := range ks.Sections() {
		err := ks.Each(name, func(kg int, k, v []byte) error {
			if ks.Kind(name) == statebackend.KindMap {
				v = []byte(fmt.Sprint(decodeMapEntry(t, v)))
			}
			out = append(out, fmt.Sprintf("%s/%d/%x=%x", name, kg, k, v))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(out)
	return out
}

// decodeMapEntry reads a map value's entries into a Go map (printed sorted).
func decodeMapEntry(t *testing.T, v []byte) map[string]string {
	t.Helper()
	m := map[string]string{}
	n := int(uvarint(t, &v))
	for range n {
		uk := field(t, &v)
		val := field(t, &v)
		m[string(uk)] = string(val)
	}
	return m
}

func uvarint(t *testing.T, b *[]byte) uint64 {
	var x uint64
	var s uint
	for i, c := range *b {
		x |= uint64(c&0x7f) << s
		if c < 0x80 {
			*b = (*b)[i+1:]
			return x
		}
		s += 7
	}
	t.Fatal("bad uvarint")
	return 0
}

func field(t *testing.T, b *[]byte) []byte {
	n := uvarint(t, b)
	f := (*b)[:n]
	*b = (*b)[n:]
	return f
}

// TestBackendsAgree runs the same random state and timer operations on
// the memory and Pebble backends, with two checkpoints in between: every
// read agrees, both checkpoints' state files hold the same entries, and
// restoring either backend from each checkpoint of either and replaying
// the rest of the input gives the rest of the output again.
func TestBackendsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	keys := []string{"a", "b", "c", "d", "e", "f", "g"}
	var segs [][]keyed
	for range 3 {
		var seg []keyed
		for range 300 {
			seg = append(seg, keyed{keys[rng.IntN(len(keys))], int64(rng.IntN(10)*1000 + rng.IntN(1000))})
		}
		segs = append(segs, seg)
	}
	mem := StateBackend{Kind: StateBackendMemory}
	peb := StateBackend{Kind: StateBackendPebble, Dir: t.TempDir()}
	memOut, memFiles := runOps(t, mem, nil, segs, t.TempDir())
	pebOut, pebFiles := runOps(t, peb, nil, segs, t.TempDir())
	if strings.Join(memOut, "\n") != strings.Join(pebOut, "\n") {
		for i := range min(len(memOut), len(pebOut)) {
			if memOut[i] != pebOut[i] {
				t.Fatalf("read %d differs:\nmemory %s\npebble %s", i, memOut[i], pebOut[i])
			}
		}
		t.Fatalf("%d reads on memory, %d on pebble", len(memOut), len(pebOut))
	}
	if len(memFiles) != 2 || len(pebFiles) != 2 {
		t.Fatalf("%d and %d checkpoints, want 2 each", len(memFiles), len(pebFiles))
	}
	timers := false
	for i := range memFiles {
		mc, pc := stateContents(t, memFiles[i]), stateContents(t, pebFiles[i])
		if !slices.Equal(mc, pc) {
			t.Fatalf("checkpoint %d differs:\nmemory %v\npebble %v", i+1, mc, pc)
		}
		timers = timers || slices.ContainsFunc(mc, func(s string) bool { return strings.HasPrefix(s, "_timers/") })
	}
	if !timers {
		t.Error("no checkpoint holds timers")
	}
	// Incremental checkpoints on pebble are native (its SSTs): restored
	// on pebble, each gives the rest of the output again.
	opsIncremental = true
	_, incFiles := runOps(t, peb, nil, segs, t.TempDir())
	opsIncremental = false
	natives := opsNative
	if len(incFiles) != 0 || len(natives) != 2 {
		t.Fatalf("pebble with incremental checkpoints: %d state files and %d native checkpoints, want 0 and 2", len(incFiles), len(natives))
	}
	// Records of segments 0..i precede checkpoint i+1.
	for i := range memFiles {
		before := 0
		for _, s := range segs[:i+1] {
			before += len(s)
		}
		for _, from := range []*statebackend.KeyedState{memFiles[i], pebFiles[i]} {
			for _, b := range []StateBackend{mem, peb} {
				out, _ := runOps(t, b, keyedRestore(from), [][]keyed{slices.Concat(segs[i+1:]...)}, t.TempDir())
				if strings.Join(out, "\n") != strings.Join(memOut[before:], "\n") {
					t.Fatalf("restored from checkpoint %d on %s: output differs", i+1, b.Kind)
				}
			}
		}
		out, _ := runOps(t, peb, natives[i].restore(t), [][]keyed{slices.Concat(segs[i+1:]...)}, t.TempDir())
		if strings.Join(out, "\n") != strings.Join(memOut[before:], "\n") {
			t.Fatalf("restored from native checkpoint %d on pebble: output differs", i+1)
		}
	}
}
