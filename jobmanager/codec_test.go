package jobmanager

import (
	"reflect"
	"testing"
)

// commandLog is a job's life in commands, touching every command type: it
// runs, checkpoints, loses a TaskManager, restarts, rescales back and forth,
// is cancelled and disposed of; a second job fails.
func commandLog() []Command {
	run := func(attempt int, tms ...string) []Command {
		var out []Command
		for v, n := range []int{1, 2} {
			for i := 0; i < n; i++ {
				out = append(out, UpdateTask{JobID: "j1", Vertex: v, Subtask: i, Attempt: attempt, TaskManagerID: tms[i],
					State: taskRunning, TimeMs: 20})
			}
		}
		return out
	}
	submit := submitCmd("j1", 1, 2)
	submit.Checkpointing = CheckpointConfig{IntervalMs: 1000, TimeoutMs: 60_000, Retained: 2}
	log := []Command{
		submit,
		DeployJob{JobID: "j1", Slots: []Slot{slot("tm-1", 0), slot("tm-2", 0)}, TimeMs: 2},
	}
	log = append(log, run(0, "tm-1", "tm-2")...)
	log = append(log,
		CompleteCheckpoint{JobID: "j1", Checkpoint: CompletedCheckpoint{ID: 1, Path: "file:///c/j1/chk-1", TriggerMs: 30,
			DurationMs: 5, SizeBytes: 100, MaxSyncNs: 7}},
		AbortCheckpoint{JobID: "j1", CheckpointID: 2},
		TaskManagerLost{TaskManagerID: "tm-2", Reason: "gone", TimeMs: 40},
		UpdateTask{JobID: "j1", Vertex: 0, Subtask: 0, TaskManagerID: "tm-1", State: taskCanceled, TimeMs: 41},
		UpdateTask{JobID: "j1", Vertex: 1, Subtask: 0, TaskManagerID: "tm-1", State: taskCanceled, TimeMs: 41},
		RestartJob{JobID: "j1", Attempt: 0, TimeMs: 200},
		DeployJob{JobID: "j1", Attempt: 1, Slots: []Slot{slot("tm-1", 0), slot("tm-3", 0)}, TimeMs: 210},
	)
	log = append(log, run(1, "tm-1", "tm-3")...)
	log = append(log,
		BeginRescale{JobID: "j1", Plan: RescalePlan{Parallelism: 3, Vertices: submitCmd("x", 1, 3).Vertices}},
		EndRescale{JobID: "j1"},
		// Refused (the job is not placing a rescale): errors replay too.
		FallBackRescale{JobID: "j1", Attempt: 1, Reason: "no slots", TimeMs: 250},
		CancelJob{JobID: "j1", TimeMs: 300},
		UpdateTask{JobID: "j1", Vertex: 0, Subtask: 0, Attempt: 1, TaskManagerID: "tm-1", State: taskCanceled, TimeMs: 301},
		UpdateTask{JobID: "j1", Vertex: 1, Subtask: 0, Attempt: 1, TaskManagerID: "tm-1", State: taskCanceled, TimeMs: 301},
		UpdateTask{JobID: "j1", Vertex: 1, Subtask: 1, Attempt: 1, TaskManagerID: "tm-3", State: taskCanceled, TimeMs: 301},
		DisposeCheckpoints{JobID: "j1", TimeMs: 400},
		SetMemberAddress{MemberID: "jm-1", Address: "10.0.0.1:6123"},
		ReserveCheckpoint{JobID: "j1", CheckpointID: 7},
		submitCmd("j2", 1, 1),
		FailJob{JobID: "j2", Reason: "no slots", Unrecoverable: true, TimeMs: 500},
	)
	return log
}

func TestEveryCommandTypeHasADecoder(t *testing.T) {
	seen := map[CommandType]bool{}
	for _, c := range commandLog() {
		seen[c.Type()] = true
		if _, ok := decoders[c.Type()]; !ok {
			t.Errorf("no decoder for %T", c)
		}
	}
	for ty := range decoders {
		if !seen[ty] {
			t.Errorf("command type %d is not in the test log; add it", ty)
		}
	}
}

// Applying the log directly and applying it through the codec must give
// the same state and the same transitions: the codec loses nothing.
func TestCommandsSurviveTheCodec(t *testing.T) {
	direct, decoded := NewMemStore(), NewMemStore()
	for k, cmd := range commandLog() {
		entry, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatalf("entry %d: %v", k, err)
		}
		back, err := DecodeCommand(entry)
		if err != nil {
			t.Fatalf("entry %d: %v", k, err)
		}
		if !reflect.DeepEqual(back, cmd) {
			t.Fatalf("entry %d: decoded %#v, want %#v", k, back, cmd)
		}
		tr1, err1 := direct.Apply(cmd)
		tr2, err2 := decoded.Apply(back)
		if !reflect.DeepEqual(tr1, tr2) || (err1 == nil) != (err2 == nil) {
			t.Fatalf("entry %d (%T): transitions %v / %v, errors %v / %v", k, cmd, tr1, tr2, err1, err2)
		}
	}
	if a, b := direct.Jobs(), decoded.Jobs(); !reflect.DeepEqual(a, b) {
		t.Errorf("states differ:\n%+v\n%+v", a, b)
	}
	j, _ := direct.Job("j1")
	if j.State != jobCanceled || j.Attempt != 1 || j.Restarts != 1 {
		t.Errorf("the log did not play out as meant: %s attempt %d restarts %d", JobStateName(j.State), j.Attempt, j.Restarts)
	}
}

func TestDecodeRejectsBadEntries(t *testing.T) {
	for _, entry := range [][]byte{nil, {200}, append([]byte{byte(SubmitJobType)}, "{not json"...)} {
		if _, err := DecodeCommand(entry); err == nil {
			t.Errorf("DecodeCommand(%q) succeeded", entry)
		}
	}
}
