package jobmanager

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// The JobManager's metrics, read at scrape time from its replicated store
// and registry. Every member reports its raft state; only the leader, which
// alone knows the TaskManagers, reports jobs, slots and checkpoints, so a
// sum over the group counts each once.
var (
	raftStateDesc = prometheus.NewDesc("weir_jobmanager_raft_state", "1 for the raft state this JobManager is in (leader, follower, candidate, shutdown), 0 for the others.", []string{"member", "state"}, nil)
	raftTermDesc  = prometheus.NewDesc("weir_jobmanager_raft_term", "The raft term this JobManager is in.", []string{"member"}, nil)
	leaderDesc    = prometheus.NewDesc("weir_jobmanager_leader", "1 while this JobManager leads the group.", []string{"member"}, nil)

	jobsDesc     = prometheus.NewDesc("weir_jobs", "Jobs by state (leader only).", []string{"state"}, nil)
	tmsDesc      = prometheus.NewDesc("weir_taskmanagers_registered", "TaskManagers registered with the leader.", nil, nil)
	slotsDesc    = prometheus.NewDesc("weir_slots", "Task slots offered by the registered TaskManagers.", nil, nil)
	freeSlotDesc = prometheus.NewDesc("weir_slots_free", "Offered task slots no task occupies.", nil, nil)

	jobLabels      = []string{"job_id", "job"}
	restartsDesc   = prometheus.NewDesc("weir_job_restarts_total", "Restarts of the job after failures.", jobLabels, nil)
	ckCompleteDesc = prometheus.NewDesc("weir_job_checkpoints_completed_total", "Checkpoints and savepoints of the job that completed.", jobLabels, nil)
	ckFailedDesc   = prometheus.NewDesc("weir_job_checkpoints_failed_total", "Checkpoints and savepoints of the job that failed or were declined.", jobLabels, nil)
	ckIDDesc       = prometheus.NewDesc("weir_job_last_checkpoint_id", "ID of the job's newest completed checkpoint or savepoint.", jobLabels, nil)
	ckDurDesc      = prometheus.NewDesc("weir_job_last_checkpoint_duration_seconds", "Duration, trigger to completion, of the newest completed checkpoint.", jobLabels, nil)
	ckSizeDesc     = prometheus.NewDesc("weir_job_last_checkpoint_size_bytes", "State size of the newest completed checkpoint.", jobLabels, nil)
	ckAlignDesc    = prometheus.NewDesc("weir_job_last_checkpoint_alignment_seconds", "Longest barrier alignment over the tasks in the newest completed checkpoint.", jobLabels, nil)
	ckSyncDesc     = prometheus.NewDesc("weir_job_last_checkpoint_sync_seconds", "Longest synchronous part (processing stall) over the tasks in the newest completed checkpoint.", jobLabels, nil)
	ckTimeDesc     = prometheus.NewDesc("weir_job_last_checkpoint_timestamp_seconds", "Trigger time of the newest completed checkpoint, as Unix time.", jobLabels, nil)
)

// raftStates are the states raft reports, lower-cased.
var raftStates = []string{"follower", "candidate", "leader", "shutdown"}

// Collector returns a Prometheus collector of the JobManager's metrics.
func (jm *JobManager) Collector() prometheus.Collector { return (*jmCollector)(jm) }

type jmCollector JobManager

func (c *jmCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{raftStateDesc, raftTermDesc, leaderDesc, jobsDesc, tmsDesc, slotsDesc, freeSlotDesc,
		restartsDesc, ckCompleteDesc, ckFailedDesc, ckIDDesc, ckDurDesc, ckSizeDesc, ckAlignDesc, ckSyncDesc, ckTimeDesc} {
		ch <- d
	}
}

func (c *jmCollector) Collect(ch chan<- prometheus.Metric) {
	jm := (*JobManager)(c)
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	counter := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lv...)
	}
	leading := jm.leading() != nil
	if n := jm.node; n != nil && n.r != nil {
		state := strings.ToLower(n.r.State().String())
		for _, s := range raftStates {
			gauge(raftStateDesc, b2f(s == state), jm.id, s)
		}
		gauge(raftTermDesc, float64(n.r.CurrentTerm()), jm.id)
	}
	gauge(leaderDesc, b2f(leading), jm.id)
	if !leading {
		return
	}
	all := jm.store.Jobs()
	byState := map[weirv1.JobState]int{}
	for k := range all {
		byState[all[k].State]++
	}
	for v, name := range weirv1.JobState_name {
		if v == 0 {
			continue
		}
		gauge(jobsDesc, float64(byState[weirv1.JobState(v)]), strings.ToLower(strings.TrimPrefix(name, "JOB_STATE_")))
	}
	jm.mu.Lock()
	offered := jm.tms.offeredSlots()
	tms, slots := len(jm.tms.tms), 0
	for _, tm := range jm.tms.tms {
		slots += tm.slots
	}
	jm.mu.Unlock()
	gauge(tmsDesc, float64(tms))
	gauge(slotsDesc, float64(slots))
	gauge(freeSlotDesc, float64(countSlots(FreeSlots(offered, all))))
	for k := range all {
		j := &all[k]
		lv := []string{j.ID, j.Name}
		counter(restartsDesc, float64(j.Restarts), lv...)
		counter(ckCompleteDesc, float64(j.CompletedCheckpoints), lv...)
		counter(ckFailedDesc, float64(j.FailedCheckpoints), lv...)
		if cp := j.LatestCheckpoint(); cp != nil {
			gauge(ckIDDesc, float64(cp.ID), lv...)
			gauge(ckDurDesc, float64(cp.DurationMs)/1e3, lv...)
			gauge(ckSizeDesc, float64(cp.SizeBytes), lv...)
			gauge(ckAlignDesc, float64(cp.MaxAlignmentNs)/1e9, lv...)
			gauge(ckSyncDesc, float64(cp.MaxSyncNs)/1e9, lv...)
			gauge(ckTimeDesc, float64(cp.TriggerMs)/1e3, lv...)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
