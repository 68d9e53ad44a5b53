package jobmanager

import (
	"bytes"
	"io"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

// logEntries encodes the command log as raft entries.
func logEntries(t *testing.T) []*raft.Log {
	var out []*raft.Log
	for k, cmd := range commandLog() {
		b, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &raft.Log{Index: uint64(k + 1), Term: 1, Type: raft.LogCommand, Data: b})
	}
	return out
}

type memSink struct {
	bytes.Buffer
	canceled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.canceled = true; return nil }
func (s *memSink) Close() error  { return nil }

// Two members applying the same log reach the same state, entry by entry,
// and a snapshot of one restored into a third gives that state too.
func TestFSMsApplyingTheSameLogAgree(t *testing.T) {
	a, b := newFSM(), newFSM()
	for _, l := range logEntries(t) {
		ra, rb := a.Apply(l).(applyResult), b.Apply(l).(applyResult)
		if !reflect.DeepEqual(ra.trans, rb.trans) || (ra.err == nil) != (rb.err == nil) {
			t.Fatalf("entry %d: %v / %v", l.Index, ra, rb)
		}
		if !reflect.DeepEqual(a.jobs(), b.jobs()) {
			t.Fatalf("entry %d: the members differ", l.Index)
		}
	}
	if m := a.members(); m["jm-1"] != "10.0.0.1:6123" {
		t.Errorf("members %v", m)
	}
	if j, _ := a.job("j1"); j.LastCheckpointID != 7 {
		t.Errorf("last checkpoint ID %d after the reservation, want 7", j.LastCheckpointID)
	}

	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil || sink.canceled {
		t.Fatalf("persist: %v", err)
	}
	c := newFSM()
	if err := c.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.jobs(), c.jobs()) || !reflect.DeepEqual(a.members(), c.members()) {
		t.Errorf("restored state differs:\n%+v\n%+v", a.jobs(), c.jobs())
	}
	// The restored member goes on applying as the others do.
	next := &raft.Log{Index: 100, Type: raft.LogCommand}
	next.Data, _ = EncodeCommand(ReserveCheckpoint{JobID: "j1", CheckpointID: 8})
	a.Apply(next)
	c.Apply(next)
	if !reflect.DeepEqual(a.jobs(), c.jobs()) {
		t.Error("the restored member diverged on the next entry")
	}
}

func TestReservedCheckpointIDsNeverRepeat(t *testing.T) {
	s := deployed(t)
	mustApply(t, s, ReserveCheckpoint{JobID: "j1", CheckpointID: 1})
	if _, err := s.Apply(ReserveCheckpoint{JobID: "j1", CheckpointID: 1}); err == nil {
		t.Fatal("checkpoint ID 1 reserved twice")
	}
	mustApply(t, s, AbortCheckpoint{JobID: "j1", CheckpointID: 1})
	mustApply(t, s, ReserveCheckpoint{JobID: "j1", CheckpointID: 2})
}

func TestRestoreRejectsOtherVersions(t *testing.T) {
	f := newFSM()
	for _, in := range []string{`{"version": 99}`, `not json`} {
		if err := f.Restore(io.NopCloser(bytes.NewReader([]byte(in)))); err == nil {
			t.Errorf("Restore(%q) succeeded", in)
		}
	}
}
