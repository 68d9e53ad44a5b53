package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	view "github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
)

// The seeds section: the event-time jobs of the seeds (jobs/anomaly) over
// a generated JSON-lines file, one subtask on a TaskManager limited to one
// core, as fast as the file can be read. Each job parses every line, runs
// its detectors (windows, CEP, keyed state, broadcast state) and commits
// its alerts exactly once to part files; the figure is input events per
// second of the whole job, from the JobManager's start and end times.

type seedsBench struct {
	job    string
	gen    func(rng *rand.Rand, ts int64) string
	params map[string]string
}

var seedsBenches = []seedsBench{
	{job: "anomaly-detection", gen: func(rng *rand.Rand, ts int64) string {
		user := rng.IntN(100_000)
		switch r := rng.IntN(10); {
		case r < 4:
			return fmt.Sprintf(`{"time":%d,"user":"u%d","type":"transaction","amount":%d}`, ts, user, 50+rng.IntN(100))
		case r < 7:
			return fmt.Sprintf(`{"time":%d,"user":"u%d","type":"login","status":"failed","ip":"10.%d.%d.1"}`,
				ts, user, rng.IntN(100), rng.IntN(100))
		default:
			return fmt.Sprintf(`{"time":%d,"user":"u%d","type":%q}`, ts, user, []string{"A", "B", "C"}[rng.IntN(3)])
		}
	}},
	{job: "transfer-monitor", gen: func(rng *rand.Rand, ts int64) string {
		return fmt.Sprintf(`{"time":%d,"account":"acct-%d","amount":%d}`, ts, rng.IntN(100_000), 100+rng.IntN(30000))
	}},
	{job: "impossible-travel", gen: func(rng *rand.Rand, ts int64) string {
		cities := []string{"Hangzhou", "Beijing", "Shanghai", "London", "Paris", "New York"}
		return fmt.Sprintf(`{"time":%d,"card":"card-%d","device":"dev-%d","city":%q}`, ts, rng.IntN(100_000),
			rng.IntN(100_000), cities[rng.IntN(len(cities))])
	}},
}

func (b *bench) seedsSection(events int) error {
	dir, err := os.MkdirTemp("", "weirbench-seeds-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Printf("The seeds' event-time jobs: %d JSON-lines events, 100000 keys, out of order by up to 3 s,\n"+
		"one subtask on one core (GOMAXPROCS=1), alerts committed to part files\n\n", events)
	for _, s := range seedsBenches {
		in := filepath.Join(dir, s.job+".jsonl")
		if err := writeSeedInput(in, events, s.gen); err != nil {
			return err
		}
		c, err := cluster.StartCluster(b.weir, cluster.Options{TaskManagers: 1, Slots: 1,
			TaskManagerEnv: []string{"GOMAXPROCS=1"}, DiscardStdout: true})
		if err != nil {
			return err
		}
		start := time.Now()
		st, err := runNamedJob(c, s.job, 1, map[string]string{"input": in, "output": filepath.Join(dir, s.job+"-out")}, 10*time.Minute)
		c.Stop()
		cpu := c.TaskManagers[0].CPUTime() // known once it has exited
		if err != nil {
			return fmt.Errorf("%s: %w", s.job, err)
		}
		secs := float64(st.EndTimeMs-st.StartTimeMs) / 1000
		if secs <= 0 {
			secs = time.Since(start).Seconds()
		}
		rate := float64(events) / secs
		b.add("seeds", s.job+": events/s, 1 core", fmt.Sprintf("%.0f k events/s", rate/1e3), "20× Flink q4/q5 ≈ 440-680 k")
		fmt.Printf("%-18s %8.0f k events/s  (%.2f s, TaskManager CPU %.2f s)\n", s.job, rate/1e3, secs, cpu.Seconds())
	}
	fmt.Println()
	return nil
}

// writeSeedInput writes n events, one second of event time per 1000, each
// up to 3 s behind the newest (the jobs allow 5 s).
func writeSeedInput(path string, n int, gen func(*rand.Rand, int64) string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	ts := int64(1_772_000_000_000)
	for i := range n {
		ts = 1_772_000_000_000 + int64(i)
		if _, err := w.WriteString(gen(rng, ts-int64(rng.IntN(3000))) + "\n"); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runNamedJob submits job with params and waits for it to finish.
func runNamedJob(c *cluster.Cluster, job string, parallelism int, params map[string]string, timeout time.Duration) (*view.JobStatusView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := []string{"job", "submit", job, "--jobmanager", c.JobManager.Addr, "--parallelism", fmt.Sprint(parallelism)}
	for k, v := range params {
		args = append(args, "--param", k+"="+v)
	}
	r, err := cluster.Run(ctx, c.Weir, args...)
	if err != nil || r.ExitCode != 0 {
		return nil, fmt.Errorf("submit: %v %s", err, r.Stderr)
	}
	return waitFinished(ctx, c, strings.TrimSpace(r.Stdout))
}
