package fraud

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/metrics"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
)

// BenchmarkDetectorChainedScraped is BenchmarkDetectorChained with the
// task exported on /metrics and scraped every 100 ms, as a Prometheus
// server would (ten times more often than usual): what reading the
// metrics costs the hot path. Compare the two's events/s.
func BenchmarkDetectorChainedScraped(b *testing.B) {
	g, err := jobs.Build(Name, 1, map[string]string{"source": "random", "rate": "0", "count": "2000000"})
	if err != nil {
		b.Fatal(err)
	}
	var current atomic.Pointer[runtime.Task]
	reg, err := metrics.NewRegistry(&metrics.TaskCollector{Tasks: func() []metrics.TaskInfo {
		if t := current.Load(); t != nil {
			return []metrics.TaskInfo{{JobID: "bench", JobName: Name, TaskManager: "tm", Task: t}}
		}
		return nil
	}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := metrics.Listen(ctx, "127.0.0.1:0", reg)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	var scrapes, failed atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			resp, err := http.Get("http://" + srv.Addr() + "/metrics")
			if err != nil {
				failed.Add(1)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			scrapes.Add(1)
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		var out bytes.Buffer
		task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{Stdout: &out, LatencyInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		current.Store(task)
		if err := task.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(2_000_000*b.N)/b.Elapsed().Seconds(), "events/s")
	cancel()
	<-done
	if failed.Load() > 0 {
		b.Fatalf("%d scrapes failed", failed.Load())
	}
	b.ReportMetric(float64(scrapes.Load()), "scrapes")
}
