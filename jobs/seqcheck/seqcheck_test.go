package seqcheck

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend/storage"
)

func TestParams(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		params map[string]string
		want   string // substring of the error; "" = valid
	}{
		{map[string]string{"output": dir}, ""},
		{map[string]string{"output": dir, "keys": "7", "count": "10", "rate": "0"}, ""},
		{map[string]string{"output": "s3://bucket/prefix"}, ""},
		{map[string]string{}, "parameter output: must not be empty"},
		{map[string]string{"output": dir, "keys": "0"}, "parameter keys"},
		{map[string]string{"output": dir, "keys": "-3"}, "parameter keys"},
		{map[string]string{"output": dir, "keys": "99999999"}, "parameter keys"},
		{map[string]string{"output": dir, "rate": "-1"}, "parameter rate"},
		{map[string]string{"output": dir, "rate": "fast"}, "parameter rate"},
		{map[string]string{"output": dir, "rate": "+Inf"}, "parameter rate"},
		{map[string]string{"output": dir, "count": "-1"}, "parameter count"},
		{map[string]string{"output": "ftp://host/dir"}, "parameter output"},
		{map[string]string{"output": dir, "kyes": "5"}, "unknown parameter(s) kyes"},
	} {
		_, err := jobs.Build(Name, 2, tc.params)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.params, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want one containing %q", tc.params, err, tc.want)
		}
	}
}

func TestBuildGraph(t *testing.T) {
	g, err := jobs.Build(Name, 2, map[string]string{"output": t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if g.MaxParallelism != 128 {
		t.Errorf("max parallelism %d, want 128", g.MaxParallelism)
	}
	var uids [][]string
	for _, v := range g.Vertices {
		if v.Parallelism != 2 {
			t.Errorf("vertex %s has parallelism %d, want the job's 2", v.Name, v.Parallelism)
		}
		var ops []string
		for _, op := range v.Operators {
			ops = append(ops, op.UID)
		}
		uids = append(uids, ops)
	}
	// The keyBy splits the source from the checker, and the sink stays
	// chained to the checker.
	want := [][]string{{SourceUID}, {CheckerUID, SinkUID}}
	if !slices.EqualFunc(uids, want, slices.Equal) {
		t.Fatalf("vertices %v, want %v", uids, want)
	}
	if !g.Vertices[0].IsSource || len(g.Vertices[1].Inputs) != 1 || g.Vertices[1].Inputs[0].Partitioning != runtime.Hash {
		t.Fatalf("want source -hash-> checker+sink, got %+v", g.Vertices[1].Inputs)
	}
}

// collector gathers a source's records.
type collector struct{ recs []Record }

func (c *collector) Collect(r Record) { c.recs = append(c.recs, r) }

func sourceCtx(subtask, par int) *runtime.RuntimeContext {
	return runtime.NewRuntimeContext(runtime.ContextConfig{Subtask: subtask, Parallelism: par, Restored: true})
}

func startSource(t *testing.T, s *Source, subtask, par int, entries [][]byte) *Source {
	t.Helper()
	ctx := sourceCtx(subtask, par)
	if err := s.InitializeState(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// drain polls until the end of input and returns the records.
func drain(t *testing.T, s *Source) []Record {
	t.Helper()
	var c collector
	for i := 0; ; i++ {
		before := len(c.recs)
		wait, err := s.Poll(&c)
		if errors.Is(err, runtime.ErrEndOfInput) {
			return c.recs
		}
		if err != nil {
			t.Fatal(err)
		}
		if n := len(c.recs) - before; n > sourceBatch {
			t.Fatalf("one poll emitted %d records, more than %d", n, sourceBatch)
		}
		if i > 1_000_000 {
			t.Fatal("source does not end")
		}
		time.Sleep(wait)
	}
}

func TestSourceRoundRobinAndEnd(t *testing.T) {
	s := startSource(t, &Source{Keys: 5, Count: 3}, 0, 2, nil) // owns 0, 2, 4
	got := drain(t, s)
	var want []Record
	for seq := int64(1); seq <= 3; seq++ {
		for _, k := range []int64{0, 2, 4} {
			want = append(want, Record{k, seq})
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("emitted %v, want %v", got, want)
	}
	// The end is sticky.
	if _, err := s.Poll(&collector{}); !errors.Is(err, runtime.ErrEndOfInput) {
		t.Fatalf("poll after the end: %v", err)
	}

	// Many batches: every key of subtask 1 of 2 gets exactly 1..count.
	s = startSource(t, &Source{Keys: 7, Count: 300}, 1, 2, nil) // owns 1, 3, 5
	counts := map[[2]int64]int{}
	for _, r := range drain(t, s) {
		counts[[2]int64{r.Key, r.Seq}]++
	}
	if len(counts) != 900 {
		t.Fatalf("%d distinct records, want 900", len(counts))
	}
	for _, k := range []int64{1, 3, 5} {
		for seq := int64(1); seq <= 300; seq++ {
			if counts[[2]int64{k, seq}] != 1 {
				t.Fatalf("key %d seq %d emitted %d times", k, seq, counts[[2]int64{k, seq}])
			}
		}
	}
}

func TestSourceRate(t *testing.T) {
	s := startSource(t, &Source{Keys: 2, Count: 50, Rate: 1000}, 0, 1, nil)
	start := time.Now()
	got := drain(t, s)
	if len(got) != 100 {
		t.Fatalf("emitted %d records, want 100", len(got))
	}
	// Record n is due (n+1)/rate after the first poll: the 100th at 100 ms.
	if d := time.Since(start); d < 95*time.Millisecond {
		t.Fatalf("100 records at 1000/s took only %v", d)
	}
	s = startSource(t, &Source{Keys: 1, Count: 0, Rate: 10}, 0, 1, nil)
	var c collector
	if wait, err := s.Poll(&c); err != nil || len(c.recs) != 0 || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("first poll at 10/s: emitted %d, wait %v, err %v; want nothing, a wait of up to 100ms", len(c.recs), wait, err)
	}
}

func TestSourceOwnsNoKey(t *testing.T) {
	s := startSource(t, &Source{Keys: 3, Count: 5}, 4, 5, nil)
	if _, err := s.Poll(&collector{}); !errors.Is(err, runtime.ErrEndOfInput) {
		t.Fatalf("bounded source without keys: %v, want end of input", err)
	}
	s = startSource(t, &Source{Keys: 3}, 4, 5, nil)
	if wait, err := s.Poll(&collector{}); err != nil || wait <= 0 {
		t.Fatalf("unbounded source without keys: wait %v, err %v; want to idle", wait, err)
	}
}

// TestSourceRescale hands the source's position over 2 -> 3 -> 1 -> 1
// subtasks.
// Records emitted after a snapshot are discarded, as a failure would, and
// every (key, seq) must still be emitted exactly once over the three runs.
func TestSourceRescale(t *testing.T) {
	const keys, count = 11, 2000
	counts := map[[2]int64]int{}
	keep := func(c *collector) {
		for _, r := range c.recs {
			counts[[2]int64{r.Key, r.Seq}]++
		}
	}
	var entries [][]byte
	for run, par := range []int{2, 3, 1} {
		var next [][]byte
		for i := range par {
			s := startSource(t, &Source{Keys: keys, Count: count}, i, par, entries)
			var c collector
			for range 1 + i + run { // uneven progress per subtask
				if _, err := s.Poll(&c); err != nil {
					t.Fatal(err)
				}
			}
			snap, err := s.SnapshotState(int64(run + 1))
			if err != nil {
				t.Fatal(err)
			}
			keep(&c)
			next = append(next, snap...)
			if _, err := s.Poll(&collector{}); err != nil { // lost with the failure
				t.Fatal(err)
			}
		}
		entries = next
	}
	// The last restore runs to the end.
	keep(&collector{recs: drain(t, startSource(t, &Source{Keys: keys, Count: count}, 0, 1, entries))})
	if err := Verify(counts, keys, count); err != nil {
		t.Fatal(err)
	}
}

func TestSourceRestoreEdges(t *testing.T) {
	// A state of 2 keys restored with 4: the new keys start at 1.
	s := startSource(t, &Source{Keys: 2}, 0, 1, nil)
	s.Poll(&collector{}) // 256 per key
	entries, _ := s.SnapshotState(1)
	s = startSource(t, &Source{Keys: 4, Count: 257}, 0, 1, entries)
	got := drain(t, s)
	want := []Record{{0, 257}, {1, 257}, {2, 1}, {3, 1}}
	if !slices.Equal(got[:4], want) {
		t.Fatalf("after restore: %v, want to start %v", got[:4], want)
	}
	if len(got) != 2+2*257 {
		t.Fatalf("after restore: %d records, want %d", len(got), 2+2*257)
	}

	for name, bad := range map[string][][]byte{
		"version":   {{9, 0, 2}},
		"truncated": {{stateVersion, 2}},
		"seq 0":     {{stateVersion, 2, 0}},
		"duplicate": {{stateVersion, 2, 4}, {stateVersion, 2, 6}},
	} {
		if err := (&Source{Keys: 4}).InitializeState(sourceCtx(0, 1), bad); !errors.Is(err, runtime.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		last int64
		r    Record
		want Output
	}{
		{0, Record{3, 1}, Output{3, 1, 0}},
		{1, Record{3, 2}, Output{3, 2, 0}},
		{2, Record{3, 5}, Output{3, 5, 3}}, // gap
		{5, Record{3, 5}, Output{3, 5, 6}}, // duplicate
		{0, Record{3, 2}, Output{3, 2, 1}}, // first record missing
	} {
		if got := check(tc.last, tc.r); got != tc.want {
			t.Errorf("check(%d, %v) = %v, want %v", tc.last, tc.r, got, tc.want)
		}
	}
}

func TestCodecs(t *testing.T) {
	for _, r := range []Record{{0, 1}, {-5, 1 << 40}, {127, 128}} {
		got, err := RecordCodec{}.Decode(RecordCodec{}.Append(nil, r))
		if err != nil || got != r {
			t.Errorf("record %v: %v, %v", r, got, err)
		}
	}
	for _, o := range []Output{{0, 1, 0}, {9, 7, 5}} {
		got, err := OutputCodec{}.Decode(OutputCodec{}.Append(nil, o))
		if err != nil || got != o {
			t.Errorf("output %v: %v, %v", o, got, err)
		}
	}
	if _, err := (RecordCodec{}).Decode([]byte{2}); !errors.Is(err, runtime.ErrCorrupt) {
		t.Errorf("short record: %v", err)
	}
	if _, err := (OutputCodec{}).Decode([]byte{2, 2, 2, 2}); !errors.Is(err, runtime.ErrCorrupt) {
		t.Errorf("long output: %v", err)
	}
}

func TestJSON(t *testing.T) {
	for o, want := range map[Output]string{
		{3, 17, 0}:  `{"key":3,"seq":17}`,
		{0, 9, 8}:   `{"key":0,"seq":9,"expected":8}`,
		{-1, -2, 0}: `{"key":-1,"seq":-2}`,
	} {
		line := AppendJSON(nil, o)
		if string(line) != want {
			t.Errorf("AppendJSON(%v) = %s, want %s", o, line, want)
		}
		if got, ok := parseJSON(line); !ok || got != o {
			t.Errorf("parseJSON(%s) = %v, %v", line, got, ok)
		}
	}
	for _, bad := range []string{``, `{}`, `{"key":1}`, `{"key":1,"seq":}`, `{"key":1,"seq":2`, `{"key":1,"seq":2} `,
		`{"key":x,"seq":2}`, `{"key":1,"seq":2,"expected":0}`, `{"seq":2,"key":1}`, `{"key":1,"seq":2,"other":3}`} {
		if o, ok := parseJSON([]byte(bad)); ok {
			t.Errorf("parseJSON(%s) accepted: %v", bad, o)
		}
	}
	if n := testing.AllocsPerRun(100, func() { AppendJSON(make([]byte, 0, 64)[:0], Output{12345, 678, 9}) }); n > 1 {
		t.Errorf("AppendJSON allocates %v times", n)
	}
}

func TestReadOutputAndVerify(t *testing.T) {
	ctx := context.Background()
	st, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	put := func(name, data string) {
		t.Helper()
		if err := st.Put(ctx, name, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	put("part-0-0-aa-0.jsonl", "{\"key\":0,\"seq\":1}\n{\"key\":0,\"seq\":2}\n{\"key\":1,\"seq\":1}\n")
	put("part-1-0-bb-0.jsonl", "{\"key\":1,\"seq\":2}\n")
	put(".pending/part-0-0-aa-1", "{\"key\":0,\"seq\":3}\n") // not committed
	put("_metadata", "{\"key\":0,\"seq\":3}\n")              // not a part file
	put("part-x/part-y.jsonl", "{\"key\":0,\"seq\":3}\n")    // not directly under the root
	counts, bad, err := ReadOutput(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 0 {
		t.Fatalf("bad lines %v", bad)
	}
	if len(counts) != 4 {
		t.Fatalf("counts %v", counts)
	}
	if err := Verify(counts, 2, 2); err != nil {
		t.Fatal(err)
	}
	if err := Verify(counts, 2, 0); err != nil {
		t.Fatalf("unbounded check of prefixes: %v", err)
	}
	if err := Verify(counts, 2, 3); err == nil || !strings.Contains(err.Error(), "2 missing (key 0 seq 3, key 1 seq 3)") {
		t.Fatalf("missing: %v", err)
	}
	if err := Verify(counts, 1, 2); err == nil || !strings.Contains(err.Error(), "2 unexpected (key 1 seq 1, key 1 seq 2)") {
		t.Fatalf("unexpected: %v", err)
	}

	// A duplicate, a flagged record and a malformed line.
	put("part-2-1-cc-0.jsonl", "{\"key\":1,\"seq\":2}\n{\"key\":0,\"seq\":4,\"expected\":3}\ngarbage\n")
	counts, bad, err = ReadOutput(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	wantBad := []string{
		`part-2-1-cc-0.jsonl:2: {"key":0,"seq":4,"expected":3}`,
		`part-2-1-cc-0.jsonl:3: garbage`,
	}
	if !slices.Equal(bad, wantBad) {
		t.Fatalf("bad lines %q, want %q", bad, wantBad)
	}
	err = Verify(counts, 2, 0)
	if err == nil {
		t.Fatal("Verify accepted a duplicate and a gap")
	}
	for _, want := range []string{"1 missing (key 0 seq 3)", "1 duplicated (key 1 seq 2 x2)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Verify: %v, want it to say %q", err, want)
		}
	}
}

// gate is an InputGate of n channels fed by the test.
type gate struct {
	n    int
	ch   chan *engine.Buffer
	errs chan error
}

func (g *gate) NumChannels() int               { return g.n }
func (g *gate) Buffers() <-chan *engine.Buffer { return g.ch }
func (g *gate) Recycle(*engine.Buffer)         {}
func (g *gate) Err() <-chan error              { return g.errs }

// TestCheckerInTask runs the checker and the file sink as the real tasks
// of the job's second vertex (a KeyedContext exists only inside a task),
// fed records with a gap, a duplicate and a missing first number, and
// checks the committed output.
func TestCheckerInTask(t *testing.T) {
	dir := t.TempDir()
	// Parallelism 2: at 1 the keyBy is chained into the source's vertex.
	g, err := jobs.Build(Name, 2, map[string]string{"output": dir})
	if err != nil {
		t.Fatal(err)
	}
	v := g.Vertices[1]
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	in := []Record{{0, 1}, {0, 2}, {1, 1}, {0, 4}, {1, 1}, {0, 5}, {1, 2}, {2, 2}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for subtask := range v.Parallelism {
		// Each subtask gets the records of the key groups it owns, as the
		// hash exchange would send them.
		data := engine.GetBuffer()
		var rec []byte
		for _, r := range in {
			kg := runtime.KeyGroupForHash(runtime.Int64Hash(r.Key), g.MaxParallelism)
			if runtime.SubtaskForKeyGroup(kg, v.Parallelism, g.MaxParallelism) != subtask {
				continue
			}
			rec = RecordCodec{}.Append(rec[:0], r)
			data.Data = binary.AppendUvarint(data.Data, uint64(len(rec)))
			data.Data = append(data.Data, rec...)
			data.Records++
		}
		// The records come on channel 0; every producer channel ends.
		n := len(g.InputChannels(v.Inputs[0], subtask))
		gt := &gate{n: n, ch: make(chan *engine.Buffer, n+1), errs: make(chan error)}
		gt.ch <- data
		for c := range n {
			gt.ch <- &engine.Buffer{Kind: engine.BufferEndOfPartition, Channel: c}
		}
		task, err := runtime.NewTask(g, v.ID, subtask, runtime.TaskIO{Input: gt, Outputs: [][]engine.OutputChannel{}, Stdout: io.Discard, Logger: logger, LatencyInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Run(ctx); err != nil {
			t.Fatal(err)
		}
	}

	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	counts, bad, err := ReadOutput(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	var flagged []string
	for _, b := range bad {
		_, line, _ := strings.Cut(b, ": ")
		flagged = append(flagged, line)
	}
	slices.Sort(flagged)
	want := []string{
		`{"key":0,"seq":4,"expected":3}`, // gap
		`{"key":1,"seq":1,"expected":2}`, // duplicate
		`{"key":2,"seq":2,"expected":1}`, // first number missing
	}
	if !slices.Equal(flagged, want) {
		t.Fatalf("flagged %q, want %q (all: %v)", flagged, want, bad)
	}
	if n := strings.Count(logs.String(), "sequence gap or duplicate"); n != 3 {
		t.Errorf("%d warnings logged, want 3:\n%s", n, logs.String())
	}
	if len(counts) != 7 || counts[[2]int64{1, 1}] != 2 {
		t.Fatalf("counts %v: want every record once, (1, 1) twice", counts)
	}
	err = Verify(counts, 3, 0)
	if err == nil || !strings.Contains(err.Error(), "2 missing (key 0 seq 3, key 2 seq 1)") || !strings.Contains(err.Error(), "1 duplicated (key 1 seq 1 x2)") {
		t.Fatalf("Verify: %v", err)
	}
}
