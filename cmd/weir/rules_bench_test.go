package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/internal/etcdtest"
	"github.com/weirstream/weir/internal/testenv"
)

// evaluatorGauges reads, from one scrape of each TaskManager's /metrics
// (at 10,000 rules a scrape is tens of thousands of series: seconds of a
// loaded TaskManager's CPU), the gauges of the evaluate-rules operator by
// name and subtask: the user gauges as their short name (rules_set_from_ms),
// the task's watermark lag as "watermark_lag_seconds".
func evaluatorGauges(b *testing.B, addrs []string) map[string]map[string]float64 {
	b.Helper()
	out := map[string]map[string]float64{}
	for _, a := range addrs {
		resp, err := http.Get("http://" + a + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		for name, by := range map[string]string{"weir_user_rules_set_from_ms": "operator", "weir_user_rules_switched_at_ms": "operator",
			"weir_user_rules_in_force": "operator", "weir_task_watermark_lag_seconds": "vertex"} {
			f := fams[name]
			if f == nil {
				continue
			}
			short := strings.TrimPrefix(strings.TrimPrefix(name, "weir_user_"), "weir_task_")
			for _, m := range f.GetMetric() {
				var sub, op string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "subtask":
						sub = l.GetValue()
					case by:
						op = l.GetValue()
					}
				}
				if strings.HasPrefix(op, "evaluate-rules") {
					if out[short] == nil {
						out[short] = map[string]float64{}
					}
					out[short][sub] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// BenchmarkRuleChangeLatency measures, over 50 changes of a rule's
// threshold, the time from `weir rules put` returning to the first event
// evaluated under the new version on every subtask of the evaluator (the
// latest of the subtasks' rules_switched_at_ms): a JobManager and two
// TaskManagers, the rules job at parallelism 2 on the random source (2000
// events/s per subtask, event time the wall clock), rules-clock=wall with
// rules-lag 50ms and out-of-orderness 0. Run with -benchtime=1x. Since
// an event is evaluated only once the watermark passes it, the latency
// includes how far the evaluator's watermark trails the wall clock (the
// job's backlog on a loaded machine): lag-p50-ms reports it, read at
// each change.
func BenchmarkRuleChangeLatency(b *testing.B) { benchRuleChangeLatency(b, 0) }

// BenchmarkRuleChangeLatencyAt10000Rules is the same with 9,999 other
// rules in the set (one per merchant, `e.merchant == p.m && e.amount >
// p.max`, indexed; the random events have no merchant): what a change of
// one rule of 10,000 costs from put to every subtask (the put reads the
// rule's entry and the lists, the change travels as a delta of that rule,
// and every subtask compiles that rule and rebuilds its rule key's group).
func BenchmarkRuleChangeLatencyAt10000Rules(b *testing.B) { benchRuleChangeLatency(b, 9999) }

func benchRuleChangeLatency(b *testing.B, others int) {
	etcd := etcdtest.Start(b)
	ports, err := testenv.FreePorts(2)
	if err != nil {
		b.Fatal(err)
	}
	addrs := []string{fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])}
	work := b.TempDir()
	// WEIR_BENCH_PROFILES=DIR: CPU profiles of the TaskManagers while the
	// changes are made (taskmanager-N-K.pprof, 10 s each, from their
	// /debug/pprof), of the JobManager's whole run (jobmanager.pprof), and
	// every process's log (logs.txt).
	profiles := os.Getenv("WEIR_BENCH_PROFILES")
	var jmArgs, tmArgs []string
	if profiles != "" {
		jmArgs = []string{"--cpu-profile", filepath.Join(profiles, "jobmanager.pprof")}
		tmArgs = []string{"--metrics-pprof"}
	}
	c, err := cluster.StartCluster(weirBin, cluster.Options{TaskManagers: 2, Slots: 2, JobManagerArgs: jmArgs,
		TaskManagerArgs: func(i int) []string { return append([]string{"--metrics-listen", addrs[i]}, tmArgs...) }})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	rule := func(i int) string {
		p := filepath.Join(work, "lat.yaml")
		text := fmt.Sprintf("id: lat\nkey: [accountId]\nkind: filter\nparams: {max: %d}\ncondition: 'e.amount > p.max'\nemit: {action: alert}\n", 99000+i)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
		return p
	}
	r, err := cluster.Run(b.Context(), weirBin, "job", "submit", "rules", "--jobmanager", c.JobManagerAddrs, "--parallelism", "2",
		"--checkpoint-interval", "1s", "--param", "rules="+rule(0), "--param", "source=random", "--param", "rate=2000",
		"--param", "accounts=1000", "--param", "output="+filepath.Join(work, "out"), "--param", "out-of-orderness=0s",
		"--param", "etcd="+etcd.Endpoint, "--param", "rules-lag=50ms")
	if err != nil || r.ExitCode != 0 {
		b.Fatalf("submit: %v %s", err, r.Stderr)
	}
	id := string(r.Stdout[:32])
	start := float64(time.Now().UnixMilli()) // the others' put applies from after this
	if others > 0 {
		var doc strings.Builder
		for i := range others {
			fmt.Fprintf(&doc, "---\nid: m%d\nkey: [accountId]\nkind: filter\nparams: {m: m%d, max: %d}\ncondition: 'e.merchant == p.m && e.amount > p.max'\n", i, i, 1000+i%100)
		}
		p := filepath.Join(work, "others.yaml")
		if err := os.WriteFile(p, []byte(doc.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		r, err := cluster.Run(b.Context(), weirBin, "rules", "put", p, "--etcd", etcd.Endpoint, "--job", id)
		if err != nil || r.ExitCode != 0 {
			b.Fatalf("put %d rules: %v %s", others, err, r.Stderr)
		}
	}
	put := func(i int) (int64, int64) {
		at := time.Now().UnixMilli()
		r, err := cluster.Run(b.Context(), weirBin, "rules", "put", rule(i), "--etcd", etcd.Endpoint, "--job", id,
			"--at", strconv.FormatInt(at, 10))
		if err != nil || r.ExitCode != 0 {
			b.Fatalf("put: %v %s", err, r.Stderr)
		}
		return at, time.Now().UnixMilli()
	}
	// Warm up: wait until both subtasks evaluate under the whole set.
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		g := evaluatorGauges(b, addrs)
		from, n := g["rules_set_from_ms"], g["rules_in_force"]
		if len(from) == 2 && (others == 0 || from["0"] >= start && from["1"] >= start && n["0"] == float64(others+1) && n["1"] == float64(others+1)) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the evaluator's subtasks did not start evaluating within 5 minutes")
		}
	}
	// WEIR_BENCH_CHANGES=N makes fewer (or more) changes than 50, for a
	// quick profile; the p99 is over 50.
	changes := 50
	if n, err := strconv.Atoi(os.Getenv("WEIR_BENCH_CHANGES")); err == nil && n > 0 {
		changes = n
	}
	b.ResetTimer()
	if profiles != "" {
		stop := profileDuring(b, profiles, addrs)
		defer func() {
			stop()
			if err := os.WriteFile(filepath.Join(profiles, "logs.txt"), []byte(c.Logs()), 0o644); err != nil {
				b.Log(err)
			}
		}()
	}
	for range b.N {
		var lat, puts, lags []float64
		for i := 1; i <= changes; i++ {
			at, returned := put(i)
			puts = append(puts, float64(returned-at))
			// The gauges are timestamps, so polling less often loses no
			// precision; it spares the TaskManagers rendering thousands
			// of per-rule series every few milliseconds.
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
				g := evaluatorGauges(b, addrs)
				if from := g["rules_set_from_ms"]; len(from) == 2 && from["0"] >= float64(at) && from["1"] >= float64(at) {
					sw, wl := g["rules_switched_at_ms"], g["watermark_lag_seconds"]
					lat = append(lat, max(sw["0"], sw["1"])-float64(returned))
					lags = append(lags, 1000*max(wl["0"], wl["1"]))
					// On stderr as it goes: a run on a loaded machine may be
					// cut short, and b.Logf prints only at the end.
					fmt.Fprintf(os.Stderr, "change %d: put took %d ms, reached every subtask %.0f ms after (watermark lag %.0f ms)\n",
						i, returned-at, lat[len(lat)-1], lags[len(lags)-1])
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("change %d did not reach both subtasks in a minute: %v", i, g["rules_set_from_ms"])
				}
			}
		}
		slices.Sort(lat)
		slices.Sort(puts)
		slices.Sort(lags)
		b.ReportMetric(puts[len(puts)/2], "put-p50-ms")
		b.ReportMetric(lags[len(lags)/2], "lag-p50-ms")
		b.ReportMetric(lat[len(lat)/2], "p50-ms")
		b.ReportMetric(lat[len(lat)*99/100], "p99-ms")
		b.ReportMetric(lat[len(lat)-1], "max-ms")
	}
}

// profileDuring takes consecutive 10 s CPU profiles of the processes
// serving /debug/pprof on addrs into dir until the returned func is
// called (it waits for the profiles under way).
func profileDuring(b *testing.B, dir string, addrs []string) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-done:
					return
				default:
				}
				resp, err := http.Get("http://" + a + "/debug/pprof/profile?seconds=10")
				if err != nil {
					b.Logf("profile of %s: %v", a, err)
					return
				}
				p, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("taskmanager-%d-%02d.pprof", i+1, k)), p, 0o644)
				}
				if err != nil {
					b.Logf("profile of %s: %v", a, err)
					return
				}
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}
