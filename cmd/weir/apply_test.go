package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestApplyUpgradesThroughSavepoints runs sequence-check as a declared job
// through what the chart's hooks do on install and on two upgrades: apply
// submits it; re-applying changes nothing; after its rate changes, the
// prepare phase stops it with a savepoint (twice is the same as once) and
// the apply phase resubmits it from that savepoint; then a parallelism
// change by apply alone does both. The committed output must still hold
// every (key, seq) exactly once: the state survived both upgrades.
func TestApplyUpgradesThroughSavepoints(t *testing.T) {
	c, srv, _ := s3Cluster(t, 2, 4)
	const keys, count = 16, 500
	file := filepath.Join(t.TempDir(), "jobs.yaml")
	declare := func(parallelism int, rate string) {
		t.Helper()
		y := fmt.Sprintf(`jobs:
  - name: seq
    job: sequence-check
    parallelism: %d
    checkpointInterval: 300ms
    params:
      keys: %d
      count: %d
      rate: %s
      output: s3://weir/seq
`, parallelism, keys, count, rate)
		if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(phase string) string {
		t.Helper()
		r := runWeir(t, "apply", "--file", file, "--phase", phase, "--group", "it", "--jobmanager", c.JobManagerAddrs)
		if r.ExitCode != 0 {
			t.Fatalf("apply --phase %s: exit %d: %s", phase, r.ExitCode, r.Stderr)
		}
		return r.Stdout
	}
	match := func(out, pattern string) []string {
		t.Helper()
		m := regexp.MustCompile(pattern).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("output does not match %s:\n%s", pattern, out)
		}
		return m
	}

	// Install.
	declare(2, "150")
	id1 := match(apply("apply"), `seq: submitted job ([0-9a-f]{32}) with no earlier state, running\n`)[1]
	match(apply("apply"), `^seq: unchanged, job `+id1+` is RUNNING\n$`)
	st := jobStatus(t, c, id1)
	if st.Labels["weir.dev/apply-name"] != "seq" || st.Labels["weir.dev/apply-group"] != "it" || st.Labels["weir.dev/spec-hash"] == "" {
		t.Errorf("labels of the declared job: %v", st.Labels)
	}
	waitCheckpoint(t, c, id1, 0)

	// An upgrade in two phases, as the chart's hooks run it.
	declare(2, "200")
	sp := match(apply("prepare"), `^seq: spec changed, stopped job `+id1+` with savepoint (s3://\S+)\n$`)[1]
	if st := jobStatus(t, c, id1); st.State != "FINISHED" {
		t.Fatalf("after prepare the old job is %s", st.State)
	}
	if out := apply("prepare"); out != "" {
		t.Errorf("a second prepare did something:\n%s", out)
	}
	id2 := match(apply("apply"), `^seq: submitted job ([0-9a-f]{32}) from `+regexp.QuoteMeta(sp)+`, running\n$`)[1]
	st = jobStatus(t, c, id2)
	if st.Checkpointing.Restored == nil || st.Checkpointing.Restored.Path != sp || st.Params["rate"] != "200" {
		t.Errorf("upgraded job restored %v with rate %s, want %s and 200", st.Checkpointing.Restored, st.Params["rate"], sp)
	}
	match(apply("apply"), `^seq: unchanged, job `+id2+` is RUNNING\n$`)
	waitCheckpoint(t, c, id2, 0)

	// A rescale by apply alone.
	declare(4, "200")
	out := apply("apply")
	sp2 := match(out, `seq: spec changed, stopped job `+id2+` with savepoint (s3://\S+)\n`)[1]
	id3 := match(out, `seq: submitted job ([0-9a-f]{32}) from `+regexp.QuoteMeta(sp2)+`, running\n`)[1]
	st = waitState(t, c, id3, 2*time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" || st.Parallelism != 4 {
		t.Fatalf("job %s is %s at parallelism %d: %s", id3, st.State, st.Parallelism, st.Failure)
	}
	verifySequence(t, srv, "s3://weir/seq", keys, count)

	// Nothing runs now: prepare has nothing to stop.
	if strings.Contains(apply("prepare"), "stopped") {
		t.Error("prepare stopped a finished job")
	}
}
