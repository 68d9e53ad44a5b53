package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	view "github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
)

// The failover section kills (SIGKILL) a TaskManager that runs a detector
// subtask of fraud-detection (parallelism 2 on three TaskManagers with two
// slots each, rate-limited sources, checkpoints every second to MinIO,
// --heartbeat-timeout 1s) and times the recovery from the moment the signal
// is sent:
//
//   - detected: the JobManager's log line moving the job to RESTARTING;
//   - running: the JobManager's log line moving the new attempt to RUNNING
//     (every task deployed, restored and reported running); the status poll
//     (every 20 ms) that first saw it is also kept;
//   - first record: the first alert the new attempt printed (outputProbe),
//     i.e. a record went source -> keyBy -> detector -> sink after the
//     restore;
//   - first counted: the first status poll in which the new attempt's
//     detector reports records in (counts come with heartbeats, every
//     200 ms, so this trails the first record by up to that much).

// jobParams are the fraud job's parameters for the failover and rescale
// runs: small=50 makes about 3 % of records alert, for outputProbe.
func probeJobParams(rate int) map[string]string {
	return map[string]string{"source": "random", "accounts": "100000", "rate": strconv.Itoa(rate), "small": "50"}
}

type failoverRun struct {
	victim                  string
	restarts                int
	restoredFrom            int64
	lost, detected, running time.Duration
	polled                  time.Duration
	tasksRunning            time.Duration // last "task running" of the new attempt
	firstRecord, counted    time.Duration
	reason                  string
}

// tmIndex maps a TaskManager ID (tm-N, from cluster.AddTaskManager) to its
// index in Cluster.TaskManagers.
func tmIndex(c *cluster.Cluster, id string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(id, "tm-"))
	if err != nil || n < 1 || n > len(c.TaskManagers) {
		return 0, fmt.Errorf("unknown TaskManager %q", id)
	}
	return n - 1, nil
}

// waitRunningWithCheckpoints waits until the job runs with at least n
// completed checkpoints and records reaching the detector.
func waitRunningWithCheckpoints(c *cluster.Cluster, id string, n int64) (*view.JobStatusView, error) {
	var st *view.JobStatusView
	err := waitFor(time.Minute, 100*time.Millisecond, "the job to run with checkpoints", func() (bool, error) {
		var err error
		if st, err = jobStatus(c, id); err != nil {
			return false, err
		}
		if s := st.State; s != "RUNNING" && s != "CREATED" {
			return false, fmt.Errorf("job is %v: %s", s, st.Failure)
		}
		return st.State == "RUNNING" && st.Checkpointing.Completed >= n &&
			operatorRecordsIn(st, "fraud-detector") > 0, nil
	})
	return st, err
}

// attemptLines are the TaskManager log lines msg of one job attempt.
func attemptLines(p *cluster.Process, msg, jobID string, attempt int) []logLine {
	var out []logLine
	for _, l := range parseLog(p.Stderr(), msg) {
		if l.Attrs["job_id"] == jobID && l.Attrs["attempt"] == strconv.Itoa(attempt) {
			out = append(out, l)
		}
	}
	return out
}

// firstJMLine is the first JobManager log line msg after t whose attrs
// include every key=value of want.
func firstJMLine(c *cluster.Cluster, t time.Time, msg string, want ...string) (logLine, bool) {
	for _, l := range parseLog(c.JobManager.Stderr(), msg) {
		if l.Time.Before(t.Truncate(time.Millisecond)) {
			continue
		}
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			if l.Attrs[want[i]] != want[i+1] {
				ok = false
			}
		}
		if ok {
			return l, true
		}
	}
	return logLine{}, false
}

// firstNewRecord returns when a TaskManager first printed output from
// attempt newAttempt. The harness sees a TaskManager's stdout through a
// pipe, a little after it was written, so output of the old attempt can
// show up after that attempt's tasks logged their end; on each TaskManager
// only growth after the new attempt's sink task logged "task running"
// (before it processes anything) counts, and after the old attempt's tasks
// there ended, and after since.
func firstNewRecord(c *cluster.Cluster, probe *outputProbe, tms []int, job string, oldAttempt, newAttempt int, since time.Time) (time.Time, bool) {
	var first time.Time
	found := false
	for k, i := range tms {
		var started time.Time
		for _, l := range attemptLines(c.TaskManagers[i], "task running", job, newAttempt) {
			if strings.Contains(l.Attrs["task"], "send-alerts") && (started.IsZero() || l.Time.Before(started)) {
				started = l.Time
			}
		}
		if started.IsZero() {
			continue // no sink of the new attempt here
		}
		after := since
		if started.After(after) {
			after = started
		}
		for _, l := range attemptLines(c.TaskManagers[i], "task ended", job, oldAttempt) {
			// Log times are truncated to the millisecond.
			if e := l.Time.Add(time.Millisecond); e.After(after) {
				after = e
			}
		}
		if t, ok := probe.firstGrowthAfter(k, after); ok && (!found || t.Before(first)) {
			first, found = t, true
		}
	}
	return first, found
}

// tmPID finds the process ID of TaskManager id of c among this process's
// children (internal/cluster does not expose it), to stop it with SIGSTOP.
func tmPID(c *cluster.Cluster, id string) (int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so parse after ')'.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if slices.Contains(args, "taskmanager") && argAfter(args, "--jobmanager") == c.JobManager.Addr && argAfter(args, "--id") == id {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no child process is TaskManager %s", id)
}

func argAfter(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// startProbeJob starts a cluster of tms TaskManagers (2 slots each,
// 1 s heartbeat timeout, checkpoints under the bucket's prefix) running
// the alerting fraud job at parallelism 2 with checkpoints every second,
// and waits for two checkpoints. stop cancels the job and the cluster.
func startProbeJob(b *bench, tms int, prefix string, rate int) (*cluster.Cluster, string, *view.JobStatusView, func(), error) {
	c, err := cluster.StartCluster(b.weir, cluster.Options{TaskManagers: tms, Slots: 2, Env: b.s3.Env(),
		JobManagerArgs: []string{"--checkpoint-storage", fmt.Sprintf("s3://%s/%s", benchBucket, prefix),
			"--heartbeat-timeout", "1s", "--heartbeat-interval", "200ms"}, TLSArgs: b.tlsArgs})
	if err != nil {
		return nil, "", nil, nil, err
	}
	id, err := submitJob(c, "fraud-detection", 2, time.Second, probeJobParams(rate))
	if err != nil {
		c.Stop()
		return nil, "", nil, nil, err
	}
	stop := func() { cancelJob(c, id); c.Stop() }
	st, err := waitRunningWithCheckpoints(c, id, 2)
	if err != nil {
		err = fmt.Errorf("%w\n%s", err, c.Logs())
		stop()
		return nil, "", nil, nil, err
	}
	return c, id, st, stop, nil
}

// runFailover runs one failover; freeze stops the TaskManager with SIGSTOP
// instead of killing it, so that only the heartbeat timeout can tell.
func runFailover(b *bench, run, rate int, freeze bool) (*failoverRun, error) {
	c, id, st, stop, err := startProbeJob(b, 3, fmt.Sprintf("failover-%d", run), rate)
	if err != nil {
		return nil, err
	}
	defer stop()
	time.Sleep(500 * time.Millisecond) // a little past the last checkpoint
	var victimID string
	for _, v := range st.Vertices {
		if v.InputPartitioning != "" && len(v.Subtasks) > 0 { // the detector's vertex
			victimID = v.Subtasks[0].TaskManagerID
		}
	}
	vi, err := tmIndex(c, victimID)
	if err != nil {
		return nil, err
	}
	var survivors []int
	var survivorProcs []*cluster.Process
	for i, tm := range c.TaskManagers {
		if i != vi {
			survivors = append(survivors, i)
			survivorProcs = append(survivorProcs, tm)
		}
	}
	probe := startProbe(survivorProcs, 2*time.Millisecond)
	defer probe.Stop()
	oldAttempt := st.Attempt
	time.Sleep(100 * time.Millisecond)

	r := &failoverRun{victim: victimID, running: -1, polled: -1, firstRecord: -1, counted: -1, lost: -1, detected: -1,
		tasksRunning: -1}
	var kill time.Time
	if freeze {
		pid, err := tmPID(c, victimID)
		if err != nil {
			return nil, err
		}
		defer c.TaskManagers[vi].Kill() // SIGKILL ends a stopped process too
		kill = time.Now()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return nil, err
		}
	} else {
		kill = time.Now()
		c.TaskManagers[vi].Kill()
	}
	var newAttempt int
	err = waitFor(30*time.Second, 20*time.Millisecond, "the job to process records again", func() (bool, error) {
		st, err := jobStatus(c, id)
		if err != nil {
			return false, err
		}
		now := time.Now()
		switch st.State {
		case "FAILED", "CANCELED", "FINISHED":
			return false, fmt.Errorf("job %v after the kill: %s", st.State, st.Failure)
		case "RUNNING":
			if st.Attempt > oldAttempt {
				if r.polled < 0 {
					r.polled = now.Sub(kill)
				}
				if operatorRecordsIn(st, "fraud-detector") > 0 {
					r.counted = now.Sub(kill)
					newAttempt = st.Attempt
					r.restarts = st.Restarts
					r.restoredFrom = restoredID(st)
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, c.Logs())
	}
	time.Sleep(200 * time.Millisecond)
	probe.Stop()

	if l, ok := firstJMLine(c, kill, "job state changed", "job_id", id, "to", "RESTARTING"); ok {
		r.detected = l.Time.Sub(kill)
		r.reason = l.Attrs["reason"]
	}
	if l, ok := firstJMLine(c, kill, "TaskManager lost", "task_manager_id", victimID); ok {
		r.lost = l.Time.Sub(kill)
	}
	if l, ok := firstJMLine(c, kill, "job state changed", "job_id", id, "to", "RUNNING"); ok {
		r.running = l.Time.Sub(kill)
	}
	for _, i := range survivors {
		for _, l := range attemptLines(c.TaskManagers[i], "task running", id, newAttempt) {
			r.tasksRunning = max(r.tasksRunning, l.Time.Sub(kill))
		}
	}
	if t, ok := firstNewRecord(c, probe, survivors, id, oldAttempt, newAttempt, kill); ok {
		r.firstRecord = t.Sub(kill)
	}
	if newAttempt != oldAttempt+1 {
		r.reason += fmt.Sprintf(" (attempt %d -> %d: more than one restart)", oldAttempt, newAttempt)
	}
	return r, nil
}

func (b *bench) failoverSection(runs, freezeRuns, rate int) error {
	if _, err := b.minio(); err != nil {
		return err
	}
	fmt.Printf("fraud-detection, parallelism 2 on 3 TaskManagers x 2 slots, rate %d/s per source subtask, checkpoints every 1s to MinIO,\n"+
		"--heartbeat-timeout 1s --heartbeat-interval 200ms; SIGKILL of the TaskManager running detector subtask 0; times from the kill to:\n"+
		"  TM lost = JobManager logs the TaskManager lost; detected = JobManager logs RESTARTING; tasks running = last new-attempt \"task running\" log line;\n"+
		"  RUNNING = JobManager logs the new attempt RUNNING (status poll every 20 ms in brackets);\n"+
		"  first record = first alert printed by the new attempt (a record through source, keyBy, detector and sink; +-2 ms);\n"+
		"  counted = first status poll showing the new attempt's detector records (heartbeat-delayed)\n", rate)
	var firsts, runnings []time.Duration
	for i := 0; i < runs; i++ {
		r, err := runFailover(b, i, rate, false)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Printf("  run %d: killed %s: TM lost %s, detected %s, tasks running %s, RUNNING %s (%s), first record %s, counted %s; restored checkpoint %d; reason: %s\n",
			i+1, r.victim, ms(r.lost), ms(r.detected), ms(r.tasksRunning), ms(r.running), ms(r.polled), ms(r.firstRecord), ms(r.counted),
			r.restoredFrom, r.reason)
		firsts = append(firsts, r.firstRecord)
		runnings = append(runnings, r.running)
		b.add("failover", fmt.Sprintf("run %d: kill -> RUNNING / first record", i+1),
			fmt.Sprintf("%s / %s", ms(r.running), ms(r.firstRecord)), "first record < 2 s")
	}
	f, rn := statsOf(firsts), statsOf(runnings)
	b.add("failover", "kill -> RUNNING: median / max", fmt.Sprintf("%s / %s", ms(rn.median), ms(rn.max)), "")
	b.add("failover", "kill -> first record: median / max", fmt.Sprintf("%s / %s", ms(f.median), ms(f.max)), "< 2 s")
	if freezeRuns <= 0 {
		return nil
	}
	// SIGKILL closes the TaskManager's connections, so the JobManager's
	// heartbeat stream and the exchange see it at once; a frozen process
	// (SIGSTOP: a hung or partitioned machine) keeps them open and only the
	// heartbeat timeout finds it.
	fmt.Println("the same, but the TaskManager is frozen with SIGSTOP (connections stay open: only the 1s heartbeat timeout detects it):")
	for i := 0; i < freezeRuns; i++ {
		r, err := runFailover(b, runs+i, rate, true)
		if err != nil {
			return fmt.Errorf("freeze run %d: %w", i+1, err)
		}
		fmt.Printf("  run %d: froze %s: TM lost %s, detected %s, tasks running %s, RUNNING %s (%s), first record %s, counted %s; restored checkpoint %d; reason: %s\n",
			i+1, r.victim, ms(r.lost), ms(r.detected), ms(r.tasksRunning), ms(r.running), ms(r.polled), ms(r.firstRecord), ms(r.counted),
			r.restoredFrom, r.reason)
		b.add("failover", fmt.Sprintf("SIGSTOP run %d: freeze -> RUNNING / first record", i+1),
			fmt.Sprintf("%s / %s", ms(r.running), ms(r.firstRecord)), "first record < 2 s")
	}
	return nil
}
