package window_test

import (
	"context"
	"fmt"
	"time"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/window"
)

type login struct {
	ip     string
	ok     bool
	timeMs int64
}

// logins is a bounded source of failed and successful logins.
type logins struct{ done bool }

func (s *logins) Poll(out runtime.Collector[login]) (time.Duration, error) {
	if s.done {
		return 0, runtime.ErrEndOfInput
	}
	for i := range int64(30) {
		// One every 2.5 s from time 0, three of four failed.
		out.Collect(login{ip: "10.0.0.7", ok: i%4 == 3, timeMs: i * 2500})
	}
	s.done = true
	return 0, nil
}

type printer struct{}

func (printer) Invoke(s string) error { fmt.Println(s); return nil }

// Failed logins per IP in a minute sliding every 10 seconds, reported
// from 10 failures on.
func ExampleAggregateProcess() {
	env, _ := runtime.NewEnv("failed-logins", 1)
	src := runtime.FromSource(env, "logins", func() runtime.SourceFunction[login] { return &logins{} }, nil)
	timed := runtime.AssignTimestampsAndWatermarks(src,
		runtime.ForBoundedOutOfOrderness(5*time.Second, func(l login) int64 { return l.timeMs }))
	failed := runtime.KeyBy(runtime.Filter(timed, "failed", func(l login) bool { return !l.ok }),
		runtime.StringKey, func(l login) string { return l.ip })
	alerts := window.AggregateProcess(failed, "failures", window.Sliding(time.Minute, 10*time.Second),
		window.Count[login](), nil,
		func() window.ProcessWindowFunction[string, int64, string] {
			return window.ProcessFunc[string, int64, string](func(ip string, w window.Window, n []int64, out runtime.Collector[string]) error {
				if n[0] >= 10 {
					out.Collect(fmt.Sprintf("%s: %d failed logins in [%ds, %ds)", ip, n[0], w.Start/1000, w.End/1000))
				}
				return nil
			})
		}, nil)
	runtime.SinkTo(alerts, "print", func() runtime.SinkFunction[string] { return printer{} })
	g, _ := env.Graph()
	task, _ := runtime.NewTask(g, 0, 0, runtime.TaskIO{LatencyInterval: -1})
	if err := task.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// 10.0.0.7: 12 failed logins in [-20s, 40s)
	// 10.0.0.7: 15 failed logins in [-10s, 50s)
	// 10.0.0.7: 18 failed logins in [0s, 60s)
	// 10.0.0.7: 18 failed logins in [10s, 70s)
	// 10.0.0.7: 17 failed logins in [20s, 80s)
	// 10.0.0.7: 14 failed logins in [30s, 90s)
	// 10.0.0.7: 11 failed logins in [40s, 100s)
}
