package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/weirstream/weir/internal/cluster"
)

// The nexmark section: each Nexmark query of the nexmark job on a fixed
// number of generated events, at parallelism 2 on one TaskManager (this
// machine's two cores), with checkpoints every 10 s (exactly-once, the
// default) to a local directory and the output to the blackhole sink, as
// Flink's published runs. Events per second come from the job's start and
// end times; events per second per core divide the events by the CPU time
// the JobManager and TaskManager processes actually used.

// flinkPerCore is Flink's published throughput per core of each query
// (events/s), from the Nexmark results Flink publishes.
var flinkPerCore = map[string]float64{
	"q0": 155e3, "q1": 158e3, "q2": 175e3, "q3": 152e3, "q4": 34e3, "q5": 22e3, "q7": 12e3, "q8": 146e3,
}

func (b *bench) nexmarkSection(events int64, queries []string, profileDir string) error {
	if err := os.MkdirAll(profileDir, 0o755); err != nil {
		return err
	}
	fmt.Printf("Nexmark: %d events per query, parallelism 2 on one TaskManager (2 cores), checkpoints every 10 s,\n"+
		"blackhole sink; per core = events / CPU seconds of the JobManager and TaskManager processes\n\n", events)
	fmt.Printf("%-5s %12s %9s %12s %14s %14s %8s\n", "query", "events", "seconds", "events/s", "events/s/core", "Flink/core", "ratio")
	for _, q := range queries {
		profile, _ := filepath.Abs(filepath.Join(profileDir, "nexmark-"+q+".pprof"))
		c, err := cluster.StartCluster(b.weir, cluster.Options{TaskManagers: 1, Slots: 2, DiscardStdout: true,
			TaskManagerArgs: func(int) []string { return []string{"--cpu-profile", profile} }})
		if err != nil {
			return err
		}
		st, err := runNamedJob(c, "nexmark", 2, map[string]string{"query": q, "count": fmt.Sprint(events)}, 30*time.Minute)
		c.Stop()
		if err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		cpu := c.TaskManagers[0].CPUTime() + c.JobManager.CPUTime()
		secs := float64(st.EndTimeMs-st.StartTimeMs) / 1000
		rate := float64(events) / secs
		perCore := float64(events) / cpu.Seconds()
		flink := flinkPerCore[q]
		fmt.Printf("%-5s %12d %9.2f %12.0f %14.0f %14.0f %7.1f×\n", q, events, secs, rate, perCore, flink, perCore/flink)
		b.add("nexmark", q+": events/s per core", fmt.Sprintf("%.0f k (%.0f k/s, %.2f s)", perCore/1e3, rate/1e3, secs),
			fmt.Sprintf("10× Flink %.0f k = %.0f k", flink/1e3, 10*flink/1e3))
		if perCore < 10*flink {
			top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount", "15", b.weir, profile).Output()
			if err == nil {
				fmt.Printf("  below 10× Flink; CPU profile of the TaskManager (%s):\n", profile)
				for _, l := range strings.Split(string(top), "\n") {
					fmt.Println("   ", l)
				}
			}
		}
	}
	fmt.Println()
	return nil
}
