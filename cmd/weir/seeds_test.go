package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/internal/testenv"
)

// seedJobs are the seeds' jobs with their sample data in jobs/anomaly/testdata.
var seedJobs = []struct {
	job, input string
	params     []string
}{
	{"anomaly-detection", "events.jsonl", nil},
	{"transfer-monitor", "transfers.jsonl", nil},
	{"impossible-travel", "card-uses.jsonl", []string{"blacklist=blacklist.txt"}},
}

// seedSample copies the sample data into a directory of its own, so that
// the sources named in the output are short and the same in every run.
func seedSample(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(repoRoot(t), "jobs", "anomaly", "testdata")
	for _, name := range []string{"events.jsonl", "transfers.jsonl", "card-uses.jsonl", "blacklist.txt"} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// committedLines returns every line of the committed part files under out,
// in any subdirectory, with prefix removed, sorted.
func committedLines(t *testing.T, out, prefix string) []string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(out, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), "part-") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			lines = append(lines, strings.ReplaceAll(l, prefix, ""))
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return lines
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func expectedLines(t *testing.T, job string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "jobs", "anomaly", "testdata", "expected-"+job+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func alertLines(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, `{"detector":`) {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

func seedParams(dir string, job struct {
	job, input string
	params     []string
}, out string) []string {
	args := []string{"--param", "input=" + filepath.Join(dir, job.input), "--param", "output=" + out}
	for _, p := range job.params {
		k, v, _ := strings.Cut(p, "=")
		args = append(args, "--param", k+"="+filepath.Join(dir, v))
	}
	return args
}

// TestSeedJobsUnderWeirLocal runs each seed job on its sample data (out of
// order, with bad lines) under weir local at parallelism 2: it prints
// exactly the expected alerts and commits them, and the dead letters,
// exactly once.
func TestSeedJobsUnderWeirLocal(t *testing.T) {
	dir := seedSample(t)
	for _, j := range seedJobs {
		t.Run(j.job, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"local", "--job", j.job, "--parallelism", "2", "--taskmanagers", "2"}, seedParams(dir, j, out)...)
			r := runWeir(t, args...)
			if r.ExitCode != 0 {
				t.Fatalf("weir local: exit %d: %s", r.ExitCode, r.Stderr)
			}
			want := expectedLines(t, j.job)
			if got := committedLines(t, out, dir+"/"); !slices.Equal(got, want) {
				t.Errorf("committed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			printed := strings.Split(strings.ReplaceAll(strings.TrimSuffix(r.Stdout, "\n"), dir+"/", ""), "\n")
			if got, want := alertLines(printed), alertLines(want); !slices.Equal(got, want) {
				t.Errorf("printed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestSeedJobsOnACluster runs each seed job on a JobManager and two
// TaskManagers at parallelism 2 with checkpoints on: the same output as
// under weir local.
func TestSeedJobsOnACluster(t *testing.T) {
	dir := seedSample(t)
	work := t.TempDir()
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2,
		JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(work, "ck")}})
	for _, j := range seedJobs {
		out := filepath.Join(work, j.job)
		args := append([]string{j.job, "--parallelism", "2", "--checkpoint-interval", "50ms"}, seedParams(dir, j, out)...)
		id := submit(t, c, args...)
		st := waitState(t, c, id, 2*time.Minute, "FINISHED", "FAILED")
		if st.State != "FINISHED" {
			t.Fatalf("%s: %s: %s", j.job, st.State, st.Failure)
		}
		if want, got := expectedLines(t, j.job), committedLines(t, out, dir+"/"); !slices.Equal(got, want) {
			t.Errorf("%s committed\n%s\nwant\n%s", j.job, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		last := st.Vertices[len(st.Vertices)-1]
		if w := last.WatermarkMs; w == nil {
			t.Errorf("%s: status shows no watermark for vertex %s", j.job, last.Name)
		}
		for _, op := range last.Operators {
			if op.WatermarkMs == nil {
				t.Errorf("%s: status shows no watermark for operator %s", j.job, op.Name)
			}
		}
	}
}

// anomalyInput writes files events-<from>.jsonl .. events-<to-1>.jsonl of
// seeded random events for anomaly-detection: transactions with spikes,
// bursts of failed logins, and A/B/C sequences, each file continuing the
// timeline of the one before, out of order by up to 3 s. It returns the
// next file's start time.
func anomalyInput(t *testing.T, dir string, from, to, perFile int, start int64) int64 {
	t.Helper()
	ts := start
	for k := from; k < to; k++ {
		rng := rand.New(rand.NewPCG(uint64(k), 42))
		var b strings.Builder
		for range perFile {
			ts += int64(rng.IntN(40))
			at := ts - int64(rng.IntN(3000))
			user := fmt.Sprintf("u%d", rng.IntN(300))
			switch r := rng.IntN(10); {
			case r < 4:
				amount := 50 + rng.IntN(100)
				if rng.IntN(40) == 0 {
					amount *= 10
				}
				fmt.Fprintf(&b, `{"time":%d,"user":%q,"type":"transaction","amount":%d}`+"\n", at, user, amount)
			case r < 7:
				fmt.Fprintf(&b, `{"time":%d,"user":%q,"type":"login","status":"failed","ip":"10.0.%d.%d"}`+"\n",
					at, user, rng.IntN(2), rng.IntN(4))
			default:
				fmt.Fprintf(&b, `{"time":%d,"user":"s%d","type":%q}`+"\n", at, rng.IntN(40), []string{"A", "B", "C"}[rng.IntN(3)])
			}
		}
		name := fmt.Sprintf("events-%02d.jsonl", k)
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return ts + 5000
}

// reference runs anomaly-detection undisturbed under weir local over the
// input and returns its committed alerts.
func reference(t *testing.T, in string) []string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ref")
	r := runWeir(t, "local", "--job", "anomaly-detection", "--parallelism", "2", "--taskmanagers", "2",
		"--param", "input="+in, "--param", "output="+out)
	if r.ExitCode != 0 {
		t.Fatalf("reference run: exit %d: %s", r.ExitCode, r.Stderr)
	}
	return alertLines(committedLines(t, out, in+"/"))
}

// TestAnomalyDetectionSurvivesAKilledTaskManager runs anomaly-detection
// with checkpoints on; a TaskManager running it is killed with SIGKILL
// mid-run and replaced. The committed alerts are exactly those of an
// undisturbed run: none lost, none twice.
func TestAnomalyDetectionSurvivesAKilledTaskManager(t *testing.T) {
	work := t.TempDir()
	in, out := filepath.Join(work, "in"), filepath.Join(work, "out")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	anomalyInput(t, in, 0, 4, 50000, 1_772_000_000_000)
	o := cluster.Options{TaskManagers: 2, Slots: 2, JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(work, "ck")}}
	c := startCluster(t, o)
	id := submit(t, c, "anomaly-detection", "--parallelism", "2", "--checkpoint-interval", "100ms",
		"--param", "input="+in, "--param", "output="+out)
	st := waitCheckpoint(t, c, id, 0)
	victim := st.Vertices[len(st.Vertices)-1].Subtasks[0].TaskManagerID
	for _, tm := range c.TaskManagers {
		if tm.Name == "taskmanager-"+strings.TrimPrefix(victim, "tm-") {
			t.Logf("killing %s after checkpoint %d", victim, st.Checkpointing.Completed)
			tm.Kill()
		}
	}
	if _, err := c.AddTaskManager(o, 2); err != nil {
		t.Fatal(err)
	}
	want := reference(t, in)
	if len(want) < 50 {
		t.Fatalf("the reference run raised %d alerts; the input should raise more", len(want))
	}
	st = waitState(t, c, id, 3*time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" {
		t.Fatalf("job %s: %s", st.State, st.Failure)
	}
	if st.Restarts < 1 {
		t.Errorf("restarts %d: the job finished before the kill; give it more input", st.Restarts)
	}
	if got := alertLines(committedLines(t, out, in+"/")); !slices.Equal(got, want) {
		t.Errorf("%d alerts committed, %d in the undisturbed run; first difference: %s", len(got), len(want), firstDiff(got, want))
	}
}

// TestAnomalyDetectionRescalesWithOpenWindowsAndMatches stops
// anomaly-detection with a savepoint at parallelism 2 mid-run, while
// windows and partial CEP matches are open, and resumes it at parallelism
// 3: the alerts are exactly those of an undisturbed run.
func TestAnomalyDetectionRescalesWithOpenWindowsAndMatches(t *testing.T) {
	work := t.TempDir()
	in, out := filepath.Join(work, "in"), filepath.Join(work, "out")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	anomalyInput(t, in, 0, 4, 50000, 1_772_000_000_000)
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 3,
		JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(work, "ck")}})
	params := []string{"--checkpoint-interval", "100ms", "--param", "input=" + in, "--param", "output=" + out}
	id := submit(t, c, append([]string{"anomaly-detection", "--parallelism", "2"}, params...)...)
	waitCheckpoint(t, c, id, 0)
	r := runWeir(t, "job", "stop", id, "--savepoint", "--jobmanager", c.JobManagerAddrs)
	if r.ExitCode != 0 {
		t.Fatalf("stop: exit %d: %s", r.ExitCode, r.Stderr)
	}
	sp := strings.TrimSpace(r.Stdout)
	if st := jobStatus(t, c, id); st.State != "FINISHED" {
		t.Fatalf("stopped job %s", st.State)
	}
	before := len(alertLines(committedLines(t, out, in+"/")))
	id2 := submit(t, c, append([]string{"anomaly-detection", "--parallelism", "3", "--from-savepoint", sp}, params...)...)
	want := reference(t, in)
	st := waitState(t, c, id2, 3*time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" || st.Parallelism != 3 {
		t.Fatalf("resumed job %s at parallelism %d: %s", st.State, st.Parallelism, st.Failure)
	}
	got := alertLines(committedLines(t, out, in+"/"))
	if before == 0 || before == len(got) {
		t.Errorf("%d of %d alerts were committed before the savepoint: it was not taken mid-run", before, len(got))
	}
	if !slices.Equal(got, want) {
		t.Errorf("%d alerts committed, %d in the undisturbed run; first difference: %s", len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("got %s, want %s", got[i], want[i])
		}
	}
	if len(got) > len(want) {
		return "extra " + got[len(want)]
	}
	if len(want) > len(got) {
		return "missing " + want[len(got)]
	}
	return "none"
}
