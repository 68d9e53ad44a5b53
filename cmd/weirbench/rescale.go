package main

import (
	"context"
	"fmt"
	"time"

	view "github.com/weirstream/weir/internal/cli"
)

// The rescale section runs fraud-detection at parallelism 2 on two
// TaskManagers with two slots each (rate-limited sources, checkpoints every
// second to MinIO) and rescales it to 4 with `weir job rescale`, which
// stops the job with a savepoint (the sources emit nothing after its
// barrier) and redeploys it from the savepoint. Times, all from the
// savepoint's trigger (its TriggerTimeMs, when the JobManager sent the
// barrier to the sources):
//
//   - savepoint complete: its DurationMs;
//   - RUNNING: the JobManager logs the new attempt RUNNING at parallelism 4;
//   - first record (the gap): the first alert printed by the new attempt
//     (outputProbe);
//   - counted: the first status poll (every 20 ms) showing the new
//     attempt's detector records (heartbeat-delayed);
//
// and the wall time of the `weir job rescale` command (it returns once its
// own 50 ms poll sees the job RUNNING at the new parallelism), and the
// output gap: from the last alert printed before the stop to the first
// after.

type rescaleRun struct {
	command                       time.Duration
	savepoint, running, first     time.Duration
	counted, outputGap, startToSP time.Duration
	size                          int64
}

func runRescale(b *bench, run, rate int) (*rescaleRun, error) {
	c, id, st, cleanup, err := startProbeJob(b, 2, fmt.Sprintf("rescale-%d", run), rate)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	oldAttempt := st.Attempt
	probe := startProbe(c.TaskManagers, 2*time.Millisecond)
	defer probe.Stop()
	time.Sleep(300 * time.Millisecond)

	r := &rescaleRun{running: -1, first: -1, counted: -1, outputGap: -1}
	start := time.Now()
	cmdDone := make(chan error, 1)
	var cmdEnd time.Time
	go func() {
		_, err := cli(context.Background(), c, "job", "rescale", id, "--parallelism", "4")
		cmdEnd = time.Now()
		cmdDone <- err
	}()
	var counted time.Time
	var newAttempt int
	err = waitFor(time.Minute, 20*time.Millisecond, "the rescaled job to process records", func() (bool, error) {
		st, err := jobStatus(c, id)
		if err != nil {
			return false, err
		}
		now := time.Now()
		switch st.State {
		case "FAILED", "CANCELED", "FINISHED":
			return false, fmt.Errorf("job %v while rescaling: %s", st.State, st.Failure)
		case "RUNNING":
			if st.Attempt > oldAttempt && st.Parallelism == 4 && operatorRecordsIn(st, "fraud-detector") > 0 {
				counted, newAttempt = now, st.Attempt
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, c.Logs())
	}
	if err := <-cmdDone; err != nil {
		return nil, fmt.Errorf("%w\n%s", err, c.Logs())
	}
	r.command = cmdEnd.Sub(start)
	time.Sleep(200 * time.Millisecond)
	probe.Stop()

	cps, err := listCheckpoints(c, id)
	if err != nil {
		return nil, err
	}
	var sp *view.CheckpointView
	for i, cp := range cps.Checkpoints {
		if cp.Savepoint && (sp == nil || cp.ID > sp.ID) {
			sp = &cps.Checkpoints[i]
		}
	}
	if sp == nil {
		return nil, fmt.Errorf("no savepoint listed after the rescale")
	}
	stop := time.UnixMilli(sp.TriggerTimeMs)
	r.startToSP = stop.Sub(start)
	r.savepoint = time.Duration(sp.DurationMs) * time.Millisecond
	r.size = sp.SizeBytes
	r.counted = counted.Sub(stop)
	if l, ok := firstJMLine(c, stop, "job state changed", "job_id", id, "to", "RUNNING"); ok {
		r.running = l.Time.Sub(stop)
	}
	all := []int{0, 1}
	if t, ok := firstNewRecord(c, probe, all, id, oldAttempt, newAttempt, stop); ok {
		r.first = t.Sub(stop)
		// The last alert of the old attempt: the latest growth, over both
		// TaskManagers, before the new attempt's tasks there started (its
		// output may reach the harness a little after its tasks ended).
		var last time.Time
		for k := range c.TaskManagers {
			var bound time.Time
			for _, l := range attemptLines(c.TaskManagers[k], "task running", id, newAttempt) {
				if bound.IsZero() || l.Time.Before(bound) {
					bound = l.Time
				}
			}
			if bound.IsZero() {
				bound = t
			}
			if lt, ok := probe.lastGrowthBefore(k, bound); ok && lt.After(last) {
				last = lt
			}
		}
		if !last.IsZero() {
			r.outputGap = t.Sub(last)
		}
	}
	if newAttempt != oldAttempt+1 {
		return nil, fmt.Errorf("attempt %d -> %d: the rescale restarted more than once\n%s", oldAttempt, newAttempt, c.Logs())
	}
	return r, nil
}

func (b *bench) rescaleSection(runs, rate int) error {
	if _, err := b.minio(); err != nil {
		return err
	}
	fmt.Printf("fraud-detection on 2 TaskManagers x 2 slots, rate %d/s per source subtask, checkpoints every 1s to MinIO;\n"+
		"`weir job rescale ID --parallelism 4` from 2. Times from the savepoint trigger (the stop) to:\n"+
		"  savepoint = savepoint complete; RUNNING = JobManager logs the new attempt RUNNING;\n"+
		"  first record = first alert printed at parallelism 4 (+-2 ms); counted = first status poll with records (heartbeat-delayed);\n"+
		"  output gap = last alert before the stop to first alert after; command = wall time of `weir job rescale`\n", rate)
	var firsts []time.Duration
	for i := 0; i < runs; i++ {
		r, err := runRescale(b, i, rate)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Printf("  run %d: savepoint %s (%s), RUNNING %s, first record %s, counted %s; output gap %s; command %s (savepoint triggered %s after it started)\n",
			i+1, ms(r.savepoint), bytesText(r.size), ms(r.running), ms(r.first), ms(r.counted), ms(r.outputGap), ms(r.command), ms(r.startToSP))
		firsts = append(firsts, r.first)
		b.add("rescale", fmt.Sprintf("run %d: stop -> first record at p=4", i+1), ms(r.first), "< 1 s")
		b.add("rescale", fmt.Sprintf("run %d: `weir job rescale` wall time", i+1), ms(r.command), "")
	}
	if f := statsOf(firsts); f.n > 1 {
		b.add("rescale", "stop -> first record: median / max", fmt.Sprintf("%s / %s", ms(f.median), ms(f.max)), "< 1 s")
	}
	return nil
}
