package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"

	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/internal/tlsconf"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// The ha section runs the alerting fraud job (parallelism 2 on three
// TaskManagers, checkpoints every 500 ms to MinIO) under a raft group of
// three JobManagers, SIGKILLs the leader and times, from the kill:
//
//   - new leader: the first GetClusterStatus poll (every 5 ms) in which a
//     surviving member says it leads;
//   - first checkpoint: the new leader's log line completing a checkpoint;
//   - gap: the longest time between two growths of the alert output of any
//     TaskManager from 1 s before the kill to 5 s after it, beside the
//     longest gap in the 4 s before (the normal jitter);
//   - restarts and attempt after the failover (both must stay 0).
//
// It then measures the cost of raft on the control path: SubmitJob latency
// and checkpoint duration with one JobManager against three.

type haRun struct {
	newLeader, firstCheckpoint time.Duration
	gap, normalGap             time.Duration
	restarts, attempt          int
}

func (b *bench) memberStatusAt(addr string) (*weirv1.ClusterStatus, error) {
	conn, err := grpc.NewClient(addr, tlsconf.DialOption(b.clientTLS))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	return weirv1.NewJobManagerClient(conn).GetClusterStatus(ctx, &weirv1.GetClusterStatusRequest{})
}

// leaderIndex returns the member that leads, or -1; skip is not asked.
func (b *bench) leaderIndex(c *cluster.Cluster, skip int) int {
	for i, jm := range c.JobManagers {
		if i == skip {
			continue
		}
		if st, err := b.memberStatusAt(jm.Addr); err == nil && st.GetRaftState() == "leader" {
			return i
		}
	}
	return -1
}

func startHACluster(b *bench, jms int, prefix string) (*cluster.Cluster, error) {
	dir, err := os.MkdirTemp("", "weirbench-raft-")
	if err != nil {
		return nil, err
	}
	return cluster.StartCluster(b.weir, cluster.Options{JobManagers: jms, RaftDir: dir, TaskManagers: 3, Slots: 2,
		Env: b.s3.Env(), JobManagerArgs: []string{"--checkpoint-storage", fmt.Sprintf("s3://%s/%s", benchBucket, prefix),
			"--heartbeat-timeout", "3s", "--heartbeat-interval", "200ms", "--log-level", "debug"}, TLSArgs: b.tlsArgs})
}

// maxGap is the longest time between two growths of the output of any
// TaskManager that printed in [from, to) (one that runs no sink prints
// nothing and says nothing about gaps).
func (p *outputProbe) maxGap(from, to time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var longest time.Duration
	for _, ss := range p.samples {
		last, grew := from, false
		for k, s := range ss {
			if s.t.Before(from) || k == 0 {
				continue // the first sample is the base, not a growth
			}
			if !s.t.Before(to) {
				break
			}
			longest = max(longest, s.t.Sub(last))
			last, grew = s.t, true
		}
		if grew {
			longest = max(longest, to.Sub(last))
		}
	}
	return longest
}

func runHAFailover(b *bench, run, rate int) (*haRun, error) {
	c, err := startHACluster(b, 3, fmt.Sprintf("ha-%d", run))
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	id, err := submitJob(c, "fraud-detection", 2, 500*time.Millisecond, probeJobParams(rate))
	if err != nil {
		return nil, err
	}
	defer cancelJob(c, id)
	if _, err := waitRunningWithCheckpoints(c, id, 2); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, c.Logs())
	}
	probe := startProbe(c.TaskManagers, 2*time.Millisecond)
	defer probe.Stop()
	time.Sleep(6 * time.Second)
	l := b.leaderIndex(c, -1)
	if l < 0 {
		return nil, fmt.Errorf("no leader before the kill")
	}
	kill := time.Now()
	c.JobManagers[l].Kill()
	r := &haRun{newLeader: -1, firstCheckpoint: -1}
	nl := -1
	err = waitFor(30*time.Second, 5*time.Millisecond, "a new leader", func() (bool, error) {
		if nl = b.leaderIndex(c, l); nl >= 0 {
			r.newLeader = time.Since(kill)
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	err = waitFor(30*time.Second, 20*time.Millisecond, "a checkpoint by the new leader", func() (bool, error) {
		for _, line := range parseLog(c.JobManagers[nl].Stderr(), "checkpoint complete") {
			if line.Time.After(kill) {
				r.firstCheckpoint = line.Time.Sub(kill)
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, c.Logs())
	}
	time.Sleep(time.Until(kill.Add(5 * time.Second)))
	probe.Stop()
	r.gap = probe.maxGap(kill.Add(-time.Second), kill.Add(5*time.Second))
	r.normalGap = probe.maxGap(kill.Add(-5*time.Second), kill.Add(-time.Second))
	st, err := jobStatus(c, id)
	if err != nil {
		return nil, err
	}
	r.restarts, r.attempt = st.Restarts, st.Attempt
	return r, nil
}

// controlPath measures SubmitJob round trips and checkpoint durations on
// a group of jms JobManagers.
func controlPath(b *bench, jms, submits int) (submit, checkpoint stats, err error) {
	c, err := startHACluster(b, jms, fmt.Sprintf("control-%d", jms))
	if err != nil {
		return stats{}, stats{}, err
	}
	defer c.Stop()
	l := b.leaderIndex(c, -1)
	for l < 0 {
		time.Sleep(10 * time.Millisecond)
		l = b.leaderIndex(c, -1)
	}
	conn, err := grpc.NewClient(c.JobManagers[l].Addr, tlsconf.DialOption(b.clientTLS))
	if err != nil {
		return stats{}, stats{}, err
	}
	defer conn.Close()
	jm := weirv1.NewJobManagerClient(conn)
	var lat []time.Duration
	for range submits {
		// A bounded job that needs 2 slots: submissions queue for slots
		// rather than run, which is what the submit path is.
		req := &weirv1.SubmitJobRequest{JobName: "fraud-detection", Parallelism: 2,
			Params: map[string]string{"count": "1", "rate": "0"}, Checkpointing: &weirv1.CheckpointConfig{}}
		start := time.Now()
		resp, err := jm.SubmitJob(context.Background(), req)
		if err != nil {
			return stats{}, stats{}, err
		}
		lat = append(lat, time.Since(start))
		_, _ = jm.CancelJob(context.Background(), &weirv1.CancelJobRequest{JobId: resp.GetJobId()})
	}
	id, err := submitJob(c, "fraud-detection", 2, 200*time.Millisecond, probeJobParams(2000))
	if err != nil {
		return stats{}, stats{}, err
	}
	defer cancelJob(c, id)
	if _, err := waitRunningWithCheckpoints(c, id, 12); err != nil {
		return stats{}, stats{}, err
	}
	cps, err := listCheckpoints(c, id)
	if err != nil {
		return stats{}, stats{}, err
	}
	var durs []time.Duration
	for _, cp := range cps.Checkpoints {
		durs = append(durs, time.Duration(cp.DurationMs)*time.Millisecond)
	}
	return statsOf(lat), statsOf(durs), nil
}

func (b *bench) haSection(runs, rate int) error {
	if _, err := b.minio(); err != nil {
		return err
	}
	fmt.Printf("fraud-detection, parallelism 2 on 3 TaskManagers, rate %d/s per source subtask, checkpoints every 500 ms to MinIO,\n"+
		"3 JobManagers (raft, 500/500/250 ms); SIGKILL of the leader; times from the kill to a new leader and to its first\n"+
		"completed checkpoint; the longest gap in the alert output around the kill against the 4 s before\n", rate)
	var leaders, firsts []time.Duration
	for i := range runs {
		r, err := runHAFailover(b, i, rate)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Printf("  run %d: new leader %s, first checkpoint %s, output gap %s (before: %s), restarts %d, attempt %d\n",
			i+1, ms(r.newLeader), ms(r.firstCheckpoint), ms(r.gap), ms(r.normalGap), r.restarts, r.attempt)
		leaders = append(leaders, r.newLeader)
		firsts = append(firsts, r.firstCheckpoint)
		b.add("ha", fmt.Sprintf("run %d: new leader / first checkpoint", i+1), fmt.Sprintf("%s / %s", ms(r.newLeader), ms(r.firstCheckpoint)), "leader < 2 s")
		b.add("ha", fmt.Sprintf("run %d: output gap (normal) / task restarts", i+1), fmt.Sprintf("%s (%s) / %d", ms(r.gap), ms(r.normalGap), r.restarts), "0 restarts")
	}
	s := statsOf(leaders)
	b.add("ha", "kill -> new leader: median / max", fmt.Sprintf("%s / %s", ms(s.median), ms(s.max)), "< 2 s")
	s = statsOf(firsts)
	b.add("ha", "kill -> first checkpoint: median / max", fmt.Sprintf("%s / %s", ms(s.median), ms(s.max)), "")

	for _, n := range []int{1, 3} {
		sub, cp, err := controlPath(b, n, 30)
		if err != nil {
			return fmt.Errorf("control path with %d JobManager(s): %w", n, err)
		}
		fmt.Printf("  %d JobManager(s): SubmitJob median %s p-max %s; checkpoint duration median %s max %s\n",
			n, ms(sub.median), ms(sub.max), ms(cp.median), ms(cp.max))
		b.add("ha", fmt.Sprintf("%d JobManager(s): submit / checkpoint (median)", n), fmt.Sprintf("%s / %s", ms(sub.median), ms(cp.median)), "")
	}
	return nil
}
