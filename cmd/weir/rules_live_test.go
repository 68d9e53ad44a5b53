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

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/internal/etcdtest"
)

// liveEvent is one event of TestRulesLiveChanges and the alert lines it
// must raise under each rule, if it does.
type liveEvent struct {
	ts     int64
	user   string
	ip     string
	amount float64
}

func liveEvents(base int64) []liveEvent {
	amounts := []float64{50, 150, 600, 90, 700, 120, 30, 501, 101, 99}
	var out []liveEvent
	for i, a := range amounts {
		ip := fmt.Sprintf("10.0.0.%d", i)
		if i%4 == 1 {
			ip = "6.6.6.6"
		}
		out = append(out, liveEvent{ts: base + int64(i)*1000, user: fmt.Sprintf("u%d", i%3), ip: ip, amount: a})
	}
	return out
}

// writeEvents writes evs as one JSON-lines file of the watched directory
// (under a hidden name, then renamed, as a continuous source wants).
func writeEvents(t *testing.T, dir, name string, evs []liveEvent) {
	t.Helper()
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, `{"ts":%d,"user":%q,"ip":%q,"amount":%g}`+"\n", e.ts, e.user, e.ip, e.amount)
	}
	tmp := filepath.Join(dir, "."+name)
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func alertLine(rule string, version int64, keyField, key string, ts int64, shadow bool) string {
	k, _ := json.Marshal(map[string]string{keyField: key})
	s := fmt.Sprintf(`{"rule":%q,"version":%d,"key":%s,"time":%d,"action":"alert"`, rule, version, k, ts)
	if shadow {
		s += `,"shadow":true`
	}
	return s + "}"
}

// waitRead waits until the job's parser has read n lines.
func waitRead(t *testing.T, c *cluster.Cluster, id string, n int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var read int64
		for _, v := range jobStatus(t, c, id).Vertices {
			for _, op := range v.Operators {
				if op.Name == "parse-events" {
					read += op.RecordsIn
				}
			}
		}
		if read >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job read %d lines in a minute, want %d", read, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRulesLiveChanges runs the rules job at parallelism 2 on three
// TaskManagers with its rules in a real etcd and rules-clock=marks, and
// changes the rules while it runs: at event time 10000 it pauses two rules
// (a filter and a look-back count) and adds one with another key, at 20000
// it resumes the first two and shadows a third. The paused count keeps its
// state: resumed, it counts on from the events before the pause. Each change applies exactly from its time on every subtask, so
// the alerts are exactly those of the rules in force at each event's time.
// A TaskManager running the job is killed after the changes: the restored
// job evaluates the events still waiting under the rule sets of the
// checkpoint. The rule total's window spans every change (rules beside it
// changed; its own state is kept) and the kill (its state is restored
// from the checkpoint): its sums count every event exactly once.
func TestRulesLiveChanges(t *testing.T) {
	etcd := etcdtest.Start(t)
	work := t.TempDir()
	in, out := filepath.Join(work, "in"), filepath.Join(work, "out")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	ruleFile := filepath.Join(work, "rules.yaml")
	if err := os.WriteFile(ruleFile, []byte(`id: big
key: [user]
kind: filter
condition: 'e.amount > 100'
emit: {action: alert}
---
id: huge
key: [user]
kind: filter
condition: 'e.amount > 500'
emit: {action: alert}
---
id: total
key: [user]
kind: aggregate
window: {type: tumbling, size: 40s}
aggregates: {n: {fn: count}, s: {fn: sum, of: e.amount}}
condition: 'agg.n > 0'
---
id: seen
key: [user]
kind: aggregate
window: {type: lookback, size: 1h}
aggregates: {n: {fn: count}}
condition: 'agg.n == 4 || agg.n == 8'
`), 0o644); err != nil {
		t.Fatal(err)
	}
	ipRule := filepath.Join(work, "ip.yaml")
	if err := os.WriteFile(ipRule, []byte(`id: bad-ip
key: [ip]
kind: filter
condition: 'e.ip == "6.6.6.6"'
emit: {action: alert}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	o := cluster.Options{TaskManagers: 3, Slots: 2, JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(work, "ck")}}
	c := startCluster(t, o)
	id := submit(t, c, "rules", "--parallelism", "2", "--checkpoint-interval", "100ms",
		"--param", "rules="+ruleFile, "--param", "input="+in, "--param", "output="+out, "--param", "monitor=100ms",
		"--param", "out-of-orderness=0s", "--param", "etcd="+etcd.Endpoint, "--param", "cluster-id=live",
		"--param", "rules-clock=marks")
	waitState(t, c, id, time.Minute, "RUNNING")
	rules := func(args ...string) string {
		t.Helper()
		r := runWeir(t, append(append([]string{"rules"}, args...), "--etcd", etcd.Endpoint, "--cluster-id", "live", "--job", id)...)
		if r.ExitCode != 0 {
			t.Fatalf("weir rules %v: exit %d: %s", args, r.ExitCode, r.Stderr)
		}
		return r.Stdout
	}
	// The job stores the rules of its parameter at start.
	for deadline := time.Now().Add(30 * time.Second); ; {
		l := rules("list")
		if strings.Contains(l, "big") && strings.Contains(l, "huge") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job did not store its rules: %s", l)
		}
		time.Sleep(100 * time.Millisecond)
	}

	a, b, cc := liveEvents(0), liveEvents(10000), liveEvents(20000)
	writeEvents(t, in, "a.jsonl", a)
	waitRead(t, c, id, 10)
	rules("mark", "--at", "9999")
	rules("pause", "big", "--at", "10000")
	rules("pause", "seen", "--at", "10000")
	rules("put", ipRule, "--at", "10000")
	writeEvents(t, in, "b.jsonl", b)
	waitRead(t, c, id, 20)
	rules("mark", "--at", "19999")
	rules("resume", "big", "--at", "20000")
	rules("resume", "seen", "--at", "20000")
	rules("shadow", "huge", "--at", "20000")
	writeEvents(t, in, "c.jsonl", cc)
	waitRead(t, c, id, 30)

	// The changes after the first set travelled as deltas of one or two
	// rules each (the pause, the put, and the resume with the shadow).
	waitLog(t, c, "sent=delta documents=1", 2)
	if logs := stderrOf(c); strings.Count(logs, "sent=set") != 1 {
		t.Errorf("%d whole sets sent before the kill, want the first only", strings.Count(logs, "sent=set"))
	}
	// Kill a TaskManager of the job once a checkpoint holds the changes.
	st := waitCheckpoint(t, c, id, jobStatus(t, c, id).Checkpointing.Completed)
	victim := st.Vertices[len(st.Vertices)-1].Subtasks[0].TaskManagerID
	for _, tm := range c.TaskManagers {
		if tm.Name == "taskmanager-"+strings.TrimPrefix(victim, "tm-") {
			tm.Kill()
		}
	}
	deadline := time.Now().Add(time.Minute)
	for st := jobStatus(t, c, id); st.Restarts == 0 || st.State != "RUNNING"; st = jobStatus(t, c, id) {
		if time.Now().After(deadline) {
			t.Fatalf("the job did not restart: %v %s", st.State, st.Failure)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The restored evaluators recount their keys in state: total's window
	// holds the 3 users, and so does seen's look-back, still under the
	// paused version that last wrote it (no event after the resume is
	// evaluated before the mark); the filters hold nothing.
	waitKeys(t, etcd.Endpoint, id, map[string]int64{"total/1": 3, "seen/2": 3})
	rules("mark", "--at", "50000")

	var want, wantShadow []string
	for _, e := range a {
		if e.amount > 100 {
			want = append(want, alertLine("big", 1, "user", e.user, e.ts, false))
		}
		if e.amount > 500 {
			want = append(want, alertLine("huge", 1, "user", e.user, e.ts, false))
		}
	}
	for _, e := range b { // big paused (version 2), bad-ip added
		if e.amount > 500 {
			want = append(want, alertLine("huge", 1, "user", e.user, e.ts, false))
		}
		if e.ip == "6.6.6.6" {
			want = append(want, alertLine("bad-ip", 1, "ip", e.ip, e.ts, false))
		}
	}
	for _, e := range cc { // big resumed (version 3), huge shadowed (version 2)
		if e.amount > 100 {
			want = append(want, alertLine("big", 3, "user", e.user, e.ts, false))
		}
		if e.amount > 500 {
			wantShadow = append(wantShadow, alertLine("huge", 2, "user", e.user, e.ts, true))
		}
		if e.ip == "6.6.6.6" {
			want = append(want, alertLine("bad-ip", 1, "ip", e.ip, e.ts, false))
		}
	}
	// seen counts each user's events while it is active (version 1 over
	// a, version 3 over c): paused over b, it keeps the counts of a and
	// sees none of b's events, so c's counts go on from a's.
	seen := map[string]int{}
	for i, evs := range [][]liveEvent{a, cc} {
		for _, e := range evs {
			seen[e.user]++
			if n := seen[e.user]; n == 4 || n == 8 {
				want = append(want, fmt.Sprintf(`{"rule":"seen","version":%d,"key":{"user":%q},"time":%d,"action":"alert","fields":{"n":%d}}`,
					1+2*i, e.user, e.ts, n))
			}
		}
	}
	// total's window [0, 40000) holds every event of a, b and c.
	totals := map[string]map[string]float64{}
	for _, e := range append(append(append([]liveEvent(nil), a...), b...), cc...) {
		if totals[e.user] == nil {
			totals[e.user] = map[string]float64{}
		}
		totals[e.user]["n"]++
		totals[e.user]["s"] += e.amount
	}
	for user, f := range totals {
		want = append(want, windowAlert("total", 1, user, 0, 40000, f))
	}
	slices.Sort(want)
	slices.Sort(wantShadow)
	var got, gotShadow []string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		got = committedLines(t, filepath.Join(out, "alerts"), "")
		gotShadow = committedLines(t, filepath.Join(out, "shadow"), "")
		if len(got) >= len(want) && len(gotShadow) >= len(wantShadow) {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !slices.Equal(gotShadow, wantShadow) {
		t.Errorf("shadow alerts:\n%s\nwant:\n%s", strings.Join(gotShadow, "\n"), strings.Join(wantShadow, "\n"))
	}
	for _, d := range []string{"dead-letters", "rule-errors", "late"} {
		if l := committedLines(t, filepath.Join(out, d), ""); len(l) > 0 {
			t.Errorf("%s: %q", d, l)
		}
	}
	// The events of c.jsonl were all evaluated after the restart, under
	// big version 3 and huge version 2: the counts the evaluator's
	// subtasks publish say so.
	want3 := map[string][3]int64{"big/3": {10, 6, 0}, "huge/2": {10, 3, 0}, "seen/3": {10, 3, 0}}
	var stats cli.RuleStatsView
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		weirJSON(t, &stats, "rules", "stats", "--etcd", etcd.Endpoint, "--cluster-id", "live", "--job", id)
		got := map[string][3]int64{}
		for _, r := range stats.Rules {
			got[fmt.Sprintf("%s/%d", r.Rule, r.Version)] = [3]int64{r.Evaluations, r.Alerts, r.Errors}
		}
		if got["big/3"] == want3["big/3"] && got["huge/2"] == want3["huge/2"] && got["seen/3"] == want3["seen/3"] &&
			got["seen/2"] == [3]int64{} {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rules stats %+v, want %v and nothing counted by the paused seen/2", stats.Rules, want3)
		}
	}
	// total's window fired at 39999 and left no state: the count, which
	// started from the restored state's, is down to 0; seen's look-back
	// of an hour keeps the 3 users, now under the resumed version.
	waitKeys(t, etcd.Endpoint, id, map[string]int64{"total/1": 0, "seen/3": 3})
	h := rules("history", "big")
	if !strings.Contains(h, "paused") || strings.Count(h, "\n") != 4 {
		t.Errorf("history of big:\n%s", h)
	}
}

// waitKeys waits until `weir rules stats` shows the keys in state of want
// (by "rule/version") and no other rule version holds any.
func waitKeys(t *testing.T, etcd, id string, want map[string]int64) {
	t.Helper()
	var stats cli.RuleStatsView
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		weirJSON(t, &stats, "rules", "stats", "--etcd", etcd, "--cluster-id", "live", "--job", id)
		got := map[string]int64{}
		for _, r := range stats.Rules {
			got[fmt.Sprintf("%s/%d", r.Rule, r.Version)] = r.Keys
		}
		ok := true
		for k, n := range got {
			if n != want[k] {
				ok = false
			}
		}
		for k := range want {
			if _, seen := got[k]; !seen {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys in state %v, want %v", got, want)
		}
	}
}

// stderrOf is every TaskManager's log so far.
func stderrOf(c *cluster.Cluster) string {
	var b strings.Builder
	for _, tm := range c.TaskManagers {
		b.WriteString(tm.Stderr())
	}
	return b.String()
}

func waitLog(t *testing.T, c *cluster.Cluster, text string, n int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); strings.Count(stderrOf(c), text) < n; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the TaskManagers' logs within a minute", text)
		}
	}
}

// waitLines waits until dir's committed part files hold n lines.
func waitLines(t *testing.T, dir string, n int) []string {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		got := committedLines(t, dir, "")
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
	}
}

// TestRulesJobKeepsItsRulesWhileEtcdIsDown: with etcd gone the job says
// so in its logs and goes on evaluating under its current rules
// (rules-clock=wall); when etcd is back it follows changes again.
func TestRulesJobKeepsItsRulesWhileEtcdIsDown(t *testing.T) {
	etcd := etcdtest.StartProcess(t)
	work := t.TempDir()
	in, out := filepath.Join(work, "in"), filepath.Join(work, "out")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	ruleFile := filepath.Join(work, "rules.yaml")
	if err := os.WriteFile(ruleFile, []byte(`id: big
key: [user]
kind: filter
condition: 'e.amount > 100'
emit: {action: alert}
---
id: any
key: [user]
kind: filter
condition: 'e.amount > 0'
emit: {action: alert}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2})
	id := submit(t, c, "rules", "--parallelism", "2", "--checkpoint-interval", "200ms",
		"--param", "rules="+ruleFile, "--param", "input="+in, "--param", "output="+out, "--param", "monitor=100ms",
		"--param", "out-of-orderness=0s", "--param", "etcd="+etcd.Endpoint, "--param", "rules-lag=2s")
	waitState(t, c, id, time.Minute, "RUNNING")
	rules := func(args ...string) {
		t.Helper()
		r := runWeir(t, append(append([]string{"rules"}, args...), "--etcd", etcd.Endpoint, "--job", id)...)
		if r.ExitCode != 0 {
			t.Fatalf("weir rules %v: exit %d: %s", args, r.ExitCode, r.Stderr)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := runWeir(t, "rules", "list", "--etcd", etcd.Endpoint, "--job", id)
		if strings.Contains(r.Stdout, "big") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job did not store its rules: %s %s", r.Stdout, r.Stderr)
		}
	}
	event := func(name string, amount int) int64 {
		ts := time.Now().UnixMilli()
		writeEvents(t, in, name, []liveEvent{{ts: ts, user: "u", ip: "i", amount: float64(amount)}})
		return ts
	}

	// notes waits for the job's status to say (or stop saying) that etcd
	// is unreachable.
	notes := func(down bool) []string {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			var st cli.JobStatusView
			weirJSON(t, &st, "job", "status", id, "--jobmanager", c.JobManagerAddrs)
			if said := slices.ContainsFunc(st.Notes, func(n string) bool {
				return strings.HasPrefix(n, "rules: etcd "+etcd.Endpoint+" unreachable since ") &&
					strings.Contains(n, "; keeping 2 rules (those of the rules parameter, etcd revision ")
			}); said == down {
				return st.Notes
			}
			if time.Now().After(deadline) {
				t.Fatalf("job status notes %q; want etcd unreachable: %v", st.Notes, down)
			}
		}
	}
	notes(false)

	etcd.Stop()
	waitLog(t, c, "rules: etcd unreachable; the job keeps its current rules and retries", 1)
	if n := notes(true); len(n) != 1 {
		t.Errorf("notes %q, want the one", n)
	}
	if r := runWeir(t, "job", "status", id, "--jobmanager", c.JobManagerAddrs); !strings.Contains(r.Stdout, "  note: rules: etcd "+etcd.Endpoint+" unreachable since ") {
		t.Errorf("weir job status does not say etcd is unreachable:\n%s", r.Stdout)
	}
	t1 := event("1.jsonl", 500)
	got := waitLines(t, filepath.Join(out, "alerts"), 2)
	want := []string{alertLine("any", 1, "user", "u", t1, false), alertLine("big", 1, "user", "u", t1, false)}
	if !slices.Equal(got, want) {
		t.Fatalf("while etcd was down:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	etcd.Restart(t)
	waitLog(t, c, "rules: etcd reachable again; following rule changes", 1)
	if n := notes(false); len(n) != 0 {
		t.Errorf("notes %q after etcd came back, want none", n)
	}
	rules("pause", "big")
	t2 := event("2.jsonl", 600)
	got = waitLines(t, filepath.Join(out, "alerts"), 3)
	want = append(want, alertLine("any", 1, "user", "u", t2, false))
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after etcd came back and big was paused:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRulesJobSavepointCarriesRules stops a live rules job (rules-clock=
// marks, rules-name fixed) with a savepoint while the events after the
// last change still wait for the rule watermark, resumes a paused rule
// while no job runs, and submits the job again from the savepoint: the
// new job evaluates the waiting events under the rule sets the savepoint
// holds (big paused from 10000) and applies the change made meanwhile
// from its own time (big resumed from 20000).
func TestRulesJobSavepointCarriesRules(t *testing.T) {
	etcd := etcdtest.Start(t)
	work := t.TempDir()
	in, out := filepath.Join(work, "in"), filepath.Join(work, "out")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	ruleFile := filepath.Join(work, "rules.yaml")
	if err := os.WriteFile(ruleFile, []byte("id: big\nkey: [user]\nkind: filter\ncondition: 'e.amount > 100'\nemit: {action: alert}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2, JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(work, "ck")}})
	id, params, rules := markedRulesJob(t, c, etcd.Endpoint, ruleFile, in, out, "fraud", "big")
	a, b, cc := liveEvents(0), liveEvents(10000), liveEvents(20000)
	writeEvents(t, in, "a.jsonl", a)
	rules("pause", "big", "--at", "10000")
	writeEvents(t, in, "b.jsonl", b)
	waitRead(t, c, id, 20)
	waitCheckpoint(t, c, id, jobStatus(t, c, id).Checkpointing.Completed)
	r := runWeir(t, "job", "stop", id, "--savepoint", "--jobmanager", c.JobManagerAddrs)
	if r.ExitCode != 0 {
		t.Fatalf("stop: exit %d: %s", r.ExitCode, r.Stderr)
	}
	// Changed while no job runs: the new job applies it from its time,
	// not from where the savepoint's rule sets end.
	rules("resume", "big", "--at", "20000")
	id2 := submit(t, c, append([]string{"rules", "--from-savepoint", strings.TrimSpace(r.Stdout)}, params...)...)
	waitState(t, c, id2, time.Minute, "RUNNING")
	writeEvents(t, in, "c.jsonl", cc)
	rules("mark", "--at", "50000")

	var want []string
	for _, e := range append(a, cc...) {
		if e.amount > 100 {
			v := int64(1)
			if e.ts >= 20000 {
				v = 3
			}
			want = append(want, alertLine("big", v, "user", e.user, e.ts, false))
		}
	}
	slices.Sort(want)
	got := waitLines(t, filepath.Join(out, "alerts"), len(want))
	if !slices.Equal(got, want) {
		t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// markedRulesJob submits a rules job at parallelism 2 on c, reading in
// with rules-clock=marks and following etcd under rules-name name, and
// waits until etcd holds rule want. It returns the job's id, its submit
// arguments (for a resubmission from a savepoint) and a runner of
// `weir rules` commands on the job.
func markedRulesJob(t *testing.T, c *cluster.Cluster, etcd, ruleFile, in, out, name, want string) (string, []string, func(args ...string)) {
	t.Helper()
	params := []string{"--parallelism", "2", "--checkpoint-interval", "200ms", "--param", "rules=" + ruleFile, "--param", "input=" + in,
		"--param", "output=" + out, "--param", "monitor=100ms", "--param", "out-of-orderness=0s", "--param", "etcd=" + etcd,
		"--param", "rules-clock=marks", "--param", "rules-name=" + name, "--param", "append=true"}
	id := submit(t, c, append([]string{"rules"}, params...)...)
	waitState(t, c, id, time.Minute, "RUNNING")
	rules := func(args ...string) {
		t.Helper()
		r := runWeir(t, append(append([]string{"rules"}, args...), "--etcd", etcd, "--job", name)...)
		if r.ExitCode != 0 {
			t.Fatalf("weir rules %v: exit %d: %s", args, r.ExitCode, r.Stderr)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r := runWeir(t, "rules", "list", "--etcd", etcd, "--job", name); strings.Contains(r.Stdout, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job did not store its rules under rules-name %s", name)
		}
	}
	return id, params, rules
}
