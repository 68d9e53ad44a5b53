package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

func TestParseJobsFile(t *testing.T) {
	specs, err := parseJobsFile([]byte(`
jobs:
  - name: fraud
    job: fraud-detection
    parallelism: 2
    checkpointInterval: 5s
    params: {rate: 100.5, count: 400, flag: true, output: s3://weir/out}
  - name: seq
    job: sequence-check
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 {
		t.Fatalf("%d specs", len(specs))
	}
	f := specs[0]
	if f.parallelism != 2 || f.intervalMs != 5000 || f.params["rate"] != "100.5" || f.params["count"] != "400" ||
		f.params["flag"] != "true" || f.params["output"] != "s3://weir/out" {
		t.Errorf("fraud spec %+v", f)
	}
	if s := specs[1]; s.parallelism != 1 || s.intervalMs != 10000 || len(s.params) != 0 {
		t.Errorf("defaults: %+v", s)
	}
	// The same spec written differently hashes the same; any change does not.
	again, err := parseJobsFile([]byte(`{"jobs":[{"name":"fraud","job":"fraud-detection","parallelism":2,"checkpointInterval":"5000ms",
		"params":{"output":"s3://weir/out","flag":"true","count":"400","rate":"100.5"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if again[0].hash != f.hash {
		t.Errorf("equal specs hash %s and %s", again[0].hash, f.hash)
	}
	changed, err := parseJobsFile([]byte(`{"jobs":[{"name":"fraud","job":"fraud-detection","parallelism":2,"checkpointInterval":"5s",
		"params":{"output":"s3://weir/out","flag":"true","count":"401","rate":"100.5"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if changed[0].hash == f.hash {
		t.Error("a changed param left the hash the same")
	}
	// incremental: a change like any other, but a spec without it hashes
	// as before the field existed.
	incr, err := parseJobsFile([]byte(`{"jobs":[{"name":"fraud","job":"fraud-detection","parallelism":2,"checkpointInterval":"5s",
		"incremental":true,"params":{"output":"s3://weir/out","flag":"true","count":"400","rate":"100.5"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !incr[0].incremental || incr[0].hash == f.hash {
		t.Errorf("incremental spec %+v hashes %s like the full one", incr[0], incr[0].hash)
	}
	if want := hashBeforeStateFields(f); f.hash != want {
		t.Errorf("a spec without incremental hashes %s, not %s as before the field", f.hash, want)
	}
}

// hashBeforeStateFields is the hash specs had before incremental,
// stateBackend and timerService: specs without them must keep it, or an
// upgrade of weir would restart every declared job.
func hashBeforeStateFields(d declared) string {
	old, _ := json.Marshal(struct {
		Job         string            `json:"job"`
		Parallelism int               `json:"parallelism"`
		Params      map[string]string `json:"params"`
		IntervalMs  int64             `json:"interval_ms"`
		AllowNonRes bool              `json:"allow_non_restored"`
	}{d.job, d.parallelism, d.params, d.intervalMs, d.allowNonRes})
	sum := sha256.Sum256(old)
	return hex.EncodeToString(sum[:8])
}

// TestParseJobsFileStateBackend: stateBackend and timerService reach the
// submit request; incremental defaults to on for pebble, as with weir job
// submit, and an explicit false keeps pebble's checkpoints full.
func TestParseJobsFileStateBackend(t *testing.T) {
	specs, err := parseJobsFile([]byte(`
jobs:
  - {name: a, job: x, stateBackend: pebble, timerService: heap}
  - {name: b, job: x, stateBackend: pebble, incremental: false}
  - {name: c, job: x, stateBackend: memory}
  - {name: d, job: x, incremental: true}
  - {name: e, job: x}
`))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		backend, timers string
		incremental     bool
	}{{"pebble", "heap", true}, {"pebble", "", false}, {"memory", "", false}, {"", "", true}, {"", "", false}} {
		s := specs[i]
		if s.backend != want.backend || s.timers != want.timers || s.incremental != want.incremental {
			t.Errorf("%s: backend %q timers %q incremental %v, want %+v", s.name, s.backend, s.timers, s.incremental, want)
		}
	}
	hashes := map[string]string{}
	for _, s := range specs {
		if other, ok := hashes[s.hash]; ok {
			t.Errorf("%s and %s hash alike (%s)", other, s.name, s.hash)
		}
		hashes[s.hash] = s.name
	}
	// A spec without the new fields hashes as before them.
	if want := hashBeforeStateFields(specs[4]); specs[4].hash != want {
		t.Errorf("a spec without state settings hashes %s, not %s as before the fields", specs[4].hash, want)
	}
	for _, c := range []struct{ file, want string }{
		{`jobs: [{name: a, job: x, stateBackend: rocksdb}]`, `jobs[0] (a): stateBackend: unknown state backend "rocksdb"`},
		{`jobs: [{name: a, job: x, timerService: wheel}]`, `jobs[0] (a): timerService:`},
	} {
		if _, err := parseJobsFile([]byte(c.file)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.file, err, c.want)
		}
	}
}

func TestParseJobsFileErrors(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{`jobs: [{name: Fraud, job: x}]`, `name "Fraud" must be 1 to 63 lowercase letters`},
		{`jobs: [{name: a, job: x}, {name: a, job: y}]`, "the name a is declared twice"},
		{`jobs: [{name: a}]`, "job is empty"},
		{`jobs: [{name: a, job: x, parallelism: -1}]`, "parallelism -1 must be at least 1"},
		{`jobs: [{name: a, job: x, checkpointInterval: often}]`, `checkpointInterval "often" is not a duration`},
		{`jobs: [{name: a, job: x, params: {k: [1, 2]}}]`, "param k must be a string, number or boolean"},
		{`jobs: [{name: a, job: x, paralelism: 2}]`, `unknown field "paralelism"`},
	} {
		_, err := parseJobsFile([]byte(c.file))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.file, err, c.want)
		}
	}
}

func summary(id, name, hash, group string, state weirv1.JobState, submitted int64) *weirv1.JobSummary {
	return &weirv1.JobSummary{JobId: id, State: state, SubmitTimeMs: submitted,
		Labels: map[string]string{labelGroup: group, labelName: name, labelHash: hash}}
}

// TestPlanApply: unchanged jobs are left alone, changed ones stopped (and
// in the apply phase submitted again), new ones submitted, undeclared ones
// of the group stopped; other groups' and unlabelled jobs are ignored.
func TestPlanApply(t *testing.T) {
	specs, err := parseJobsFile([]byte(`jobs: [{name: same, job: x}, {name: changed, job: x, parallelism: 2}, {name: new, job: x}]`))
	if err != nil {
		t.Fatal(err)
	}
	running, finished := weirv1.JobState_JOB_STATE_RUNNING, weirv1.JobState_JOB_STATE_FINISHED
	jobs := []*weirv1.JobSummary{
		summary("j1", "same", specs[0].hash, "g", running, 1),
		summary("j2", "changed", "old", "g", running, 2),
		summary("j0", "changed", "older", "g", finished, 1),
		summary("j3", "gone", "h", "g", running, 3),
		summary("j4", "same", "h", "other-group", running, 4),
		{JobId: "j5", State: running},
		summary("j6", "new", "h", "g", finished, 5),
		summary("j7", "new", "h", "g", finished, 7),
	}
	describe := func(steps []applyStep) string {
		var parts []string
		for _, s := range steps {
			p := s.name + ":" + [...]string{"unchanged", "stop", "submit"}[s.action]
			if s.job != nil {
				p += "(" + s.job.JobId + ")"
			}
			for _, e := range s.earlier {
				p += "<" + e.JobId
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, " ")
	}
	if got, want := describe(planApply(specs, jobs, "g", true)), "same:unchanged(j1) changed:stop(j2) gone:stop(j3)"; got != want {
		t.Errorf("prepare: %s, want %s", got, want)
	}
	if got, want := describe(planApply(specs, jobs, "g", false)),
		"same:unchanged(j1) changed:stop(j2) changed:submit<j0 new:submit<j7<j6 gone:stop(j3)"; got != want {
		t.Errorf("apply: %s, want %s", got, want)
	}
}

// TestApplyCommandErrors: what is wrong with the command line or the file
// is said before any JobManager is dialed.
func TestApplyCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("jobs: [{name: x}]"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"apply"}, "--file is required"},
		{[]string{"apply", "-f", bad, "--phase", "later"}, `--phase "later": want prepare or apply`},
		{[]string{"apply", "-f", bad, "--group", ""}, "--group must not be empty"},
		{[]string{"apply", "-f", filepath.Join(dir, "missing.yaml")}, "no such file"},
		{[]string{"apply", "-f", bad}, "bad.yaml: jobs[0] (x): job is empty"},
	} {
		_, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("weir %v: got %v, want %q", c.args, err, c.want)
		}
	}
}
