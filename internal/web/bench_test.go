package web

import (
	"encoding/json"
	"testing"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// BenchmarkJobView128Subtasks times what the dashboard adds to a job
// status read for a job of two vertices at parallelism 128 (256 subtasks,
// 128 key groups counted): the view and its JSON, once per page and second.
func BenchmarkJobView128Subtasks(b *testing.B) {
	const p, maxP = 128, 128
	st := &weirv1.JobStatus{Summary: &weirv1.JobSummary{JobId: "0123456789abcdef0123456789abcdef", JobName: "fraud-detection",
		State: weirv1.JobState_JOB_STATE_RUNNING, Parallelism: p}, MaxParallelism: maxP}
	for v := range 2 {
		vs := &weirv1.VertexStatus{Id: int32(v), Name: "vertex", Parallelism: p,
			Operators: []*weirv1.OperatorStatus{{Uid: "op", Name: "op", RecordsIn: 1e9, RecordsOut: 1e9}}}
		for i := range p {
			sub := &weirv1.SubtaskStatus{Index: int32(i), State: weirv1.TaskState_TASK_STATE_RUNNING, TaskManagerId: "tm-1",
				TaskManagerAddress: "10.0.0.1:6124", Slot: int32(i % 4), BusyNs: 1e12, IdleNs: 1e12, RecordsIn: 1e7, RecordsOut: 1e7}
			if v == 1 {
				sub.KeyGroupFirst, sub.KeyGroupRecords = int32(i), []int64{123456789}
			}
			vs.Subtasks = append(vs.Subtasks, sub)
		}
		st.Vertices = append(st.Vertices, vs)
	}
	var size int
	for b.Loop() {
		data, err := json.Marshal(jobView(st))
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	}
	b.ReportMetric(float64(size), "bytes/read")
}
