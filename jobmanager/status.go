package jobmanager

import (
	"slices"
	"time"

	"github.com/weirstream/weir/jobs"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime/engine"
)

// jobSummary is the JobSummary of a job; wait is its slotWait.
func jobSummary(j *Job, wait *weirv1.SlotWait) *weirv1.JobSummary {
	return &weirv1.JobSummary{
		JobId:        j.ID,
		JobName:      j.Name,
		State:        j.State,
		SubmitTimeMs: j.SubmitTime,
		StartTimeMs:  j.StartTime,
		EndTimeMs:    j.EndTime,
		Failure:      j.Failure,
		Parallelism:  int32(j.Parallelism),
		Restarts:     int32(j.Restarts),
		SlotWait:     wait,
		Labels:       j.Labels,
	}
}

// slotWait describes a job waiting for slots, with free slots free now; nil
// for a job that does not wait.
func slotWait(j *Job, free int, timeout time.Duration) *weirv1.SlotWait {
	if !j.Pending() {
		return nil
	}
	w := &weirv1.SlotWait{SlotsNeeded: int32(j.SlotsNeeded()), SlotsFree: int32(free), SinceMs: j.WaitingSince}
	if j.SlotRequestExpires() {
		w.DeadlineMs = j.WaitingSince + timeout.Milliseconds()
	}
	return w
}

// buildJobStatus assembles a job's status from its record, its slotWait
// and the latest metrics of its current task attempts: operator counts
// summed over subtasks and the latency histograms of all subtasks merged.
func buildJobStatus(j *Job, wait *weirv1.SlotWait, metrics map[taskKey]*weirv1.TaskMetrics) *weirv1.JobStatus {
	st := &weirv1.JobStatus{
		Summary:        jobSummary(j, wait),
		MaxParallelism: int32(j.MaxParallelism),
		Params:         jobs.Redact(j.Name, j.Params),

		Checkpointing:        checkpointConfigProto(j.Checkpointing),
		Restored:             checkpointInfo(j.Restore),
		LatestCheckpoint:     checkpointInfo(j.LatestCheckpoint()),
		CompletedCheckpoints: j.CompletedCheckpoints,
		FailedCheckpoints:    j.FailedCheckpoints,
		Attempt:              int32(j.Attempt),
		Rescale:              rescaleStatus(j.Rescale),
		StateBackend:         j.StateBackend,
		TimerService:         j.TimerService,
	}
	var latency []int64
	for v, spec := range j.Vertices {
		vs := &weirv1.VertexStatus{
			Id:                int32(v),
			Name:              spec.Name,
			Parallelism:       int32(spec.Parallelism),
			InputPartitioning: spec.InputPartitioning,
		}
		for _, op := range spec.Operators {
			vs.Operators = append(vs.Operators, &weirv1.OperatorStatus{Uid: op.UID, Name: op.Name})
		}
		var lowest *int64
		watermarks := true
		// opLowest[k] is operator k's lowest watermark over the subtasks;
		// opMissing[k] says a subtask has none yet.
		opLowest := make([]int64, len(vs.Operators))
		opMissing := make([]bool, len(vs.Operators))
		for i, t := range j.Tasks[v] {
			vs.Subtasks = append(vs.Subtasks, &weirv1.SubtaskStatus{
				Index:              int32(i),
				State:              t.State,
				TaskManagerId:      t.TaskManagerID,
				TaskManagerAddress: t.Address,
				Slot:               int32(t.Slot),
				Failure:            t.Failure,
				Attempt:            int32(t.Attempt),
			})
			m := metrics[taskKey{jobID: j.ID, vertex: v, subtask: i, attempt: t.Attempt}]
			if m == nil {
				watermarks = false
				for k := range opMissing {
					opMissing[k] = true
				}
				continue
			}
			sub := vs.Subtasks[i]
			sub.BusyNs, sub.IdleNs, sub.BackpressuredNs = m.GetBusyNs(), m.GetIdleNs(), m.GetBackpressuredNs()
			sub.KeyGroupFirst, sub.KeyGroupRecords = m.GetKeyGroupFirst(), m.GetKeyGroupRecords()
			sub.Notes = m.GetNotes()
			for _, n := range sub.Notes {
				if !slices.Contains(st.Notes, n) {
					st.Notes = append(st.Notes, n)
				}
			}
			if ops := m.GetOperators(); len(ops) > 0 {
				sub.RecordsIn, sub.RecordsOut = ops[0].GetRecordsIn(), ops[len(ops)-1].GetRecordsOut()
			}
			if m.Watermark != nil {
				wm := m.GetWatermark()
				sub.Watermark = &wm
				if lowest == nil || wm < *lowest {
					lowest = &wm
				}
			} else {
				watermarks = false
			}
			for k, c := range m.GetOperators() {
				if k < len(vs.Operators) {
					vs.Operators[k].RecordsIn += c.GetRecordsIn()
					vs.Operators[k].RecordsOut += c.GetRecordsOut()
					switch {
					case c.Watermark == nil:
						opMissing[k] = true
					case i == 0 || c.GetWatermark() < opLowest[k]:
						opLowest[k] = c.GetWatermark() // subtask 0's is the first
					}
				}
			}
			for k := len(m.GetOperators()); k < len(opMissing); k++ {
				opMissing[k] = true
			}
			latency = engine.MergeHistogram(latency, m.GetLatencyBuckets())
		}
		if watermarks {
			vs.Watermark = lowest
		}
		for k, op := range vs.Operators {
			if !opMissing[k] && len(j.Tasks[v]) > 0 {
				wm := opLowest[k]
				op.Watermark = &wm
			}
		}
		st.Vertices = append(st.Vertices, vs)
	}
	st.Latency = latencySummary(latency)
	return st
}

func rescaleStatus(r *RescalePlan) *weirv1.RescaleStatus {
	if r == nil {
		return nil
	}
	return &weirv1.RescaleStatus{FromParallelism: int32(r.PreviousParallelism), ToParallelism: int32(r.Parallelism),
		Phase: r.Phase, SavepointPath: r.Savepoint, Reason: r.Reason, EndTimeMs: r.EndMs}
}

// latencySummary reads p50, p99, max and count off merged bucket counts;
// values are bucket upper bounds.
func latencySummary(counts []int64) *weirv1.LatencySummary {
	p50, total := engine.HistogramQuantile(counts, 0.5)
	if total == 0 {
		return &weirv1.LatencySummary{}
	}
	p99, _ := engine.HistogramQuantile(counts, 0.99)
	last := len(counts) - 1
	for last > 0 && counts[last] == 0 {
		last--
	}
	return &weirv1.LatencySummary{Count: total, P50Ns: p50, P99Ns: p99, MaxNs: engine.HistogramBucketUpper(last)}
}
