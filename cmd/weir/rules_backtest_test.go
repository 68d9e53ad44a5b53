package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
)

// TestRulesBacktest runs `weir rules backtest` against a JobManager and a
// TaskManager: each rule's evaluations, hits and errors equal those of
// `weir rules test --stats` on the same events; a refused rule is reported
// with its line and submits nothing; an input that cannot be read fails
// with the job's reason.
func TestRulesBacktest(t *testing.T) {
	c := startCluster(t, cluster.Options{TaskManagers: 1, Slots: 2,
		JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(t.TempDir(), "ck")}})
	dir := filepath.Join("..", "..", "rules", "examples", "transfers")
	events := filepath.Join(dir, "events.jsonl")

	ref := runWeir(t, "rules", "test", dir, "--events", events, "--stats")
	if ref.ExitCode != 0 {
		t.Fatalf("rules test: exit %d: %s", ref.ExitCode, ref.Stderr)
	}
	var want []string
	for _, l := range strings.Split(ref.Stderr, "\n") {
		var rule string
		var version, evals, hits, errs int64
		if _, err := fmt.Sscanf(l, "rule %s version %d: %d evaluations, %d alerts, %d errors", &rule, &version, &evals, &hits, &errs); err == nil {
			want = append(want, fmt.Sprintf("%s v%d: %d %d %d", rule, version, evals, hits, errs))
		}
	}
	if len(want) != 2 {
		t.Fatalf("rules test --stats printed %q", ref.Stderr)
	}

	out := filepath.Join(t.TempDir(), "out")
	r := runWeir(t, "rules", "backtest", dir, "--input", events, "--output", out, "--parallelism", "2",
		"--jobmanager", c.JobManagerAddrs, "--json")
	if r.ExitCode != 0 {
		t.Fatalf("backtest: exit %d: %s", r.ExitCode, r.Stderr)
	}
	var v cli.BacktestView
	dec := json.NewDecoder(strings.NewReader(r.Stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%v: %s", err, r.Stdout)
	}
	var got []string
	for _, b := range v.Rules {
		got = append(got, fmt.Sprintf("%s v%d: %d %d %d", b.Rule, b.Version, b.Evaluations, b.Hits, b.Errors))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("backtest:\n%s\nwant (rules test --stats):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(v.JobID) != 32 || v.Output != out || len(committedLines(t, filepath.Join(out, "alerts"), "")) == 0 {
		t.Errorf("view %+v, or no alerts under %s", v, out)
	}

	// The table, with a fresh output directory by default.
	r = runWeir(t, "rules", "backtest", filepath.Join(dir, "rules.yaml"), "--input", events, "--jobmanager", c.JobManagerAddrs)
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, "RULE") || !strings.Contains(r.Stdout, "transfer-sum-10s") {
		t.Errorf("backtest table: exit %d:\n%s\n%s", r.ExitCode, r.Stdout, r.Stderr)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("id: x\nkey: [a]\nkind: filter\ncondition: 'e.a > p.mx'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runWeir(t, "rules", "backtest", bad, "--input", events, "--jobmanager", c.JobManagerAddrs)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "bad.yaml:4") || !strings.Contains(r.Stderr, "p.mx") || !strings.Contains(r.Stderr, "nothing submitted") {
		t.Errorf("bad rule: exit %d: %s", r.ExitCode, r.Stderr)
	}
	missing := filepath.Join(t.TempDir(), "nope.jsonl")
	r = runWeir(t, "rules", "backtest", dir, "--input", missing, "--jobmanager", c.JobManagerAddrs)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "FAILED") || !strings.Contains(r.Stderr, "nope.jsonl") {
		t.Errorf("missing input: exit %d: %s", r.ExitCode, r.Stderr)
	}
	var jobs cli.JobListView
	weirJSON(t, &jobs, "job", "list", "--jobmanager", c.JobManagerAddrs)
	if len(jobs.Jobs) != 3 {
		t.Errorf("%d jobs submitted, want 3 (not the bad rule's)", len(jobs.Jobs))
	}
}
