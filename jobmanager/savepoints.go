package jobmanager

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// metadataFile is the manifest of a checkpoint, written last.
const metadataFile = "_metadata"

// loadMetadata reads and checks the _metadata of the checkpoint or
// savepoint directory at path.
func (jm *JobManager) loadMetadata(ctx context.Context, path string) (*statebackend.Metadata, error) {
	jm.mu.Lock()
	m, ok := jm.metadata[path]
	jm.mu.Unlock()
	if ok {
		return m, nil
	}
	st, err := storage.Open(path, jm.cfg.Storage)
	if err != nil {
		return nil, err
	}
	name := storage.Join(path, metadataFile)
	data, err := st.Get(ctx, metadataFile)
	if errors.Is(err, storage.ErrNotExist) {
		return nil, fmt.Errorf("no completed checkpoint or savepoint at %s: %s is missing: %w", path, name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	m, err = statebackend.DecodeMetadata(name, data)
	if err != nil {
		return nil, err
	}
	jm.mu.Lock()
	jm.metadata[path] = m
	jm.mu.Unlock()
	return m, nil
}

// forgetMetadata drops a retired checkpoint's cached _metadata.
func (jm *JobManager) forgetMetadata(path string) {
	jm.mu.Lock()
	delete(jm.metadata, path)
	jm.mu.Unlock()
}

// validateRestore checks that a job (name, vertices, maxParallelism) can
// start from the checkpoint m stored at path.
func validateRestore(m *statebackend.Metadata, path, name string, maxP int, vertices []VertexSpec, allowNonRestored bool) error {
	if m.JobName != name {
		return errorf(ErrInvalidJob, "savepoint %s was taken of job %q, not %q", path, m.JobName, name)
	}
	for _, v := range vertices {
		if v.Parallelism > m.MaxParallelism {
			return errorf(ErrInvalidJob, "parallelism %d of %s is above the savepoint's maxParallelism %d (%s)",
				v.Parallelism, v.Name, m.MaxParallelism, path)
		}
	}
	if m.MaxParallelism != maxP {
		return errorf(ErrInvalidJob, "savepoint %s has maxParallelism %d but job %s has %d: key groups cannot change",
			path, m.MaxParallelism, name, maxP)
	}
	uids := map[string]bool{}
	for _, v := range vertices {
		for _, op := range v.Operators {
			uids[op.UID] = true
		}
	}
	for _, op := range m.Operators {
		if !uids[op.UID] && !allowNonRestored {
			return errorf(ErrInvalidJob, "savepoint %s has state for operator %q (%s), which job %s lacks; "+
				"pass --allow-non-restored-state to start without it", path, op.UID, op.Name, name)
		}
	}
	return nil
}

// restoreRequests builds, per vertex, what its subtasks restore from the
// job's restore checkpoint; nil when the job starts fresh.
func (jm *JobManager) restoreRequests(ctx context.Context, job *Job) ([]*weirv1.TaskRestore, error) {
	if job.Restore == nil {
		return nil, nil
	}
	m, err := jm.loadMetadata(ctx, job.Restore.Path)
	if err != nil {
		return nil, err
	}
	if err := validateRestore(m, job.Restore.Path, job.Name, job.MaxParallelism, job.Vertices, job.AllowNonRestored); err != nil {
		return nil, err
	}
	byUID := map[string]*statebackend.OperatorState{}
	for k := range m.Operators {
		byUID[m.Operators[k].UID] = &m.Operators[k]
	}
	out := make([]*weirv1.TaskRestore, len(job.Vertices))
	for v, spec := range job.Vertices {
		r := &weirv1.TaskRestore{CheckpointId: m.CheckpointID, Location: job.Restore.Path}
		for _, op := range spec.Operators {
			ost := byUID[op.UID]
			if ost == nil {
				continue
			}
			or := &weirv1.OperatorRestore{Uid: op.UID}
			for _, s := range ost.Subtasks {
				or.Files = append(or.Files, &weirv1.StateFileRef{File: s.File, Size: s.Size,
					FirstKeyGroup: int32(s.KeyGroups.First), LastKeyGroup: int32(s.KeyGroups.Last), Chain: chainFiles(s.Chain)})
			}
			r.Operators = append(r.Operators, or)
		}
		out[v] = r
	}
	return out, nil
}

// unrecoverableRestore tells failures a restart cannot cure.
func unrecoverableRestore(err error) bool {
	return errors.Is(err, statebackend.ErrCorrupt) || errors.Is(err, storage.ErrNotExist) || errors.Is(err, ErrInvalidJob)
}

func (jm *JobManager) runningCoordinator(id string) (*coordinator, Job, error) {
	job, err := jm.store.Job(id)
	if err != nil {
		return nil, Job{}, err
	}
	if job.State != jobRunning {
		return nil, job, errorf(ErrJobNotRunning, "job %s is %s, not RUNNING", id, JobStateName(job.State))
	}
	c := jm.coordinator(id)
	if c == nil {
		return nil, job, errorf(ErrJobNotRunning, "job %s has no checkpoint coordinator", id)
	}
	return c, job, nil
}

// savepointTimeout bounds a savepoint request by the job's checkpoint
// timeout.
func savepointTimeout(job Job) time.Duration {
	if job.Checkpointing.TimeoutMs > 0 {
		return time.Duration(job.Checkpointing.TimeoutMs)*time.Millisecond + 5*time.Second
	}
	return DefaultCheckpointTimeout
}

// triggerSavepoint takes a savepoint and returns its path.
func (jm *JobManager) triggerSavepoint(ctx context.Context, id, target string) (string, error) {
	c, job, err := jm.runningCoordinator(id)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, savepointTimeout(job))
	defer cancel()
	return c.savepoint(ctx, target, false, false)
}

// stopJob takes a savepoint after which the sources emit nothing and
// finish; the job then ends FINISHED.
func (jm *JobManager) stopJob(ctx context.Context, id, target string, drain bool) (string, error) {
	c, job, err := jm.runningCoordinator(id)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, savepointTimeout(job))
	defer cancel()
	path, err := c.savepoint(ctx, target, true, drain)
	if err == nil {
		jm.log.Info("job stopping with savepoint", "job_id", id, "location", path, "drain", drain)
	}
	return path, err
}

// rescaleJob stops the job with a savepoint and redeploys it with the new
// parallelism from that savepoint under the same ID, unless the slots
// cannot hold the new parallelism (ErrNotEnoughSlots, nothing stopped).
func (jm *JobManager) rescaleJob(ctx context.Context, id string, parallelism int) (string, error) {
	c, job, err := jm.runningCoordinator(id)
	if err != nil {
		return "", err
	}
	if parallelism < 1 || parallelism > job.MaxParallelism {
		return "", errorf(ErrInvalidRequest, "parallelism %d must be between 1 and the job's maxParallelism %d",
			parallelism, job.MaxParallelism)
	}
	if err := jm.cfg.Limits.checkParallelism(parallelism, nil); err != nil {
		return "", err
	}
	// The key groups stay as the job started: a rescale past the point
	// where the default maxParallelism grows must not repartition state.
	g, err := buildGraph(job.Name, parallelism, job.MaxParallelism, job.Params)
	if err != nil {
		return "", errorf(ErrInvalidJob, "%w", err)
	}
	plan := RescalePlan{Parallelism: parallelism, Vertices: vertexSpecs(g)}
	if err := jm.cfg.Limits.checkParallelism(parallelism, plan.Vertices); err != nil {
		return "", err
	}
	// Nothing is stopped unless the new parallelism fits in the slots
	// free now and those the job holds. Another job may still take them
	// before the stop ends; the scheduler then falls back.
	jm.mu.Lock()
	offered, all := jm.tms.offeredSlots(), jm.store.Jobs()
	jm.mu.Unlock()
	need, avail, free := slotsNeeded(plan.Vertices), SlotsAvailableTo(id, offered, all), countSlots(FreeSlots(offered, all))
	if need > avail {
		return "", errorf(ErrNotEnoughSlots, "cannot rescale job %s to parallelism %d: it needs %d slots, and %d are available "+
			"(%d free + %d the job holds now); the job keeps running at parallelism %d",
			id, parallelism, need, avail, free, avail-free, job.Parallelism)
	}
	if _, err := jm.apply(BeginRescale{JobID: id, Plan: plan}); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, savepointTimeout(job))
	defer cancel()
	path, err := c.savepoint(ctx, "", true, false)
	if err != nil {
		_, _ = jm.apply(EndRescale{JobID: id})
		return "", err
	}
	jm.log.Info("job rescaling", "job_id", id, "from", job.Parallelism, "to", parallelism, "location", path)
	return path, nil
}

func checkpointInfo(c *CompletedCheckpoint) *weirv1.CheckpointInfo {
	if c == nil {
		return nil
	}
	return &weirv1.CheckpointInfo{Id: c.ID, Path: c.Path, Savepoint: c.Savepoint, TriggerTimeMs: c.TriggerMs,
		DurationMs: c.DurationMs, SizeBytes: c.SizeBytes, MaxSyncNs: c.MaxSyncNs, MaxAlignmentNs: c.MaxAlignmentNs}
}

func (jm *JobManager) listCheckpoints(id string) (*weirv1.ListCheckpointsResponse, error) {
	job, err := jm.store.Job(id)
	if err != nil {
		return nil, err
	}
	resp := &weirv1.ListCheckpointsResponse{Failed: job.FailedCheckpoints, Restored: checkpointInfo(job.Restore),
		DisposedTimeMs: job.CheckpointsDisposedMs}
	for k := range job.Checkpoints {
		resp.Checkpoints = append(resp.Checkpoints, checkpointInfo(&job.Checkpoints[k]))
	}
	return resp, nil
}

func checkpointConfigProto(c CheckpointConfig) *weirv1.CheckpointConfig {
	return &weirv1.CheckpointConfig{IntervalMs: c.IntervalMs, TimeoutMs: c.TimeoutMs, MinPauseMs: c.MinPauseMs,
		Retained: int32(c.Retained), Incremental: c.Incremental}
}

// disposeCheckpoints deletes an ended job's retained checkpoints, the
// directory <checkpoint storage>/<job-id>/, and returns its URL and how
// many checkpoints the job listed. Savepoints are never deleted: should
// one have been taken into that directory (a --target inside it), only the
// checkpoints' own directories go. The disposal is recorded before the
// files go, so the job never lists a deleted checkpoint; a delete that
// fails may be tried again.
func (jm *JobManager) disposeCheckpoints(ctx context.Context, id string) (string, int, error) {
	before, err := jm.store.Job(id)
	if err != nil {
		return "", 0, err
	}
	if _, err := jm.apply(DisposeCheckpoints{JobID: id, TimeMs: time.Now().UnixMilli()}); err != nil {
		return "", 0, err
	}
	dir := storage.Join(jm.cfg.CheckpointStorage, id)
	var checkpoints []string
	savepointInside := false
	for _, cp := range before.Checkpoints {
		switch {
		case !cp.Savepoint:
			checkpoints = append(checkpoints, cp.Path)
		case strings.HasPrefix(cp.Path, dir+"/"):
			savepointInside = true
		}
	}
	if savepointInside {
		// Savepoints are self-contained: the shared files go with the
		// checkpoints.
		for _, p := range append(checkpoints, storage.Join(dir, statebackend.SharedDirName)) {
			if err := jm.deleteDir(ctx, p); err != nil {
				return "", 0, fmt.Errorf("deleting checkpoint %s: %w", p, err)
			}
		}
	} else if err := jm.deleteDir(ctx, dir); err != nil {
		return "", 0, fmt.Errorf("deleting the checkpoints of job %s in %s: %w", id, dir, err)
	}
	jm.log.Info("checkpoints disposed of", "job_id", id, "dir", dir, "checkpoints", len(checkpoints))
	return dir, len(checkpoints), nil
}

// chainFiles converts a state chain to its wire form (nil for nil).
func chainFiles(chain []statebackend.FileRef) []*weirv1.ChainFile {
	var out []*weirv1.ChainFile
	for _, f := range chain {
		out = append(out, &weirv1.ChainFile{Path: f.Path, Size: f.Size, Shared: f.Shared, Delta: f.Delta, Local: f.Local})
	}
	return out
}

// fileRefs converts a state chain from its wire form (nil for nil).
func fileRefs(chain []*weirv1.ChainFile) []statebackend.FileRef {
	var out []statebackend.FileRef
	for _, f := range chain {
		out = append(out, statebackend.FileRef{Path: f.GetPath(), Size: f.GetSize(), Shared: f.GetShared(), Delta: f.GetDelta(), Local: f.GetLocal()})
	}
	return out
}
