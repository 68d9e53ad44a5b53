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
	"github.com/weirstream/weir/internal/etcdtest"
)

// windowAlert is the alert line of an aggregate rule's window [start, end).
func windowAlert(rule string, version int64, user string, start, end int64, fields map[string]float64) string {
	k, _ := json.Marshal(map[string]string{"user": user})
	f, _ := json.Marshal(fields)
	return fmt.Sprintf(`{"rule":%q,"version":%d,"key":%s,"time":%d,"action":"alert","window":{"start":%d,"end":%d},"fields":%s}`,
		rule, version, k, end-1, start, end, f)
}

func writeFileLines(t *testing.T, dir, name string, lines ...string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name)
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// TestRulesJobSavepointUpgrade upgrades the rules of a running rules job
// (live rules in etcd, rules-clock=marks) by savepoint: weir job stop
// --savepoint while two aggregate rules have windows open, weir rules put
// of their new versions, and submit --from-savepoint. sum10, whose new
// version only tunes a threshold in params, keeps its windows (each sums
// the events before and after the upgrade, under the new threshold);
// cnt10, whose window grows from 10 s to 20 s, starts empty (its windows
// count only the events evaluated after the upgrade), and the drop is
// reported per key on <output>/rule-state and in the TaskManagers' logs.
func TestRulesJobSavepointUpgrade(t *testing.T) {
	etcd := etcdtest.Start(t)
	work := t.TempDir()
	in, out := filepath.Join(work, "in"), filepath.Join(work, "out")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	const tick = "id: tick\nkey: [user]\nkind: filter\ncondition: 'e.user == \"tick\"'\n"
	const sum = "id: sum10\nkey: [user]\nkind: aggregate\nparams: {min: %d}\nwindow: {type: tumbling, size: 10s}\n" +
		"aggregates: {s: {fn: sum, of: e.amount}}\ncondition: 'agg.s > p.min'\n"
	const cnt = "id: cnt10\nkey: [user]\nkind: aggregate\nwindow: {type: tumbling, size: %s}\n" +
		"aggregates: {n: {fn: count}}\ncondition: 'agg.n > 0'\n"
	v1, v2 := filepath.Join(work, "v1.yaml"), filepath.Join(work, "v2.yaml")
	for f, doc := range map[string]string{
		v1: tick + "---\n" + fmt.Sprintf(sum, 0) + "---\n" + fmt.Sprintf(cnt, "10s"),
		v2: fmt.Sprintf(sum, 3) + "---\n" + fmt.Sprintf(cnt, "20s"),
	} {
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2, JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(work, "ck")}})
	id, params, rules := markedRulesJob(t, c, etcd.Endpoint, v1, in, out, "up", "cnt10")

	// Evaluated before the upgrade: everything up to the mark at 4600
	// (the tick's alert shows it); u9's event at 5000 waits.
	ev := func(ts int64, user string, amount float64) string {
		return fmt.Sprintf(`{"ts":%d,"user":%q,"amount":%g}`, ts, user, amount)
	}
	writeFileLines(t, in, "a.jsonl", ev(1000, "u0", 10), ev(2000, "u1", 20), ev(3000, "u2", 30), ev(4000, "u0", 40),
		ev(4500, "tick", 1), ev(5000, "u9", 5))
	waitRead(t, c, id, 6)
	rules("mark", "--at", "4600")
	savepoint := stopBeforeUpgrade(t, c, id, out)
	rules("put", v2, "--at", "4601")
	id2 := submit(t, c, append([]string{"rules", "--from-savepoint", savepoint}, params...)...)
	waitState(t, c, id2, time.Minute, "RUNNING")
	writeFileLines(t, in, "b.jsonl", ev(6000, "u0", 100), ev(7000, "u1", 200), ev(8000, "u2", 300))
	waitRead(t, c, id2, 3)
	rules("mark", "--at", "30000")

	want := []string{tickAlert,
		// sum10 kept its windows: the sums span the upgrade; tick's
		// window (1) is under the new threshold (3).
		windowAlert("sum10", 2, "u0", 0, 10000, map[string]float64{"s": 150}),
		windowAlert("sum10", 2, "u1", 0, 10000, map[string]float64{"s": 220}),
		windowAlert("sum10", 2, "u2", 0, 10000, map[string]float64{"s": 330}),
		windowAlert("sum10", 2, "u9", 0, 10000, map[string]float64{"s": 5}),
		// cnt10 started empty: only the events evaluated after the upgrade.
		windowAlert("cnt10", 2, "u0", 0, 20000, map[string]float64{"n": 1}),
		windowAlert("cnt10", 2, "u1", 0, 20000, map[string]float64{"n": 1}),
		windowAlert("cnt10", 2, "u2", 0, 20000, map[string]float64{"n": 1}),
		windowAlert("cnt10", 2, "u9", 0, 20000, map[string]float64{"n": 1}),
	}
	checkUpgradeOutput(t, out, want)
	waitLog(t, c, "state is dropped", 1)
	if logs := stderrOf(c); !strings.Contains(logs, "rule=cnt10") || strings.Contains(logs, "rule=sum10 from_version") {
		t.Errorf("the TaskManagers' logs should report cnt10's state dropped and not sum10's")
	}
}

// TestRulesJobKeyChangeDropsOldKeyState changes a live rule's key fields
// (user to ip) while its windows are open: the state under each old key
// (user) goes, and is reported on <output>/rule-state, at that key's
// first event after the change (u0: the router copies events to a rule
// key left without rules), or at its first timer if no event comes first
// (u1); the rule starts empty under its new key.
func TestRulesJobKeyChangeDropsOldKeyState(t *testing.T) {
	etcd := etcdtest.Start(t)
	work := t.TempDir()
	in, out := filepath.Join(work, "in"), filepath.Join(work, "out")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	const cnt = "id: cnt\nkey: [%s]\nkind: aggregate\nwindow: {type: tumbling, size: 1h}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 0'\n"
	v1, v2 := filepath.Join(work, "v1.yaml"), filepath.Join(work, "v2.yaml")
	for f, doc := range map[string]string{v1: fmt.Sprintf(cnt, "user"), v2: fmt.Sprintf(cnt, "ip")} {
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2, JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(work, "ck")}})
	id, _, rules := markedRulesJob(t, c, etcd.Endpoint, v1, in, out, "keys", "cnt")
	ev := func(ts int64, user, ip string) string {
		return fmt.Sprintf(`{"ts":%d,"user":%q,"ip":%q}`, ts, user, ip)
	}
	writeFileLines(t, in, "a.jsonl", ev(1000, "u0", "x"), ev(2000, "u1", "y"))
	waitRead(t, c, id, 2)
	rules("mark", "--at", "9999")
	rules("put", v2, "--at", "10000")
	writeFileLines(t, in, "b.jsonl", ev(11000, "u0", "x"))
	waitRead(t, c, id, 3)
	rules("mark", "--at", "20000")

	report := func(user string, at int64) string {
		return fmt.Sprintf(`{"rule":"cnt","version":1,"new_version":2,"key":{"user":%q},"time":%d,"state":"dropped","reason":"key fields changed"}`, user, at)
	}
	// u1's windows' timer (3599999) is not due yet: only u0 is reported.
	if got := waitLines(t, filepath.Join(out, "rule-state"), 1); !slices.Equal(got, []string{report("u0", 11000)}) {
		t.Fatalf("rule-state at the watermark 20000:\n%s", strings.Join(got, "\n"))
	}
	// u1 sees no event: its state goes at its first timer, which is its
	// window's end (3599999) or, if the evaluator armed its rule_stats
	// wake-up on u1, the end of the first stats interval (59999).
	rules("mark", "--at", "3700000")
	got := waitLines(t, filepath.Join(out, "rule-state"), 2)
	if len(got) != 2 || got[0] != report("u0", 11000) || got[1] != report("u1", 59999) && got[1] != report("u1", 3599999) {
		t.Errorf("rule-state:\n%s\nwant u0's at 11000 and u1's at 59999 or 3599999", strings.Join(got, "\n"))
	}
	// Only the new version's window, on the new key, alerts.
	wantAlerts := []string{`{"rule":"cnt","version":2,"key":{"ip":"x"},"time":3599999,"action":"alert","window":{"start":0,"end":3600000},"fields":{"n":1}}`}
	if got := waitLines(t, filepath.Join(out, "alerts"), 1); !slices.Equal(got, wantAlerts) {
		t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantAlerts, "\n"))
	}
}

// TestRulesJobSavepointUpgradeFromFile upgrades a rules job without etcd:
// weir job stop --savepoint while two aggregate rules have windows open,
// then submit --from-savepoint with --param rules=NEWFILE, a file in which
// cnt10's window grows from 10 s to 20 s and the other rules are as they
// were. sum10's windows span the upgrade; cnt10 starts empty (only the
// events evaluated after the upgrade count), and each key whose cnt10
// state was dropped is on <output>/rule-state.
func TestRulesJobSavepointUpgradeFromFile(t *testing.T) {
	work := t.TempDir()
	in, out := filepath.Join(work, "in"), filepath.Join(work, "out")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	const tick = "id: tick\nkey: [user]\nkind: filter\ncondition: 'e.user == \"tick\"'\n"
	const sum = "id: sum10\nkey: [user]\nkind: aggregate\nwindow: {type: tumbling, size: 10s}\n" +
		"aggregates: {s: {fn: sum, of: e.amount}}\ncondition: 'agg.s > 0'\n"
	const cnt = "id: cnt10\nkey: [user]\nkind: aggregate\nwindow: {type: tumbling, size: %s}\n" +
		"aggregates: {n: {fn: count}}\ncondition: 'agg.n > 0'\n"
	v1, v2 := filepath.Join(work, "v1.yaml"), filepath.Join(work, "v2.yaml")
	for f, doc := range map[string]string{
		v1: tick + "---\n" + sum + "---\n" + fmt.Sprintf(cnt, "10s"),
		v2: tick + "---\n" + sum + "---\n" + fmt.Sprintf(cnt, "20s") + "version: 2\n",
	} {
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2, JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(work, "ck")}})
	params := func(rules string) []string {
		return []string{"rules", "--parallelism", "2", "--checkpoint-interval", "200ms", "--param", "rules=" + rules,
			"--param", "input=" + in, "--param", "output=" + out, "--param", "monitor=100ms",
			"--param", "out-of-orderness=0s", "--param", "append=true"}
	}
	id := submit(t, c, params(v1)...)
	waitState(t, c, id, time.Minute, "RUNNING")

	// Evaluated before the upgrade: everything before u9's event at 5000
	// (the watermark; the tick's alert shows it); u9's event waits.
	ev := func(ts int64, user string, amount float64) string {
		return fmt.Sprintf(`{"ts":%d,"user":%q,"amount":%g}`, ts, user, amount)
	}
	writeFileLines(t, in, "a.jsonl", ev(1000, "u0", 10), ev(2000, "u1", 20), ev(3000, "u2", 30), ev(4000, "u0", 40),
		ev(4500, "tick", 1), ev(5000, "u9", 5))
	savepoint := stopBeforeUpgrade(t, c, id, out)
	id2 := submit(t, c, append(params(v2), "--from-savepoint", savepoint)...)
	waitState(t, c, id2, time.Minute, "RUNNING")
	// The event at 30000 moves the watermark past every window below.
	writeFileLines(t, in, "b.jsonl", ev(6000, "u0", 100), ev(7000, "u1", 200), ev(8000, "u2", 300), ev(30000, "end", 0))

	want := []string{tickAlert,
		// sum10 kept its windows: the sums span the upgrade.
		windowAlert("sum10", 1, "u0", 0, 10000, map[string]float64{"s": 150}),
		windowAlert("sum10", 1, "u1", 0, 10000, map[string]float64{"s": 220}),
		windowAlert("sum10", 1, "u2", 0, 10000, map[string]float64{"s": 330}),
		windowAlert("sum10", 1, "u9", 0, 10000, map[string]float64{"s": 5}),
		windowAlert("sum10", 1, "tick", 0, 10000, map[string]float64{"s": 1}),
		// cnt10 started empty: only the events evaluated after the
		// upgrade (u9's waited in the savepoint).
		windowAlert("cnt10", 2, "u0", 0, 20000, map[string]float64{"n": 1}),
		windowAlert("cnt10", 2, "u1", 0, 20000, map[string]float64{"n": 1}),
		windowAlert("cnt10", 2, "u2", 0, 20000, map[string]float64{"n": 1}),
		windowAlert("cnt10", 2, "u9", 0, 20000, map[string]float64{"n": 1}),
	}
	checkUpgradeOutput(t, out, want)
}

// checkUpgradeOutput checks an upgraded job's output (out) against the
// savepoint upgrade tests' expectations: the alerts want (sorted here),
// and one dropped-state report of cnt10 per key that held its state, each
// when it first met the new version: u0-u2 at their next event, tick at
// its windows' timer.
func checkUpgradeOutput(t *testing.T, out string, want []string) {
	t.Helper()
	slices.Sort(want)
	if got := waitLines(t, filepath.Join(out, "alerts"), len(want)); !slices.Equal(got, want) {
		t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	report := func(user string, at int64) string {
		return fmt.Sprintf(`{"rule":"cnt10","version":1,"new_version":2,"key":{"user":%q},"time":%d,"state":"dropped",`+
			`"reason":"state shape changed (key, window, aggregates, profile or pattern)"}`, user, at)
	}
	wantReports := []string{report("u0", 6000), report("u1", 7000), report("u2", 8000), report("tick", 9999)}
	slices.Sort(wantReports)
	if got := waitLines(t, filepath.Join(out, "rule-state"), len(wantReports)); !slices.Equal(got, wantReports) {
		t.Errorf("rule-state:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantReports, "\n"))
	}
}

// tickAlert is the one alert of the upgrade tests before their upgrade.
const tickAlert = `{"rule":"tick","version":1,"key":{"user":"tick"},"time":4500,"action":"alert"}`

// stopBeforeUpgrade checks that job id alerted only tickAlert, and still
// does with its input idle for longer than its idleness (1 s: that does
// not move event time, so the windows stay open), then stops it with a
// savepoint and returns the savepoint's location.
func stopBeforeUpgrade(t *testing.T, c *cluster.Cluster, id, out string) string {
	t.Helper()
	if got := waitLines(t, filepath.Join(out, "alerts"), 1); !slices.Equal(got, []string{tickAlert}) {
		t.Fatalf("alerts before the upgrade: %q", got)
	}
	time.Sleep(2 * time.Second)
	if got := committedLines(t, filepath.Join(out, "alerts"), ""); !slices.Equal(got, []string{tickAlert}) {
		t.Fatalf("alerts while the input is idle: %q", got)
	}
	r := runWeir(t, "job", "stop", id, "--savepoint", "--jobmanager", c.JobManagerAddrs)
	if r.ExitCode != 0 {
		t.Fatalf("stop: exit %d: %s", r.ExitCode, r.Stderr)
	}
	waitState(t, c, id, time.Minute, "FINISHED")
	return strings.TrimSpace(r.Stdout)
}
