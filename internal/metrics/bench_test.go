package metrics

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/weirstream/weir/runtime"
)

// BenchmarkScrape128Subtasks times one GET /metrics of a TaskManager
// running 128 subtasks of a three-operator chain, each with a user
// counter: what a scrape costs the process (the tasks pay nothing).
func BenchmarkScrape128Subtasks(b *testing.B) {
	const n = 128
	env, _ := runtime.NewEnv("numbers", n)
	src := runtime.FromSource(env, "numbers", func() runtime.SourceFunction[int64] { return &numbers{max: 100} }, runtime.Int64Codec{})
	p := runtime.ProcessStream(src, "parity", func() runtime.ProcessFunction[int64, int64] { return &parity{} }, runtime.Int64Codec{})
	runtime.SinkTo(p, "drop", func() runtime.SinkFunction[int64] { return drop{} })
	g, err := env.Graph()
	if err != nil {
		b.Fatal(err)
	}
	tasks := make([]TaskInfo, n)
	for i := range tasks {
		task, err := runtime.NewTask(g, 0, i, runtime.TaskIO{LatencyInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		if err := task.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		tasks[i] = TaskInfo{JobID: "0123456789abcdef0123456789abcdef", JobName: "numbers", TaskManager: "tm-1", Task: task}
	}
	reg, err := NewRegistry(&TaskCollector{Tasks: func() []TaskInfo { return tasks }})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := Listen(ctx, "127.0.0.1:0", reg)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	var size int64
	for b.Loop() {
		resp, err := http.Get("http://" + srv.Addr() + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		size, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}
