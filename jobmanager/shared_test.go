package jobmanager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// TestCollectSharedKeepsWhatRetainedCheckpointsUse: after checkpoint 4
// completes, the shared files of retired (2) and aborted (3) checkpoints
// go, those checkpoints 4 and 1 (retained) refer to stay, and so does the
// file of checkpoint 5, which may be in flight. A JobManager that never
// saw the checkpoints (a new leader: nothing cached) decides the same from
// their _metadata; if one of them cannot be read, nothing is deleted.
func TestCollectSharedKeepsWhatRetainedCheckpointsUse(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	st, err := storage.Open(root, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	name := func(id int64) string { return statebackend.SharedFileName("op", 0, id) }
	for id := int64(1); id <= 5; id++ {
		if err := st.Put(ctx, "job1/shared/"+name(id), []byte("state")); err != nil {
			t.Fatal(err)
		}
	}
	writeMeta := func(id int64, files ...int64) CompletedCheckpoint {
		var chain []statebackend.FileRef
		for i, f := range files {
			chain = append(chain, statebackend.FileRef{Path: name(f), Size: 5, Shared: true, Delta: i > 0})
		}
		m := &statebackend.Metadata{JobID: "job1", JobName: "j", CheckpointID: id, MaxParallelism: 8,
			Operators: []statebackend.OperatorState{{UID: "op", Parallelism: 1, Subtasks: []statebackend.SubtaskState{
				{Subtask: 0, Chain: chain, KeyGroups: statebackend.KeyGroupRange{First: 0, Last: 7}}}}}}
		dir := filepath.Join("job1", fmt.Sprintf("chk-%d", id))
		if err := st.Put(ctx, dir+"/"+metadataFile, statebackend.EncodeMetadata(m)); err != nil {
			t.Fatal(err)
		}
		return CompletedCheckpoint{ID: id, Path: filepath.Join(root, dir)}
	}
	job := &Job{ID: "job1", Checkpoints: []CompletedCheckpoint{writeMeta(1, 1), writeMeta(4, 1, 4)}}
	left := func() []string {
		objs, err := st.List(ctx, "job1/shared/")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range objs {
			out = append(out, o.Name[len("job1/shared/"):])
		}
		return out
	}

	// A retained checkpoint's _metadata is unreadable: nothing goes.
	broken := &Job{ID: "job1", Checkpoints: append(slices.Clone(job.Checkpoints), CompletedCheckpoint{ID: 9, Path: filepath.Join(root, "job1", "chk-9")})}
	jm := startJobManager(t, Config{CheckpointStorage: root}).jm
	if err := jm.collectShared(ctx, broken, 4); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("with an unreadable retained checkpoint: %v, want an error", err)
	}
	if got := left(); len(got) != 5 {
		t.Fatalf("files deleted although a retained checkpoint is unreadable: %v left", got)
	}

	fresh := startJobManager(t, Config{CheckpointStorage: root}).jm // nothing cached
	if err := fresh.collectShared(ctx, job, 4); err != nil {
		t.Fatal(err)
	}
	if got, want := left(), []string{name(1), name(4), name(5)}; !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(root, "job1", "chk-4", metadataFile)); err != nil {
		t.Errorf("the checkpoints' own directories must stay: %v", err)
	}
}

// TestCheckChainsRefusesAHole: a checkpoint whose chain names a shared
// file no retained checkpoint holds (nor the checkpoint itself wrote) is
// refused, naming the file; one extending the latest checkpoint's chain
// passes.
func TestCheckChainsRefusesAHole(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	st, err := storage.Open(root, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	name := func(id int64) string { return statebackend.SharedFileName("op", 0, id) }
	m := &statebackend.Metadata{JobID: "job1", JobName: "j", CheckpointID: 4, MaxParallelism: 8,
		Operators: []statebackend.OperatorState{{UID: "op", Parallelism: 1, Subtasks: []statebackend.SubtaskState{
			{Subtask: 0, Chain: []statebackend.FileRef{{Path: name(1), Shared: true}, {Path: name(4), Shared: true, Delta: true}}}}}}}
	if err := st.Put(ctx, "job1/chk-4/"+metadataFile, statebackend.EncodeMetadata(m)); err != nil {
		t.Fatal(err)
	}
	job := &Job{ID: "job1", Checkpoints: []CompletedCheckpoint{{ID: 4, Path: filepath.Join(root, "job1", "chk-4")}}}
	jm := startJobManager(t, Config{CheckpointStorage: root}).jm
	ack := func(files ...int64) *pendingCheckpoint {
		var chain []*weirv1.ChainFile
		for _, f := range files {
			chain = append(chain, &weirv1.ChainFile{Path: name(f), Shared: true})
		}
		return &pendingCheckpoint{id: 5, acks: map[taskRef]*weirv1.AcknowledgeCheckpointRequest{
			{0, 0}: {States: []*weirv1.OperatorStateHandle{{Uid: "op", Chain: chain}}}}}
	}
	if err := jm.checkChains(ctx, job, ack(1, 4, 5)); err != nil {
		t.Errorf("a chain extending the retained one: %v", err)
	}
	if err := jm.checkChains(ctx, job, ack(1, 3, 5)); err == nil || !strings.Contains(err.Error(), name(3)) {
		t.Errorf("a chain with a retired file: %v, want an error naming %s", err, name(3))
	}
}
