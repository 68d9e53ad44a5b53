package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	view "github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
)

// The throughput section (the original benchmark): the fraud detector over
// the random transaction source (100,000 accounts) in two deployments; for
// each the maximum rate (source as fast as possible), then end-to-end
// latency (latency markers) at half of it. Jobs run with the default
// checkpoint settings of `weir job submit`.

type scenario struct {
	name         string
	taskManagers int
	slots        int
	parallelism  int
	env          []string
	tlsArgs      []string // --tls-* for every process; nil: plaintext
	tmArgs       []string // extra flags of every TaskManager (--state-backend)
}

func (b *bench) baseline(events int64, latencyFor time.Duration, profileDir string) error {
	weir := b.weir
	if err := os.MkdirAll(profileDir, 0o755); err != nil {
		return err
	}
	scenarios := []scenario{
		{name: "(a) 1 subtask, chained, 1 core", taskManagers: 1, slots: 1, parallelism: 1, env: []string{"GOMAXPROCS=1"}},
		{name: "(b) parallelism 2, 2 TaskManager processes, keyBy over gRPC", taskManagers: 2, slots: 1, parallelism: 2},
	}
	fmt.Printf("Weir fraud-detection benchmark: random source, 100000 accounts, %d events per throughput run\n\n", events)
	for i, s := range scenarios {
		profile, _ := filepath.Abs(filepath.Join(profileDir, fmt.Sprintf("taskmanager-%c.pprof", 'a'+i)))
		thr, err := throughput(weir, s, events, profile)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		lat, err := latency(weir, s, thr/2, latencyFor)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		b.add("throughput", s.name+": max throughput", fmt.Sprintf("%.2f M events/s", thr/1e6), "")
		b.add("throughput", s.name+": latency p50/p99", fmt.Sprintf("%v / %v at %.2f M events/s",
			msDuration(lat.P50Ms), msDuration(lat.P99Ms), thr/2e6), "")
		fmt.Printf("%s\n  max throughput %.2f M events/s\n  at %.2f M events/s: latency p50 %v  p99 %v  max %v  (%d markers)\n",
			s.name, thr/1e6, thr/2e6, msDuration(lat.P50Ms), msDuration(lat.P99Ms), msDuration(lat.MaxMs), lat.Markers)
		top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount", "12", weir, profile).Output()
		if err == nil {
			fmt.Printf("  CPU profile of the TaskManager running the detector (%s):\n", profile)
			for _, l := range strings.Split(string(top), "\n") {
				if strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "File:") && !strings.HasPrefix(l, "Build ID:") && !strings.HasPrefix(l, "Type:") && !strings.HasPrefix(l, "Time:") {
					fmt.Println("    " + l)
				}
			}
		}
		fmt.Println()
	}
	return nil
}

func start(weir string, s scenario, profile string) (*cluster.Cluster, error) {
	return cluster.StartCluster(weir, cluster.Options{
		TaskManagers: s.taskManagers, Slots: s.slots, TaskManagerEnv: s.env, DiscardStdout: true, TLSArgs: s.tlsArgs,
		TaskManagerArgs: func(i int) []string {
			args := slices.Clone(s.tmArgs)
			if profile != "" && i == s.taskManagers-1 {
				args = append(args, "--cpu-profile", profile)
			}
			return args
		},
	})
}

// throughput runs the job with unthrottled sources and returns events/s.
func throughput(weir string, s scenario, events int64, profile string) (float64, error) {
	c, err := start(weir, s, profile)
	if err != nil {
		return 0, err
	}
	defer c.Stop()
	per := events / int64(s.parallelism)
	st, err := runJob(c, s.parallelism, map[string]string{"rate": "0", "count": fmt.Sprint(per)}, 10*time.Minute)
	if err != nil {
		return 0, err
	}
	var in int64
	for _, v := range st.Vertices {
		for _, o := range v.Operators {
			if o.Name == "fraud-detector" {
				in += o.RecordsIn
			}
		}
	}
	secs := float64(st.EndTimeMs-st.StartTimeMs) / 1000
	if in != per*int64(s.parallelism) || secs <= 0 {
		return 0, fmt.Errorf("detector saw %d records in %.3fs, want %d", in, secs, per*int64(s.parallelism))
	}
	return float64(in) / secs, nil
}

// latency runs the job at a fixed total rate and returns its latency.
func latency(weir string, s scenario, rate float64, d time.Duration) (*view.LatencyView, error) {
	c, err := start(weir, s, "")
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	per := rate / float64(s.parallelism)
	count := int64(per * d.Seconds())
	st, err := runJob(c, s.parallelism, map[string]string{"rate": fmt.Sprintf("%.0f", per), "count": fmt.Sprint(count)}, d+5*time.Minute)
	if err != nil {
		return nil, err
	}
	if st.Latency.Markers == 0 {
		return nil, fmt.Errorf("no latency markers reached the sinks")
	}
	return &st.Latency, nil
}

func runJob(c *cluster.Cluster, parallelism int, params map[string]string, timeout time.Duration) (*view.JobStatusView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := []string{"job", "submit", "fraud-detection", "--jobmanager", c.JobManager.Addr,
		"--parallelism", fmt.Sprint(parallelism), "--param", "source=random", "--param", "accounts=100000"}
	for k, v := range params {
		args = append(args, "--param", k+"="+v)
	}
	r, err := cluster.Run(ctx, c.Weir, args...)
	if err != nil || r.ExitCode != 0 {
		return nil, fmt.Errorf("submit: %v %s", err, r.Stderr)
	}
	return waitFinished(ctx, c, strings.TrimSpace(r.Stdout))
}

// waitFinished polls job id until it finishes, and fails if it fails or
// ctx ends first.
func waitFinished(ctx context.Context, c *cluster.Cluster, id string) (*view.JobStatusView, error) {
	for {
		st, err := jobStatus(c, id)
		if err != nil {
			return nil, err
		}
		switch st.State {
		case "FINISHED":
			return st, nil
		case "FAILED", "CANCELED":
			return nil, fmt.Errorf("job %s: %s\n%s", st.State, st.Failure, c.Logs())
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("job still %v: %w", st.State, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
