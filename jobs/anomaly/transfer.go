package anomaly

import (
	"time"

	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/window"
)

// TransferMonitor is the registered name of the transfer-monitoring job.
const TransferMonitor = "transfer-monitor"

// The transfer monitor's detectors.
const (
	LargeTransfer = "large-transfer"
	SmallTransfer = "small-transfer"
	TransferSum   = "transfer-sum"
	// transferLimits is the operator (and output directory) of the two
	// single-transfer rules.
	transferLimits = "transfer-limits"
)

func init() {
	jobs.Register(jobs.Job{
		Name: TransferMonitor,
		Description: "per account, single transfers above `high` or below `low`, and transfers summing above `sum-limit` " +
			"in a sliding window (JSON lines with time, account, amount; event time)",
		Params: withIO(TransfersTopic,
			jobs.Param{Name: "high", Type: jobs.Float, Default: "19000", Description: "a single transfer above this alerts (large-transfer)"},
			jobs.Param{Name: "low", Type: jobs.Float, Default: "300", Description: "a single transfer below this alerts (small-transfer)"},
			jobs.Param{Name: "sum-limit", Type: jobs.Float, Default: "100000", Description: "an account's transfers summing above this within a window alert (transfer-sum)"},
			jobs.Param{Name: "window", Type: jobs.Duration, Default: "10s", Description: "transfer-sum: the sliding window's size"},
			jobs.Param{Name: "slide", Type: jobs.Duration, Default: "5s", Description: "transfer-sum: how often the window slides"},
		),
		Build: buildTransfer,
	})
}

func buildTransfer(env *runtime.Env, p *runtime.Params) error {
	c := parseIO(p, TransfersTopic)
	high, low, limit := p.Float("high", 19000), p.Float("low", 300), p.Float("sum-limit", 100000)
	size, slide := p.Duration("window", 10*time.Second), p.Duration("slide", 5*time.Second)
	if size <= 0 || slide <= 0 || slide > size {
		p.Errorf("slide", "the window %v and slide %v must be positive, the slide no longer than the window", size, slide)
	}
	if !(low < high) {
		p.Errorf("low", "%g must be below high (%g)", low, high)
	}
	env.SetMaxParallelism(128)
	transfers := readEvents(env, c, "transfers", fAccount|fAmount)

	limits := runtime.FlatMap(transfers, transferLimits, func(e Event, out runtime.Collector[Alert]) {
		var detector string
		var bound float64
		switch {
		case e.Amount > high:
			detector, bound = LargeTransfer, high
		case e.Amount < low:
			detector, bound = SmallTransfer, low
		default:
			return
		}
		out.Collect(Alert{Detector: detector, Key: e.Account, Time: e.Time, Evidence: string(evidence(nil).
			num("amount", e.Amount).num("limit", bound).str("source", e.Source).int("line", e.Line))})
	}, AlertCodec{})
	writeAlerts(c, limits, transferLimits)

	sums := window.AggregateProcess(runtime.KeyBy(transfers, runtime.StringKey, func(e Event) string { return e.Account }),
		TransferSum, window.Sliding(size, slide), window.Sum(func(e Event) float64 { return e.Amount }), nil,
		func() window.ProcessWindowFunction[string, float64, Alert] { return sumAbove{limit: limit} }, AlertCodec{},
		window.LateOutput(lateEvents)).UID(TransferSum)
	writeDeadLetters(c, runtime.Map(runtime.SideOutput(sums, lateEvents), "late-"+TransferSum+"-letters", lateLetter, nil),
		"late-"+TransferSum, "late/"+TransferSum)
	writeAlerts(c, sums, TransferSum)
	return nil
}

// sumAbove alerts on a window whose transfers sum above the limit.
type sumAbove struct{ limit float64 }

func (s sumAbove) Process(account string, w window.Window, sums []float64, out runtime.Collector[Alert]) error {
	if sum := sums[0]; sum > s.limit {
		out.Collect(Alert{Detector: TransferSum, Key: account, Time: w.MaxTimestamp(), Evidence: string(evidence(nil).
			num("sum", sum).num("limit", s.limit).int("window_start_ms", w.Start).int("window_end_ms", w.End))})
	}
	return nil
}
