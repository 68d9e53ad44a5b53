package web

import (
	"fmt"
	"slices"
	"strings"

	"github.com/weirstream/weir/jobmanager"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
)

// The API's JSON: times in Unix milliseconds, durations in milliseconds or
// nanoseconds as their names say, states as words (RUNNING).

// ClusterView is GET /api/cluster.
type ClusterView struct {
	// ServedBy is the member serving the dashboard; the figures come from
	// the leader, which may be another.
	ServedBy      string            `json:"servedBy"`
	MemberID      string            `json:"memberId"`
	RaftState     string            `json:"raftState"`
	Term          uint64            `json:"term"`
	LeaderID      string            `json:"leaderId"`
	LeaderAddress string            `json:"leaderAddress"`
	ClusterID     string            `json:"clusterId"`
	Members       []MemberView      `json:"members"`
	TaskManagers  []TaskManagerView `json:"taskManagers"`
}

// MemberView is one JobManager of the raft group.
type MemberView struct {
	ID            string `json:"id"`
	RaftAddress   string `json:"raftAddress"`
	ClientAddress string `json:"clientAddress"`
	Suffrage      string `json:"suffrage"`
}

// TaskManagerView is one registered TaskManager.
type TaskManagerView struct {
	ID              string `json:"id"`
	Address         string `json:"address"`
	Slots           int    `json:"slots"`
	FreeSlots       int    `json:"freeSlots"`
	LastHeartbeatMs int64  `json:"lastHeartbeatMs"`
}

func clusterView(st *weirv1.ClusterStatus, member string) ClusterView {
	v := ClusterView{ServedBy: member, MemberID: st.GetMemberId(), RaftState: st.GetRaftState(), Term: st.GetTerm(),
		LeaderID: st.GetLeaderId(), LeaderAddress: st.GetLeaderAddress(), ClusterID: st.GetClusterId(),
		Members: []MemberView{}, TaskManagers: []TaskManagerView{}}
	for _, m := range st.GetMembers() {
		v.Members = append(v.Members, MemberView{ID: m.GetId(), RaftAddress: m.GetRaftAddress(), ClientAddress: m.GetClientAddress(), Suffrage: m.GetSuffrage()})
	}
	for _, tm := range st.GetTaskManagers() {
		v.TaskManagers = append(v.TaskManagers, TaskManagerView{ID: tm.GetId(), Address: tm.GetAddress(), Slots: int(tm.GetSlots()),
			FreeSlots: int(tm.GetFreeSlots()), LastHeartbeatMs: tm.GetLastHeartbeatMs()})
	}
	slices.SortFunc(v.TaskManagers, func(a, b TaskManagerView) int { return strings.Compare(a.ID, b.ID) })
	return v
}

// JobsView is GET /api/jobs.
type JobsView struct {
	Jobs  []JobSummaryView `json:"jobs"`
	NowMs int64            `json:"nowMs"`
}

// JobSummaryView is one job of the list.
type JobSummaryView struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
	// StateText is the state as the CLI shows it (a job waiting for slots
	// says so).
	StateText    string            `json:"stateText"`
	SubmitTimeMs int64             `json:"submitTimeMs"`
	StartTimeMs  int64             `json:"startTimeMs"`
	EndTimeMs    int64             `json:"endTimeMs"`
	Parallelism  int               `json:"parallelism"`
	Restarts     int               `json:"restarts"`
	Failure      string            `json:"failure,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
}

func stateName(s weirv1.JobState) string { return jobmanager.JobStateName(s) }

func summaryView(s *weirv1.JobSummary) JobSummaryView {
	text := stateName(s.GetState())
	if w := s.GetSlotWait(); w != nil {
		text = fmt.Sprintf("WAITING FOR SLOTS (needs %d, %d free)", w.GetSlotsNeeded(), w.GetSlotsFree())
	}
	return JobSummaryView{ID: s.GetJobId(), Name: s.GetJobName(), State: stateName(s.GetState()), StateText: text,
		SubmitTimeMs: s.GetSubmitTimeMs(), StartTimeMs: s.GetStartTimeMs(), EndTimeMs: s.GetEndTimeMs(),
		Parallelism: int(s.GetParallelism()), Restarts: int(s.GetRestarts()), Failure: s.GetFailure(), Labels: s.GetLabels()}
}

// JobView is GET /api/jobs/{id}.
type JobView struct {
	JobSummaryView
	NowMs          int64             `json:"nowMs"`
	MaxParallelism int               `json:"maxParallelism"`
	Params         map[string]string `json:"params"`
	Attempt        int               `json:"attempt"`
	Vertices       []VertexView      `json:"vertices"`
	// Edges join the vertices; GraphError says why they are missing, if
	// they are.
	Edges                []EdgeView   `json:"edges"`
	GraphError           string       `json:"graphError,omitempty"`
	Latency              *LatencyView `json:"latency,omitempty"`
	CheckpointIntervalMs int64        `json:"checkpointIntervalMs"`
	// CheckpointsIncremental: checkpoints store what changed since the
	// latest one (--incremental).
	CheckpointsIncremental bool            `json:"checkpointsIncremental"`
	CompletedCheckpoints   int64           `json:"completedCheckpoints"`
	FailedCheckpoints      int64           `json:"failedCheckpoints"`
	LatestCheckpoint       *CheckpointView `json:"latestCheckpoint,omitempty"`
	Restored               *CheckpointView `json:"restored,omitempty"`
	Rescale                *RescaleView    `json:"rescale,omitempty"`
}

// VertexView is one vertex: a chain of operators and its subtasks.
type VertexView struct {
	ID                int            `json:"id"`
	Name              string         `json:"name"`
	Parallelism       int            `json:"parallelism"`
	InputPartitioning string         `json:"inputPartitioning,omitempty"`
	WatermarkMs       *int64         `json:"watermarkMs,omitempty"`
	Operators         []OperatorView `json:"operators"`
	Subtasks          []SubtaskView  `json:"subtasks"`
}

// OperatorView is one chained operator, counts summed over subtasks.
type OperatorView struct {
	UID        string `json:"uid"`
	Name       string `json:"name"`
	RecordsIn  int64  `json:"recordsIn"`
	RecordsOut int64  `json:"recordsOut"`
}

// SubtaskView is one subtask: where it runs, the key groups a keyed
// operator in it owns, and its cumulative counters (rates are the page's
// differences between two reads).
type SubtaskView struct {
	Index           int    `json:"index"`
	State           string `json:"state"`
	TaskManagerID   string `json:"taskManagerId"`
	Address         string `json:"address"`
	Slot            int    `json:"slot"`
	Attempt         int    `json:"attempt"`
	Failure         string `json:"failure,omitempty"`
	WatermarkMs     *int64 `json:"watermarkMs,omitempty"`
	KeyGroupFirst   int    `json:"keyGroupFirst"`
	KeyGroupLast    int    `json:"keyGroupLast"`
	BusyNs          int64  `json:"busyNs"`
	IdleNs          int64  `json:"idleNs"`
	BackpressuredNs int64  `json:"backpressuredNs"`
	RecordsIn       int64  `json:"recordsIn"`
	RecordsOut      int64  `json:"recordsOut"`
	// KeyGroupRecords are the records its keyed operator received per key
	// group (cumulative), from key group KeyGroupRecordsFirst on; absent
	// without a keyed operator.
	KeyGroupRecordsFirst int     `json:"keyGroupRecordsFirst"`
	KeyGroupRecords      []int64 `json:"keyGroupRecords,omitempty"`
}

// EdgeView is one edge of the job graph.
type EdgeView struct {
	Source       int    `json:"source"`
	Target       int    `json:"target"`
	Partitioning string `json:"partitioning"`
}

// LatencyView is the source-to-sink latency of the latency markers.
type LatencyView struct {
	Count int64 `json:"count"`
	P50Ns int64 `json:"p50Ns"`
	P99Ns int64 `json:"p99Ns"`
	MaxNs int64 `json:"maxNs"`
}

// CheckpointView is one completed checkpoint or savepoint.
type CheckpointView struct {
	ID             int64  `json:"id"`
	Path           string `json:"path"`
	Savepoint      bool   `json:"savepoint"`
	TriggerTimeMs  int64  `json:"triggerTimeMs"`
	DurationMs     int64  `json:"durationMs"`
	SizeBytes      int64  `json:"sizeBytes"`
	MaxSyncNs      int64  `json:"maxSyncNs"`
	MaxAlignmentNs int64  `json:"maxAlignmentNs"`
}

// RescaleView is the job's latest rescale.
type RescaleView struct {
	From          int    `json:"from"`
	To            int    `json:"to"`
	Phase         string `json:"phase"`
	SavepointPath string `json:"savepointPath,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

func checkpointView(c *weirv1.CheckpointInfo) *CheckpointView {
	if c == nil {
		return nil
	}
	return &CheckpointView{ID: c.GetId(), Path: c.GetPath(), Savepoint: c.GetSavepoint(), TriggerTimeMs: c.GetTriggerTimeMs(),
		DurationMs: c.GetDurationMs(), SizeBytes: c.GetSizeBytes(), MaxSyncNs: c.GetMaxSyncNs(), MaxAlignmentNs: c.GetMaxAlignmentNs()}
}

func jobView(st *weirv1.JobStatus) JobView {
	maxP := int(st.GetMaxParallelism())
	v := JobView{JobSummaryView: summaryView(st.GetSummary()), MaxParallelism: maxP, Params: st.GetParams(),
		Attempt: int(st.GetAttempt()), Vertices: []VertexView{}, Edges: []EdgeView{},
		CheckpointIntervalMs: st.GetCheckpointing().GetIntervalMs(), CheckpointsIncremental: st.GetCheckpointing().GetIncremental(),
		CompletedCheckpoints: st.GetCompletedCheckpoints(),
		FailedCheckpoints:    st.GetFailedCheckpoints(), LatestCheckpoint: checkpointView(st.GetLatestCheckpoint()),
		Restored: checkpointView(st.GetRestored())}
	if v.Params == nil {
		v.Params = map[string]string{}
	}
	if l := st.GetLatency(); l != nil && l.GetCount() > 0 {
		v.Latency = &LatencyView{Count: l.GetCount(), P50Ns: l.GetP50Ns(), P99Ns: l.GetP99Ns(), MaxNs: l.GetMaxNs()}
	}
	if r := st.GetRescale(); r != nil {
		v.Rescale = &RescaleView{From: int(r.GetFromParallelism()), To: int(r.GetToParallelism()),
			Phase: strings.TrimPrefix(r.GetPhase().String(), "RESCALE_PHASE_"), SavepointPath: r.GetSavepointPath(), Reason: r.GetReason()}
	}
	for _, vs := range st.GetVertices() {
		vv := VertexView{ID: int(vs.GetId()), Name: vs.GetName(), Parallelism: int(vs.GetParallelism()),
			InputPartitioning: vs.GetInputPartitioning(), WatermarkMs: vs.Watermark, Operators: []OperatorView{}, Subtasks: []SubtaskView{}}
		for _, o := range vs.GetOperators() {
			vv.Operators = append(vv.Operators, OperatorView{UID: o.GetUid(), Name: o.GetName(), RecordsIn: o.GetRecordsIn(), RecordsOut: o.GetRecordsOut()})
		}
		for _, t := range vs.GetSubtasks() {
			kg := runtime.KeyGroupRange{First: 0, Last: -1}
			if maxP > 0 && vv.Parallelism > 0 {
				kg = runtime.KeyGroupRangeForSubtask(maxP, vv.Parallelism, int(t.GetIndex()))
			}
			vv.Subtasks = append(vv.Subtasks, SubtaskView{Index: int(t.GetIndex()), State: jobmanager.TaskStateName(t.GetState()),
				TaskManagerID: t.GetTaskManagerId(), Address: t.GetTaskManagerAddress(), Slot: int(t.GetSlot()), Attempt: int(t.GetAttempt()),
				Failure: t.GetFailure(), WatermarkMs: t.Watermark, KeyGroupFirst: kg.First, KeyGroupLast: kg.Last,
				BusyNs: t.GetBusyNs(), IdleNs: t.GetIdleNs(), BackpressuredNs: t.GetBackpressuredNs(),
				RecordsIn: t.GetRecordsIn(), RecordsOut: t.GetRecordsOut(),
				KeyGroupRecordsFirst: int(t.GetKeyGroupFirst()), KeyGroupRecords: t.GetKeyGroupRecords()})
		}
		v.Vertices = append(v.Vertices, vv)
	}
	return v
}

// CheckpointsView is GET /api/jobs/{id}/checkpoints.
type CheckpointsView struct {
	// Checkpoints are the retained checkpoints and savepoints, oldest
	// first.
	Checkpoints    []CheckpointView `json:"checkpoints"`
	Failed         int64            `json:"failed"`
	Restored       *CheckpointView  `json:"restored,omitempty"`
	DisposedTimeMs int64            `json:"disposedTimeMs,omitempty"`
}

func checkpointsView(resp *weirv1.ListCheckpointsResponse) CheckpointsView {
	v := CheckpointsView{Checkpoints: []CheckpointView{}, Failed: resp.GetFailed(), Restored: checkpointView(resp.GetRestored()),
		DisposedTimeMs: resp.GetDisposedTimeMs()}
	for _, c := range resp.GetCheckpoints() {
		v.Checkpoints = append(v.Checkpoints, *checkpointView(c))
	}
	return v
}

// ActionView answers an action.
type ActionView struct {
	JobID         string `json:"jobId"`
	State         string `json:"state,omitempty"`
	SavepointPath string `json:"savepointPath,omitempty"`
}
