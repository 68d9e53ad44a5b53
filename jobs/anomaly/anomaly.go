package anomaly

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/cep"
	"github.com/weirstream/weir/runtime/window"
)

// AnomalyDetection is the registered name of the anomaly-patterns job.
const AnomalyDetection = "anomaly-detection"

// The anomaly-detection job's detectors, as its alerts name them.
const (
	Spike        = "spike"
	FailedLogins = "failed-logins"
	Sequence     = "sequence"
)

func init() {
	jobs.Register(jobs.Job{
		Name: AnomalyDetection,
		Description: "three detectors on JSON-lines events in event time: an amount spike against the user's average, " +
			"failed logins from one IP in a sliding minute, and A then B within 10s without C (CEP)",
		Params: withIO(EventsTopic,
			jobs.Param{Name: "factor", Type: jobs.Float, Default: "3", Description: "spike: a transaction above factor × the user's average of earlier transactions alerts"},
			jobs.Param{Name: "min-count", Type: jobs.Int, Default: "5", Description: "spike: earlier transactions a user needs before spikes are judged"},
			jobs.Param{Name: "max-failed", Type: jobs.Int, Default: "10", Description: "failed-logins: this many failed logins from one IP within a window alert"},
			jobs.Param{Name: "login-window", Type: jobs.Duration, Default: "1m", Description: "failed-logins: the sliding window's size"},
			jobs.Param{Name: "login-slide", Type: jobs.Duration, Default: "10s", Description: "failed-logins: how often the window slides"},
			jobs.Param{Name: "sequence-window", Type: jobs.Duration, Default: "10s", Description: "sequence: the longest time from A to B"},
		),
		Build: buildAnomaly,
	})
}

func buildAnomaly(env *runtime.Env, p *runtime.Params) error {
	c := parseIO(p, EventsTopic)
	factor := p.Float("factor", 3)
	minCount := p.Int("min-count", 5)
	maxFailed := p.Int("max-failed", 10)
	loginWindow := p.Duration("login-window", time.Minute)
	loginSlide := p.Duration("login-slide", 10*time.Second)
	seqWindow := p.Duration("sequence-window", 10*time.Second)
	if !(factor > 0) {
		p.Errorf("factor", "%g must be above 0", factor)
	}
	if minCount < 1 {
		p.Errorf("min-count", "%d must be at least 1", minCount)
	}
	if maxFailed < 1 {
		p.Errorf("max-failed", "%d must be at least 1", maxFailed)
	}
	if loginWindow <= 0 || loginSlide <= 0 || loginSlide > loginWindow {
		p.Errorf("login-slide", "the window %v and slide %v must be positive, the slide no longer than the window", loginWindow, loginSlide)
	}
	if seqWindow <= 0 {
		p.Errorf("sequence-window", "%v must be positive", seqWindow)
	}
	env.SetMaxParallelism(128)
	events := readEvents(env, c, "events", fUser|fType)

	// spike: per user, in event-time order, against the running average.
	txs := runtime.Filter(events, "transactions", func(e Event) bool { return e.Type == "transaction" && e.HasAmount })
	spikes := runtime.Process(runtime.KeyBy(txs, runtime.StringKey, func(e Event) string { return e.User }), Spike,
		func() runtime.KeyedProcessFunction[string, Event, Alert] { return newSpikeDetector(factor, minCount) }, AlertCodec{}).UID(Spike)
	writeDeadLetters(c, runtime.SideOutput(spikes, Late), "late-"+Spike, "late/"+Spike)
	writeAlerts(c, spikes, Spike)

	// failed-logins: per IP, count in a sliding window.
	failed := runtime.Filter(events, "failed-logins-only", func(e Event) bool {
		return e.Type == "login" && e.Status == "failed" && e.IP != ""
	})
	logins := window.AggregateProcess(runtime.KeyBy(failed, runtime.StringKey, func(e Event) string { return e.IP }),
		FailedLogins, window.Sliding(loginWindow, loginSlide), window.Count[Event](), nil,
		func() window.ProcessWindowFunction[string, int64, Alert] { return failedLogins{max: maxFailed} }, AlertCodec{},
		window.LateOutput(lateEvents)).UID(FailedLogins)
	writeDeadLetters(c, runtime.Map(runtime.SideOutput(logins, lateEvents), "late-"+FailedLogins+"-letters", lateLetter, nil),
		"late-"+FailedLogins, "late/"+FailedLogins)
	writeAlerts(c, logins, FailedLogins)

	// sequence: per user, A then B within the window, no C between them.
	pattern := cep.Begin[Event]("a").Where(func(e Event) bool { return e.Type == "A" }).
		NotFollowedBy("c").Where(func(e Event) bool { return e.Type == "C" }).
		FollowedBy("b").Where(func(e Event) bool { return e.Type == "B" }).
		Within(seqWindow)
	seqs, err := cep.Detect(runtime.KeyBy(events, runtime.StringKey, func(e Event) string { return e.User }), Sequence,
		pattern, EventCodec{}, sequenceAlert, AlertCodec{}, cep.LateDataTo(lateEvents))
	if err != nil {
		return err
	}
	seqs = seqs.UID(Sequence)
	writeDeadLetters(c, runtime.Map(runtime.SideOutput(seqs, lateEvents), "late-"+Sequence+"-letters", lateLetter, nil),
		"late-"+Sequence, "late/"+Sequence)
	writeAlerts(c, seqs, Sequence)
	return nil
}

// spikeDetector keeps each user's count and sum of transactions.
type spikeDetector struct {
	inOrder[string]
	factor   float64
	minCount int64
	stats    runtime.ValueState[runningStats]
}

func newSpikeDetector(factor float64, minCount int64) *spikeDetector {
	d := &spikeDetector{factor: factor, minCount: minCount}
	d.open = func(ctx *runtime.KeyedContext[string]) (err error) {
		d.stats, err = runtime.GetValueState(ctx, "stats", runningStatsCodec{})
		return err
	}
	d.judge = d.judgeEvent
	return d
}

func (d *spikeDetector) judgeEvent(e Event, ctx *runtime.KeyedContext[string], out runtime.Collector[Alert]) error {
	s, _ := d.stats.Value()
	if s.Count >= d.minCount {
		avg := s.Sum / float64(s.Count)
		if e.Amount > d.factor*avg {
			out.Collect(Alert{Detector: Spike, Key: ctx.CurrentKey(), Time: e.Time, Evidence: string(evidence(nil).
				num("amount", e.Amount).num("average", avg).int("earlier_transactions", s.Count).num("factor", d.factor).
				str("source", e.Source).int("line", e.Line))})
		}
	}
	d.stats.Update(runningStats{Count: s.Count + 1, Sum: s.Sum + e.Amount})
	return nil
}

type runningStats struct {
	Count int64
	Sum   float64
}

type runningStatsCodec struct{}

func (runningStatsCodec) Append(dst []byte, s runningStats) []byte {
	return runtime.Float64Codec{}.Append(binary64(dst, s.Count), s.Sum)
}

func (runningStatsCodec) Decode(src []byte) (runningStats, error) {
	r := runtime.NewReader(src)
	s := runningStats{Count: r.Varint(), Sum: r.Float64()}
	if err := r.Done(); err != nil {
		return s, fmt.Errorf("running stats: %w", err)
	}
	return s, nil
}

// failedLogins alerts on a window with at least max failed logins.
type failedLogins struct{ max int64 }

func (f failedLogins) Process(ip string, w window.Window, counts []int64, out runtime.Collector[Alert]) error {
	if n := counts[0]; n >= f.max {
		out.Collect(Alert{Detector: FailedLogins, Key: ip, Time: w.MaxTimestamp(), Evidence: string(evidence(nil).
			int("failed_logins", n).int("window_start_ms", w.Start).int("window_end_ms", w.End).int("threshold", f.max))})
	}
	return nil
}

// lateEvents is the side output of events a window or the CEP operator
// finds behind the watermark.
var lateEvents = runtime.NewOutputTag[Event]("late-events", EventCodec{})

func lateLetter(e Event) file.DeadLetter {
	return file.DeadLetter{Source: e.Source, Line: e.Line, Text: fmt.Sprintf("%+v", e),
		Reason: "late: the event's time is behind the watermark"}
}

func sequenceAlert(user string, m cep.Match[Event]) Alert {
	a, b := m["a"][0], m["b"][0]
	return Alert{Detector: Sequence, Key: user, Time: b.Time, Evidence: string(evidence(nil).
		int("a_time_ms", a.Time).int("b_time_ms", b.Time).str("a_source", a.Source).int("a_line", a.Line).
		str("b_source", b.Source).int("b_line", b.Line))}
}
