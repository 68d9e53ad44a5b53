package cli

import (
	"encoding/json"
	"io"
	"maps"
	"strings"

	"github.com/weirstream/weir/jobmanager"
	"github.com/weirstream/weir/jobs"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// What `--json` prints. These views, not the gRPC messages, are the
// scripting contract documented in docs/json.md: protojson would print
// int64 as strings and states as JOB_STATE_RUNNING, and would change shape
// whenever the wire protocol does.
//
// The conventions, for every command:
//   - keys are snake_case and always present; an object that may be absent
//     (a checkpoint not taken yet) is null, a list with nothing in it is [];
//   - numbers are JSON numbers; counts and sizes are integers;
//   - states are the words the text output prints: "RUNNING", "FINISHED";
//   - times are Unix milliseconds in keys ending in _time_ms (0: not yet);
//     durations are milliseconds in keys ending in _ms, fractional where
//     the measurement is finer (latencies, stalls).
//
// Within v1, fields are only ever added, never renamed, retyped or
// removed. To add one: a field with its json tag here, one line in the
// converter below, a row in docs/json.md.

// JobSummaryView is one job in `weir job list --json`, and the head of
// `weir job status --json`.
type JobSummaryView struct {
	JobID        string `json:"job_id"`
	Name         string `json:"name"`
	State        string `json:"state"`
	Failure      string `json:"failure"`
	Parallelism  int    `json:"parallelism"`
	Restarts     int    `json:"restarts"`
	SubmitTimeMs int64  `json:"submit_time_ms"`
	StartTimeMs  int64  `json:"start_time_ms"`
	EndTimeMs    int64  `json:"end_time_ms"`
	// SlotWait is set while the job (state CREATED) waits for slots: the
	// text output's WAITING FOR SLOTS (needs N, M free).
	SlotWait *SlotWaitView `json:"slot_wait"`
	// Labels are the job's labels (--label, `weir apply`); {} if none.
	Labels map[string]string `json:"labels"`
}

// SlotWaitView is a job's wait for slots.
type SlotWaitView struct {
	SlotsNeeded int   `json:"slots_needed"`
	SlotsFree   int   `json:"slots_free"`
	SinceTimeMs int64 `json:"since_time_ms"`
	// DeadlineTimeMs is when a first submission fails for want of slots;
	// 0 for a restarted or rescaled job, which waits until slots return.
	DeadlineTimeMs int64 `json:"deadline_time_ms"`
}

// RescaleStatusView is the job's latest rescale in `weir job status --json`.
type RescaleStatusView struct {
	FromParallelism int `json:"from_parallelism"`
	ToParallelism   int `json:"to_parallelism"`
	// Phase is STOPPING, PLACING, DONE, FELL_BACK or ABANDONED.
	Phase         string `json:"phase"`
	SavepointPath string `json:"savepoint_path"`
	Reason        string `json:"reason"`
	EndTimeMs     int64  `json:"end_time_ms"`
}

// JobListView is `weir job list --json`: jobs newest first.
type JobListView struct {
	Jobs []JobSummaryView `json:"jobs"`
}

// JobStatusView is `weir job status ID --json`: the summary's fields, then
// the detail.
type JobStatusView struct {
	JobSummaryView
	MaxParallelism int               `json:"max_parallelism"`
	Attempt        int               `json:"attempt"`
	Params         map[string]string `json:"params"`
	Checkpointing  CheckpointingView `json:"checkpointing"`
	Latency        LatencyView       `json:"latency"`
	Vertices       []VertexView      `json:"vertices"`
	// Rescale is the latest rescale, null if none.
	Rescale *RescaleStatusView `json:"rescale"`
	// Notes are the conditions the job's subtasks report and work around
	// (e.g. a rule source that cannot reach etcd); empty when all is well.
	Notes []string `json:"notes"`
}

// CheckpointingView is a job's checkpoint settings and record.
type CheckpointingView struct {
	// IntervalMs is 0 when periodic checkpoints (and restarts) are off.
	IntervalMs int64 `json:"interval_ms"`
	TimeoutMs  int64 `json:"timeout_ms"`
	MinPauseMs int64 `json:"min_pause_ms"`
	Retained   int   `json:"retained"`
	// Incremental: checkpoints store what changed since the latest one
	// (on pebble, the SSTs the latest one did not upload).
	Incremental bool `json:"incremental"`
	// StateBackend is the job's state backend; "" when each
	// TaskManager's default applies.
	StateBackend string `json:"state_backend"`
	// TimerService is where the job's pebble operators keep their timers
	// ("store", "heap"); "" when each TaskManager's default applies.
	TimerService string `json:"timer_service"`
	Completed    int64  `json:"completed"`
	Failed       int64  `json:"failed"`
	// Latest is the newest completed checkpoint or savepoint; Restored is
	// what the current attempt started from. Each may be null.
	Latest   *CheckpointView `json:"latest"`
	Restored *CheckpointView `json:"restored"`
}

// CheckpointView is one completed checkpoint or savepoint.
type CheckpointView struct {
	ID             int64   `json:"id"`
	Path           string  `json:"path"`
	Savepoint      bool    `json:"savepoint"`
	TriggerTimeMs  int64   `json:"trigger_time_ms"`
	DurationMs     int64   `json:"duration_ms"`
	SizeBytes      int64   `json:"size_bytes"`
	MaxSyncMs      float64 `json:"max_sync_ms"`
	MaxAlignmentMs float64 `json:"max_alignment_ms"`
}

// LatencyView is the source-to-sink latency the markers measured.
type LatencyView struct {
	Markers int64   `json:"markers"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// VertexView is one vertex (a chain of operators) of a running job.
type VertexView struct {
	ID          int    `json:"id"`
	Name        string `json:"name"`
	Parallelism int    `json:"parallelism"`
	// InputPartitioning is "forward", "hash" or "rebalance"; "" for a
	// source.
	InputPartitioning string         `json:"input_partitioning"`
	Operators         []OperatorView `json:"operators"`
	Subtasks          []SubtaskView  `json:"subtasks"`
	// WatermarkMs is the vertex's event-time watermark, the lowest of its
	// subtasks'; nil without event time.
	WatermarkMs *int64 `json:"watermark_ms"`
}

// OperatorView is one chained operator, its counts summed over subtasks.
type OperatorView struct {
	UID        string `json:"uid"`
	Name       string `json:"name"`
	RecordsIn  int64  `json:"records_in"`
	RecordsOut int64  `json:"records_out"`
	// WatermarkMs is the operator's event-time watermark, the lowest of
	// its subtasks'; nil without event time, and for operators chained
	// before the timestamp assigner of a source's chain.
	WatermarkMs *int64 `json:"watermark_ms"`
}

// SubtaskView is one subtask of the current attempt; Index counts from 0
// (the text output prints index+1 of the parallelism).
type SubtaskView struct {
	Index              int    `json:"index"`
	State              string `json:"state"`
	TaskManagerID      string `json:"task_manager_id"`
	TaskManagerAddress string `json:"task_manager_address"`
	Slot               int    `json:"slot"`
	Attempt            int    `json:"attempt"`
	Failure            string `json:"failure"`
	WatermarkMs        *int64 `json:"watermark_ms"`
}

// CheckpointListView is `weir job checkpoints ID --json`.
type CheckpointListView struct {
	JobID string `json:"job_id"`
	// Checkpoints are the retained checkpoints and the savepoints, oldest
	// first.
	Checkpoints []CheckpointView `json:"checkpoints"`
	Failed      int64            `json:"failed"`
	Restored    *CheckpointView  `json:"restored"`
	// DisposedTimeMs is when `weir job dispose` deleted the retained
	// checkpoints; 0 if it did not.
	DisposedTimeMs int64 `json:"disposed_time_ms"`
}

// SubmitView is `weir job submit --json`.
type SubmitView struct {
	JobID string `json:"job_id"`
}

// SavepointView is `weir job savepoint --json` and `weir job stop --json`.
type SavepointView struct {
	JobID         string `json:"job_id"`
	SavepointPath string `json:"savepoint_path"`
}

// RescaleView is `weir job rescale --json`.
type RescaleView struct {
	JobID string `json:"job_id"`
	// Parallelism is the one asked for; RunningParallelism the one the
	// job runs at when the command returns (0 with --wait 0).
	Parallelism        int    `json:"parallelism"`
	RunningParallelism int    `json:"running_parallelism"`
	Outcome            string `json:"outcome"`
	SavepointPath      string `json:"savepoint_path"`
}

// CancelView is `weir job cancel --json`: the state after the wait,
// CANCELED (or CANCELING with --wait 0).
type CancelView struct {
	JobID string `json:"job_id"`
	State string `json:"state"`
}

// DisposeView is `weir job dispose --json`.
type DisposeView struct {
	JobID string `json:"job_id"`
	// Path is the deleted directory, <checkpoint storage>/<job-id>.
	Path               string `json:"path"`
	CheckpointsDeleted int    `json:"checkpoints_deleted"`
}

// RegisteredJobsView is `weir jobs --json`: the jobs of this binary, by
// name.
type RegisteredJobsView struct {
	Jobs []RegisteredJobView `json:"jobs"`
}

// RegisteredJobView is one registered job, and `weir job describe NAME
// --json`.
type RegisteredJobView struct {
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Params      []ParamView `json:"params"`
}

// ParamView is one job parameter.
type ParamView struct {
	Name string `json:"name"`
	// Type is "string", "int", "float", "duration", "bool" or "path".
	Type        string `json:"type"`
	Default     string `json:"default"`
	Required    bool   `json:"required"`
	Secret      bool   `json:"secret"`
	Description string `json:"description"`
}

// VersionView is `weir version --json`.
type VersionView struct {
	Version string `json:"version"`
	// Commit is the VCS revision built, "" when unknown; Modified says the
	// work tree had uncommitted changes.
	Commit    string `json:"commit"`
	Modified  bool   `json:"modified"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

// ClusterStatusView is `weir cluster status --json`: the JobManager group
// as the members reached see it, and the leader's TaskManagers. It is
// printed even when there is no leader (the command then exits 1).
type ClusterStatusView struct {
	ClusterID string `json:"cluster_id"`
	// LeaderID and LeaderAddress name the leader, "" while there is none.
	// LeaderReached is false when members name a leader that did not
	// answer.
	LeaderID      string `json:"leader_id"`
	LeaderAddress string `json:"leader_address"`
	LeaderReached bool   `json:"leader_reached"`
	// Term is the leader's raft term; without a leader, the highest term
	// a member reported.
	Term uint64 `json:"term"`
	// Reached is how many of Members answered.
	Reached int                 `json:"reached"`
	Members []ClusterMemberView `json:"members"`
	// TaskManagers are the leader's; [] when it was not reached.
	TaskManagers []ClusterTaskManagerView `json:"task_managers"`
}

// ClusterMemberView is one JobManager: a member of the raft configuration
// of a member reached, a member reached, or an address asked that did not
// answer and that no member lists (its ID is then "").
type ClusterMemberView struct {
	ID            string `json:"id"`
	RaftAddress   string `json:"raft_address"`
	ClientAddress string `json:"client_address"`
	// State is leader, follower, candidate or shutdown as the member
	// reports it, or unreachable.
	State string `json:"state"`
	// Suffrage is voter or nonvoter; "" when unknown.
	Suffrage         string `json:"suffrage"`
	Term             uint64 `json:"term"`
	LastAppliedIndex uint64 `json:"last_applied_index"`
	CommitIndex      uint64 `json:"commit_index"`
	// Error says why an unreachable member is: its client address did not
	// answer, or is unknown. "" otherwise.
	Error string `json:"error"`
}

// ClusterTaskManagerView is one TaskManager registered with the leader.
type ClusterTaskManagerView struct {
	ID        string `json:"id"`
	Address   string `json:"address"`
	Slots     int    `json:"slots"`
	FreeSlots int    `json:"free_slots"`
}

// printJSON prints v as indented JSON.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func nsToMs(ns int64) float64 { return float64(ns) / 1e6 }

func jobSummaryView(s *weirv1.JobSummary) JobSummaryView {
	v := JobSummaryView{
		JobID:        s.GetJobId(),
		Name:         s.GetJobName(),
		State:        jobmanager.JobStateName(s.GetState()),
		Failure:      s.GetFailure(),
		Parallelism:  int(s.GetParallelism()),
		Restarts:     int(s.GetRestarts()),
		SubmitTimeMs: s.GetSubmitTimeMs(),
		StartTimeMs:  s.GetStartTimeMs(),
		EndTimeMs:    s.GetEndTimeMs(),
		SlotWait:     slotWaitView(s.GetSlotWait()),
		Labels:       maps.Clone(s.GetLabels()),
	}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	return v
}

func slotWaitView(w *weirv1.SlotWait) *SlotWaitView {
	if w == nil {
		return nil
	}
	return &SlotWaitView{SlotsNeeded: int(w.GetSlotsNeeded()), SlotsFree: int(w.GetSlotsFree()),
		SinceTimeMs: w.GetSinceMs(), DeadlineTimeMs: w.GetDeadlineMs()}
}

func rescaleStatusView(r *weirv1.RescaleStatus) *RescaleStatusView {
	if r == nil {
		return nil
	}
	return &RescaleStatusView{FromParallelism: int(r.GetFromParallelism()), ToParallelism: int(r.GetToParallelism()),
		Phase: strings.TrimPrefix(r.GetPhase().String(), "RESCALE_PHASE_"), SavepointPath: r.GetSavepointPath(),
		Reason: r.GetReason(), EndTimeMs: r.GetEndTimeMs()}
}

func jobListView(resp *weirv1.ListJobsResponse) JobListView {
	v := JobListView{Jobs: make([]JobSummaryView, 0, len(resp.GetJobs()))}
	for _, j := range resp.GetJobs() {
		v.Jobs = append(v.Jobs, jobSummaryView(j))
	}
	return v
}

func checkpointView(c *weirv1.CheckpointInfo) *CheckpointView {
	if c == nil {
		return nil
	}
	return &CheckpointView{ID: c.GetId(), Path: c.GetPath(), Savepoint: c.GetSavepoint(), TriggerTimeMs: c.GetTriggerTimeMs(),
		DurationMs: c.GetDurationMs(), SizeBytes: c.GetSizeBytes(), MaxSyncMs: nsToMs(c.GetMaxSyncNs()),
		MaxAlignmentMs: nsToMs(c.GetMaxAlignmentNs())}
}

func jobStatusView(st *weirv1.JobStatus) JobStatusView {
	c := st.GetCheckpointing()
	l := st.GetLatency()
	v := JobStatusView{
		JobSummaryView: jobSummaryView(st.GetSummary()),
		MaxParallelism: int(st.GetMaxParallelism()),
		Attempt:        int(st.GetAttempt()),
		Params:         map[string]string{},
		Checkpointing: CheckpointingView{IntervalMs: c.GetIntervalMs(), TimeoutMs: c.GetTimeoutMs(), MinPauseMs: c.GetMinPauseMs(),
			Retained: int(c.GetRetained()), Incremental: c.GetIncremental(), StateBackend: st.GetStateBackend(), TimerService: st.GetTimerService(), Completed: st.GetCompletedCheckpoints(), Failed: st.GetFailedCheckpoints(),
			Latest: checkpointView(st.GetLatestCheckpoint()), Restored: checkpointView(st.GetRestored())},
		Latency: LatencyView{Markers: l.GetCount(), P50Ms: nsToMs(l.GetP50Ns()), P99Ms: nsToMs(l.GetP99Ns()),
			MaxMs: nsToMs(l.GetMaxNs())},
		Vertices: make([]VertexView, 0, len(st.GetVertices())),
		Rescale:  rescaleStatusView(st.GetRescale()),
		Notes:    append([]string{}, st.GetNotes()...),
	}
	for k, p := range st.GetParams() {
		v.Params[k] = p
	}
	for _, vs := range st.GetVertices() {
		vv := VertexView{ID: int(vs.GetId()), Name: vs.GetName(), Parallelism: int(vs.GetParallelism()),
			InputPartitioning: vs.GetInputPartitioning(), Operators: make([]OperatorView, 0, len(vs.GetOperators())),
			Subtasks: make([]SubtaskView, 0, len(vs.GetSubtasks())), WatermarkMs: vs.Watermark}
		for _, o := range vs.GetOperators() {
			vv.Operators = append(vv.Operators, OperatorView{UID: o.GetUid(), Name: o.GetName(),
				RecordsIn: o.GetRecordsIn(), RecordsOut: o.GetRecordsOut(), WatermarkMs: o.Watermark})
		}
		for _, t := range vs.GetSubtasks() {
			vv.Subtasks = append(vv.Subtasks, SubtaskView{Index: int(t.GetIndex()), State: jobmanager.TaskStateName(t.GetState()),
				TaskManagerID: t.GetTaskManagerId(), TaskManagerAddress: t.GetTaskManagerAddress(), Slot: int(t.GetSlot()),
				Attempt: int(t.GetAttempt()), Failure: t.GetFailure(), WatermarkMs: t.Watermark})
		}
		v.Vertices = append(v.Vertices, vv)
	}
	return v
}

func checkpointListView(id string, resp *weirv1.ListCheckpointsResponse) CheckpointListView {
	v := CheckpointListView{JobID: id, Checkpoints: make([]CheckpointView, 0, len(resp.GetCheckpoints())),
		Failed: resp.GetFailed(), Restored: checkpointView(resp.GetRestored()), DisposedTimeMs: resp.GetDisposedTimeMs()}
	for _, c := range resp.GetCheckpoints() {
		v.Checkpoints = append(v.Checkpoints, *checkpointView(c))
	}
	return v
}

func registeredJobView(j jobs.Job) RegisteredJobView {
	v := RegisteredJobView{Name: j.Name, Description: j.Description, Params: make([]ParamView, 0, len(j.Params))}
	for _, p := range j.Params {
		v.Params = append(v.Params, ParamView{Name: p.Name, Type: string(p.Type), Default: p.Default,
			Required: p.Required, Secret: p.Secret, Description: p.Description})
	}
	return v
}

func registeredJobsView() RegisteredJobsView {
	all := jobs.All()
	v := RegisteredJobsView{Jobs: make([]RegisteredJobView, 0, len(all))}
	for _, j := range all {
		v.Jobs = append(v.Jobs, registeredJobView(j))
	}
	return v
}
