package jobmanager

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The replicated store: the jobTable as a raft FSM. The leader encodes each
// Command (codec.go) into the raft log; every member applies the committed
// entries in order to its own jobTable, so all reach the same state. Reads
// come from the local table; the JobManager serves them on the leader only.

// applyResult is what FSM.Apply returns for one entry: the transitions and
// the apply error, which raft hands back to the leader's Apply call.
type applyResult struct {
	trans []JobTransition
	err   error
}

// fsm applies log entries to a jobTable. It implements raft.FSM.
type fsm struct {
	mu sync.RWMutex
	t  jobTable
}

func newFSM() *fsm { return &fsm{t: jobTable{jobs: map[string]*Job{}}} }

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	cmd, err := DecodeCommand(l.Data)
	if err != nil {
		// A member that cannot read an entry cannot follow the group: a
		// newer binary wrote it. Stopping beats diverging.
		panic(fmt.Sprintf("jobmanager: raft entry %d: %v (is this member older than the leader?)", l.Index, err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	trans, err := f.t.apply(cmd)
	return applyResult{trans: trans, err: err}
}

// fsmSnapshot is the whole table, written as JSON.
type fsmSnapshot struct {
	Version int               `json:"version"`
	Jobs    []*Job            `json:"jobs"` // in submission order
	Members map[string]string `json:"members"`
}

const fsmSnapshotVersion = 1

// Snapshot implements raft.FSM: it copies the table under the read lock;
// Persist encodes the copy while the FSM goes on applying.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := &fsmSnapshot{Version: fsmSnapshotVersion, Members: maps.Clone(f.t.members)}
	for _, id := range f.t.order {
		j := f.t.jobs[id].clone()
		s.Jobs = append(s.Jobs, &j)
	}
	return s, nil
}

// Restore implements raft.FSM: it replaces the table with a snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var s fsmSnapshot
	if err := json.NewDecoder(rc).Decode(&s); err != nil {
		return fmt.Errorf("reading JobManager snapshot: %w", err)
	}
	if s.Version != fsmSnapshotVersion {
		return fmt.Errorf("JobManager snapshot version %d, this binary reads %d", s.Version, fsmSnapshotVersion)
	}
	t := jobTable{jobs: map[string]*Job{}, members: s.Members}
	for _, j := range s.Jobs {
		t.jobs[j.ID] = j
		t.order = append(t.order, j.ID)
	}
	f.mu.Lock()
	f.t = t
	f.mu.Unlock()
	return nil
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("writing JobManager snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// job, jobs and members read the local table.
func (f *fsm) job(id string) (Job, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	j, ok := f.t.jobs[id]
	if !ok {
		return Job{}, errorf(ErrJobNotFound, "job %s not found", id)
	}
	return j.clone(), nil
}

func (f *fsm) jobs() []Job {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Job, 0, len(f.t.order))
	for i := len(f.t.order) - 1; i >= 0; i-- {
		out = append(out, f.t.jobs[f.t.order[i]].clone())
	}
	return out
}

func (f *fsm) members() map[string]string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return maps.Clone(f.t.members)
}

// ErrNotLeader is returned by the raft store's Apply on a member that is
// not the leader (or stopped being it before the command committed).
var ErrNotLeader = errors.New("not the raft leader")

// raftStore is the Store of a raft group member: writes go through the
// raft log, reads come from the member's FSM.
type raftStore struct {
	r       *raft.Raft
	f       *fsm
	timeout time.Duration
}

// Apply implements Store: it proposes cmd and waits until it is applied.
func (s *raftStore) Apply(cmd Command) ([]JobTransition, error) {
	entry, err := EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	fut := s.r.Apply(entry, s.timeout)
	if err := fut.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return nil, fmt.Errorf("replicating %T: %w", cmd, err)
	}
	res, _ := fut.Response().(applyResult)
	return res.trans, res.err
}

func (s *raftStore) Job(id string) (Job, error) { return s.f.job(id) }
func (s *raftStore) Jobs() []Job                { return s.f.jobs() }
func (s *raftStore) Members() map[string]string { return s.f.members() }
