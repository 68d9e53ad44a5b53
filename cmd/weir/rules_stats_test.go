package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/jobs/fraud"
	"github.com/weirstream/weir/jobs/rulesjob"
)

// driftEvents writes the near-real-time seed: 100 transactions per 10 s
// over ten accounts, of which 20 % are large in the first five intervals
// and 5 % in the last two.
func driftEvents(t *testing.T, path string) (large int) {
	t.Helper()
	var b strings.Builder
	for iv := range 7 {
		for j := range 100 {
			amount := 10
			if (iv < 5 && j%5 == 0) || (iv >= 5 && j%20 == 0) {
				amount, large = 500, large+1
			}
			fmt.Fprintf(&b, `{"ts":%d,"accountId":"acc-%d","amount":%d}`+"\n", iv*10000+j*100, j%10, amount)
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return large
}

// TestRulesJobRuleStatsAndDrift runs the rules job at parallelism 2 on a
// JobManager and two TaskManagers, checkpointing every 50 ms (so the
// evaluators' counts reach the statistician in many parts): the rule_stats
// stream holds each rule version's exact counts per 10 s of event time,
// summed over both subtasks, and a rule-drift alert joins the alerts in
// each of the two intervals whose hit rate fell beyond the factor of 2,
// but not for a rule whose own drift factor (5) holds the fall within.
func TestRulesJobRuleStatsAndDrift(t *testing.T) {
	work := t.TempDir()
	ruleFile := filepath.Join(work, "rules.yaml")
	if err := os.WriteFile(ruleFile, []byte(`id: large
key: [accountId]
kind: filter
condition: 'e.amount > 100'
emit: {action: alert}
---
id: tolerant
key: [accountId]
kind: filter
condition: 'e.amount > 100'
emit: {action: alert}
drift: {factor: 5}
---
id: never
key: [accountId]
kind: filter
condition: 'e.amount < 0'
emit: {action: alert}
---
id: trial
state: shadow
key: [accountId]
kind: filter
condition: 'e.amount > 100'
emit: {action: alert}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	events := filepath.Join(work, "events.jsonl")
	large := driftEvents(t, events)
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2,
		JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(work, "ck")}})
	out := runRulesJob(t, c, work, "rules="+ruleFile, "input="+events, "stats-interval=10s",
		"drift-factor=2", "drift-window=3", "drift-min-evaluations=50")

	var drift []string
	alerts := 0
	for _, l := range committedLines(t, filepath.Join(out, "alerts"), "") {
		if strings.Contains(l, `"action":"rule-drift"`) {
			drift = append(drift, l)
		} else if strings.HasPrefix(l, `{"rule":"large","version":1,"key":{"accountId":"acc-`) ||
			strings.HasPrefix(l, `{"rule":"tolerant","version":1,"key":{"accountId":"acc-`) {
			alerts++
		} else {
			t.Errorf("unexpected alert %s", l)
		}
	}
	if alerts != 2*large {
		t.Errorf("%d alerts of rules large and tolerant, want %d", alerts, 2*large)
	}
	wantDrift := []string{
		`{"rule":"large","version":1,"key":{},"time":59999,"action":"rule-drift","window":{"start":50000,"end":60000},"fields":{"baselineEvaluations":300,"baselineHits":60,"baselineIntervals":3,"baselineRate":0.2,"evaluations":100,"factor":0.25,"hitRate":0.05,"hits":5}}`,
		`{"rule":"large","version":1,"key":{},"time":69999,"action":"rule-drift","window":{"start":60000,"end":70000},"fields":{"baselineEvaluations":300,"baselineHits":45,"baselineIntervals":3,"baselineRate":0.15,"evaluations":100,"factor":0.3333333333333333,"hitRate":0.05,"hits":5}}`,
	}
	if !slices.Equal(drift, wantDrift) {
		t.Errorf("drift alerts:\n%s\nwant:\n%s", strings.Join(drift, "\n"), strings.Join(wantDrift, "\n"))
	}
	// The shadow rule trial drifts as large does: its drift alerts go to
	// the shadow output with its other alerts, none to the alerts.
	var shadowDrift []string
	shadowAlerts := 0
	for _, l := range committedLines(t, filepath.Join(out, "shadow"), "") {
		switch {
		case strings.Contains(l, `"action":"rule-drift"`):
			shadowDrift = append(shadowDrift, l)
		case strings.HasPrefix(l, `{"rule":"trial","version":1,"key":{"accountId":"acc-`) && strings.HasSuffix(l, `"shadow":true}`):
			shadowAlerts++
		default:
			t.Errorf("unexpected shadow alert %s", l)
		}
	}
	if shadowAlerts != large {
		t.Errorf("%d shadow alerts of rule trial, want %d", shadowAlerts, large)
	}
	var wantShadowDrift []string
	for _, d := range wantDrift {
		d = strings.Replace(d, `{"rule":"large"`, `{"rule":"trial"`, 1)
		wantShadowDrift = append(wantShadowDrift, strings.Replace(d, `"action":"rule-drift"`, `"action":"rule-drift","shadow":true`, 1))
	}
	if !slices.Equal(shadowDrift, wantShadowDrift) {
		t.Errorf("shadow drift alerts:\n%s\nwant:\n%s", strings.Join(shadowDrift, "\n"), strings.Join(wantShadowDrift, "\n"))
	}

	var got, want []string
	for _, l := range committedLines(t, filepath.Join(out, "rule-stats"), "") {
		var s rulesjob.RuleStat
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		if s.EvalNanos <= 0 {
			t.Errorf("no evaluation time: %s", l)
		}
		got = append(got, fmt.Sprintf("%s v%d [%d,%d) %d %d %d %g", s.Rule, s.Version, s.Start, s.End, s.Evaluations, s.Hits, s.Errors, s.HitRate))
	}
	for iv := range 7 {
		hits, rate := 20, 0.2
		if iv >= 5 {
			hits, rate = 5, 0.05
		}
		want = append(want, fmt.Sprintf("large v1 [%d,%d) 100 %d 0 %g", iv*10000, iv*10000+10000, hits, rate),
			fmt.Sprintf("tolerant v1 [%d,%d) 100 %d 0 %g", iv*10000, iv*10000+10000, hits, rate),
			fmt.Sprintf("never v1 [%d,%d) 100 0 0 0", iv*10000, iv*10000+10000),
			fmt.Sprintf("trial v1 [%d,%d) 100 %d 0 %g", iv*10000, iv*10000+10000, hits, rate))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("rule stats:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRulesJobRuleStatsExactlyOnceAcrossKill runs the rules job on the
// walkthrough generator (one transaction per 6 minutes of event time, 100
// per second) at parallelism 2 on three TaskManagers, checkpointing every
// 300 ms, and kills the TaskManager of an evaluator subtask midway: the
// job restores from its last checkpoint, and the rule_stats stream still
// counts every transaction exactly once per rule and hour, and the alerts
// are exactly once too. (The evaluators' counts of the open hour are not
// in state; they cross each barrier before it, so the restored job
// neither loses nor repeats them.)
func TestRulesJobRuleStatsExactlyOnceAcrossKill(t *testing.T) {
	work := t.TempDir()
	ruleFile := filepath.Join(work, "rules.yaml")
	if err := os.WriteFile(ruleFile, []byte("id: large\nkey: [accountId]\nkind: filter\ncondition: 'e.amount > 500'\n"+
		"---\nid: window\nkey: [accountId]\nkind: aggregate\nwindow: {type: lookback, size: 1h}\naggregates: {n: {fn: count}}\ncondition: 'agg.n >= 2'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const count = 1500
	c := startCluster(t, cluster.Options{TaskManagers: 3, Slots: 2,
		JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(work, "ck")}})
	out := filepath.Join(work, "out")
	id := submit(t, c, "rules", "--parallelism", "2", "--checkpoint-interval", "300ms",
		"--param", "rules="+ruleFile, "--param", "source=walkthrough", "--param", "rate=100", "--param", fmt.Sprint("count=", count),
		"--param", "stats-interval=1h", "--param", "output="+out)
	st := waitCheckpoint(t, c, id, 3)
	var victim string
	for _, v := range st.Vertices {
		if strings.Contains(v.Name, "evaluate-rules") {
			victim = v.Subtasks[0].TaskManagerID
		}
	}
	killed := false
	for _, tm := range c.TaskManagers {
		if tm.Name == "taskmanager-"+strings.TrimPrefix(victim, "tm-") {
			tm.Kill()
			killed = true
		}
	}
	if !killed {
		t.Fatalf("no TaskManager %q to kill", victim)
	}
	if st := waitState(t, c, id, 3*time.Minute, "FINISHED", "FAILED"); st.State != "FINISHED" || st.Restarts == 0 {
		t.Fatalf("job %s after %d restarts: %s", st.State, st.Restarts, st.Failure)
	}

	var got, want, wantAlerts []string
	type counts struct{ evals, large int }
	hours := map[int64]*counts{}
	var hourOrder []int64
	for i := range int64(count) {
		tx := fraud.WalkthroughTransaction(i)
		h := tx.Timestamp - tx.Timestamp%3_600_000
		if hours[h] == nil {
			hours[h] = &counts{}
			hourOrder = append(hourOrder, h)
		}
		hc := hours[h]
		hc.evals++
		if tx.Amount > 500 {
			hc.large++
			wantAlerts = append(wantAlerts, fmt.Sprintf(`{"rule":"large","version":1,"key":{"accountId":%d},"time":%d,"action":"alert"}`, tx.AccountID, tx.Timestamp))
		}
	}
	for _, h := range hourOrder {
		hc := hours[h]
		want = append(want, fmt.Sprintf("large v1 [%d,%d) %d %d", h, h+3_600_000, hc.evals, hc.large),
			fmt.Sprintf("window v1 [%d,%d) %d", h, h+3_600_000, hc.evals))
	}
	var windowKeys []rulesjob.RuleStat
	for _, l := range committedLines(t, filepath.Join(out, "rule-stats"), "") {
		var s rulesjob.RuleStat
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		if s.Rule == "window" {
			windowKeys = append(windowKeys, s)
		} else if s.Keys != 0 {
			t.Errorf("a filter rule holds keys in state: %s", l)
		}
		if s.Evaluations == 0 {
			continue // the look-backs expiring after the last transaction: keys only
		}
		line := fmt.Sprintf("%s v%d [%d,%d) %d %d", s.Rule, s.Version, s.Start, s.End, s.Evaluations, s.Hits)
		if s.Rule == "window" {
			// The look-back's own state is not in checkpoints yet (README,
			// The rules job): a restore starts it empty, so its hits
			// after the kill are fewer. Its evaluations are exact.
			line = fmt.Sprintf("%s v%d [%d,%d) %d", s.Rule, s.Version, s.Start, s.End, s.Evaluations)
		}
		got = append(got, line)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("rule stats (%d lines, want %d):\n%s\nwant:\n%s", len(got), len(want), strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Keys in state, counted exactly once across the kill too: every one
	// of the 5 accounts pays every 30 minutes, so each holds a look-back
	// at the end of every hour but the first (which may not have seen
	// all) and the last ones, when they expire, down to none.
	slices.SortFunc(windowKeys, func(a, b rulesjob.RuleStat) int { return int(a.Start - b.Start) })
	if len(windowKeys) < len(hourOrder) {
		t.Errorf("%d lines of rule window, want at least %d", len(windowKeys), len(hourOrder))
	}
	for i, s := range windowKeys {
		last := i == len(windowKeys)-1
		if (last && s.Keys != 0) || (!last && i > 0 && s.Evaluations > 0 && s.End <= hourOrder[len(hourOrder)-1] && s.Keys != 5) || s.Keys < 0 || s.Keys > 5 {
			t.Errorf("window v1 [%d,%d): %d keys in state (line %d of %d)", s.Start, s.End, s.Keys, i+1, len(windowKeys))
		}
	}
	var alerts []string
	for _, l := range committedLines(t, filepath.Join(out, "alerts"), "") {
		if strings.Contains(l, `"rule":"large"`) {
			alerts = append(alerts, l)
		}
	}
	slices.Sort(wantAlerts)
	if !slices.Equal(alerts, wantAlerts) {
		t.Errorf("%d alerts of large, want %d", len(alerts), len(wantAlerts))
	}
}
