package filesink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/weirstream/weir/internal/miniotest"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/statebackend/storage"
)

// backend is where a scenario's sink writes: a temp dir or a MinIO bucket.
type backend struct {
	name string
	opts storage.Options
	dir  func(t *testing.T) string // a fresh, empty Dir per scenario
}

var prefixes atomic.Int64

func dirBackend() backend {
	return backend{name: "dir", dir: func(t *testing.T) string { return t.TempDir() }}
}

func minioBackend(t *testing.T) backend {
	srv := miniotest.Start(t)
	bucket := srv.MakeBucket(t, "filesink")
	return backend{name: "minio", opts: srv.Options(), dir: func(*testing.T) string {
		return bucket + "/run-" + strconv.FormatInt(prefixes.Add(1), 10)
	}}
}

// scenario is one test run against a backend.
type scenario struct {
	t    *testing.T
	b    backend
	dir  string
	st   storage.Storage
	opts storage.Options
	// job is the job ID of the sinks started ("job1" when empty); append
	// is their Append.
	job    string
	append bool
}

func (s *scenario) jobID() string {
	if s.job == "" {
		return "job1"
	}
	return s.job
}

func newScenario(t *testing.T, b backend) *scenario {
	dir := b.dir(t)
	st, err := storage.Open(dir, b.opts)
	if err != nil {
		t.Fatal(err)
	}
	return &scenario{t: t, b: b, dir: dir, st: st, opts: b.opts}
}

// start makes subtask i of par at the given attempt, restored from entries
// when restored is set, and runs InitializeState and Open as a task does.
func (s *scenario) start(subtask, par, attempt int, restored bool, entries [][]byte, roll int) (*Sink[string], error) {
	opts := s.opts
	ctx := runtime.NewRuntimeContext(runtime.ContextConfig{
		JobID: s.jobID(), JobName: "test", OperatorName: "sink", UID: "sink",
		Subtask: subtask, Parallelism: par, Attempt: attempt, Restored: restored,
		OpenStorage: func(u string) (storage.Storage, error) { return storage.Open(u, opts) },
		Context:     s.t.Context(),
	})
	k := &Sink[string]{Dir: s.dir, RollBytes: roll, Append: s.append,
		Encode: func(dst []byte, v string) []byte { return append(dst, v...) }}
	if err := k.InitializeState(ctx, entries); err != nil {
		return nil, err
	}
	if err := k.Open(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

func (s *scenario) mustStart(subtask, par, attempt int, restored bool, entries [][]byte, roll int) *Sink[string] {
	s.t.Helper()
	k, err := s.start(subtask, par, attempt, restored, entries, roll)
	if err != nil {
		s.t.Fatal(err)
	}
	return k
}

func write(t *testing.T, k *Sink[string], lines ...string) {
	t.Helper()
	for _, l := range lines {
		if err := k.Invoke(l); err != nil {
			t.Fatal(err)
		}
	}
}

func snapshot(t *testing.T, k *Sink[string], id int64) [][]byte {
	t.Helper()
	e, err := k.SnapshotState(id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func notify(t *testing.T, k *Sink[string], id int64) {
	t.Helper()
	if err := k.NotifyCheckpointComplete(id); err != nil {
		t.Fatal(err)
	}
}

// committed counts the lines of the visible part files.
func (s *scenario) committed() map[string]int {
	s.t.Helper()
	ctx := context.Background()
	objs, err := s.st.List(ctx, "")
	if err != nil {
		s.t.Fatal(err)
	}
	lines := map[string]int{}
	for _, o := range objs {
		if strings.HasPrefix(o.Name, PendingPrefix) {
			continue
		}
		if !strings.HasPrefix(o.Name, PartPrefix) || !strings.HasSuffix(o.Name, PartSuffix) || strings.Contains(o.Name, "/") {
			s.t.Fatalf("unexpected object %q in the sink's directory", o.Name)
		}
		data, err := s.st.Get(ctx, o.Name)
		if err != nil {
			s.t.Fatal(err)
		}
		if len(data) == 0 || data[len(data)-1] != '\n' {
			s.t.Fatalf("part %s is empty or does not end in a newline: %q", o.Name, data)
		}
		for l := range strings.SplitSeq(strings.TrimSuffix(string(data), "\n"), "\n") {
			lines[l]++
		}
	}
	return lines
}

// pendingNames lists the objects under .pending/.
func (s *scenario) pendingNames() []string {
	s.t.Helper()
	objs, err := s.st.List(context.Background(), PendingPrefix)
	if err != nil {
		s.t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.Name)
	}
	return names
}

// expectExactly fails unless the committed lines are exactly want, once each.
func (s *scenario) expectExactly(want ...string) {
	s.t.Helper()
	got := s.committed()
	for _, w := range want {
		if got[w] != 1 {
			s.t.Errorf("line %q committed %d times, want once", w, got[w])
		}
	}
	for l, n := range got {
		if !slices.Contains(want, l) {
			s.t.Errorf("line %q committed %d times, want never", l, n)
		}
	}
}

func seq(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, prefix+strconv.Itoa(i))
	}
	return out
}

// TestSink runs every scenario on a temp dir and on a real MinIO.
func TestSink(t *testing.T) {
	scenarios := []struct {
		name string
		run  func(*testing.T, *scenario)
	}{
		{"VisibleOnlyAfterNotify", testVisibleOnlyAfterNotify},
		{"FailureDropsUncheckpointed", testFailureDropsUncheckpointed},
		{"RestoreCommitsUnnotified", testRestoreCommitsUnnotified},
		{"Rescale2To1", testRescale2To1},
		{"Rescale1To3", testRescale1To3},
		{"RollBytes", testRollBytes},
		{"EndInputCommitsRest", testEndInputCommitsRest},
		{"MissingPendingAndFinal", testMissingPendingAndFinal},
		{"CleanupRemovesOnlyStale", testCleanupRemovesOnlyStale},
		{"WithoutCheckpointsPublishesOnRoll", testWithoutCheckpointsPublishesOnRoll},
		{"AsyncSnapshotUploadsOffTheTask", testAsyncSnapshot},
		{"OtherJobsDirectory", testOtherJobsDirectory},
	}
	for _, b := range []func(*testing.T) backend{func(*testing.T) backend { return dirBackend() }, minioBackend} {
		bk := b(t)
		t.Run(bk.name, func(t *testing.T) {
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) { sc.run(t, newScenario(t, bk)) })
			}
		})
	}
}

func testVisibleOnlyAfterNotify(t *testing.T, s *scenario) {
	k := s.mustStart(0, 1, 0, false, nil, 0)
	write(t, k, "a", "b", "c")
	if got := s.committed(); len(got) != 0 {
		t.Fatalf("committed before any checkpoint: %v", got)
	}
	entries := snapshot(t, k, 1)
	if len(entries) != 1 {
		t.Fatalf("snapshot 1 has %d entries, want 1 pending part", len(entries))
	}
	write(t, k, "d")
	if got := s.committed(); len(got) != 0 {
		t.Fatalf("committed before checkpoint 1 completed: %v", got)
	}
	notify(t, k, 1)
	s.expectExactly("a", "b", "c")
	// A repeated or older notification commits nothing new.
	notify(t, k, 1)
	notify(t, k, 0)
	s.expectExactly("a", "b", "c")
	if e := snapshot(t, k, 2); len(e) != 1 {
		t.Fatalf("snapshot 2 has %d entries, want only the part holding d", len(e))
	}
	// An empty buffer makes no part.
	if e := snapshot(t, k, 3); len(e) != 1 {
		t.Fatalf("snapshot 3 has %d entries, want 1 (checkpoint 2's part, uncommitted)", len(e))
	}
	s.expectExactly("a", "b", "c")
	notify(t, k, 3) // skipped notification 2: 3 implies it
	s.expectExactly("a", "b", "c", "d")
	if p := s.pendingNames(); len(p) != 0 {
		t.Fatalf("pending parts left after every checkpoint completed: %v", p)
	}
	if e := snapshot(t, k, 4); len(e) != 0 {
		t.Fatalf("snapshot 4 has %d entries, want none", len(e))
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
}

// testFailureDropsUncheckpointed: records after the last completed
// checkpoint are not visible after a failure, and replaying them after the
// restore yields every line exactly once.
func testFailureDropsUncheckpointed(t *testing.T, s *scenario) {
	k := s.mustStart(0, 1, 0, false, nil, 16)
	write(t, k, seq("r", 1, 10)...)
	completed := snapshot(t, k, 1)
	notify(t, k, 1)
	write(t, k, seq("r", 11, 20)...) // rolls pending parts (RollBytes 16)
	snapshot(t, k, 2)                // never completes
	write(t, k, seq("r", 21, 25)...)
	k.Close() // the task fails: no EndInput
	s.expectExactly(seq("r", 1, 10)...)
	if len(s.pendingNames()) == 0 {
		t.Fatal("the failed attempt left no pending parts; the test proves nothing")
	}

	// Restart from checkpoint 1 and replay what followed it.
	k = s.mustStart(0, 1, 1, true, completed, 16)
	s.expectExactly(seq("r", 1, 10)...)
	if p := s.pendingNames(); len(p) != 0 {
		t.Fatalf("stale pending parts of the failed attempt survived the restore: %v", p)
	}
	write(t, k, seq("r", 11, 20)...)
	snapshot(t, k, 2)
	notify(t, k, 2)
	write(t, k, seq("r", 21, 25)...)
	if err := k.EndInput(); err != nil {
		t.Fatal(err)
	}
	k.Close()
	s.expectExactly(seq("r", 1, 25)...)
}

// testRestoreCommitsUnnotified: a completed checkpoint whose notification
// never arrived is committed by the restore, exactly once even if the
// restore itself is repeated.
func testRestoreCommitsUnnotified(t *testing.T, s *scenario) {
	k := s.mustStart(0, 1, 0, false, nil, 8)
	write(t, k, seq("x", 1, 9)...)
	entries := snapshot(t, k, 7)
	if len(entries) < 2 {
		t.Fatalf("want several pending parts, got %d", len(entries))
	}
	k.Close()
	if got := s.committed(); len(got) != 0 {
		t.Fatalf("committed without a notification: %v", got)
	}
	for attempt := 1; attempt <= 2; attempt++ { // the second restore finds them committed
		k = s.mustStart(0, 1, attempt, true, entries, 8)
		s.expectExactly(seq("x", 1, 9)...)
		k.Close()
	}
}

func testRescale2To1(t *testing.T, s *scenario) {
	a := s.mustStart(0, 2, 0, false, nil, 10)
	b := s.mustStart(1, 2, 0, false, nil, 10)
	write(t, a, seq("a", 1, 8)...)
	write(t, b, seq("b", 1, 8)...)
	ea, eb := snapshot(t, a, 1), snapshot(t, b, 1)
	notify(t, a, 1) // b's notification is lost
	write(t, a, "a-lost")
	a.Close()
	b.Close()
	s.expectExactly(seq("a", 1, 8)...)

	union := slices.Concat(ea, eb)
	k := s.mustStart(0, 1, 1, true, union, 10)
	s.expectExactly(slices.Concat(seq("a", 1, 8), seq("b", 1, 8))...)
	k.Close()
}

func testRescale1To3(t *testing.T, s *scenario) {
	k := s.mustStart(0, 1, 0, false, nil, 10)
	write(t, k, seq("p", 1, 12)...)
	entries := snapshot(t, k, 1)
	if len(entries) < 3 {
		t.Fatalf("want several pending parts, got %d", len(entries))
	}
	k.Close()
	// Subtasks 1 and 2 own nothing of old subtask 0.
	for _, i := range []int{2, 1} {
		n := s.mustStart(i, 3, 1, true, entries, 10)
		if got := s.committed(); len(got) != 0 {
			t.Fatalf("new subtask %d committed old subtask 0's parts: %v", i, got)
		}
		n.Close()
	}
	n := s.mustStart(0, 3, 1, true, entries, 10)
	s.expectExactly(seq("p", 1, 12)...)
	n.Close()
}

func testRollBytes(t *testing.T, s *scenario) {
	k := s.mustStart(0, 1, 0, false, nil, 10)
	write(t, k, "aaa", "bbb") // 8 bytes with newlines: below RollBytes
	if p := s.pendingNames(); len(p) != 0 {
		t.Fatalf("rolled too early: %v", p)
	}
	write(t, k, "ccc") // 12 >= 10: rolls
	if p := s.pendingNames(); len(p) != 1 {
		t.Fatalf("pending after reaching RollBytes: %v, want one part", p)
	}
	write(t, k, "dddddddddddddddddddd") // one record above RollBytes: a part of its own
	write(t, k, "e")
	if p := s.pendingNames(); len(p) != 2 {
		t.Fatalf("pending: %v, want two parts", p)
	}
	snapshot(t, k, 1)
	notify(t, k, 1)
	s.expectExactly("aaa", "bbb", "ccc", "dddddddddddddddddddd", "e")
	objs, err := s.st.List(context.Background(), PartPrefix)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, o := range objs {
		sizes = append(sizes, o.Size)
	}
	slices.Sort(sizes)
	if want := []int64{2, 12, 21}; !slices.Equal(sizes, want) {
		t.Fatalf("part sizes %v, want %v", sizes, want)
	}
}

// testAsyncSnapshot: the barrier only hands the part over; records that
// arrive before the upload runs belong to the next checkpoint.
func testAsyncSnapshot(t *testing.T, s *scenario) {
	k := s.mustStart(0, 1, 0, false, nil, 0)
	write(t, k, "a", "b")
	finish, err := k.SnapshotStateAsync(1)
	if err != nil {
		t.Fatal(err)
	}
	if p := s.pendingNames(); len(p) != 0 {
		t.Fatalf("the synchronous part uploaded %v", p)
	}
	write(t, k, "c") // after barrier 1, before its upload
	entries, err := finish(context.Background())
	if err != nil || len(entries) != 1 {
		t.Fatalf("async part: %d entries, %v", len(entries), err)
	}
	notify(t, k, 1)
	s.expectExactly("a", "b")
	snapshot(t, k, 2)
	notify(t, k, 2)
	s.expectExactly("a", "b", "c")
}

// testWithoutCheckpointsPublishesOnRoll: with checkpointing off nothing
// would ever commit an unbounded job's parts, so they are published as
// they roll.
func testWithoutCheckpointsPublishesOnRoll(t *testing.T, s *scenario) {
	ctx := runtime.NewRuntimeContext(runtime.ContextConfig{JobName: "test", UID: "sink", NoCheckpoints: true,
		OpenStorage: func(u string) (storage.Storage, error) { return storage.Open(u, s.opts) }, Context: t.Context()})
	k := &Sink[string]{Dir: s.dir, RollBytes: 10, Encode: func(dst []byte, v string) []byte { return append(dst, v...) }}
	if err := k.InitializeState(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := k.Open(ctx); err != nil {
		t.Fatal(err)
	}
	write(t, k, "aaa", "bbb", "ccc") // rolls at 12 bytes
	s.expectExactly("aaa", "bbb", "ccc")
	write(t, k, "d")
	if err := k.EndInput(); err != nil {
		t.Fatal(err)
	}
	s.expectExactly("aaa", "bbb", "ccc", "d")
	if p := s.pendingNames(); len(p) != 0 {
		t.Errorf("pending parts left: %v", p)
	}
}

func testEndInputCommitsRest(t *testing.T, s *scenario) {
	k := s.mustStart(0, 1, 0, false, nil, 0)
	write(t, k, "1", "2")
	snapshot(t, k, 1) // never notified: EndInput implies it completed
	write(t, k, "3")
	if err := k.EndInput(); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	s.expectExactly("1", "2", "3")
	if p := s.pendingNames(); len(p) != 0 {
		t.Fatalf("pending parts left after EndInput: %v", p)
	}
}

func testMissingPendingAndFinal(t *testing.T, s *scenario) {
	k := s.mustStart(0, 1, 0, false, nil, 0)
	write(t, k, "gone")
	entries := snapshot(t, k, 1)
	k.Close()
	p := s.pendingNames()
	if len(p) != 1 {
		t.Fatalf("pending: %v", p)
	}
	if err := s.st.Delete(context.Background(), p[0]); err != nil {
		t.Fatal(err)
	}
	_, err := s.start(0, 1, 1, true, entries, 0)
	if err == nil {
		t.Fatal("restore succeeded although a committed checkpoint's part is lost")
	}
	if !strings.Contains(err.Error(), p[0]) || !strings.Contains(err.Error(), "lost") {
		t.Fatalf("error does not name the lost part %s: %v", p[0], err)
	}
}

func testCleanupRemovesOnlyStale(t *testing.T, s *scenario) {
	ctx := context.Background()
	// Attempt 0, subtasks 0 and 1: checkpoint 1 completes (its notification
	// lost for subtask 1), then both roll parts no checkpoint lists.
	a := s.mustStart(0, 2, 0, false, nil, 4)
	b := s.mustStart(1, 2, 0, false, nil, 4)
	write(t, a, "a1")
	write(t, b, "b1")
	union := slices.Concat(snapshot(t, a, 1), snapshot(t, b, 1))
	notify(t, a, 1)
	write(t, a, "a-stale")
	write(t, b, "b-stale")
	a.Close()
	b.Close()
	// Objects cleanup must keep: a part of a newer attempt, and a file it
	// does not understand.
	newer := s.mustStart(1, 2, 5, false, nil, 4)
	write(t, newer, "newer")
	newerPending := s.pendingNames()
	foreign := PendingPrefix + "notes.txt"
	if err := s.st.Put(ctx, foreign, []byte("keep me")); err != nil {
		t.Fatal(err)
	}
	before := s.pendingNames()
	if len(before) != 5 { // b1 (listed), a-stale, b-stale, newer, notes
		t.Fatalf("pending before restore: %v", before)
	}

	// Restore at attempt 2, parallelism 2. Subtask 1 commits b1 and
	// deletes nothing.
	r1 := s.mustStart(1, 2, 2, true, union, 4)
	s.expectExactly("a1", "b1")
	if p := s.pendingNames(); len(p) != 4 {
		t.Fatalf("subtask 1 changed more than its restored part: %v", p)
	}
	r0 := s.mustStart(0, 2, 2, true, union, 4)
	got := s.pendingNames()
	var want []string
	for _, n := range newerPending {
		if strings.Contains(n, "-1-5-") {
			want = append(want, n)
		}
	}
	want = append(want, foreign)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("pending after subtask 0's cleanup: %v, want %v", got, want)
	}
	// The new attempt's own parts survive a cleanup by a later restore of
	// the same attempt number (a concurrent subtask 0 of that attempt).
	write(t, r0, "r0")
	snapshot(t, r0, 2)
	r0b := s.mustStart(0, 2, 2, true, union, 4)
	if got := s.pendingNames(); len(got) != len(want)+1 {
		t.Fatalf("cleanup deleted a part of the current attempt: %v", got)
	}
	r0b.Close()
	r0.Close()
	r1.Close()
	newer.Close()
	s.expectExactly("a1", "b1")
}

// testOtherJobsDirectory: a job starting fresh refuses a directory with
// another job's committed parts (unrecoverably), unless it appends; its own
// restarts, restores (a savepoint gives a new job ID) and appending jobs
// work, and no job's cleanup deletes another's pending parts.
func testOtherJobsDirectory(t *testing.T, s *scenario) {
	k := s.mustStart(0, 1, 0, false, nil, 0)
	write(t, k, "job1-a")
	snapshot(t, k, 1)
	notify(t, k, 1)
	k.Close()
	// Job 1 restarting without a checkpoint to restore: its own parts.
	k = s.mustStart(0, 1, 1, false, nil, 0)
	write(t, k, "job1-b")
	snapshot(t, k, 2) // uploaded, never committed: job 1's pending part
	k.Close()
	job1Pending := s.pendingNames()
	if len(job1Pending) != 1 {
		t.Fatalf("job 1 pending %v, want one part", job1Pending)
	}

	s.job = "job2"
	_, err := s.start(0, 1, 0, false, nil, 0)
	if err == nil {
		t.Fatal("a new job started in a directory holding another job's parts")
	}
	if !errors.Is(err, runtime.ErrUnrecoverable) || !strings.Contains(err.Error(), s.st.URL()) ||
		!strings.Contains(err.Error(), "append=true") || !strings.Contains(err.Error(), "part-job1-") {
		t.Fatalf("error %v: want an unrecoverable one naming the directory, a part of job 1 and append=true", err)
	}
	// Restored (from job 1's savepoint, under a new ID): allowed.
	s.mustStart(0, 1, 0, true, nil, 0).Close()
	// Appending: allowed, and both jobs' records are there.
	s.append = true
	k = s.mustStart(0, 1, 0, false, nil, 0)
	write(t, k, "job2-a")
	snapshot(t, k, 1)
	notify(t, k, 1)
	k.Close()
	// Job 2's restart cleans up its own stale parts, not job 1's.
	s.mustStart(0, 1, 1, true, nil, 0).Close()
	if got := s.pendingNames(); !slices.Equal(got, job1Pending) {
		t.Fatalf("pending after job 2's cleanup %v, want job 1's %v", got, job1Pending)
	}
	s.expectExactly("job1-a", "job2-a")
}

// TestSinkStorageErrors checks that refused credentials and an unreachable
// store fail the write with context, and never leak the secret.
func TestSinkStorageErrors(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.MakeBucket(t, "errors")
	bad := srv.Options()
	bad.SecretKey = "not-the-secret-xyzzy"
	// Appending, so the sink does not list the directory at the start.
	s := &scenario{t: t, dir: bucket + "/x", opts: bad, append: true}
	if _, err := (&scenario{t: t, dir: bucket + "/x", opts: bad}).start(0, 1, 0, false, nil, 0); err == nil ||
		!strings.Contains(err.Error(), "refused") || errors.Is(err, runtime.ErrUnrecoverable) {
		t.Fatalf("start with refused credentials: %v, want a (recoverable) error saying so", err)
	}
	k := s.mustStart(0, 1, 0, false, nil, 0)
	write(t, k, "line")
	_, err := k.SnapshotState(1)
	if err == nil {
		t.Fatal("snapshot with refused credentials succeeded")
	}
	if !strings.Contains(err.Error(), "checkpoint 1") || !strings.Contains(err.Error(), "filesink") {
		t.Fatalf("error lacks context: %v", err)
	}
	if strings.Contains(err.Error(), bad.SecretKey) {
		t.Fatalf("error leaks the secret key: %v", err)
	}

	// A rolled part on a store nobody listens on fails Invoke.
	down := srv.Options()
	down.Endpoint = "http://127.0.0.1:1"
	s = &scenario{t: t, dir: bucket + "/y", opts: down, append: true}
	k = s.mustStart(0, 1, 0, false, nil, 1)
	if err := k.Invoke("x"); err == nil || !strings.Contains(err.Error(), "upload pending part") {
		t.Fatalf("Invoke on an unreachable store: %v", err)
	}
}

// TestEntryRoundTrip checks the state encoding and its rejection of
// corrupt entries.
func TestEntryRoundTrip(t *testing.T) {
	p := pendingFile{checkpoint: 42, subtask: 3, pending: PendingPrefix + "part-3-1-ab-0", final: "part-3-1-ab-0.jsonl"}
	got, err := decodeEntry(appendEntry(nil, p))
	if err != nil || got.checkpoint != p.checkpoint || got.subtask != p.subtask || got.pending != p.pending || got.final != p.final {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	e := appendEntry(nil, p)
	for _, bad := range [][]byte{nil, {9}, e[:len(e)-1], append(slices.Clone(e), 0),
		appendEntry(nil, pendingFile{pending: "part-x", final: "part-x.jsonl"})} {
		if _, err := decodeEntry(bad); !errors.Is(err, runtime.ErrCorrupt) {
			t.Errorf("decodeEntry(%q) = %v, want ErrCorrupt", bad, err)
		}
	}
}

func TestPendingOwner(t *testing.T) {
	for name, want := range map[string]string{
		".pending/part-j1-0-3-0123abcd-7":        "j1 3",
		".pending/part-ab12-12-0-ff-0":           "ab12 0",
		".pending/part-my-job-1-2-ff-0":          "my-job 2",
		".pending/part-0-3-0123abcd-7":           "", // no job ID: an older sink's
		".pending/part-j1-1-x-ff-0":              "",
		".pending/part-j1-x-1-ff-0":              "",
		".pending/part-j1-1-2-ff":                "",
		".pending/notes.txt":                     "",
		".pending/sub/part-j1-1-2-ff-0":          "",
		"part-j1-1-2-ff-0.jsonl":                 "",
		".pending/part--1-2-ff-0":                "",
		".pending/part-j1-1--2-ff-0":             "",
		".pending/part-0123456789abcdef-0-0-a-0": "0123456789abcdef 0",
	} {
		job, att, ok := pendingOwner(name)
		got := ""
		if ok {
			got = fmt.Sprint(job, " ", att)
		}
		if got != want {
			t.Errorf("pendingOwner(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestInvokeDoesNotAllocate guards the hot path: appending a record to a
// grown buffer allocates nothing.
func TestInvokeDoesNotAllocate(t *testing.T) {
	k := &Sink[int64]{Dir: t.TempDir(), RollBytes: 1 << 20, Encode: func(dst []byte, v int64) []byte { return strconv.AppendInt(dst, v, 10) }}
	if err := k.InitializeState(runtime.NewRuntimeContext(runtime.ContextConfig{}), nil); err != nil {
		t.Fatal(err)
	}
	k.buf = make([]byte, 0, 2<<20)
	var v int64
	allocs := testing.AllocsPerRun(1000, func() {
		v++
		if err := k.Invoke(v); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Invoke allocates %v times per record", allocs)
	}
}

// BenchmarkInvoke measures the hot path without uploads.
func BenchmarkInvoke(b *testing.B) {
	k := &Sink[int64]{Dir: b.TempDir(), RollBytes: 1 << 30, Encode: func(dst []byte, v int64) []byte { return strconv.AppendInt(dst, v, 10) }}
	if err := k.InitializeState(runtime.NewRuntimeContext(runtime.ContextConfig{}), nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := int64(0); b.Loop(); i++ {
		if err := k.Invoke(i); err != nil {
			b.Fatal(err)
		}
		if len(k.buf) > 64<<20 {
			k.buf = k.buf[:0] // stay below RollBytes: uploads are not measured here
		}
	}
}
