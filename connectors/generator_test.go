package connectors

import (
	"errors"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
)

type collect []int64

func (c *collect) Collect(v int64) { *c = append(*c, v) }

// TestGeneratorResumesAtItsPosition: a generator restored from a snapshot
// emits exactly the records after it; other subtasks' positions are not
// its own.
func TestGeneratorResumesAtItsPosition(t *testing.T) {
	ctx := runtime.NewRuntimeContext(runtime.ContextConfig{Subtask: 1, Parallelism: 2})
	g := &Generator[int64]{Count: 10, Next: func(i int64, _ time.Time) int64 { return i }}
	if err := g.InitializeState(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var out collect
	g.Count = 4
	for {
		if _, err := g.Poll(&out); errors.Is(err, runtime.ErrEndOfInput) {
			break
		}
	}
	entries, err := g.SnapshotState(1)
	if err != nil {
		t.Fatal(err)
	}
	other := &Generator[int64]{Next: func(i int64, _ time.Time) int64 { return -1 }}
	other.InitializeState(runtime.NewRuntimeContext(runtime.ContextConfig{Subtask: 0, Parallelism: 2}), nil)
	for i := 0; i < 7; i++ {
		other.Poll(&collect{})
	}
	otherEntries, _ := other.SnapshotState(1)

	restored := &Generator[int64]{Count: 10, Rate: 1000, Next: func(i int64, _ time.Time) int64 { return i }}
	if err := restored.InitializeState(ctx, append(otherEntries, entries...)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		wait, err := restored.Poll(&out)
		if errors.Is(err, runtime.ErrEndOfInput) {
			break
		}
		time.Sleep(wait)
	}
	want := []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	if len(out) != len(want) {
		t.Fatalf("emitted %v, want %v", out, want)
	}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("emitted %v, want %v", out, want)
		}
	}
	if err := restored.InitializeState(ctx, [][]byte{{0xff}}); !errors.Is(err, runtime.ErrCorrupt) {
		t.Errorf("corrupt position accepted: %v", err)
	}
}
