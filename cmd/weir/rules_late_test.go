package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cluster"
)

// TestRulesJobLateness: a window rule with lateness takes an event behind
// the watermark into a fired window still within its lateness and fires
// it again, marked late; an event past the lateness, and every late event
// for the rules without lateness, goes to <output>/late-rules/ with the
// reason.
// The files are put one at a time, each once the job has shown that the
// watermark passed what the next one needs, so which events are late is
// fixed.
func TestRulesJobLateness(t *testing.T) {
	work := t.TempDir()
	in, out := filepath.Join(work, "in"), filepath.Join(work, "out")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	ruleFile := filepath.Join(work, "rules.yaml")
	if err := os.WriteFile(ruleFile, []byte(`id: sum
key: [user]
kind: aggregate
window: {type: tumbling, size: 5s}
lateness: 5s
aggregates: {n: {fn: count}, s: {fn: sum, of: e.amount}}
condition: 'agg.n > 0'
---
id: huge
kind: filter
condition: 'e.amount > 1000'
`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2, JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(work, "ck")}})
	// One source subtask, so the watermark follows the files at once (a
	// subtask without files would hold it until idle); a source without
	// records for 4×monitor is idle and, all idle, lets the watermark go:
	// 2s leaves time to put the second file.
	id := submit(t, c, "rules", "--parallelism", "1", "--checkpoint-interval", "100ms",
		"--param", "rules="+ruleFile, "--param", "input="+in, "--param", "output="+out, "--param", "monitor=2s",
		"--param", "out-of-orderness=0s")
	waitState(t, c, id, time.Minute, "RUNNING")
	alerts := filepath.Join(out, "alerts")
	const (
		uWindow     = `{"rule":"sum","version":1,"key":{"user":"u"},"time":9999,"action":"alert","window":{"start":5000,"end":10000},"fields":{"n":1,"s":5}}`
		uWindowLate = `{"rule":"sum","version":1,"key":{"user":"u"},"time":9999,"action":"alert","late":true,"window":{"start":5000,"end":10000},"fields":{"n":2,"s":12}}`
	)
	uLines := func(ls []string) []string {
		return slices.DeleteFunc(ls, func(l string) bool { return !strings.Contains(l, `"user":"u"`) })
	}
	writeEvents(t, in, "a.jsonl", []liveEvent{{ts: 6000, user: "u", amount: 5}, {ts: 12000, user: "v", amount: 1}})
	if got := uLines(waitLines(t, alerts, 1)); !slices.Equal(got, []string{uWindow}) {
		t.Fatalf("alerts after a.jsonl: %q", got)
	}
	// The watermark is 11999: u's window [5s, 10s) fired and is kept until
	// 14999, its window [0, 5s) is gone.
	writeEvents(t, in, "b.jsonl", []liveEvent{{ts: 7000, user: "u", amount: 7}, {ts: 1000, user: "u", amount: 4}})
	want := []string{uWindowLate, uWindow}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		got := uLines(committedLines(t, alerts, ""))
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("u's alerts after b.jsonl:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	// Late for huge (no lateness): both events; for sum: the one at 1000.
	late := waitLines(t, filepath.Join(out, "late-rules"), 3)
	var lines []string
	for _, l := range late {
		if !strings.Contains(l, "behind the watermark 11999 and no rule of key [") {
			t.Errorf("late line %s", l)
		}
		lines = append(lines, strings.Split(strings.Split(l, `\"ts\":`)[1], ",")[0])
	}
	slices.Sort(lines)
	if !slices.Equal(lines, []string{"1000", "1000", "7000"}) {
		t.Errorf("late lines: %q (%q)", lines, late)
	}
	time.Sleep(500 * time.Millisecond)
	if got := uLines(committedLines(t, alerts, "")); !slices.Equal(got, want) {
		t.Errorf("u's alerts in the end: %q", got)
	}
}
