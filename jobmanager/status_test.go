package jobmanager

import (
	"testing"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// TestStatusWatermarksPerOperator: an operator's watermark is the lowest
// of its subtasks', and stays unset while any subtask has none.
func TestStatusWatermarksPerOperator(t *testing.T) {
	j := &Job{ID: "j1", Name: "opwm", Attempt: 1,
		Vertices: []VertexSpec{{Name: "ops", Parallelism: 2,
			Operators: []OperatorSpec{{UID: "before", Name: "before"}, {UID: "assign", Name: "assign"}}}},
		Tasks: [][]Task{{{Attempt: 1}, {Attempt: 1}}}}
	wm := func(v int64) *int64 { return &v }
	metrics := map[taskKey]*weirv1.TaskMetrics{
		{jobID: "j1", vertex: 0, subtask: 0, attempt: 1}: {Watermark: wm(900), Operators: []*weirv1.OperatorCounters{
			{RecordsIn: 1}, {RecordsIn: 2, Watermark: wm(900)}}},
		{jobID: "j1", vertex: 0, subtask: 1, attempt: 1}: {Watermark: wm(800), Operators: []*weirv1.OperatorCounters{
			{RecordsIn: 3, Watermark: wm(70)}, {RecordsIn: 4, Watermark: wm(800)}}},
	}
	v := buildJobStatus(j, nil, metrics).GetVertices()[0]
	if v.Watermark == nil || v.GetWatermark() != 800 {
		t.Fatalf("vertex watermark %v, want 800", v.Watermark)
	}
	ops := v.GetOperators()
	if ops[0].Watermark != nil {
		t.Errorf("operator before: watermark %d, want none (subtask 0 has none)", ops[0].GetWatermark())
	}
	if ops[1].Watermark == nil || ops[1].GetWatermark() != 800 {
		t.Errorf("operator assign: watermark %v, want 800", ops[1].Watermark)
	}
	if ops[0].RecordsIn != 4 || ops[1].RecordsIn != 6 {
		t.Errorf("records in %d, %d; want 4, 6", ops[0].RecordsIn, ops[1].RecordsIn)
	}
	delete(metrics, taskKey{jobID: "j1", vertex: 0, subtask: 1, attempt: 1})
	if op := buildJobStatus(j, nil, metrics).GetVertices()[0].GetOperators()[1]; op.Watermark != nil {
		t.Errorf("with subtask 1 unreported: watermark %d, want none", op.GetWatermark())
	}
}

// TestStatusNotes: the subtasks' notes show per subtask and, once each,
// for the job; a note of an old attempt does not.
func TestStatusNotes(t *testing.T) {
	j := &Job{ID: "j1", Name: "notes", Attempt: 2,
		Vertices: []VertexSpec{{Name: "a", Parallelism: 2}, {Name: "b", Parallelism: 1}},
		Tasks:    [][]Task{{{Attempt: 2}, {Attempt: 2}}, {{Attempt: 2}}}}
	down := "rules: etcd unreachable since 12:00:00"
	metrics := map[taskKey]*weirv1.TaskMetrics{
		{jobID: "j1", vertex: 0, subtask: 0, attempt: 2}: {Notes: []string{down}},
		{jobID: "j1", vertex: 0, subtask: 1, attempt: 2}: {Notes: []string{down, "other"}},
		{jobID: "j1", vertex: 1, subtask: 0, attempt: 1}: {Notes: []string{"stale"}},
	}
	st := buildJobStatus(j, nil, metrics)
	if got := st.GetNotes(); len(got) != 2 || got[0] != down || got[1] != "other" {
		t.Errorf("job notes %q", got)
	}
	if got := st.GetVertices()[0].GetSubtasks()[1].GetNotes(); len(got) != 2 {
		t.Errorf("subtask notes %q", got)
	}
	delete(metrics, taskKey{jobID: "j1", vertex: 0, subtask: 0, attempt: 2})
	delete(metrics, taskKey{jobID: "j1", vertex: 0, subtask: 1, attempt: 2})
	if got := buildJobStatus(j, nil, metrics).GetNotes(); len(got) != 0 {
		t.Errorf("notes after they cleared: %q", got)
	}
}
