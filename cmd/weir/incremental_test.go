package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/miniotest"
	"github.com/weirstream/weir/jobs/seqcheck"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// readMetadata reads and decodes the _metadata of the checkpoint at path.
func readMetadata(t *testing.T, srv *miniotest.Server, path string) *statebackend.Metadata {
	t.Helper()
	st, err := storage.Open(path, srv.Options())
	if err != nil {
		t.Fatal(err)
	}
	data, err := st.Get(context.Background(), statebackend.MetadataFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := statebackend.DecodeMetadata(path, data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestIncrementalCheckpointsSurviveKilledTaskManagers runs sequence-check
// with incremental checkpoints on three TaskManagers, checkpoints every
// 300 ms to MinIO, and kills a TaskManager running its tasks twice. The
// committed output must be exactly once; the retained checkpoints must
// build on earlier ones (deltas on the memory backend, SSTs uploaded by
// earlier checkpoints on pebble, where --incremental is the default); the
// job's shared directory must hold only files the retained checkpoints
// refer to; a savepoint must be self-contained and outlive the disposal
// of the job's checkpoints; and a restore from a checkpoint whose shared
// file was deleted must fail naming that file.
func TestIncrementalCheckpointsSurviveKilledTaskManagers(t *testing.T) {
	for _, backend := range []string{"memory", "pebble"} {
		t.Run(backend, func(t *testing.T) {
			// pebble's checkpoints are incremental without the flag.
			args := map[string][]string{"memory": {"--incremental"}, "pebble": {"--state-backend", "pebble"}}[backend]
			incrementalSurvivesKills(t, backend, args)
		})
	}
}

func incrementalSurvivesKills(t *testing.T, backend string, args []string) {
	c, srv, o := s3Cluster(t, 3, 2)
	jm := []string{"--jobmanager", c.JobManagerAddrs}
	const keys, count = 40, 300
	params := []string{"--param", fmt.Sprint("keys=", keys), "--param", fmt.Sprint("count=", count), "--param", "rate=400",
		"--state-backend", backend}
	id := submit(t, c, append(append([]string{"sequence-check", "--parallelism", "2", "--checkpoint-interval", "300ms",
		"--param", "output=s3://weir/out"}, args...), params...)...)
	st := waitCheckpoint(t, c, id, 0)
	if !st.Checkpointing.Incremental {
		t.Errorf("job status does not show incremental checkpoints: %+v", st.Checkpointing)
	}
	r := runWeir(t, append([]string{"job", "savepoint", id}, jm...)...)
	if r.ExitCode != 0 {
		t.Fatalf("savepoint: exit %d: %s", r.ExitCode, r.Stderr)
	}
	sp := strings.TrimSpace(r.Stdout)
	for _, op := range readMetadata(t, srv, sp).Operators {
		for _, s := range op.Subtasks {
			if len(s.Chain) > 0 || s.File == "" {
				t.Errorf("savepoint %s: operator %s subtask %d refers to a chain %v, want one file of its own", sp, op.UID, s.Subtask, s.Chain)
			}
		}
	}

	var completed int64
	for kill := range 2 {
		st := waitCheckpoint(t, c, id, completed+3)
		completed = st.Checkpointing.Completed
		victim := st.Vertices[0].Subtasks[kill%2].TaskManagerID
		for _, tm := range c.TaskManagers {
			if tm.Name == "taskmanager-"+strings.TrimPrefix(victim, "tm-") {
				t.Logf("killing %s (checkpoints so far %d)", victim, completed)
				tm.Kill()
			}
		}
		if _, err := c.AddTaskManager(o, 3+kill); err != nil {
			t.Fatal(err)
		}
	}
	st = waitState(t, c, id, 2*time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" {
		t.Fatalf("job %v: %s", st.State, st.Failure)
	}
	if st.Restarts < 2 {
		t.Errorf("restarts %d, want at least 2", st.Restarts)
	}
	verifySequence(t, srv, "s3://weir/out", keys, count)

	// The retained checkpoints: deltas among them, and the shared
	// directory holds exactly the files they refer to.
	var list cli.CheckpointListView
	weirJSON(t, &list, append([]string{"job", "checkpoints", id}, jm...)...)
	var metas []*statebackend.Metadata
	var latest *statebackend.Metadata
	var latestPath string
	deltas, segments := 0, 0
	for _, cp := range list.Checkpoints {
		if cp.Savepoint {
			continue
		}
		m := readMetadata(t, srv, cp.Path)
		metas = append(metas, m)
		latest, latestPath = m, cp.Path
		for _, op := range m.Operators {
			for _, s := range op.Subtasks {
				for _, f := range s.Chain {
					// A delta, or an SST an earlier checkpoint uploaded.
					if wrote, ok := statebackend.ParseSharedFileName(f.Path); f.Delta || (f.Local != "" && ok && wrote < m.CheckpointID) {
						deltas++
					}
					if f.Shared && strings.HasSuffix(f.Local, ".changelog") {
						segments++
					}
				}
			}
		}
	}
	if len(metas) == 0 || deltas == 0 {
		t.Fatalf("%d retained checkpoints refer to %d delta files or earlier SSTs, want some", len(metas), deltas)
	}
	// Pebble's checkpoints are changelog checkpoints by default
	// (--state-changelog): a materialization plus changelog segments.
	if backend == "pebble" && segments == 0 {
		t.Errorf("%d retained checkpoints refer to no changelog segment", len(metas))
	}
	shared, err := storage.Open(statebackend.SharedDir(latestPath), srv.Options())
	if err != nil {
		t.Fatal(err)
	}
	objs, err := shared.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.Name)
	}
	if unused := statebackend.UnusedSharedFiles(names, metas, math.MaxInt64); len(unused) > 0 {
		t.Errorf("%d shared files no retained checkpoint uses are left: %v", len(unused), unused)
	}
	for _, m := range metas {
		for _, f := range m.SharedFiles() {
			if _, err := shared.Size(context.Background(), f); err != nil {
				t.Errorf("checkpoint %d refers to %s: %v", m.CheckpointID, f, err)
			}
		}
	}

	// The latest checkpoint's chains restore at parallelism 3: each new
	// subtask merges the key groups it owns from the old chains. A source
	// subtask that finished before the checkpoint is in it with its end
	// position, so no key starts again: the checker, whose state was
	// restored, flags nothing.
	idR := submit(t, c, append([]string{"sequence-check", "--parallelism", "3", "--param", "output=s3://weir/out",
		"--from-savepoint", latestPath}, params...)...)
	if s := waitState(t, c, idR, time.Minute, "FINISHED", "FAILED"); s.State != "FINISHED" || s.Restarts != 0 {
		t.Fatalf("job restored at parallelism 3 from %s: %v after %d restarts: %s", latestPath, s.State, s.Restarts, s.Failure)
	}
	out, err := storage.Open("s3://weir/out", srv.Options())
	if err != nil {
		t.Fatal(err)
	}
	_, flagged, err := seqcheck.ReadOutput(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range flagged {
		t.Errorf("after the restore at parallelism 3: %s", line)
	}

	// A shared file of the latest checkpoint goes missing: restoring it
	// fails the job at once, naming the file.
	var victim string
	for _, op := range latest.Operators {
		for _, s := range op.Subtasks {
			for _, f := range s.Chain {
				if f.Shared {
					victim = f.Path
				}
			}
		}
	}
	if victim == "" {
		t.Fatal("the latest checkpoint has no shared file")
	}
	if err := shared.Delete(context.Background(), victim); err != nil {
		t.Fatal(err)
	}
	id2 := submit(t, c, append([]string{"sequence-check", "--parallelism", "2", "--param", "output=s3://weir/out2",
		"--from-savepoint", latestPath}, params...)...)
	s := waitState(t, c, id2, time.Minute, "FAILED", "FINISHED")
	if s.State != "FAILED" || !strings.Contains(s.Failure, victim) {
		t.Errorf("job %v with failure %q; want FAILED naming %s", s.State, s.Failure, victim)
	}

	// Disposing of the job's checkpoints (shared files included) leaves
	// the savepoint whole: a job restores from it at another parallelism
	// (into the output directory the savepoint's pending parts are in)
	// and checkpoints on.
	r = runWeir(t, append([]string{"job", "dispose", id}, jm...)...)
	if r.ExitCode != 0 {
		t.Fatalf("dispose: exit %d: %s", r.ExitCode, r.Stderr)
	}
	if left, err := shared.List(context.Background(), ""); err != nil || len(left) != 0 {
		t.Errorf("after dispose %d shared files are left (%v)", len(left), err)
	}
	id3 := submit(t, c, append([]string{"sequence-check", "--parallelism", "3", "--checkpoint-interval", "300ms", "--incremental",
		"--param", "output=s3://weir/out", "--from-savepoint", sp}, params...)...)
	if s := waitCheckpoint(t, c, id3, 1); s.Restarts != 0 || s.Checkpointing.Restored == nil || s.Checkpointing.Restored.Path != sp {
		t.Errorf("job resumed from the savepoint: %d restarts, restored %v", s.Restarts, s.Checkpointing.Restored)
	}
}
