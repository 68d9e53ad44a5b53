package main

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/internal/cluster"
)

// The checkpoint section measures checkpoints of the fraud detector's
// keyed state at three sizes. With the job's default amounts only accounts
// whose last transaction was a small one (about 1.2 %) hold state, and only
// for the one-minute timeout, so the state could never reach millions of
// keys. The job's own parameters fix that without changing its code:
// small=1000 and large=1000 make every transaction (all are under $1000)
// set the flag and a timer, and none alert; timeout=1h keeps the timers
// from firing. Every account the random source has drawn then holds a
// flag, a timer-state value and a registered timer, so the state holds as
// many keys as distinct accounts seen; the job runs until that is at least
// stateFillTarget of the accounts (or the fill time runs out).

const stateFillTarget = 0.99

// detectorUID is the fraud detector's operator UID (jobs/fraud).
const detectorUID = "fraud-detector"

type stateOptions struct {
	fillMax    time.Duration // longest fill phase per size
	measure    int           // checkpoints to measure after the fill
	measureMax time.Duration // longest measurement phase per size
}

type stateSample struct {
	id        int64
	trigger   time.Time
	duration  time.Duration
	sync      time.Duration
	alignment time.Duration
	size      int64
	keys      int64 // flag entries of the detector, from _metadata
}

type stateResult struct {
	accounts   int64
	fillTime   time.Duration
	fillEvents int64 // records the detector had processed when the fill ended
	full       bool  // keys reached stateFillTarget of accounts
	samples    []stateSample
	rate       float64 // detector records/s during the measurement
	failed     int64   // failed checkpoints over the run
}

func (r *stateResult) keysRange() (lo, hi int64) {
	for i, s := range r.samples {
		if i == 0 || s.keys < lo {
			lo = s.keys
		}
		hi = max(hi, s.keys)
	}
	return lo, hi
}

func (r *stateResult) durations() (dur, sync stats) {
	var d, s []time.Duration
	for _, x := range r.samples {
		d = append(d, x.duration)
		s = append(s, x.sync)
	}
	return statsOf(d), statsOf(s)
}

func (r *stateResult) meanSize() int64 {
	var n int64
	for _, s := range r.samples {
		n += s.size
	}
	if len(r.samples) == 0 {
		return 0
	}
	return n / int64(len(r.samples))
}

// runState runs fraud-detection at parallelism 1 on one TaskManager with
// checkpoints every 2 s to MinIO until accounts keys are in the state, then
// records the next checkpoints.
func runState(b *bench, accounts int64, o stateOptions) (*stateResult, error) {
	c, err := cluster.StartCluster(b.weir, cluster.Options{TaskManagers: 1, Slots: 1, Env: b.s3.Env(), DiscardStdout: true,
		JobManagerArgs: []string{"--checkpoint-storage", fmt.Sprintf("s3://%s/state-%d", benchBucket, accounts),
			"--heartbeat-interval", "200ms"}})
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	id, err := submitJob(c, "fraud-detection", 1, 2*time.Second, map[string]string{
		"source": "random", "accounts": fmt.Sprint(accounts), "rate": "0",
		"small": "1000", "large": "1000", "timeout": "1h"})
	if err != nil {
		return nil, err
	}
	defer cancelJob(c, id)

	r := &stateResult{accounts: accounts}
	start := time.Now()
	var fillEnd time.Time
	var inAtFill int64
	seen := map[int64]bool{}
	target := int64(float64(accounts) * stateFillTarget)
	var lastKeys int64
	for {
		time.Sleep(250 * time.Millisecond)
		st, err := jobStatus(c, id)
		if err != nil {
			return nil, err
		}
		if s := st.State; s != "RUNNING" && s != "CREATED" {
			return nil, fmt.Errorf("job is %v (%s) after %v; logs:\n%s", s, st.Failure, time.Since(start), c.Logs())
		}
		if st.Restarts > 0 {
			return nil, fmt.Errorf("job restarted (%s); logs:\n%s", st.Failure, c.Logs())
		}
		r.failed = st.Checkpointing.Failed
		cps, err := listCheckpoints(c, id)
		if err != nil {
			return nil, err
		}
		for _, cp := range cps.Checkpoints {
			if cp.Savepoint || seen[cp.ID] {
				continue
			}
			seen[cp.ID] = true
			m, err := readMetadata(b.s3.Options(), cp.Path)
			if err != nil {
				return nil, fmt.Errorf("checkpoint %d: %w", cp.ID, err)
			}
			keys, _ := operatorKeys(m, detectorUID)
			lastKeys = keys
			s := stateSample{id: cp.ID, trigger: time.UnixMilli(cp.TriggerTimeMs), duration: time.Duration(cp.DurationMs) * time.Millisecond,
				sync: msDuration(cp.MaxSyncMs), alignment: msDuration(cp.MaxAlignmentMs), size: cp.SizeBytes, keys: keys}
			if !fillEnd.IsZero() && !s.trigger.Before(fillEnd) {
				r.samples = append(r.samples, s)
			}
			if b.verbose {
				fmt.Printf("    [%d keys acc] checkpoint %d: %d keys, %s, duration %v, sync %v\n", accounts, cp.ID, keys,
					bytesText(cp.SizeBytes), s.duration, s.sync)
			}
		}
		now := time.Now()
		if fillEnd.IsZero() {
			if lastKeys >= target || now.Sub(start) >= o.fillMax {
				fillEnd, r.fillTime, r.full = now, now.Sub(start), lastKeys >= target
				inAtFill = operatorRecordsIn(st, "fraud-detector")
				r.fillEvents = inAtFill
			}
			continue
		}
		if len(r.samples) >= o.measure || now.Sub(fillEnd) >= o.measureMax {
			if secs := now.Sub(fillEnd).Seconds(); secs > 0 {
				r.rate = float64(operatorRecordsIn(st, "fraud-detector")-inAtFill) / secs
			}
			if len(r.samples) == 0 {
				return nil, fmt.Errorf("no checkpoint completed within %v after the state was filled", o.measureMax)
			}
			return r, nil
		}
	}
}

func (b *bench) checkpointSection(sizes []int64, o stateOptions) error {
	if _, err := b.minio(); err != nil {
		return err
	}
	fmt.Printf("fraud-detection, parallelism 1 on one TaskManager, rate unlimited, checkpoints every 2s to MinIO;\n"+
		"params small=1000 large=1000 timeout=1h so that every account drawn holds detector state (flag, timer-state, timer);\n"+
		"filled until >= %.0f%% of the accounts hold state or %v; then %d checkpoints (at most %v) are measured.\n",
		stateFillTarget*100, o.fillMax, o.measure, o.measureMax)
	fmt.Println("keys = the detector's flag entries in _metadata (one per account with state); duration = trigger to _metadata written;")
	fmt.Println("stall = MaxSyncNs, the longest synchronous snapshot of any task (it processes nothing meanwhile).")
	for _, n := range sizes {
		r, err := runState(b, n, o)
		if err != nil {
			return fmt.Errorf("%d accounts: %w", n, err)
		}
		lo, hi := r.keysRange()
		dur, sync := r.durations()
		fill := "full"
		if !r.full {
			fill = fmt.Sprintf("NOT full after %v", r.fillTime.Round(time.Second))
		}
		fmt.Printf("%d accounts: filled in %v (%d events, %s); %d checkpoints measured: keys %d..%d, size %s,\n"+
			"  duration median %v max %v; stall median %v max %v; %.2f M events/s meanwhile; %d failed checkpoints\n",
			n, r.fillTime.Round(100*time.Millisecond), r.fillEvents, fill, dur.n, lo, hi, bytesText(r.meanSize()),
			dur.median, dur.max, sync.median.Round(time.Microsecond), sync.max.Round(time.Microsecond), r.rate/1e6, r.failed)
		label := fmt.Sprintf("%s keys (accounts=%d)", keyCount(hi), n)
		if float64(hi-lo) > 0.01*float64(hi) {
			label = fmt.Sprintf("%s-%s keys (accounts=%d)", keyCount(lo), keyCount(hi), n)
		}
		b.add("checkpoint", label+": duration median / max", fmt.Sprintf("%s / %s (n=%d, %s)", ms(dur.median), ms(dur.max), dur.n, bytesText(r.meanSize())), "")
		b.add("checkpoint", label+": stall (MaxSync) median / max", fmt.Sprintf("%s / %s", msFrac(sync.median), msFrac(sync.max)), "")
		b.add("checkpoint", label+": detector rate meanwhile", fmt.Sprintf("%.2f M events/s", r.rate/1e6), "")
		if !r.full {
			km := r.medianKeys()
			f := float64(n) / float64(km)
			fmt.Printf("  NOT FULL: the state held %d..%d keys, not %d. EXTRAPOLATED linearly in keys from the median of %d keys (x%.2f):\n"+
				"  duration median ~%v, stall median ~%v at %d keys\n", lo, hi, n, km, f,
				time.Duration(float64(dur.median)*f).Round(100*time.Millisecond), time.Duration(float64(sync.median)*f).Round(time.Millisecond), n)
			b.add("checkpoint", label+": NOTE", fmt.Sprintf("state held only %d..%d keys (not %d) after %v of filling + measuring",
				lo, hi, n, r.fillTime.Round(time.Second)), "")
			x := func(d time.Duration) time.Duration { return time.Duration(float64(d) * f) }
			b.add("checkpoint", fmt.Sprintf("%s keys: EXTRAPOLATED (linear from %s keys)", keyCount(n), keyCount(km)),
				fmt.Sprintf("duration ~%s / ~%s, stall ~%s / ~%s (median / max)", ms(x(dur.median)), ms(x(dur.max)),
					msFrac(x(sync.median)), msFrac(x(sync.max))), "")
		}
	}
	return nil
}

// medianKeys is the median key count of the measured checkpoints.
func (r *stateResult) medianKeys() int64 {
	var ks []time.Duration // statsOf sorts durations; keys fit
	for _, s := range r.samples {
		ks = append(ks, time.Duration(s.keys))
	}
	return int64(statsOf(ks).median)
}

func keyCount(n int64) string {
	switch {
	case n >= 995_000:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1000:
		return fmt.Sprintf("%.0fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// msFrac formats a duration in milliseconds with two decimals.
func msFrac(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}
