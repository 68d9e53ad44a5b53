package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/connectors/kafka/kafkatest"
	"github.com/weirstream/weir/jobs/rulesjob"
)

// TestRulesJobKafkaEndToEnd runs the rules job under weir local at
// parallelism 2, with checkpoints every 100 ms, from a topic of three
// partitions holding the transfers example's events (keyed by account)
// and two records that do not decode, to an exactly-once alerts topic:
// a read-committed consumer reads exactly the alerts `weir rules test`
// prints for the same rules and events, the committed alert files hold
// the same, the rule_stats stream counts every event once, and the bad
// records reach the dead-letter topic with their reason.
func TestRulesJobKafkaEndToEnd(t *testing.T) {
	dir := filepath.Join("..", "..", "rules", "examples", "transfers")
	ruleFile, _ := filepath.Abs(filepath.Join(dir, "rules.yaml"))
	events := filepath.Join(dir, "events.jsonl")
	ref := runWeir(t, "rules", "test", ruleFile, "--events", events)
	if ref.ExitCode != 0 {
		t.Fatalf("rules test: exit %d: %s", ref.ExitCode, ref.Stderr)
	}
	want := sortedLines(ref.Stdout)
	data, err := os.ReadFile(events)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	good := len(lines)
	lines = append(lines, `not json`, `{"ts": 4000, "accountId": "acc-1", "amount": "lots"}`)

	kc := kafkatest.Start(t, map[string]int32{rulesjob.EventsTopic: 3, rulesjob.AlertsTopic: 2, "rules-dead": 1})
	addrs := kc.ListenAddrs()
	kafkatest.ProduceLines(t, addrs, rulesjob.EventsTopic, 3, lines, func(l string) string {
		if i := strings.Index(l, `"acc-`); i >= 0 {
			return l[i : i+7]
		}
		return ""
	})
	out := filepath.Join(t.TempDir(), "out")
	r := runWeir(t, "local", "--job", "rules", "--parallelism", "2", "--taskmanagers", "2", "--checkpoint-interval", "100ms",
		"--param", "rules="+ruleFile, "--param", "source=kafka", "--param", "bounded=true", "--param", "sink=kafka",
		"--param", "kafka-brokers="+addrs[0], "--param", "schema=accountId:string,amount:number",
		"--param", "dead-letter-topic=rules-dead", "--param", "out-of-orderness=1m", "--param", "output="+out)
	if r.ExitCode != 0 {
		t.Fatalf("weir local: exit %d: %s", r.ExitCode, r.Stderr)
	}
	var got []string
	for _, rec := range kafkatest.ReadCommitted(t, addrs, rulesjob.AlertsTopic, 2, 30*time.Second) {
		got = append(got, string(rec.Value))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("alerts topic:\n%s\nwant (rules test):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if files := committedLines(t, filepath.Join(out, rulesjob.AlertsDir), ""); !slices.Equal(files, want) {
		t.Errorf("alert files:\n%s\nwant:\n%s", strings.Join(files, "\n"), strings.Join(want, "\n"))
	}
	evals := 0
	for _, l := range committedLines(t, filepath.Join(out, rulesjob.RuleStatsDir), "") {
		var s rulesjob.RuleStat
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		evals += int(s.Evaluations)
	}
	if evals != 2*good { // two rules, one key: each sees every good event
		t.Errorf("rule stats count %d evaluations, want %d", evals, 2*good)
	}
	dead := kafkatest.ReadCommitted(t, addrs, "rules-dead", 1, 30*time.Second)
	var reasons []string
	for _, d := range dead {
		reasons = append(reasons, string(d.Value))
	}
	if len(dead) != 2 || !strings.Contains(strings.Join(reasons, "\n"), `field \"amount\" is a string, the schema says number`) {
		t.Errorf("dead letters:\n%s", strings.Join(reasons, "\n"))
	}
}
