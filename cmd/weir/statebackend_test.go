package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/internal/miniotest"
	"github.com/weirstream/weir/statebackend"
)

// TestRescaleOnBothStateBackends runs the exactly-once verification job
// on each state backend through rescales 2 -> 3 -> 1 (each a stop with a
// savepoint and a restore at the new parallelism, which splits and merges
// key groups) and checks the committed output holds every (key, seq)
// exactly once: the checker's keyed state came through every restore. On
// pebble it also checks that every subtask's store directory is gone once
// the job has finished.
func TestRescaleOnBothStateBackends(t *testing.T) {
	for _, backend := range []string{"memory", "pebble"} {
		t.Run(backend, func(t *testing.T) {
			stateDir := t.TempDir()
			srv := miniotest.Start(t)
			srv.MakeBucket(t, "weir")
			o := cluster.Options{TaskManagers: 2, Slots: 3, Env: srv.Env(),
				JobManagerArgs: []string{"--checkpoint-storage", "s3://weir/checkpoints"},
				TaskManagerArgs: func(i int) []string {
					return []string{"--state-dir", filepath.Join(stateDir, fmt.Sprint("tm-", i))}
				}}
			c := startCluster(t, o)
			jm := []string{"--jobmanager", c.JobManagerAddrs}
			const keys, count = 24, 300
			id := submit(t, c, "sequence-check", "--parallelism", "2", "--checkpoint-interval", "300ms",
				"--state-backend", backend, "--param", fmt.Sprint("keys=", keys), "--param", fmt.Sprint("count=", count),
				"--param", "rate=200", "--param", "output=s3://weir/out")
			waitCheckpoint(t, c, id, 0)
			for _, p := range []int{3, 1} {
				r := runWeir(t, append([]string{"job", "rescale", id, "--parallelism", fmt.Sprint(p)}, jm...)...)
				if r.ExitCode != 0 || !strings.Contains(r.Stdout, fmt.Sprintf("rescaled to parallelism %d", p)) {
					t.Fatalf("rescale to %d: exit %d, stdout %q, stderr %s", p, r.ExitCode, r.Stdout, r.Stderr)
				}
				if p == 3 {
					waitCheckpoint(t, c, id, jobStatus(t, c, id).Checkpointing.Completed)
				}
			}
			st := waitState(t, c, id, 3*time.Minute, "FINISHED", "FAILED")
			if st.State != "FINISHED" || st.Parallelism != 1 {
				t.Fatalf("job %v at parallelism %d: %s", st.State, st.Parallelism, st.Failure)
			}
			verifySequence(t, srv, "s3://weir/out", keys, count)
			if left := filesUnder(t, stateDir); len(left) > 0 {
				t.Errorf("state directories left behind: %v", left)
			}
		})
	}
}

// TestRescalePebbleFromNativeCheckpoints rescales the exactly-once
// verification job on pebble 2 -> 3 -> 1 from its incremental (native)
// checkpoints rather than savepoints: each step cancels the job and
// submits it again from its latest retained checkpoint, whose keyed state
// is Pebble files; a scale-up opens one old subtask's files and range
// deletes the key groups it no longer owns, a scale-down copies the
// entries of several. The committed output holds every (key, seq)
// exactly once. The middle attempt keeps its timers on the heap
// (--timer-service heap, stored with the job), the others in the store.
func TestRescalePebbleFromNativeCheckpoints(t *testing.T) {
	c, srv, _ := s3Cluster(t, 2, 3)
	jm := []string{"--jobmanager", c.JobManagerAddrs}
	const keys, count = 24, 300
	args := func(p int, from string) []string {
		a := []string{"sequence-check", "--parallelism", fmt.Sprint(p), "--checkpoint-interval", "300ms",
			"--state-backend", "pebble", "--param", fmt.Sprint("keys=", keys), "--param", fmt.Sprint("count=", count),
			"--param", "rate=200", "--param", "output=s3://weir/out"}
		if from != "" {
			a = append(a, "--from-savepoint", from)
		}
		if p == 3 {
			a = append(a, "--timer-service", "heap")
		}
		return a
	}
	id := submit(t, c, args(2, "")...)
	for _, p := range []int{3, 1} {
		waitCheckpoint(t, c, id, jobStatus(t, c, id).Checkpointing.Completed+2)
		if r := runWeir(t, append([]string{"job", "cancel", id}, jm...)...); r.ExitCode != 0 {
			t.Fatalf("cancel: exit %d: %s", r.ExitCode, r.Stderr)
		}
		waitState(t, c, id, time.Minute, "CANCELED")
		var list cli.CheckpointListView
		weirJSON(t, &list, append([]string{"job", "checkpoints", id}, jm...)...)
		var latest string
		for _, cp := range list.Checkpoints {
			if !cp.Savepoint {
				latest = cp.Path
			}
		}
		if latest == "" {
			t.Fatal("no retained checkpoint")
		}
		native := false
		for _, op := range readMetadata(t, srv, latest).Operators {
			for _, s := range op.Subtasks {
				native = native || statebackend.NativeChain(s.Chain)
			}
		}
		if !native {
			t.Fatalf("checkpoint %s holds no Pebble files", latest)
		}
		t.Logf("restoring %s at parallelism %d", latest, p)
		id = submit(t, c, args(p, latest)...)
		want := map[int]string{3: "heap", 1: ""}[p]
		if got := jobStatus(t, c, id).Checkpointing.TimerService; got != want {
			t.Errorf("job at parallelism %d: timer service %q, want %q", p, got, want)
		}
	}
	st := waitState(t, c, id, 3*time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" || st.Parallelism != 1 || st.Restarts != 0 {
		t.Fatalf("job %v at parallelism %d after %d restarts: %s", st.State, st.Parallelism, st.Restarts, st.Failure)
	}
	verifySequence(t, srv, "s3://weir/out", keys, count)
}

// TestPebbleStateLargerThanMemoryLimit runs state-fill on the pebble
// backend on a TaskManager whose Go memory limit (GOMEMLIMIT) is 96 MiB,
// with 400 000 keys of 1000 bytes: some 400 MB of state, four times the
// limit, and a timer per key (moved every round, in the store too). Round 2 checks every key's round-1 value, so the job
// finishing proves none was lost; the store's directory must have held
// more than twice the limit on disk while the process's peak resident
// memory stayed under 3/4 of the state.
func TestPebbleStateLargerThanMemoryLimit(t *testing.T) {
	const limit = 96 << 20
	stateDir := t.TempDir()
	o := cluster.Options{TaskManagers: 1, Slots: 1, DiscardStdout: true,
		TaskManagerEnv:  []string{fmt.Sprint("GOMEMLIMIT=", limit)},
		TaskManagerArgs: func(int) []string { return []string{"--state-dir", stateDir, "--state-backend", "pebble"} }}
	c := startCluster(t, o)
	// The TaskManager's default backend is pebble: the job names none.
	id := submit(t, c, "state-fill", "--checkpoint-interval", "0",
		"--param", "keys=400000", "--param", "bytes=1000", "--param", "rounds=2", "--param", "timers=1")
	var maxDisk int64
	// Generous: on a loaded 2-core machine the run has taken over 4 minutes.
	deadline := time.Now().Add(8 * time.Minute)
	for {
		maxDisk = max(maxDisk, dirSize(stateDir))
		st := jobStatus(t, c, id)
		if st.State == "FINISHED" || st.State == "FAILED" {
			if st.State != "FINISHED" {
				t.Fatalf("job failed: %s", st.Failure)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %s after 8 minutes", st.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	peak := peakRSS(t, c.TaskManagers[0].Pid())
	t.Logf("state on disk up to %d MiB, TaskManager peak RSS %d MiB, GOMEMLIMIT %d MiB", maxDisk>>20, peak>>20, limit>>20)
	if maxDisk < 2*limit {
		t.Errorf("the store held at most %d MiB on disk, want more than twice the limit (%d MiB)", maxDisk>>20, 2*limit>>20)
	}
	if peak > 400_000*1000*3/4 {
		t.Errorf("peak RSS %d MiB: the state was held in memory", peak>>20)
	}
	if left := filesUnder(t, stateDir); len(left) > 0 {
		t.Errorf("state directory left behind: %v", left)
	}
}

// dirSize is the size of the files under dir (0 if it is gone).
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// filesUnder lists the files under dir; directories alone are fine.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// peakRSS reads a live process's peak resident set size (VmHWM).
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}
