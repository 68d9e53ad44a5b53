package statefill

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/statebackend/pebblestate"
)

// TestRunsOnBothBackends runs three rounds over 3000 keys of 200 bytes in
// one task: every record of rounds 2 and 3 checks the value of the round
// before, on the memory and the Pebble backend, and moves its key's two
// timers.
func TestRunsOnBothBackends(t *testing.T) {
	for _, kind := range []string{runtime.StateBackendMemory, runtime.StateBackendPebble} {
		t.Run(kind, func(t *testing.T) {
			g, err := jobs.Build(Name, 1, map[string]string{"keys": "3000", "bytes": "200", "rounds": "3", "timers": "2"})
			if err != nil {
				t.Fatal(err)
			}
			task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1,
				StateBackend: runtime.StateBackend{Kind: kind, Dir: t.TempDir()}})
			if err != nil {
				t.Fatal(err)
			}
			if err := task.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if in := task.Operators()[1].In; in != 9000 {
				t.Errorf("checker saw %d records, want 9000", in)
			}
		})
	}
}

// TestCheckerCatchesLostState feeds round 2 of a key that never had round
// 1: the checker must fail, naming the key.
func TestCheckerCatchesLostState(t *testing.T) {
	c := &checker{size: 32}
	c.val = &fakeValue{}
	err := c.ProcessElement(Record{Key: 7, Round: 2}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "key 7") {
		t.Fatalf("err %v, want a lost-state error naming key 7", err)
	}
	c.val.Update(payload(nil, 7, 1, 32))
	c.val.(*fakeValue).v[0] ^= 1
	if err := c.ProcessElement(Record{Key: 7, Round: 2}, nil, nil); err == nil {
		t.Fatal("a corrupted value passed the check")
	}
}

type fakeValue struct {
	v  []byte
	ok bool
}

func (f *fakeValue) Value() ([]byte, bool) { return f.v, f.ok }
func (f *fakeValue) Update(v []byte)       { f.v, f.ok = v, true }
func (f *fakeValue) Clear()                { f.v, f.ok = nil, false }

// TestFullStateDiskFailsTheTask runs state-fill on the pebble backend on a
// file system that is full after 18 MiB (2 MiB beyond the store's 16 MiB
// ballast): the task must end with an error
// that says the keyed state's disk is full, not hang and not go on.
func TestFullStateDiskFailsTheTask(t *testing.T) {
	g, err := jobs.Build(Name, 1, map[string]string{"keys": "50000", "bytes": "1000", "rounds": "1"})
	if err != nil {
		t.Fatal(err)
	}
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1,
		StateBackend: runtime.StateBackend{Kind: runtime.StateBackendPebble, Dir: t.TempDir(),
			FS: pebblestate.NewLimitedFS(vfs.Default, 18<<20)}})
	if err != nil {
		t.Fatal(err)
	}
	err = task.Run(context.Background())
	if err == nil || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "keyed state") {
		t.Fatalf("task ended with %v, want a keyed state error wrapping ENOSPC", err)
	}
	t.Log(err)
}
