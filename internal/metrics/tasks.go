package metrics

import (
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/weirstream/weir/runtime/engine"

	"github.com/weirstream/weir/runtime"
)

// TaskInfo is a running task and what labels it.
type TaskInfo struct {
	JobID, JobName string
	TaskManager    string
	Task           *runtime.Task
}

var (
	taskLabels = []string{"job_id", "job", "vertex", "subtask", "task_manager"}
	opLabels   = append(append([]string{}, taskLabels...), "operator", "operator_uid")

	recordsIn  = opDesc("weir_operator_records_in_total", "Records the operator received.")
	recordsOut = opDesc("weir_operator_records_out_total", "Records the operator emitted.")
	stateBytes = opDesc("weir_operator_state_size_bytes", "Size of the operator subtask's state file in its last acknowledged checkpoint.")
	stateKeys  = opDesc("weir_operator_state_keys", "Keys with keyed state in the operator subtask's last acknowledged checkpoint.")

	bytesIn    = taskDesc("weir_task_bytes_in_total", "Bytes of the data buffers the task consumed from other tasks (record framing included).")
	bytesOut   = taskDesc("weir_task_bytes_out_total", "Bytes of the data buffers the task sent to other tasks (record framing included).")
	buffersIn  = taskDesc("weir_task_buffers_in_total", "Data buffers the task consumed from other tasks.")
	buffersOut = taskDesc("weir_task_buffers_out_total", "Data buffers the task sent to other tasks.")
	busy       = taskDesc("weir_task_busy_seconds_total", "Time the task spent neither idle nor backpressured.")
	idle       = taskDesc("weir_task_idle_seconds_total", "Time the task waited for input (a source: for its next poll).")
	bp         = taskDesc("weir_task_backpressured_seconds_total", "Time the task waited for output credit from its consumers.")
	inQueued   = taskDesc("weir_task_input_buffers_queued", "Buffers queued in the task's input gate, waiting for the task.")
	inCap      = taskDesc("weir_task_input_buffers_capacity", "Buffers the task's input gate can queue.")
	outInUse   = taskDesc("weir_task_output_buffers_in_use", "Data buffers the task sent that its consumers have not consumed yet (credit in use).")
	outCap     = taskDesc("weir_task_output_buffers_capacity", "Credit the task's consumers granted over all its output channels.")
	watermark  = taskDesc("weir_task_watermark_seconds", "The task's event-time watermark, as Unix time (event-time jobs, after the first watermark).")
	wmLag      = taskDesc("weir_task_watermark_lag_seconds", "Wall-clock time minus the task's watermark (event-time jobs).")
	ckSync     = taskDesc("weir_task_checkpoint_sync_seconds", "Synchronous part (processing stall) of the task's last acknowledged checkpoint.")
	ckAlign    = taskDesc("weir_task_checkpoint_alignment_seconds", "Barrier alignment time of the task's last acknowledged checkpoint.")
	ckAsync    = taskDesc("weir_task_checkpoint_async_seconds", "Asynchronous upload time of the task's last acknowledged checkpoint.")
	latency    = taskDesc("weir_task_latency_seconds", "End-to-end latency of the latency markers that reached this sink task from the sources.")
)

func opDesc(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, opLabels, nil) }
func taskDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, taskLabels, nil)
}

// LatencyBuckets are the upper bounds (seconds) of the latency histogram.
var LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// TaskCollector exports the tasks' metrics, reading the counters the tasks
// publish after each batch: scraping costs the tasks nothing.
type TaskCollector struct {
	// Tasks lists the tasks to export at scrape time.
	Tasks func() []TaskInfo
}

// Describe describes nothing: the user metrics are only known at scrape
// time, which makes the collector an unchecked one.
func (c *TaskCollector) Describe(chan<- *prometheus.Desc) {}

// Collect exports every task's metrics.
func (c *TaskCollector) Collect(ch chan<- prometheus.Metric) {
	users := userFamilies{}
	now := time.Now()
	for _, ti := range c.Tasks() {
		collectTask(ch, ti, now, users)
	}
}

func collectTask(ch chan<- prometheus.Metric, ti TaskInfo, now time.Time, users userFamilies) {
	t := ti.Task
	v := t.Vertex()
	lv := []string{ti.JobID, ti.JobName, v.Name, strconv.Itoa(t.Subtask()), ti.TaskManager}
	opLV := func(i int) []string {
		return append(append(make([]string, 0, len(lv)+2), lv...), v.Operators[i].Name, v.Operators[i].UID)
	}
	for i, oc := range t.Operators() {
		if i >= len(v.Operators) {
			break
		}
		ch <- prometheus.MustNewConstMetric(recordsIn, prometheus.CounterValue, float64(oc.In), opLV(i)...)
		ch <- prometheus.MustNewConstMetric(recordsOut, prometheus.CounterValue, float64(oc.Out), opLV(i)...)
	}
	s := t.Stats()
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lv...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	counter(busy, s.Busy.Seconds())
	counter(idle, s.Idle.Seconds())
	counter(bp, s.Backpressured.Seconds())
	if s.HasInput {
		counter(bytesIn, float64(s.BytesIn))
		counter(buffersIn, float64(s.BuffersIn))
		gauge(inQueued, float64(s.InputQueued))
		gauge(inCap, float64(s.InputCapacity))
	}
	if s.HasOutput {
		counter(bytesOut, float64(s.BytesOut))
		counter(buffersOut, float64(s.BuffersOut))
		gauge(outInUse, float64(s.OutputInUse))
		gauge(outCap, float64(s.OutputCapacity))
	}
	if t.EventTime() {
		if wm := t.Watermark(); wm != runtime.NoTimestamp && wm != runtime.MaxWatermark {
			gauge(watermark, float64(wm)/1e3)
			gauge(wmLag, float64(now.UnixMilli()-wm)/1e3)
		}
	}
	if ack := t.LastAck(); ack != nil {
		gauge(ckSync, float64(ack.SyncNs)/1e9)
		gauge(ckAlign, float64(ack.AlignmentNs)/1e9)
		gauge(ckAsync, float64(ack.AsyncNs)/1e9)
		for _, st := range ack.States {
			for i, op := range v.Operators {
				if op.UID == st.UID {
					ch <- prometheus.MustNewConstMetric(stateBytes, prometheus.GaugeValue, float64(st.Size), opLV(i)...)
					ch <- prometheus.MustNewConstMetric(stateKeys, prometheus.GaugeValue, float64(st.Keys), opLV(i)...)
				}
			}
		}
	}
	if counts := t.Latency(); len(counts) > 0 {
		if m, ok := latencyHistogram(counts, lv); ok {
			ch <- m
		}
	}
	for _, um := range t.UserMetrics() {
		users.collect(ch, um, v.Operators, opLV)
	}
}

// latencyHistogram turns the runtime's fine log-linear buckets (values in
// ns) into a Prometheus histogram over LatencyBuckets. The sum is taken
// from bucket midpoints, within the buckets' 6.25 % width.
func latencyHistogram(counts []int64, lv []string) (prometheus.Metric, bool) {
	cum := make(map[float64]uint64, len(LatencyBuckets))
	var total uint64
	var sum float64
	k := 0
	var run uint64
	for i, c := range counts {
		upper := float64(engine.HistogramBucketUpper(i)) / 1e9
		if c > 0 {
			lower := 0.0
			if i > 0 {
				lower = float64(engine.HistogramBucketUpper(i-1)+1) / 1e9
			}
			sum += float64(c) * (lower + upper) / 2
		}
		// Close every Prometheus bucket the runtime's bucket lies past.
		for k < len(LatencyBuckets) && upper > LatencyBuckets[k] {
			cum[LatencyBuckets[k]] = run
			k++
		}
		run += uint64(c)
		total += uint64(c)
	}
	for ; k < len(LatencyBuckets); k++ {
		cum[LatencyBuckets[k]] = run
	}
	if total == 0 {
		return nil, false
	}
	m, err := prometheus.NewConstHistogram(latency, total, sum, cum, lv...)
	return m, err == nil
}

// userFamilies keeps, per scrape, the kind and help of every user metric
// name exported so far: one family cannot mix kinds or helps, so a
// conflicting registration in another operator is left out (and its
// operator's author finds it missing).
type userFamilies map[string]struct {
	kind runtime.UserMetricKind
	desc map[string]*prometheus.Desc // by label names
	help string
}

func (u userFamilies) collect(ch chan<- prometheus.Metric, um runtime.UserMetricValue, ops []runtime.OperatorInfo, opLV func(int) []string) {
	name := "weir_user_" + um.Name
	fam, ok := u[name]
	if !ok {
		fam.kind, fam.help, fam.desc = um.Kind, um.Help, map[string]*prometheus.Desc{}
		u[name] = fam
	} else if fam.kind != um.Kind {
		return
	}
	names := append([]string{}, opLabels...)
	var values []string
	for i := 0; i+1 < len(um.Labels); i += 2 {
		names = append(names, um.Labels[i])
		values = append(values, um.Labels[i+1])
	}
	key := ""
	for _, n := range names[len(opLabels):] {
		key += n + ","
	}
	d, ok := fam.desc[key]
	if !ok {
		d = prometheus.NewDesc(name, fam.help, names, nil)
		fam.desc[key] = d
	}
	op := slices.IndexFunc(ops, func(o runtime.OperatorInfo) bool { return o.UID == um.OperatorUID })
	if op < 0 {
		return
	}
	lv := append(opLV(op), values...)
	var m prometheus.Metric
	var err error
	switch um.Kind {
	case runtime.UserCounter:
		m, err = prometheus.NewConstMetric(d, prometheus.CounterValue, um.Value, lv...)
	case runtime.UserGauge:
		m, err = prometheus.NewConstMetric(d, prometheus.GaugeValue, um.Value, lv...)
	case runtime.UserHistogram:
		b := make(map[float64]uint64, len(um.Bounds))
		for i, ub := range um.Bounds {
			if !math.IsInf(ub, +1) {
				b[ub] = um.Cumulative[i]
			}
		}
		m, err = prometheus.NewConstHistogram(d, um.Count, um.Sum, b, lv...)
	}
	if err == nil {
		ch <- m
	}
}
