package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/cluster"
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
			fmt.Sprintf("never v1 [%d,%d) 100 0 0 0", iv*10000, iv*10000+10000))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("rule stats:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
