package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/jobs/fraud"
)

func sortedLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// runRulesJob runs the rules job to its end at parallelism 2 and returns
// its output directory.
func runRulesJob(t *testing.T, c *cluster.Cluster, work string, params ...string) string {
	t.Helper()
	out := filepath.Join(work, "out")
	args := []string{"rules", "--parallelism", "2", "--checkpoint-interval", "50ms", "--param", "output=" + out}
	for _, p := range params {
		args = append(args, "--param", p)
	}
	id := submit(t, c, args...)
	st := waitState(t, c, id, 2*time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" {
		t.Fatalf("job %v: %s", st.State, st.Failure)
	}
	return out
}

// TestRulesJobMatchesRulesTestOnEveryExample runs every shipped example
// on a JobManager and two TaskManagers at parallelism 2: the committed
// alerts equal, line for line, what `weir rules test` prints for the same
// rules and events, and nothing goes to the dead letters.
func TestRulesJobMatchesRulesTestOnEveryExample(t *testing.T) {
	examples, err := filepath.Glob(filepath.Join("..", "..", "rules", "examples", "*", "rules.yaml"))
	if err != nil || len(examples) < 7 {
		t.Fatalf("examples: %v, %v", examples, err)
	}
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2,
		JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(t.TempDir(), "ck")}})
	for _, ruleFile := range examples {
		dir := filepath.Dir(ruleFile)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			events := filepath.Join(dir, "events.jsonl")
			ref := runWeir(t, "rules", "test", ruleFile, "--events", events)
			if ref.ExitCode != 0 {
				t.Fatalf("rules test: exit %d: %s", ref.ExitCode, ref.Stderr)
			}
			want := sortedLines(ref.Stdout)
			if len(want) == 0 {
				t.Fatalf("the example has no alerts to compare")
			}
			abs, _ := filepath.Abs(ruleFile)
			absEvents, _ := filepath.Abs(events)
			out := runRulesJob(t, c, t.TempDir(), "rules="+abs, "input="+absEvents)
			// rules test prints a sequence's timed-out matches among the
			// alerts; the job writes them to timeouts/.
			got := append(committedLines(t, filepath.Join(out, "alerts"), ""), committedLines(t, filepath.Join(out, "timeouts"), "")...)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("alerts:\n%s\nwant (rules test):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			// The decisions of rules with a priority, resolved across the
			// rule keys' subtasks, are those of rules test (the job's
			// source is the input's path).
			wantD, err := os.ReadFile(filepath.Join(dir, "decisions.jsonl"))
			if err == nil {
				want := sortedLines(string(wantD))
				for i := range want {
					want[i] = strings.Replace(want[i], `"source":"events.jsonl"`, `"source":`+strconv.Quote(absEvents), 1)
				}
				if got := committedLines(t, filepath.Join(out, "decisions"), ""); !slices.Equal(got, want) {
					t.Errorf("decisions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
			}
			for _, d := range []string{"dead-letters", "rule-errors", "late", "shadow"} {
				if got := committedLines(t, filepath.Join(out, d), ""); len(got) > 0 {
					t.Errorf("%s: %q", d, got)
				}
			}
		})
	}
}

// TestRulesJobDeadLetters: a line that is not JSON and events the schema
// refuses go to the dead letters, and an event a rule fails on to the rule
// errors, each with the reason; the other rules and events go on.
func TestRulesJobDeadLetters(t *testing.T) {
	work := t.TempDir()
	ruleFile := filepath.Join(work, "rules.yaml")
	if err := os.WriteFile(ruleFile, []byte(`id: big
key: [user]
kind: filter
params: {max: 100}
condition: 'e.amount > p.max'
emit: {action: alert}
---
id: vip
key: [user]
kind: filter
condition: 'e.user == "vip"'
emit: {action: alert}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(work, "events.jsonl")
	if err := os.WriteFile(in, []byte(strings.Join([]string{
		`{"ts": 1000, "user": "a", "amount": 500}`,
		`not json`,
		`{"ts": 2000, "amount": 5}`,
		`{"ts": 3000, "user": "vip", "amount": "lots"}`,
		`{"ts": 3500, "user": 7, "amount": 1}`,
		`{"ts": 20000, "user": "b", "amount": 1}`,
		`{"ts": 21000, "user": "c", "amount": 900}`,
	}, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2})
	out := runRulesJob(t, c, work, "rules="+ruleFile, "input="+in, "schema=user:string,ts:time")
	want := []string{
		`{"rule":"big","version":1,"key":{"user":"a"},"time":1000,"action":"alert"}`,
		`{"rule":"big","version":1,"key":{"user":"c"},"time":21000,"action":"alert"}`,
		`{"rule":"vip","version":1,"key":{"user":"vip"},"time":3000,"action":"alert"}`,
	}
	if got := committedLines(t, filepath.Join(out, "alerts"), ""); !slices.Equal(got, want) {
		t.Errorf("alerts %q, want %q", got, want)
	}
	dead := committedLines(t, filepath.Join(out, "dead-letters"), "")
	all := strings.Join(dead, "\n")
	if len(dead) != 3 || !strings.Contains(all, `not JSON`) || !strings.Contains(all, `field \"user\" is missing`) ||
		!strings.Contains(all, `field \"user\" is a number, the schema says string`) {
		t.Errorf("dead letters %q", dead)
	}
	// The rule big fails on line 4 (a string amount); vip alerts on it.
	failed := committedLines(t, filepath.Join(out, "rule-errors"), "")
	if len(failed) != 1 || !strings.Contains(failed[0], `"line":4`) ||
		!strings.Contains(failed[0], `rule big version 1: condition: invalid operation`) {
		t.Errorf("rule errors %q", failed)
	}
}

// TestRulesJobOnTheWalkthroughGenerator runs the rules job on the
// walkthrough generator with `weir local`, printing the alerts: one per
// transaction above 500, with the account as key, once each, on stdout
// and in the committed files.
func TestRulesJobOnTheWalkthroughGenerator(t *testing.T) {
	work := t.TempDir()
	ruleFile := filepath.Join(work, "rules.yaml")
	if err := os.WriteFile(ruleFile, []byte("id: large\nkey: [accountId]\nkind: filter\ncondition: 'e.amount > 500'\nemit: {action: alert}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(work, "out")
	r := runWeir(t, "local", "--taskmanagers", "2", "--slots", "2", "--parallelism", "2", "--job", "rules",
		"--param", "rules="+ruleFile, "--param", "source=walkthrough", "--param", "rate=0", "--param", "count=100",
		"--param", "sink=print", "--param", "output="+out)
	if r.ExitCode != 0 {
		t.Fatalf("weir local exit %d:\n%s", r.ExitCode, r.Stderr)
	}
	var want []string
	for i := range int64(100) {
		tx := fraud.WalkthroughTransaction(i)
		if tx.Amount > 500 {
			want = append(want, fmt.Sprintf(`{"rule":"large","version":1,"key":{"accountId":%d},"time":%d,"action":"alert"}`, tx.AccountID, tx.Timestamp))
		}
	}
	slices.Sort(want)
	if got := sortedLines(r.Stdout); len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("printed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := committedLines(t, filepath.Join(out, "alerts"), ""); !slices.Equal(got, want) {
		t.Errorf("committed %d alerts, want %d", len(got), len(want))
	}
}
