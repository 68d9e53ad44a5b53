package main

import (
	"fmt"
	"time"

	view "github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
)

// The overhead section runs scenario (b) of the throughput section
// (parallelism 2, two TaskManagers with one slot each, the keyBy over
// gRPC, 100,000 accounts, unthrottled sources) for a fixed number of
// events, with --checkpoint-interval 0 and with 1s to MinIO, and compares
// the rates. The rate is the detector's records over the job's wall time
// (deployment start to FINISHED, from the JobManager), which for the
// checkpointed job includes the checkpoint it waits for once the sources
// have ended.

type overheadRun struct {
	interval    time.Duration
	rate        float64 // events/s
	wall        time.Duration
	checkpoints int64
	failed      int64
	latest      *view.CheckpointView
}

func runOverhead(b *bench, interval time.Duration, events int64, extra map[string]string) (*overheadRun, error) {
	c, err := cluster.StartCluster(b.weir, cluster.Options{TaskManagers: 2, Slots: 1, Env: b.s3.Env(), DiscardStdout: true,
		JobManagerArgs: []string{"--checkpoint-storage", fmt.Sprintf("s3://%s/overhead", benchBucket), "--heartbeat-interval", "200ms"}})
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	per := events / 2
	params := map[string]string{"source": "random", "accounts": "100000", "rate": "0", "count": fmt.Sprint(per)}
	for k, v := range extra {
		params[k] = v
	}
	id, err := submitJob(c, "fraud-detection", 2, interval, params)
	if err != nil {
		return nil, err
	}
	var st *view.JobStatusView
	err = waitFor(10*time.Minute, 200*time.Millisecond, "the job to finish", func() (bool, error) {
		var err error
		if st, err = jobStatus(c, id); err != nil {
			return false, err
		}
		switch st.State {
		case "FINISHED":
			return true, nil
		case "FAILED", "CANCELED":
			return false, fmt.Errorf("job %v: %s\n%s", st.State, st.Failure, c.Logs())
		}
		return false, nil
	})
	if err != nil {
		cancelJob(c, id)
		return nil, err
	}
	in := operatorRecordsIn(st, "fraud-detector")
	wall := time.Duration(st.EndTimeMs-st.StartTimeMs) * time.Millisecond
	if in != per*2 || wall <= 0 {
		return nil, fmt.Errorf("detector saw %d records in %v, want %d", in, wall, per*2)
	}
	if st.Restarts > 0 {
		return nil, fmt.Errorf("job restarted %d times (%s)", st.Restarts, st.Failure)
	}
	return &overheadRun{interval: interval, rate: float64(in) / wall.Seconds(), wall: wall,
		checkpoints: st.Checkpointing.Completed, failed: st.Checkpointing.Failed, latest: st.Checkpointing.Latest}, nil
}

// overheadPair runs the job runs times without and with checkpoints,
// alternating, and returns the mean and best rates of each.
func (b *bench) overheadPair(events int64, runs int, extra map[string]string) (mean, best [2]float64, err error) {
	var sum [2]float64
	for i := 0; i < runs; i++ {
		for k, interval := range []time.Duration{0, time.Second} {
			r, err := runOverhead(b, interval, events, extra)
			if err != nil {
				return mean, best, fmt.Errorf("checkpoint interval %v: %w", interval, err)
			}
			sum[k] += r.rate
			best[k] = max(best[k], r.rate)
			if interval == 0 {
				fmt.Printf("  no checkpoints:        %.2f M events/s (%v)\n", r.rate/1e6, r.wall)
			} else {
				l := r.latest
				if l == nil {
					l = &view.CheckpointView{}
				}
				fmt.Printf("  checkpoints every 1s:  %.2f M events/s (%v); %d checkpoints completed, %d failed; last: %s, %d ms, stall %s\n",
					r.rate/1e6, r.wall, r.checkpoints, r.failed, bytesText(l.SizeBytes), l.DurationMs, msFrac(msDuration(l.MaxSyncMs)))
			}
		}
	}
	mean = [2]float64{sum[0] / float64(runs), sum[1] / float64(runs)}
	fmt.Printf("  mean: %.2f vs %.2f M events/s: %.1f %% (best runs: %.1f %%)\n", mean[0]/1e6, mean[1]/1e6,
		100*mean[1]/mean[0], 100*best[1]/best[0])
	return mean, best, nil
}

func (b *bench) overheadSection(events, stateEvents int64, runs int) error {
	if _, err := b.minio(); err != nil {
		return err
	}
	fmt.Printf("scenario (b): parallelism 2, 2 TaskManagers x 1 slot, 100000 accounts, rate unlimited, %d events per run;\n"+
		"rate = detector records / job wall time (deploy start to FINISHED); %d runs each, alternating\n", events, runs)
	mean, best, err := b.overheadPair(events, runs, nil)
	if err != nil {
		return err
	}
	b.add("overhead", "no checkpoints (mean of runs)", fmt.Sprintf("%.2f M events/s", mean[0]/1e6), "")
	b.add("overhead", "checkpoints every 1s to MinIO (mean)", fmt.Sprintf("%.2f M events/s", mean[1]/1e6), "")
	b.add("overhead", "ratio with/without (mean; best runs)", fmt.Sprintf("%.1f %%; %.1f %%", 100*mean[1]/mean[0], 100*best[1]/best[0]), ">= 90 %")
	if stateEvents <= 0 {
		return nil
	}
	// The same with every account holding state: the default parameters
	// keep only a few thousand keys (tens of KiB), so checkpoints cost
	// little; here every transaction updates the flag and a timer.
	fmt.Printf("the same with small=1000 large=1000 timeout=1h (every transaction updates state; 100000 keys), %d events per run:\n", stateEvents)
	mean, best, err = b.overheadPair(stateEvents, runs, map[string]string{"small": "1000", "large": "1000", "timeout": "1h"})
	if err != nil {
		return err
	}
	b.add("overhead", "100k keys all updated: without / with checkpoints", fmt.Sprintf("%.2f / %.2f M events/s", mean[0]/1e6, mean[1]/1e6), "")
	b.add("overhead", "100k keys all updated: ratio (mean; best runs)", fmt.Sprintf("%.1f %%; %.1f %%", 100*mean[1]/mean[0], 100*best[1]/best[0]), "")
	return nil
}
