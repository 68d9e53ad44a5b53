package metrics

import (
	"context"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/weirstream/weir/runtime/engine"

	"github.com/weirstream/weir/runtime"
)

type numbers struct{ n, max int64 }

func (s *numbers) Poll(out runtime.Collector[int64]) (time.Duration, error) {
	if s.n == s.max {
		return 0, runtime.ErrEndOfInput
	}
	s.n++
	out.Collect(s.n)
	return 0, nil
}

// parity counts even and odd numbers in a user counter labelled by parity.
type parity struct{ even, odd runtime.Counter }

func (p *parity) Open(ctx *runtime.ProcessContext) error {
	p.even = ctx.Metrics().With("parity", "even").Counter("numbers_total", "Numbers seen, by parity.")
	p.odd = ctx.Metrics().With("parity", "odd").Counter("numbers_total", "Numbers seen, by parity.")
	return nil
}

func (p *parity) ProcessElement(v int64, _ *runtime.ProcessContext, out runtime.Collector[int64]) error {
	if v%2 == 0 {
		p.even.Inc()
	} else {
		p.odd.Inc()
	}
	out.Collect(v)
	return nil
}

type drop struct{}

func (drop) Invoke(int64) error { return nil }

// runNumbers runs a one-vertex job over 1..n and returns its task.
func runNumbers(t *testing.T, n int64) *runtime.Task {
	t.Helper()
	env, _ := runtime.NewEnv("numbers", 1)
	src := runtime.FromSource(env, "numbers", func() runtime.SourceFunction[int64] { return &numbers{max: n} }, runtime.Int64Codec{})
	p := runtime.ProcessStream(src, "parity", func() runtime.ProcessFunction[int64, int64] { return &parity{} }, runtime.Int64Codec{}).UID("parity-uid")
	runtime.SinkTo(p, "drop", func() runtime.SinkFunction[int64] { return drop{} })
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return task
}

// scrape serves the collector on a free port and parses one scrape.
func scrape(t *testing.T, c *TaskCollector) map[string]*dto.MetricFamily {
	t.Helper()
	reg, err := NewRegistry(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Listen(ctx, "127.0.0.1:0", reg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Legacy validation: the names must suit every Prometheus version.
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestTaskCollectorExportsCountsAndUserMetrics(t *testing.T) {
	task := runNumbers(t, 1001)
	fams := scrape(t, &TaskCollector{Tasks: func() []TaskInfo {
		return []TaskInfo{{JobID: "j1", JobName: "numbers", TaskManager: "tm-a", Task: task}}
	}})
	in := fams["weir_operator_records_in_total"]
	if in == nil || in.GetType() != dto.MetricType_COUNTER {
		t.Fatalf("records in: %v", in)
	}
	byOp := map[string]float64{}
	for _, m := range in.GetMetric() {
		if label(m, "job_id") != "j1" || label(m, "job") != "numbers" || label(m, "task_manager") != "tm-a" ||
			label(m, "subtask") != "0" || label(m, "vertex") != "numbers -> parity -> drop" {
			t.Errorf("labels %v", m.GetLabel())
		}
		byOp[label(m, "operator")+"/"+label(m, "operator_uid")] = m.GetCounter().GetValue()
	}
	if byOp["parity/parity-uid"] != 1001 || byOp["drop/"+opUID(task, "drop")] != 1001 {
		t.Errorf("records in by operator %v, want 1001 for parity and drop", byOp)
	}
	user := fams["weir_user_numbers_total"]
	if user == nil || user.GetHelp() != "Numbers seen, by parity." {
		t.Fatalf("user counter family %v", user)
	}
	got := map[string]float64{}
	for _, m := range user.GetMetric() {
		if label(m, "operator") != "parity" {
			t.Errorf("user metric labels %v", m.GetLabel())
		}
		got[label(m, "parity")] = m.GetCounter().GetValue()
	}
	if got["even"] != 500 || got["odd"] != 501 {
		t.Errorf("user counter by parity %v, want 500 even, 501 odd", got)
	}
	for _, name := range []string{"weir_task_busy_seconds_total", "weir_task_idle_seconds_total", "weir_task_backpressured_seconds_total"} {
		if f := fams[name]; f == nil || len(f.GetMetric()) != 1 || f.GetType() != dto.MetricType_COUNTER {
			t.Errorf("%s: %v", name, f)
		}
	}
	// A chained task has no input gate and no output channels.
	for _, name := range []string{"weir_task_bytes_in_total", "weir_task_bytes_out_total", "weir_task_input_buffers_queued"} {
		if fams[name] != nil {
			t.Errorf("%s exported for a task without exchange", name)
		}
	}
	if fams["go_goroutines"] == nil || fams["process_cpu_seconds_total"] == nil {
		t.Errorf("the standard Go and process metrics are missing")
	}
}

func opUID(task *runtime.Task, name string) string {
	for _, op := range task.Vertex().Operators {
		if op.Name == name {
			return op.UID
		}
	}
	return ""
}

func TestLatencyHistogramKeepsCountsInTheirBuckets(t *testing.T) {
	var h engine.Histogram
	for _, ns := range []int64{100_000, 700_000, 3_000_000, 3_000_000, 2_000_000_000, 60_000_000_000} {
		h.Record(ns)
	}
	m, ok := latencyHistogram(h.Snapshot(), []string{"j", "job", "v", "0", "tm"})
	if !ok {
		t.Fatal("no histogram")
	}
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	hist := d.GetHistogram()
	if hist.GetSampleCount() != 6 {
		t.Fatalf("count %d, want 6", hist.GetSampleCount())
	}
	want := map[float64]uint64{.0005: 1, .001: 2, .0025: 2, .005: 4, 1: 4, 2.5: 5, 10: 5, 30: 5}
	for _, b := range hist.GetBucket() {
		if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
	}
	if sum, exact := hist.GetSampleSum(), 62.0058; sum < exact*0.93 || sum > exact*1.07 {
		t.Errorf("sum %v, want about %v", sum, exact)
	}
}

func TestListenNamesTheAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	reg, _ := NewRegistry()
	if _, err := Listen(context.Background(), ln.Addr().String(), reg); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Listen on a taken port: %v", err)
	}
}

// TestMetricsDocumented checks that every metric the collectors can export
// has a row in docs/metrics.md, and every documented metric exists.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(weir_[a-z_]+)`")
	var documented []string
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		documented = append(documented, m[1])
	}
	lit := regexp.MustCompile(`"(weir_[a-z_]+)"`)
	var exported []string
	for _, f := range []string{"tasks.go", "../../taskmanager/metrics.go", "../../jobmanager/metrics.go"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range lit.FindAllStringSubmatch(string(src), -1) {
			if m[1] != "weir_user_" {
				exported = append(exported, m[1])
			}
		}
	}
	if len(exported) < 30 {
		t.Fatalf("found only %d metric names in the collectors: %v", len(exported), exported)
	}
	for _, name := range exported {
		if !slices.Contains(documented, name) {
			t.Errorf("%s is exported but has no row in docs/metrics.md", name)
		}
	}
	for _, name := range documented {
		if !slices.Contains(exported, name) {
			t.Errorf("docs/metrics.md documents %s, which no collector exports", name)
		}
	}
}

// stamped emits records 1..n with event times base+i s, then idles
// until the task is canceled.
type stamped struct {
	n, i int64
	base int64
}

func (s *stamped) Poll(out runtime.Collector[int64]) (time.Duration, error) {
	if s.i == s.n {
		return 10 * time.Millisecond, nil
	}
	s.i++
	out.Collect(s.base + s.i*1000)
	return 0, nil
}

func TestWatermarkAndLagOfAnEventTimeTask(t *testing.T) {
	base := time.Now().Add(-time.Hour).UnixMilli()
	env, _ := runtime.NewEnv("event-time", 1)
	src := runtime.FromSource(env, "stamped", func() runtime.SourceFunction[int64] { return &stamped{n: 10, base: base} }, runtime.Int64Codec{})
	timed := runtime.AssignTimestampsAndWatermarks(src, runtime.ForBoundedOutOfOrderness(2*time.Second, func(v int64) int64 { return v }))
	runtime.SinkTo(timed, "drop", func() runtime.SinkFunction[int64] { return drop{} })
	g, err := env.Graph()
	if err != nil {
		t.Fatal(err)
	}
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- task.Run(ctx) }()
	defer func() { cancel(); <-done }()

	c := &TaskCollector{Tasks: func() []TaskInfo {
		return []TaskInfo{{JobID: "j", JobName: "event-time", TaskManager: "tm", Task: task}}
	}}
	want := float64(base+10*1000-2000-1) / 1e3 // newest timestamp - out-of-orderness - 1 ms
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams := scrape(t, c)
		if wm := fams["weir_task_watermark_seconds"]; wm != nil && wm.GetMetric()[0].GetGauge().GetValue() == want {
			lag := fams["weir_task_watermark_lag_seconds"].GetMetric()[0].GetGauge().GetValue()
			if lag < 3600-10 || lag > 3600+60 {
				t.Errorf("watermark lag %vs, want about an hour", lag)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("watermark %v, want %v", fams["weir_task_watermark_seconds"], want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProfilesOnlyWhenAsked: /debug/pprof/ is served with Profiles only,
// and never the command line (flags may hold secrets).
func TestProfilesOnlyWhenAsked(t *testing.T) {
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	status := func(s *Server, path string) int {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	plain, err := Listen(t.Context(), "127.0.0.1:0", reg)
	if err != nil {
		t.Fatal(err)
	}
	if got := status(plain, "/debug/pprof/heap"); got != http.StatusNotFound {
		t.Errorf("without Profiles, /debug/pprof/heap: status %d, want 404", got)
	}
	prof, err := Listen(t.Context(), "127.0.0.1:0", reg, Options{Profiles: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := status(prof, "/debug/pprof/heap"); got != http.StatusOK {
		t.Errorf("with Profiles, /debug/pprof/heap: status %d, want 200", got)
	}
	if got := status(prof, "/debug/pprof/cmdline"); got != http.StatusNotFound {
		t.Errorf("with Profiles, /debug/pprof/cmdline: status %d, want 404", got)
	}
	if got := status(prof, "/metrics"); got != http.StatusOK {
		t.Errorf("with Profiles, /metrics: status %d, want 200", got)
	}
}
