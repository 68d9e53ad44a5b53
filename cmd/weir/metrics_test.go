package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/internal/testenv"
)

// scrapeMetrics fetches and parses addr's /metrics.
func scrapeMetrics(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", addr, resp.Status)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s/metrics: %v", addr, err)
	}
	return fams
}

// series selects the samples of a family whose labels match the given
// name=value pairs, keyed by the values of the labels named in by.
type series map[string]float64

func sumOf(s series) float64 {
	var n float64
	for _, v := range s {
		n += v
	}
	return n
}

func selectSeries(fams map[string]*dto.MetricFamily, name string, match map[string]string, by ...string) series {
	out := series{}
	f := fams[name]
	if f == nil {
		return out
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range match {
			if labels[k] != v {
				continue next
			}
		}
		var key []string
		for _, b := range by {
			key = append(key, labels[b])
		}
		var v float64
		switch {
		case m.Counter != nil:
			v = m.GetCounter().GetValue()
		case m.Gauge != nil:
			v = m.GetGauge().GetValue()
		case m.Histogram != nil:
			v = float64(m.GetHistogram().GetSampleCount())
		}
		out[strings.Join(key, "/")] += v
	}
	return out
}

// TestMetricsOfARunningJob runs the fraud job on a JobManager and two
// TaskManagers serving --metrics-listen, scrapes each process twice and
// checks the families, their labels, that counters grow and agree with each
// other, and that a checkpoint shows up as `weir job checkpoints` lists it.
func TestMetricsOfARunningJob(t *testing.T) {
	ports, err := testenv.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	jmMetrics := addr(0)
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2,
		JobManagerArgs:  []string{"--metrics-listen", jmMetrics},
		TaskManagerArgs: func(i int) []string { return []string{"--metrics-listen", addr(1 + i)} }})
	id := submit(t, c, "fraud-detection", "--parallelism", "2", "--checkpoint-interval", "300ms",
		"--param", "source=random", "--param", "rate=2000", "--param", "accounts=50")
	waitState(t, c, id, time.Minute, "RUNNING")

	job := map[string]string{"job_id": id, "job": "fraud-detection"}
	// Wait for two checkpoints, the later with keyed state (the detector
	// keeps state only for accounts that made a small payment, about 1 %
	// of them), then take the first scrapes.
	var jm map[string]*dto.MetricFamily
	var tms []map[string]*dto.MetricFamily
	deadline := time.Now().Add(time.Minute)
	for {
		tms = []map[string]*dto.MetricFamily{scrapeMetrics(t, addr(1)), scrapeMetrics(t, addr(2))}
		jm = scrapeMetrics(t, jmMetrics)
		keys := sumOf(selectSeries(mergeFamilies(tms), "weir_operator_state_keys", map[string]string{"operator": "fraud-detector"}))
		if sumOf(selectSeries(jm, "weir_job_checkpoints_completed_total", job)) >= 2 && keys > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: checkpoints %v, detector keys %v; want 2 and some",
				selectSeries(jm, "weir_job_checkpoints_completed_total", job), keys)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The JobManager: jobs, TaskManagers, slots, raft, checkpoints.
	if got := selectSeries(jm, "weir_jobs", map[string]string{"state": "running"}); sumOf(got) != 1 {
		t.Errorf("weir_jobs{state=running} %v, want 1", got)
	}
	if got := sumOf(selectSeries(jm, "weir_taskmanagers_registered", nil)); got != 2 {
		t.Errorf("TaskManagers registered %v, want 2", got)
	}
	slots, free := sumOf(selectSeries(jm, "weir_slots", nil)), sumOf(selectSeries(jm, "weir_slots_free", nil))
	if slots != 4 || free >= slots {
		t.Errorf("slots %v, free %v: want 4 and some taken", slots, free)
	}
	if got := selectSeries(jm, "weir_jobmanager_raft_state", map[string]string{"state": "leader"}); sumOf(got) != 1 {
		t.Errorf("raft state leader %v, want 1", got)
	}
	if term := sumOf(selectSeries(jm, "weir_jobmanager_raft_term", nil)); term < 1 {
		t.Errorf("raft term %v", term)
	}
	if got := sumOf(selectSeries(jm, "weir_job_restarts_total", job)); got != 0 {
		t.Errorf("restarts %v, want 0", got)
	}
	// The newest checkpoint is the one weir job checkpoints lists last,
	// with the same size (it may have moved on since the scrape).
	var list cli.CheckpointListView
	weirJSON(t, &list, "job", "checkpoints", id, "--jobmanager", c.JobManagerAddrs)
	lastID := int64(sumOf(selectSeries(jm, "weir_job_last_checkpoint_id", job)))
	size := sumOf(selectSeries(jm, "weir_job_last_checkpoint_size_bytes", job))
	found := false
	for _, cp := range list.Checkpoints {
		if cp.ID == lastID {
			found = true
			if float64(cp.SizeBytes) != size || size <= 0 {
				t.Errorf("checkpoint %d: metrics size %v, listed %d", lastID, size, cp.SizeBytes)
			}
		}
	}
	if !found && len(list.Checkpoints) > 0 && list.Checkpoints[0].ID < lastID {
		t.Errorf("checkpoint %d of the metrics is not listed: %+v", lastID, list.Checkpoints)
	}
	if d := sumOf(selectSeries(jm, "weir_job_last_checkpoint_duration_seconds", job)); d <= 0 {
		t.Errorf("last checkpoint duration %v", d)
	}

	// The TaskManagers: every task labelled with the job and its
	// TaskManager, both TaskManagers running some.
	for i, fams := range tms {
		tmID := fmt.Sprintf("tm-%d", i+1)
		if got := sumOf(selectSeries(fams, "weir_taskmanager_slots", map[string]string{"task_manager": tmID})); got != 2 {
			t.Errorf("%s slots %v, want 2", tmID, got)
		}
		if len(selectSeries(fams, "weir_task_busy_seconds_total", map[string]string{"task_manager": tmID, "job_id": id}, "vertex", "subtask")) == 0 {
			t.Errorf("%s exports no task of the job", tmID)
		}
	}
	first := mergeFamilies(tms)
	srcOut := selectSeries(first, "weir_operator_records_out_total", map[string]string{"operator": "transactions", "job_id": id}, "subtask")
	detIn := selectSeries(first, "weir_operator_records_in_total", map[string]string{"operator": "fraud-detector", "job_id": id}, "subtask")
	if len(srcOut) != 2 || len(detIn) != 2 {
		t.Fatalf("records out of the source %v, into the detector %v: want two subtasks each", srcOut, detIn)
	}
	// Each operator's out is the next's in within a chain: exact.
	detOut := selectSeries(first, "weir_operator_records_out_total", map[string]string{"operator": "fraud-detector"}, "subtask")
	alertsIn := selectSeries(first, "weir_operator_records_in_total", map[string]string{"operator": "send-alerts"}, "subtask")
	for k, v := range detOut {
		if alertsIn[k] != v {
			t.Errorf("subtask %s: detector out %v, send-alerts in %v", k, v, alertsIn[k])
		}
	}
	for _, name := range []string{"weir_task_idle_seconds_total", "weir_task_backpressured_seconds_total",
		"weir_task_input_buffers_capacity", "weir_task_output_buffers_capacity", "weir_operator_state_keys",
		"weir_operator_state_size_bytes", "weir_task_checkpoint_sync_seconds", "weir_task_latency_seconds"} {
		if len(selectSeries(first, name, job)) == 0 {
			t.Errorf("no %s series for the job", name)
		}
	}
	if keys := sumOf(selectSeries(first, "weir_operator_state_keys", map[string]string{"operator": "fraud-detector"})); keys <= 0 || keys > 50 {
		t.Errorf("fraud-detector keys %v, want some of the 50 accounts", keys)
	}

	// Counters grow.
	time.Sleep(500 * time.Millisecond)
	later := mergeFamilies([]map[string]*dto.MetricFamily{scrapeMetrics(t, addr(1)), scrapeMetrics(t, addr(2))})
	srcOutLater := sumOf(selectSeries(later, "weir_operator_records_out_total", map[string]string{"operator": "transactions", "job_id": id}))
	if srcOutLater <= sumOf(srcOut) {
		t.Errorf("source records out went from %v to %v", sumOf(srcOut), srcOutLater)
	}
	bytesIn := sumOf(selectSeries(first, "weir_task_bytes_in_total", map[string]string{"vertex": "fraud-detector -> send-alerts"}))
	bytesInLater := sumOf(selectSeries(later, "weir_task_bytes_in_total", map[string]string{"vertex": "fraud-detector -> send-alerts"}))
	bytesOutLater := sumOf(selectSeries(later, "weir_task_bytes_out_total", map[string]string{"vertex": "transactions"}))
	if bytesInLater <= bytesIn {
		t.Errorf("bytes in went from %v to %v", bytesIn, bytesInLater)
	}
	// Across the exchange, the detectors have consumed at most what the
	// sources had sent by a later scrape (the two TaskManagers are
	// scraped one after the other), records and bytes alike.
	if sumOf(detIn) <= 0 || sumOf(detIn) > srcOutLater {
		t.Errorf("detector in %v, sources out later %v", sumOf(detIn), srcOutLater)
	}
	if bytesIn <= 0 || bytesIn > bytesOutLater {
		t.Errorf("bytes in %v, out later %v", bytesIn, bytesOutLater)
	}

	// Every family the processes export is documented.
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range mergeFamilies(append(tms, jm)) {
		if strings.HasPrefix(name, "weir_") && !strings.Contains(string(doc), "| `"+name+"`") {
			t.Errorf("%s is exported but not in docs/metrics.md", name)
		}
	}

	// A taken port is a clear error naming the flag.
	r := runWeir(t, "taskmanager", "--jobmanager", c.JobManagerAddrs, "--metrics-listen", jmMetrics)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "--metrics-listen "+jmMetrics) || !strings.Contains(r.Stderr, "address already in use") {
		t.Errorf("taskmanager on a taken metrics port: exit %d, %s", r.ExitCode, r.Stderr)
	}
}

// mergeFamilies puts the families of several scrapes together.
func mergeFamilies(scrapes []map[string]*dto.MetricFamily) map[string]*dto.MetricFamily {
	out := map[string]*dto.MetricFamily{}
	for _, s := range scrapes {
		for name, f := range s {
			if have, ok := out[name]; ok {
				merged := &dto.MetricFamily{Name: have.Name, Help: have.Help, Type: have.Type,
					Metric: append(append([]*dto.Metric{}, have.Metric...), f.Metric...)}
				out[name] = merged
			} else {
				out[name] = f
			}
		}
	}
	return out
}
