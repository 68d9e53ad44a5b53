package runtime

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// User metrics: job functions register counters, gauges and histograms
// through RuntimeContext.Metrics, usually in Open, and update them on the
// hot path with single atomic operations. The task keeps the registrations;
// the TaskManager exports them at scrape time as weir_user_<name>, labelled
// like the runtime's own metrics (job, vertex, subtask, operator) plus the
// labels added with MetricGroup.With. The runtime itself depends on no
// metrics library.

// Counter is a monotonically increasing count.
type Counter interface {
	Inc()
	// Add adds n, which must not be negative (a negative n is ignored).
	Add(n int64)
}

// Gauge is a value that goes up and down.
type Gauge interface {
	Set(v float64)
	Add(d float64)
}

// Observer records observations into a histogram.
type Observer interface {
	Observe(v float64)
}

// DefaultHistogramBuckets are the upper bounds used when Histogram is given
// none: 1 ms to 10 s, for durations in seconds.
var DefaultHistogramBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// UserMetricKind says what a user metric is.
type UserMetricKind uint8

const (
	UserCounter UserMetricKind = iota
	UserGauge
	UserHistogram
)

func (k UserMetricKind) String() string {
	return [...]string{"counter", "gauge", "histogram"}[k]
}

// reservedLabels are the labels the runtime puts on every task metric.
var reservedLabels = []string{"job", "job_id", "vertex", "subtask", "operator", "operator_uid", "task_manager", "le"}

// MetricGroup registers metrics of one operator subtask, with extra labels.
type MetricGroup struct {
	reg      *userMetrics
	operator string
	uid      string
	labels   []string // name, value, name, value...
}

// Metrics returns the group for metrics of this operator subtask.
func (c *RuntimeContext) Metrics() *MetricGroup {
	if c.metrics == nil {
		c.metrics = &userMetrics{} // a context made outside a task
	}
	return &MetricGroup{reg: c.metrics, operator: c.operatorName, uid: c.uid}
}

// With returns a group whose metrics carry the extra label name=value as
// well (a rule's ID, say). Label names follow Prometheus's rules and must
// not be one of the runtime's labels.
func (g *MetricGroup) With(name, value string) *MetricGroup {
	n := &MetricGroup{reg: g.reg, operator: g.operator, uid: g.uid, labels: slices.Clone(g.labels)}
	if err := checkLabel(name, g.labels); err != nil {
		g.reg.fail(fmt.Errorf("operator %s: metric label %q: %w", g.operator, name, err))
		return n
	}
	n.labels = append(n.labels, name, value)
	return n
}

// Counter registers (or returns the registered) counter name. By
// Prometheus convention its name ends in _total. A bad name fails the
// task at Open with a clear error; the counter returned still works.
func (g *MetricGroup) Counter(name, help string) Counter {
	return counter{g.register(name, help, UserCounter, nil)}
}

// Gauge registers (or returns the registered) gauge name.
func (g *MetricGroup) Gauge(name, help string) Gauge {
	return gauge{g.register(name, help, UserGauge, nil)}
}

// Histogram registers (or returns the registered) histogram name with the
// given bucket upper bounds, strictly increasing (nil:
// DefaultHistogramBuckets). Use base units: seconds, bytes.
func (g *MetricGroup) Histogram(name, help string, buckets []float64) Observer {
	if buckets == nil {
		buckets = DefaultHistogramBuckets
	}
	return observer{g.register(name, help, UserHistogram, buckets)}
}

func (g *MetricGroup) register(name, help string, kind UserMetricKind, buckets []float64) *userMetric {
	m := &userMetric{Name: name, Help: help, Kind: kind, operator: g.operator, uid: g.uid, labels: g.labels}
	if kind == UserHistogram {
		m.bounds = slices.Clone(buckets)
		m.counts = make([]atomic.Uint64, len(buckets)+1)
	}
	if err := checkMetric(name, buckets); err != nil {
		g.reg.fail(fmt.Errorf("operator %s: metric %q: %w", g.operator, name, err))
		return m
	}
	key := g.uid + "\x00" + name + "\x00" + strings.Join(g.labels, "\x00")
	r := g.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.byKey[key]; ok {
		if old.Kind != kind {
			r.failLocked(fmt.Errorf("operator %s: metric %q is registered as a %s already, not a %s", g.operator, name, old.Kind, kind))
			return m
		}
		return old
	}
	if r.byKey == nil {
		r.byKey = map[string]*userMetric{}
	}
	r.byKey[key] = m
	r.list = append(r.list, m)
	return m
}

func checkMetric(name string, buckets []float64) error {
	if !validName(name) {
		return errors.New("want a name of letters, digits and underscores, not starting with a digit")
	}
	for i, b := range buckets {
		if math.IsNaN(b) || i > 0 && b <= buckets[i-1] {
			return fmt.Errorf("histogram buckets %v are not strictly increasing", buckets)
		}
	}
	return nil
}

func checkLabel(name string, have []string) error {
	if !validName(name) || strings.HasPrefix(name, "__") {
		return errors.New("want a name of letters, digits and underscores, not starting with a digit or __")
	}
	if slices.Contains(reservedLabels, name) {
		return fmt.Errorf("the runtime sets it (it sets %v)", reservedLabels)
	}
	for i := 0; i < len(have); i += 2 {
		if have[i] == name {
			return errors.New("the group has it already")
		}
	}
	return nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		ok := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9'
		if !ok {
			return false
		}
	}
	return true
}

// userMetrics is a task's registry of user metrics.
type userMetrics struct {
	mu    sync.Mutex
	list  []*userMetric
	byKey map[string]*userMetric
	err   error
}

func (r *userMetrics) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failLocked(err)
}

func (r *userMetrics) failLocked(err error) {
	if r.err == nil {
		r.err = err
	}
}

// failure is the first registration error.
func (r *userMetrics) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// userMetric is one registered metric; counter, gauge and observer are
// its faces.
type userMetric struct {
	Name, Help    string
	Kind          UserMetricKind
	operator, uid string
	labels        []string

	count atomic.Int64  // counter
	bits  atomic.Uint64 // gauge value, or histogram sum, as float64 bits
	// Histogram: counts[i] observations <= bounds[i] and > bounds[i-1];
	// counts[len(bounds)] those above the last bound.
	bounds []float64
	counts []atomic.Uint64
}

type (
	counter  struct{ m *userMetric }
	gauge    struct{ m *userMetric }
	observer struct{ m *userMetric }
)

func (c counter) Inc() { c.m.count.Add(1) }

func (c counter) Add(n int64) {
	if n > 0 {
		c.m.count.Add(n)
	}
}

func (g gauge) Set(v float64) { g.m.bits.Store(math.Float64bits(v)) }
func (g gauge) Add(d float64) { g.m.addFloat(d) }

// addFloat adds d to the float in bits without a lock.
func (m *userMetric) addFloat(d float64) {
	for {
		old := m.bits.Load()
		if m.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

func (o observer) Observe(v float64) {
	i, _ := slices.BinarySearch(o.m.bounds, v) // first bound >= v
	o.m.counts[i].Add(1)
	o.m.addFloat(v)
}

// UserMetricValue is a user metric's registration and current value.
type UserMetricValue struct {
	Name, Help                string
	Kind                      UserMetricKind
	OperatorName, OperatorUID string
	// Labels are the extra labels, name then value.
	Labels []string
	// Value is a counter's count or a gauge's value.
	Value float64
	// A histogram's bucket upper bounds, cumulative counts per bound,
	// count of all observations and their sum.
	Bounds     []float64
	Cumulative []uint64
	Count      uint64
	Sum        float64
}

// UserMetrics returns the user metrics the task's operators registered,
// in registration order, with their current values. It is safe to call
// while the task runs.
func (t *Task) UserMetrics() []UserMetricValue {
	r := t.chain.metrics
	r.mu.Lock()
	list := slices.Clone(r.list)
	r.mu.Unlock()
	out := make([]UserMetricValue, len(list))
	for i, m := range list {
		v := UserMetricValue{Name: m.Name, Help: m.Help, Kind: m.Kind, OperatorName: m.operator, OperatorUID: m.uid, Labels: m.labels}
		switch m.Kind {
		case UserCounter:
			v.Value = float64(m.count.Load())
		case UserGauge:
			v.Value = math.Float64frombits(m.bits.Load())
		case UserHistogram:
			v.Bounds = m.bounds
			v.Cumulative = make([]uint64, len(m.bounds))
			var run uint64
			for k := range m.bounds {
				run += m.counts[k].Load()
				v.Cumulative[k] = run
			}
			v.Count = run + m.counts[len(m.bounds)].Load()
			v.Sum = math.Float64frombits(m.bits.Load())
		}
		out[i] = v
	}
	return out
}
