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
	case 10:
		ctx.RegisterEventTimeTimer(arg)
	case 11:
		ctx.DeleteEventTimeTimer(arg)
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
	if arg%10 == 0 {
		// Every key's state, through the keys iterator; now and then the
		// callback clears the lists as it goes.
		clearLists := arg%100 == 0
		for _, name := range []string{"v", "m", "l"} {
			var ks []string
			err := ForEachKey(ctx, name, func(k string) error {
				v, _ := f.val.Value()
				ks = append(ks, fmt.Sprintf("%s:%d/%d/%d", k, v, f.m.Len(), len(f.l.Get())))
				if clearLists && name == "l" {
					f.l.Clear()
				}
				return nil
			})
			if err != nil {
				return err
			}
			slices.Sort(ks)
			fmt.Fprintf(&b, " keys(%s)=%v", name, ks)
		}
		if ctx.CurrentKey() != r.key {
			return fmt.Errorf("current key %q after ForEachKey, want %q", ctx.CurrentKey(), r.key)
		}
	}
	out.Collect(b.String())
	return nil
}

// OnTimer emits the timer and reads the key's value, and now and then
// registers a later timer. (One at its own time would fire again in the
// same pass, on every backend, and again: see TestTimerAtItsOwnTimeFiresInTheSamePass.)
func (f *opsFn) OnTimer(ts int64, ctx *KeyedContext[string], out Collector[string]) error {
	v, ok := f.val.Value()
	out.Collect(fmt.Sprintf("%s timer %d %v v=%d,%v", ctx.CurrentKey(), ts, ctx.TimeDomain(), v, ok))
	if ts%7 == 0 {
		ctx.RegisterEventTimeTimer(ts + 1 + ts%5)
	}
	return nil
}

// opWatermark marks a record of the ops input that runOps sends as a
// watermark, of the record's argument, instead.
const opWatermark = 12

// sortTimerRuns sorts each run of consecutive timer lines of out: timers
// of one time fire in no particular order, which differs by backend.
func sortTimerRuns(out []string) []string {
	out = slices.Clone(out)
	isTimer := func(s string) bool { return strings.Contains(s, " timer ") }
	for i := 0; i < len(out); {
		j := i
		for j < len(out) && isTimer(out[j]) {
			j++
		}
		slices.Sort(out[i:j])
		i = j + 1
	}
	return out
}

func opsGraph(t *testing.T, got *[]string, mu *sync.Mutex) *JobGraph {
	env, _ := NewEnv("ops", 2)
	env.SetMaxParallelism(8)
	src := FromSource(env, "in", func() SourceFunction[keyed] { return &sliceSource[keyed]{} }, keyedCodec{})
	// Event time, for the event-time timers; runOps sends the watermarks.
	src = AssignTimestampsAndWatermarks(src, ForMonotonousTimestamps(func(k keyed) int64 { return k.n }))
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
// returns the output and the state file of each checkpoint. Records of
// op opWatermark are sent as watermarks.
func runOps(t *testing.T, backend StateBackend, restore *OperatorRestore, segs [][]keyed, dir string) ([]string, []*statebackend.KeyedState) {
	out, files, _ := runOpsCuts(t, backend, restore, segs, dir)
	return out, files
}

// runOpsCuts is runOps that also returns the output's length at each
// checkpoint.
func runOpsCuts(t *testing.T, backend StateBackend, restore *OperatorRestore, segs [][]keyed, dir string) ([]string, []*statebackend.KeyedState, []int) {
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
	var cuts []int
	for i, seg := range segs {
		for _, r := range seg {
			if r.n/1000 == opWatermark {
				gate.watermark(0, r.n%1000)
				gate.watermark(1, r.n%1000)
				continue
			}
			gate.stampedRecords(0, r)
		}
		if i < len(segs)-1 {
			b := Barrier{ID: int64(i + 1), Location: filepath.Join(dir, fmt.Sprint("chk-", i+1))}
			gate.barrier(0, b)
			gate.barrier(1, b)
			<-rep.done
			mu.Lock()
			cuts = append(cuts, len(got))
			mu.Unlock()
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
	return got, files, cuts
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
// read agrees (including the keys ForEachKey lists, and the lists it
// clears as it goes), both checkpoints' state files hold the same entries, and
// restoring either backend from each checkpoint of either and replaying
// the rest of the input gives the rest of the output again.
func TestBackendsAgree(t *testing.T) {
	segs := opsSegments(3, 4)
	mem := StateBackend{Kind: StateBackendMemory}
	peb := StateBackend{Kind: StateBackendPebble, Dir: t.TempDir()}
	memOut, memFiles, cuts := runOpsCuts(t, mem, nil, segs, t.TempDir())
	pebOut, pebFiles := runOps(t, peb, nil, segs, t.TempDir())
	memOut, pebOut = sortTimerRuns(memOut), sortTimerRuns(pebOut)
	if !slices.ContainsFunc(memOut, func(s string) bool { return strings.Contains(s, " timer ") }) {
		t.Fatal("no timer fired")
	}
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
	timers, etimers := false, false
	for i := range memFiles {
		mc, pc := stateContents(t, memFiles[i]), stateContents(t, pebFiles[i])
		if !slices.Equal(mc, pc) {
			t.Fatalf("checkpoint %d differs:\nmemory %v\npebble %v", i+1, mc, pc)
		}
		timers = timers || slices.ContainsFunc(mc, func(s string) bool { return strings.HasPrefix(s, "_timers/") })
		etimers = etimers || slices.ContainsFunc(mc, func(s string) bool { return strings.HasPrefix(s, "_event_timers/") })
	}
	if !timers || !etimers {
		t.Errorf("no checkpoint holds processing-time timers (%v) or event-time timers (%v)", timers, etimers)
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
	// The output up to cuts[i] precedes checkpoint i+1.
	for i := range memFiles {
		before := cuts[i]
		for _, from := range []*statebackend.KeyedState{memFiles[i], pebFiles[i]} {
			for _, b := range []StateBackend{mem, peb} {
				out, _ := runOps(t, b, keyedRestore(from), [][]keyed{slices.Concat(segs[i+1:]...)}, t.TempDir())
				if strings.Join(sortTimerRuns(out), "\n") != strings.Join(memOut[before:], "\n") {
					t.Fatalf("restored from checkpoint %d on %s: output differs", i+1, b.Kind)
				}
			}
		}
		out, _ := runOps(t, peb, natives[i].restore(t), [][]keyed{slices.Concat(segs[i+1:]...)}, t.TempDir())
		if strings.Join(sortTimerRuns(out), "\n") != strings.Join(memOut[before:], "\n") {
			t.Fatalf("restored from native checkpoint %d on pebble: output differs", i+1)
		}
	}
}

// TestTimerServicesAgree runs the ops of TestBackendsAgree on pebble with
// the heap timer service, against pebble with timers in the store: the
// same reads and the same checkpoint contents. Each one's checkpoints,
// full or native, restore with the other timer service (and the memory
// backend's full ones on both) and give the rest of the output again.
func TestTimerServicesAgree(t *testing.T) {
	segs := opsSegments(5, 6)
	store := StateBackend{Kind: StateBackendPebble, Dir: t.TempDir()}
	heap := StateBackend{Kind: StateBackendPebble, Dir: t.TempDir(), Timers: TimerServiceHeap}
	mem := StateBackend{Kind: StateBackendMemory}
	storeOut, storeFiles, cuts := runOpsCuts(t, store, nil, segs, t.TempDir())
	heapOut, heapFiles := runOps(t, heap, nil, segs, t.TempDir())
	storeOut, heapOut = sortTimerRuns(storeOut), sortTimerRuns(heapOut)
	if !slices.ContainsFunc(storeOut, func(s string) bool { return strings.Contains(s, " timer ") }) {
		t.Fatal("no timer fired")
	}
	if strings.Join(storeOut, "\n") != strings.Join(heapOut, "\n") {
		t.Fatalf("%d reads with timers in the store, %d on the heap, or they differ", len(storeOut), len(heapOut))
	}
	if len(storeFiles) != 2 || len(heapFiles) != 2 {
		t.Fatalf("%d and %d checkpoints, want 2 each", len(storeFiles), len(heapFiles))
	}
	for i := range storeFiles {
		sc, hc := stateContents(t, storeFiles[i]), stateContents(t, heapFiles[i])
		if !slices.Equal(sc, hc) {
			t.Fatalf("checkpoint %d differs:\nstore %v\nheap  %v", i+1, sc, hc)
		}
		if !slices.ContainsFunc(hc, func(s string) bool { return strings.HasPrefix(s, "_timers/") }) {
			t.Errorf("checkpoint %d with heap timers holds no processing-time timers", i+1)
		}
	}
	opsIncremental = true
	runOps(t, store, nil, segs, t.TempDir())
	storeNative := opsNative
	runOps(t, heap, nil, segs, t.TempDir())
	heapNative := opsNative
	opsIncremental = false
	if len(storeNative) != 2 || len(heapNative) != 2 {
		t.Fatalf("%d and %d native checkpoints, want 2 each", len(storeNative), len(heapNative))
	}
	rest := func(i int, b StateBackend, r *OperatorRestore) string {
		out, _ := runOps(t, b, r, [][]keyed{slices.Concat(segs[i+1:]...)}, t.TempDir())
		return strings.Join(sortTimerRuns(out), "\n")
	}
	for i := range storeFiles {
		want := strings.Join(storeOut[cuts[i]:], "\n")
		for _, from := range []*statebackend.KeyedState{storeFiles[i], heapFiles[i]} {
			for _, b := range []StateBackend{mem, store, heap} {
				if rest(i, b, keyedRestore(from)) != want {
					t.Fatalf("full checkpoint %d restored on %s with %q timers: output differs", i+1, b.Kind, b.Timers)
				}
			}
		}
		for _, c := range []struct {
			name string
			from nativeCheckpoint
		}{{"store", storeNative[i]}, {"heap", heapNative[i]}} {
			for _, b := range []StateBackend{store, heap} {
				if rest(i, b, c.from.restore(t)) != want {
					t.Fatalf("native checkpoint %d with %s timers restored with %q timers: output differs", i+1, c.name, b.Timers)
				}
			}
		}
	}
}

// opsSegments is three segments of 300 random ops inputs (see opsFn) from
// the seeds, a watermark now and then among them.
func opsSegments(seed1, seed2 uint64) [][]keyed {
	rng := rand.New(rand.NewPCG(seed1, seed2))
	keys := []string{"a", "b", "c", "d", "e", "f", "g"}
	var segs [][]keyed
	wm := int64(0)
	for range 3 {
		var seg []keyed
		for range 300 {
			if rng.IntN(10) == 0 && wm < 990 {
				// Event time advances; timers behind it fire.
				wm += rng.Int64N(9) + 1
				seg = append(seg, keyed{"", opWatermark*1000 + wm})
				continue
			}
			// Event-time timers (ops 10, 11) fall around the watermark.
			seg = append(seg, keyed{keys[rng.IntN(len(keys))], int64(rng.IntN(12)*1000 + rng.IntN(100) + int(wm))})
		}
		segs = append(segs, seg)
	}
	return segs
}
