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
)

// thresholdAlert is an alert line of threshold-alerts' part files.
type thresholdAlert struct {
	Rule      string `json:"rule"`
	Key       string `json:"key"`
	EventTime *int64 `json:"event_time_ms"`
	Evidence  struct {
		TransactionID string  `json:"transaction_id"`
		Amount        float64 `json:"amount"`
		Threshold     float64 `json:"threshold"`
		Source        string  `json:"source"`
		Line          int64   `json:"line"`
	} `json:"evidence"`
}

// deadLetter is a line of the dead-letter part files.
type deadLetter struct {
	Source string `json:"source"`
	Line   int64  `json:"line"`
	Reason string `json:"reason"`
	Text   string `json:"text"`
}

// readParts decodes, strictly, every line of the committed part files
// directly in dir.
func readParts[T any](t *testing.T, dir string) []T {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "part-*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			var v T
			d := json.NewDecoder(strings.NewReader(line))
			d.DisallowUnknownFields()
			if err := d.Decode(&v); err != nil {
				t.Fatalf("%s: %q: %v", name, line, err)
			}
			out = append(out, v)
		}
	}
	return out
}

// thresholdInput writes files of transactions into dir: timestamps out of
// order, some files with their columns in another order and CRLF line
// ends, bad rows among good ones, and a hidden file the source must skip.
// Files batch-<from> to batch-<to-1> are written under a hidden name and
// renamed, as a continuous source's writers should. It returns the alerts
// expected at threshold 8000 by transaction ID (printed line, customer,
// event time, file, line) and the dead letters as "file:line: reason".
func thresholdInput(t *testing.T, dir string, from, to, rows int) (map[string]string, []string) {
	t.Helper()
	alerts := map[string]string{}
	var dead []string
	for k := from; k < to; k++ {
		name := fmt.Sprintf("batch-%02d.csv", k)
		path := filepath.Join(dir, name)
		header, eol := "transaction_id,customer_id,amount,timestamp", "\n"
		if k%2 == 1 {
			header, eol = "customer_id,timestamp,amount,transaction_id", "\r\n"
		}
		var b strings.Builder
		b.WriteString(header + eol)
		for j := range rows {
			id, cust := fmt.Sprintf("tx-%d-%d", k, j), fmt.Sprintf("cust%d", (k*7+j)%13)
			whole := (k*1000 + j) * 7919 % 16000
			amount := fmt.Sprintf("%d.25", whole)
			ts := fmt.Sprint(1_700_000_000_000 + int64((j*37)%rows)*1000) // a permutation: out of order
			line := j + 2
			switch {
			case j%50 == 7:
				amount = "oops"
				dead = append(dead, fmt.Sprintf("%s:%d: amount \"oops\" is not a finite number", name, line))
			case j%97 == 3:
				ts = "" // and one field fewer below
				dead = append(dead, fmt.Sprintf("%s:%d: row has 3 fields, the header has 4", name, line))
			case whole >= 8000:
				alerts[id] = fmt.Sprintf("%s, %s, %s|%s|%s|%s:%d", id, cust, amount, cust, ts, name, line)
			}
			fields := map[string]string{"transaction_id": id, "customer_id": cust, "amount": amount, "timestamp": ts}
			var row []string
			for _, col := range strings.Split(header, ",") {
				if col == "timestamp" && ts == "" {
					continue
				}
				row = append(row, fields[col])
			}
			b.WriteString(strings.Join(row, ",") + eol)
		}
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".in-progress.csv"), []byte("transaction_id,customer_id,amount\nhidden,c,99999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	slices.Sort(dead)
	return alerts, dead
}

// TestThresholdAlertsOnACluster is the seed job on a JobManager and two
// TaskManagers at parallelism 2 with checkpoints: the committed part files
// hold exactly the expected alerts, each once, with rule, key, event time
// and evidence; the dead-letter files exactly the bad rows with their
// reasons; and the TaskManagers print exactly the expected lines.
func TestThresholdAlertsOnACluster(t *testing.T) {
	work := t.TempDir()
	in, out := filepath.Join(work, "in"), filepath.Join(work, "out")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	alerts, dead := thresholdInput(t, in, 0, 6, 400)
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2,
		JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(work, "ck")}})
	id := submit(t, c, "threshold-alerts", "--parallelism", "2", "--checkpoint-interval", "50ms",
		"--param", "input="+in, "--param", "output="+out)
	st := waitState(t, c, id, 2*time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" {
		t.Fatalf("job %v: %s", st.State, st.Failure)
	}
	if st.Checkpointing.Completed == 0 {
		t.Errorf("no checkpoint completed: the part files were not committed by one")
	}
	// Every row (not the headers, not the hidden file) was read once.
	parsed := int64(-1)
	for _, op := range st.Vertices[0].Operators {
		if op.Name == "parse-transactions" {
			parsed = op.RecordsIn
		}
	}
	if parsed != 6*400 {
		t.Errorf("parse-transactions read %d rows, want %d (vertex %+v)", parsed, 6*400, st.Vertices[0])
	}

	checkThresholdOutput(t, in, out, alerts, dead)

	var printed, want []string
	for _, tm := range c.TaskManagers {
		for _, l := range strings.Split(tm.Stdout(), "\n") {
			if l != "" {
				printed = append(printed, l)
			}
		}
	}
	for _, a := range alerts {
		want = append(want, strings.SplitN(a, "|", 2)[0])
	}
	slices.Sort(printed)
	slices.Sort(want)
	if !slices.Equal(printed, want) {
		t.Errorf("printed %d lines, want the %d alerts once each", len(printed), len(want))
	}
}

// checkThresholdOutput checks that the committed part files under out hold
// exactly the expected alerts, each once, and its dead-letters/ exactly the
// expected dead letters.
func checkThresholdOutput(t *testing.T, in, out string, alerts map[string]string, dead []string) {
	t.Helper()
	got := readParts[thresholdAlert](t, out)
	seen := map[string]int{}
	for _, a := range got {
		ev := a.Evidence
		seen[ev.TransactionID]++
		want, ok := alerts[ev.TransactionID]
		if !ok {
			t.Errorf("unexpected alert %+v", a)
			continue
		}
		ts := "null"
		if a.EventTime != nil {
			ts = fmt.Sprint(*a.EventTime)
		}
		line := fmt.Sprintf("%s, %s, %.2f|%s|%s|%s:%d", ev.TransactionID, a.Key, ev.Amount, a.Key, ts, filepath.Base(ev.Source), ev.Line)
		if line != want || a.Rule != "amount-above-threshold" || ev.Threshold != 8000 || filepath.Dir(ev.Source) != in {
			t.Errorf("alert %+v, want %s", a, want)
		}
	}
	for tx := range alerts {
		if seen[tx] != 1 {
			t.Errorf("alert for %s committed %d times, want once", tx, seen[tx])
		}
	}
	if len(got) != len(alerts) {
		t.Errorf("%d alerts committed, want %d", len(got), len(alerts))
	}

	var gotDead []string
	for _, d := range readParts[deadLetter](t, filepath.Join(out, "dead-letters")) {
		if filepath.Dir(d.Source) != in || d.Text == "" {
			t.Errorf("dead letter %+v", d)
		}
		gotDead = append(gotDead, fmt.Sprintf("%s:%d: %s", filepath.Base(d.Source), d.Line, d.Reason))
	}
	slices.Sort(gotDead)
	if !slices.Equal(gotDead, dead) {
		t.Errorf("dead letters (%d):\n%s\nwant (%d):\n%s", len(gotDead), strings.Join(gotDead, "\n"), len(dead), strings.Join(dead, "\n"))
	}
}

// waitCommitted waits until out holds at least the given numbers of
// committed alerts and dead letters.
func waitCommitted(t *testing.T, out string, alerts, dead int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		a := len(readParts[thresholdAlert](t, out))
		d := len(readParts[deadLetter](t, filepath.Join(out, "dead-letters")))
		if a >= alerts && d >= dead {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d alerts and %d dead letters committed after a minute, want %d and %d", a, d, alerts, dead)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestThresholdAlertsWatchAcrossASavepointAndRescale runs threshold-alerts
// watching a directory at parallelism 2, adds files while it runs, stops it
// with a savepoint, adds more, and resumes it at parallelism 3: files read
// before the savepoint are not read again, the ones read partly go on from
// their position, the new ones are picked up, and the committed output
// holds every alert and dead letter exactly once.
func TestThresholdAlertsWatchAcrossASavepointAndRescale(t *testing.T) {
	work := t.TempDir()
	in, out := filepath.Join(work, "in"), filepath.Join(work, "out")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	const rows = 300
	alerts, dead := thresholdInput(t, in, 0, 3, rows)
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2,
		JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(work, "ck")}})
	jm := []string{"--jobmanager", c.JobManagerAddrs}
	params := []string{"--checkpoint-interval", "100ms", "--param", "input=" + in, "--param", "output=" + out,
		"--param", "monitor=50ms"}
	id := submit(t, c, append([]string{"threshold-alerts", "--parallelism", "2"}, params...)...)
	waitCommitted(t, out, len(alerts), len(dead))

	more := func(from, to int) {
		a, d := thresholdInput(t, in, from, to, rows)
		for k, v := range a {
			alerts[k] = v
		}
		dead = append(dead, d...)
		slices.Sort(dead)
	}
	more(3, 6) // while it runs: read in part or in full before the savepoint
	r := runWeir(t, append([]string{"job", "stop", id, "--savepoint"}, jm...)...)
	if r.ExitCode != 0 {
		t.Fatalf("stop: exit %d: %s", r.ExitCode, r.Stderr)
	}
	sp := strings.TrimSpace(r.Stdout)
	more(6, 9) // while it is stopped

	id2 := submit(t, c, append([]string{"threshold-alerts", "--parallelism", "3", "--from-savepoint", sp}, params...)...)
	waitCommitted(t, out, len(alerts), len(dead))
	time.Sleep(300 * time.Millisecond) // a few more checkpoints: nothing may be read again
	if st := jobStatus(t, c, id2); st.State != "RUNNING" || st.Parallelism != 3 {
		t.Fatalf("resumed job %v at parallelism %d: %s", st.State, st.Parallelism, st.Failure)
	}
	checkThresholdOutput(t, in, out, alerts, dead)
	runWeir(t, append([]string{"job", "cancel", id2}, jm...)...)
}

// sampleOutput renders what threshold-alerts printed and committed for the
// sample data into out: the printed lines sorted, the alerts' part files'
// lines sorted, and the dead letters as "line: reason: text" sorted.
func sampleOutput(t *testing.T, stdout, out, sample string) string {
	t.Helper()
	var b strings.Builder
	printed := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	slices.Sort(printed)
	b.WriteString(strings.Join(printed, "\n") + "\n--\n")
	var alerts []string
	for _, a := range readParts[thresholdAlert](t, out) {
		alerts = append(alerts, fmt.Sprintf("%s %s %g>%g %s:%d", a.Evidence.TransactionID, a.Key, a.Evidence.Amount,
			a.Evidence.Threshold, strings.TrimPrefix(a.Evidence.Source, sample), a.Evidence.Line))
	}
	slices.Sort(alerts)
	b.WriteString(strings.Join(alerts, "\n") + "\n--\n")
	var dead []string
	for _, d := range readParts[deadLetter](t, filepath.Join(out, "dead-letters")) {
		if d.Source != sample {
			t.Errorf("dead letter from %q, want %q", d.Source, sample)
		}
		dead = append(dead, fmt.Sprintf("%d: %s: %s", d.Line, d.Reason, d.Text))
	}
	slices.Sort(dead)
	b.WriteString(strings.Join(dead, "\n") + "\n")
	return b.String()
}

// sampleWant is sampleOutput for the sample data.
const sampleWant = `tx1002, cust2, 9200.0
tx1005, cust4, 15000.75
tx1010, cust6, 12000.0
--
tx1002 cust2 9200>8000 :3
tx1005 cust4 15000.75>8000 :6
tx1010 cust6 12000>8000 :11
--
10: amount "8,500.00" is not a finite number: tx1009,cust3,"8,500.00"
5: amount "not-a-number" is not a finite number: tx1004,cust1,not-a-number
7: row has 2 fields, the header has 3: tx1006,cust2
9: customer_id is empty: tx1008,,9000
`

// TestSampleDataLocallyAndOnACluster runs the README's command on the
// sample data, and the same job on a JobManager and two TaskManagers:
// both print and commit the same alerts and dead letters. A missing input
// fails at once, naming the path.
func TestSampleDataLocallyAndOnACluster(t *testing.T) {
	work := t.TempDir()
	sample, err := filepath.Abs("../../jobs/threshold/testdata/transactions.csv")
	if err != nil {
		t.Fatal(err)
	}
	r := runWeirIn(t, work, nil, "local", "--job", "threshold-alerts", "--parallelism", "2",
		"--param", "input="+sample, "--param", "output=alerts")
	if r.ExitCode != 0 {
		t.Fatalf("weir local: exit %d:\n%s", r.ExitCode, r.Stderr)
	}
	if got := sampleOutput(t, r.Stdout, filepath.Join(work, "alerts"), sample); got != sampleWant {
		t.Errorf("weir local:\n%s\nwant:\n%s", got, sampleWant)
	}

	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2,
		JobManagerArgs: []string{"--checkpoint-storage", filepath.Join(work, "ck")}})
	out := filepath.Join(work, "cluster-alerts")
	id := submit(t, c, "threshold-alerts", "--parallelism", "2", "--checkpoint-interval", "50ms",
		"--param", "input="+sample, "--param", "output="+out)
	if st := waitState(t, c, id, time.Minute, "FINISHED", "FAILED"); st.State != "FINISHED" {
		t.Fatalf("job %v: %s", st.State, st.Failure)
	}
	var stdout strings.Builder
	for _, tm := range c.TaskManagers {
		stdout.WriteString(tm.Stdout())
	}
	if got := sampleOutput(t, stdout.String(), out, sample); got != sampleWant {
		t.Errorf("on a cluster:\n%s\nwant:\n%s", got, sampleWant)
	}

	missing := filepath.Join(work, "no-such.csv")
	r = runWeirIn(t, work, nil, "local", "--job", "threshold-alerts", "--param", "input="+missing, "--param", "output=other")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "input "+missing+": no such file or directory") {
		t.Errorf("a missing input: exit %d, stderr lacks the path:\n%s", r.ExitCode, r.Stderr)
	}
	if strings.Contains(r.Stderr, "restarting job") {
		t.Errorf("the job restarted on a missing input:\n%s", r.Stderr)
	}
}
