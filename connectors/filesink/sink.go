// Package filesink is an exactly-once sink that writes records as lines into
// part files in a directory or an S3 prefix, after Flink's FileSink.
//
// # Design: two-phase commit over checkpoints
//
// Records are encoded into an in-memory in-progress buffer. The buffer
// becomes a *pending* object, uploaded under the hidden prefix ".pending/",
// when it reaches RollBytes or when a checkpoint barrier passes the sink
// (SnapshotState). Pending objects are invisible to readers, who only look
// at "part-*" objects directly under the directory.
//
// The list of pending objects not yet committed, each tagged with the
// checkpoint it belongs to, is the sink's operator state. When checkpoint N
// completes (NotifyCheckpointComplete), every pending object of checkpoints
// <= N is committed: renamed to its final, visible name. This is the second
// phase: a record becomes visible only once the checkpoint that covers it
// is durable, so a restore from that checkpoint never replays a record that
// is already visible, and records of an attempt that failed before its next
// checkpoint completed are never committed at all.
//
// A pending object's final name is fixed when the object is created and
// stored with it in the state, and both names carry the job's ID, the
// writer's subtask, its attempt and a random token
// (part-<job>-<subtask>-<attempt>-<token>-<n>.jsonl), so they are unique
// across jobs, subtasks, attempts and restarts. Commit is therefore
// idempotent: a pending object that is gone while its final object exists
// was committed before.
//
// # One job per directory, unless appending
//
// The job ID in the names tells this job's parts from another's. A job
// that starts fresh (restoring no state) refuses a directory that already
// holds committed parts of another job, with an unrecoverable error that
// fails the job without restarts, since mixing two runs' records is
// rarely what was meant: Append lets it add to them (jobs expose it as the
// parameter append=true). A restored job (after a failure, a rescale, or
// submitted from a savepoint, which gives it a new job ID) continues in its
// directory as before.
//
// # Restore and rescaling
//
// Operator state is union-redistributed: every restored subtask sees the
// pending lists of all old subtasks. Those lists belong to a completed
// checkpoint (the runtime only restores completed ones) whose notification
// may never have arrived, so the restored subtask i commits the objects of
// every old subtask j with j % parallelism == i: exactly one new subtask
// handles each old one, at any new parallelism.
//
// Pending objects of a failed attempt that no completed checkpoint lists
// are garbage. On every restart (restored or not), subtask 0 deletes the
// ones of its own job whose attempt number is lower than its own and that
// no restored entry names. This is only safe because every pending object
// the new attempt writes carries the new attempt number; the job ID in the
// names keeps jobs that append to one directory from deleting each
// other's pending files.
//
// # Cost
//
// Invoke only appends to the buffer (no allocation once it has grown). The
// upload at a barrier is synchronous in this first version: at a checkpoint
// interval the buffer is small, so the stall is short. An asynchronous
// version would upload it in the checkpoint's asynchronous phase.
package filesink

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/statebackend/storage"
)

// DefaultRollBytes is the part size used when Sink.RollBytes is 0.
const DefaultRollBytes = 64 << 20

// PendingPrefix is the hidden prefix, relative to Dir, of uploaded but not
// yet committed part files.
const PendingPrefix = ".pending/"

// PartPrefix starts the names of committed part files, directly under Dir.
const PartPrefix = "part-"

// PartSuffix ends the names of committed part files.
const PartSuffix = ".jsonl"

// noCheckpoint tags a pending object rolled since the last barrier: it
// belongs to the next checkpoint.
const noCheckpoint = -1

// entryVersion is the first byte of every state entry, so the format can
// evolve.
const entryVersion = 1

// Sink writes records as lines (Encode appends one line's bytes WITHOUT
// the newline) into part files under Dir (a directory path, file:// or
// s3:// URL). Records are visible exactly once in the committed part files,
// provided the job runs with checkpointing or ends normally.
type Sink[T any] struct {
	Dir    string
	Encode func(dst []byte, v T) []byte
	// RollBytes rolls the in-progress part into a pending file when it
	// reaches this size (default 64 MiB). A part holds at least one record,
	// so it may exceed RollBytes by up to one record.
	RollBytes int
	// Append lets a job that starts fresh write into a directory holding
	// another job's committed parts; without it the sink refuses to.
	Append bool

	rc       *runtime.RuntimeContext
	st       storage.Storage
	buf      []byte
	pending  []pendingFile // uploaded, not committed, in creation order
	jobID    string
	subtask  int
	attempt  int
	token    string // random, per instance: names stay unique across restarts
	counter  int64
	rollSize int
	// direct publishes parts as they roll: without periodic checkpoints
	// there are no restarts to replay records, and nothing else would
	// ever commit the parts of an unbounded job.
	direct bool
}

// pendingFile is one uploaded, uncommitted part.
type pendingFile struct {
	checkpoint int64 // noCheckpoint until a barrier claims it
	subtask    int   // the subtask that wrote it
	pending    string
	final      string
	// data is the part's content until it is uploaded (never changed,
	// so an upload goroutine may read it); uploaded is nil for parts
	// known to be stored (restored ones).
	data     []byte
	uploaded *atomic.Bool
}

var (
	_ runtime.SinkFunction[int]    = (*Sink[int])(nil)
	_ runtime.CheckpointedFunction = (*Sink[int])(nil)
	_ runtime.AsyncSnapshotter     = (*Sink[int])(nil)
	_ runtime.CheckpointListener   = (*Sink[int])(nil)
	_ runtime.BoundedInput         = (*Sink[int])(nil)
)

// InitializeState opens the storage and, on restore, commits the pending
// files of the old subtasks this subtask now answers for. Subtask 0 of any
// attempt but the first also removes the pending files of failed attempts
// (after a restart without a completed checkpoint to restore, all of them).
// A fresh start refuses a directory with another job's parts unless Append.
func (s *Sink[T]) InitializeState(ctx *runtime.RuntimeContext, entries [][]byte) error {
	if err := s.setup(ctx); err != nil {
		return err
	}
	if !ctx.IsRestored() && !s.Append {
		if err := s.refuseOtherJobs(); err != nil {
			return err
		}
	}
	restored := make([]pendingFile, 0, len(entries))
	for i, e := range entries {
		p, err := decodeEntry(e)
		if err != nil {
			return fmt.Errorf("filesink %s: restored entry %d: %w", s.st.URL(), i, err)
		}
		restored = append(restored, p)
	}
	par := max(ctx.Parallelism(), 1)
	committed := 0
	for _, p := range restored {
		if p.subtask%par != s.subtask {
			continue
		}
		if err := s.commit(p); err != nil {
			return err
		}
		committed++
	}
	if committed > 0 {
		ctx.Logger().Info("committed the pending parts of the restored checkpoint", "dir", s.st.URL(), "parts", committed)
	}
	if s.subtask == 0 {
		return s.cleanup(restored)
	}
	return nil
}

// Open opens the storage if InitializeState has not.
func (s *Sink[T]) Open(ctx *runtime.RuntimeContext) error {
	if s.st != nil {
		return nil
	}
	return s.setup(ctx)
}

func (s *Sink[T]) setup(ctx *runtime.RuntimeContext) error {
	if s.Encode == nil {
		return errors.New("filesink: Encode is nil")
	}
	if s.RollBytes < 0 {
		return fmt.Errorf("filesink: RollBytes %d must not be negative", s.RollBytes)
	}
	s.rollSize = s.RollBytes
	if s.rollSize == 0 {
		s.rollSize = DefaultRollBytes
	}
	st, err := ctx.OpenStorage(s.Dir)
	if err != nil {
		return fmt.Errorf("filesink: open %s: %w", s.Dir, err)
	}
	var tok [8]byte
	rand.Read(tok[:]) // never fails (crypto/rand panics instead)
	s.rc, s.st = ctx, st
	s.jobID, s.subtask, s.attempt = ctx.JobID(), ctx.SubtaskIndex(), ctx.Attempt()
	s.token = hex.EncodeToString(tok[:])
	s.direct = !ctx.CheckpointingEnabled()
	if s.direct && ctx.SubtaskIndex() == 0 {
		ctx.Logger().Warn("filesink: checkpointing is off, so part files are published as they roll instead of at checkpoints",
			"dir", s.Dir, "roll_bytes", s.rollSize)
	}
	s.buf = s.buf[:0]
	s.pending = s.pending[:0]
	return nil
}

// Invoke appends one line; a part that reaches RollBytes is uploaded at
// once, which bounds the memory a sink holds between checkpoints.
func (s *Sink[T]) Invoke(v T) error {
	s.buf = s.Encode(s.buf, v)
	s.buf = append(s.buf, '\n')
	if len(s.buf) >= s.rollSize {
		p := s.roll()
		if err := s.upload(s.ioContext(), p); err != nil {
			return err
		}
		if s.direct {
			return s.commit(*p)
		}
	}
	return nil
}

// roll turns the in-progress buffer into a pending part for the next
// checkpoint and starts a new buffer; nil when the buffer is empty. The
// part keeps the old buffer until it is uploaded.
func (s *Sink[T]) roll() *pendingFile {
	if len(s.buf) == 0 {
		return nil
	}
	unique := s.jobID + "-" + strconv.Itoa(s.subtask) + "-" + strconv.Itoa(s.attempt) + "-" + s.token + "-" +
		strconv.FormatInt(s.counter, 10)
	p := &pendingFile{
		checkpoint: noCheckpoint,
		subtask:    s.subtask,
		pending:    PendingPrefix + PartPrefix + unique,
		final:      PartPrefix + unique + PartSuffix,
		data:       s.buf,
		uploaded:   new(atomic.Bool),
	}
	s.counter++
	s.buf = make([]byte, 0, cap(s.buf))
	if !s.direct {
		s.pending = append(s.pending, *p)
	}
	return p
}

// upload stores a pending part unless it is stored already. Uploads of
// the same part may race (an aborted checkpoint's upload and the next
// one's): both write the same bytes under the same name.
func (s *Sink[T]) upload(ctx context.Context, p *pendingFile) error {
	if p == nil || p.uploaded == nil || p.uploaded.Load() {
		return nil
	}
	if err := s.st.Put(ctx, p.pending, p.data); err != nil {
		return fmt.Errorf("filesink: upload pending part to %s: %w", s.st.URL(), err)
	}
	p.uploaded.Store(true)
	return nil
}

// SnapshotStateAsync makes the in-progress part pending for this
// checkpoint without I/O; the returned function, run on the checkpoint's
// upload goroutine, uploads every pending part not stored yet (including
// those of an earlier checkpoint whose upload failed) and returns the
// pending list as the operator state.
func (s *Sink[T]) SnapshotStateAsync(checkpointID int64) (func(context.Context) ([][]byte, error), error) {
	if p := s.roll(); p != nil && s.direct {
		// Without periodic checkpoints (a savepoint): publish as always.
		if err := s.upload(s.ioContext(), p); err != nil {
			return nil, err
		}
		if err := s.commit(*p); err != nil {
			return nil, err
		}
	}
	entries := make([][]byte, len(s.pending))
	for i := range s.pending {
		if s.pending[i].checkpoint == noCheckpoint {
			s.pending[i].checkpoint = checkpointID
		}
		entries[i] = appendEntry(nil, s.pending[i])
	}
	parts := slices.Clone(s.pending)
	return func(ctx context.Context) ([][]byte, error) {
		for i := range parts {
			if err := s.upload(ctx, &parts[i]); err != nil {
				return nil, fmt.Errorf("checkpoint %d: %w", checkpointID, err)
			}
		}
		return entries, nil
	}, nil
}

// SnapshotState is SnapshotStateAsync done at once.
func (s *Sink[T]) SnapshotState(checkpointID int64) ([][]byte, error) {
	finish, err := s.SnapshotStateAsync(checkpointID)
	if err != nil {
		return nil, err
	}
	return finish(s.ioContext())
}

// NotifyCheckpointComplete commits the parts of every checkpoint up to id.
func (s *Sink[T]) NotifyCheckpointComplete(id int64) error {
	kept := s.pending[:0]
	for i, p := range s.pending {
		if p.checkpoint == noCheckpoint || p.checkpoint > id {
			kept = append(kept, p)
			continue
		}
		// A completed checkpoint uploaded every part it lists, but an
		// upload is cheap to make sure of.
		err := s.upload(s.ioContext(), &s.pending[i])
		if err == nil {
			err = s.commit(p)
		}
		if err != nil {
			// Keep what is not committed yet, so the state stays exact.
			kept = append(kept, s.pending[i:]...)
			s.pending = kept
			return fmt.Errorf("checkpoint %d: %w", id, err)
		}
	}
	clear(s.pending[len(kept):])
	s.pending = kept
	return nil
}

// EndInput uploads and commits everything: on a normal end of input the
// last checkpoint the sink took part in is complete (or there are none and
// no restore can follow), so nothing after it can be replayed.
func (s *Sink[T]) EndInput() error {
	if p := s.roll(); p != nil && s.direct {
		if err := s.upload(s.ioContext(), p); err != nil {
			return err
		}
		return s.commit(*p)
	}
	for len(s.pending) > 0 {
		err := s.upload(s.ioContext(), &s.pending[0])
		if err == nil {
			err = s.commit(s.pending[0])
		}
		if err != nil {
			return fmt.Errorf("end of input: %w", err)
		}
		s.pending = s.pending[1:]
	}
	return nil
}

// Close drops the in-progress buffer and commits nothing: without EndInput
// the task failed or was cancelled, and the pending parts wait for a
// restore to commit them or for cleanup.
func (s *Sink[T]) Close() error {
	s.buf = nil
	s.pending = nil
	return nil
}

// commit publishes a pending part under its final name. A pending object
// that is gone while the final one exists was committed before (commit is
// idempotent); if both are gone, its records are lost, which must fail the
// job loudly. On S3, Rename is a copy then a delete: a commit interrupted
// between the two leaves both objects, and repeating it copies the same
// bytes again, so that case is idempotent too.
func (s *Sink[T]) commit(p pendingFile) error {
	ctx := s.ioContext()
	err := s.st.Rename(ctx, p.pending, p.final)
	if err == nil {
		return nil
	}
	if !errors.Is(err, storage.ErrNotExist) {
		return fmt.Errorf("filesink: commit %s as %s in %s: %w", p.pending, p.final, s.st.URL(), err)
	}
	if _, serr := s.st.Size(ctx, p.final); serr != nil {
		if errors.Is(serr, storage.ErrNotExist) {
			return fmt.Errorf("filesink: commit of checkpoint %d in %s: pending part %s and its committed part %s are both missing: its records are lost",
				p.checkpoint, s.st.URL(), p.pending, p.final)
		}
		return fmt.Errorf("filesink: commit %s in %s: pending part missing, checking %s: %w", p.pending, s.st.URL(), p.final, serr)
	}
	return nil
}

// cleanup deletes the pending parts of earlier attempts that no restored
// entry lists: they hold records written after the restored checkpoint and
// will never be committed. Parts of this attempt (or later ones, should an
// instance of a newer attempt already run) are left alone.
func (s *Sink[T]) cleanup(restored []pendingFile) error {
	if s.attempt == 0 {
		return nil // no earlier attempt
	}
	ctx := s.ioContext()
	objs, err := s.st.List(ctx, PendingPrefix)
	if err != nil {
		return fmt.Errorf("filesink: cleanup of %s: %w", s.st.URL(), err)
	}
	keep := make(map[string]bool, len(restored))
	for _, p := range restored {
		keep[p.pending] = true
	}
	for _, o := range objs {
		job, att, ok := pendingOwner(o.Name)
		if !ok || job != s.jobID || att >= s.attempt || keep[o.Name] {
			continue
		}
		if err := s.st.Delete(ctx, o.Name); err != nil {
			return fmt.Errorf("filesink: cleanup of %s: %w", s.st.URL(), err)
		}
		s.rc.Logger().Debug("deleted pending part of a failed attempt", "object", o.Name)
	}
	return nil
}

// pendingOwner parses the job and the attempt out of
// ".pending/part-<job>-<subtask>-<attempt>-<token>-<n>"; names it does not
// understand (those of other tools, or of sinks before job IDs were in the
// names) are never deleted.
func pendingOwner(name string) (job string, attempt int, ok bool) {
	rest, ok := strings.CutPrefix(name, PendingPrefix+PartPrefix)
	if !ok || strings.Contains(rest, "/") {
		return "", 0, false
	}
	f := strings.Split(rest, "-")
	if len(f) < 5 {
		return "", 0, false
	}
	f, job = f[len(f)-4:], strings.Join(f[:len(f)-4], "-")
	if _, err := strconv.Atoi(f[0]); err != nil {
		return "", 0, false
	}
	att, err := strconv.Atoi(f[1])
	if err != nil || att < 0 || job == "" {
		return "", 0, false
	}
	return job, att, true
}

// refuseOtherJobs fails when Dir holds committed parts that this job did
// not write, naming one of them. The error wraps runtime.ErrUnrecoverable:
// a restart would find the same files.
func (s *Sink[T]) refuseOtherJobs() error {
	objs, err := s.st.List(s.ioContext(), PartPrefix)
	if err != nil {
		return fmt.Errorf("filesink: checking %s for other jobs' parts: %w", s.st.URL(), err)
	}
	own := PartPrefix + s.jobID + "-"
	var other []string
	for _, o := range objs {
		if !strings.Contains(o.Name, "/") && strings.HasSuffix(o.Name, PartSuffix) && (s.jobID == "" || !strings.HasPrefix(o.Name, own)) {
			other = append(other, o.Name)
		}
	}
	if len(other) == 0 {
		return nil
	}
	return fmt.Errorf("filesink: the output directory %s already holds %d part file(s) of another job (%s, ...): "+
		"pass append=true to add this job's records to them, or choose an empty directory: %w",
		s.st.URL(), len(other), other[0], runtime.ErrUnrecoverable)
}

func (s *Sink[T]) ioContext() context.Context {
	if s.rc == nil {
		return context.Background()
	}
	return s.rc.Context()
}

// appendEntry encodes a pending part: version, checkpoint, subtask, and the
// pending and final names, length-prefixed. The final name is stored rather
// than derived so that a later change of naming cannot break the commit of
// parts written before it.
func appendEntry(dst []byte, p pendingFile) []byte {
	dst = append(dst, entryVersion)
	dst = binary.AppendVarint(dst, p.checkpoint)
	dst = binary.AppendVarint(dst, int64(p.subtask))
	dst = binary.AppendVarint(dst, int64(len(p.pending)))
	dst = append(dst, p.pending...)
	dst = binary.AppendVarint(dst, int64(len(p.final)))
	return append(dst, p.final...)
}

func decodeEntry(e []byte) (pendingFile, error) {
	if len(e) == 0 || e[0] != entryVersion {
		return pendingFile{}, fmt.Errorf("unknown pending-part entry format: %w", runtime.ErrCorrupt)
	}
	r := runtime.NewReader(e[1:])
	p := pendingFile{checkpoint: r.Varint(), subtask: int(r.Varint())}
	p.pending = string(r.Bytes())
	p.final = string(r.Bytes())
	if err := r.Done(); err != nil {
		return pendingFile{}, fmt.Errorf("pending-part entry: %w", err)
	}
	if p.subtask < 0 || !strings.HasPrefix(p.pending, PendingPrefix) || p.final == "" || strings.HasPrefix(p.final, PendingPrefix) {
		return pendingFile{}, fmt.Errorf("pending-part entry %q -> %q (subtask %d): %w", p.pending, p.final, p.subtask, runtime.ErrCorrupt)
	}
	return p, nil
}
