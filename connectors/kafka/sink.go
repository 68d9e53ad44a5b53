package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirstream/weir/runtime"
)

// Guarantee is a sink's delivery guarantee.
type Guarantee int

const (
	// ExactlyOnce writes each checkpoint's records in a Kafka transaction
	// committed when the checkpoint completes.
	ExactlyOnce Guarantee = iota
	// AtLeastOnce waits at every checkpoint until the broker acknowledged
	// every record: a restore may write some records twice.
	AtLeastOnce
	// None sends records without waiting: a failure may lose some.
	None
)

// ParseGuarantee reads "exactly-once", "at-least-once" or "none".
func ParseGuarantee(s string) (Guarantee, error) {
	switch s {
	case "exactly-once":
		return ExactlyOnce, nil
	case "at-least-once":
		return AtLeastOnce, nil
	case "none":
		return None, nil
	}
	return 0, fmt.Errorf("delivery guarantee %q: use exactly-once, at-least-once or none", s)
}

func (g Guarantee) String() string {
	return [...]string{"exactly-once", "at-least-once", "none"}[g]
}

// Sink writes records to a topic. Encode fills a record's Key, Value and
// Headers (and may set Topic to route a record elsewhere); it must not keep
// the record. The record is reused: append to r.Value[:0] to write without
// allocating.
type Sink[T any] struct {
	Client    ClientConfig
	Topic     string
	Encode    func(r *kgo.Record, v T)
	Guarantee Guarantee
	// TransactionalIDPrefix names the sink's transactions (default
	// "weir-<job ID>-<operator UID>"); two jobs must never share one.
	TransactionalIDPrefix string
	// TransactionTimeout is how long the broker keeps a transaction open
	// before aborting it (default 60s). It must exceed the longest time
	// from a checkpoint's barrier to its completion notice plus one
	// checkpoint interval, and stay within the broker's
	// transaction.max.timeout.ms.
	TransactionTimeout time.Duration
	// CreateTopicPartitions creates a missing topic with this many
	// partitions (0: a missing topic is an error).
	CreateTopicPartitions int32
	// SkipLostTransactions lets a restore go on past a pre-committed
	// transaction the broker has aborted (its records are lost), logging
	// an error, instead of failing the job. For an operator who has
	// decided to accept the gap.
	SkipLostTransactions bool

	rc      *runtime.RuntimeContext
	opts    []kgo.Opt
	cl      *kgo.Client // at-least-once and none
	adm     *kadm.Client
	raw     *kgo.Client // adm's client, for raw transaction requests
	cur     *txn        // exactly-once: the open transaction
	pending []*txn      // pre-committed, awaiting their checkpoint's completion
	// inherited are the positions of old subtasks this one took over at
	// a lower parallelism, carried in its snapshots.
	inherited []position
	fenced    int // IDs probed at start-up that had been used
	prefix    string
	nextSeq   int64 // sequence number of the next transaction
	asyncErr  atomic.Pointer[error]
	pool      sync.Pool
	inflight  sync.WaitGroup
	eos       bool
}

// txn is one transaction of the sink, with its own producer (a
// transactional ID is used for exactly one transaction).
type txn struct {
	id         string
	seq        int64
	cl         *kgo.Client
	records    int64
	checkpoint int64
	pid        int64
	epoch      int16
	// flushed is closed once the pre-commit's flush has set pid and
	// epoch; a later checkpoint's snapshot waits for it.
	flushed  chan struct{}
	flushErr error
}

const (
	entryPosition = 1 // prefix, subtask, next transaction sequence number
	entryPending  = 2 // transactional ID, producer ID, epoch, checkpoint
	sinkEntryVer  = 1
)

// TransactionalID is the ID of a sink subtask's seq-th transaction.
func TransactionalID(prefix string, subtask int, seq int64) string {
	return prefix + "-" + strconv.Itoa(subtask) + "-" + strconv.FormatInt(seq, 10)
}

type sinkState struct {
	positions []position
	pending   []pendingTxn
}

type position struct {
	prefix  string
	subtask int
	next    int64
}

type pendingTxn struct {
	id         string
	subtask    int
	pid        int64
	epoch      int16
	checkpoint int64
}

func decodeSinkEntries(entries [][]byte) (sinkState, error) {
	var st sinkState
	for _, e := range entries {
		if len(e) < 2 || e[0] != sinkEntryVer {
			return st, fmt.Errorf("kafka sink: state entry: %w", runtime.ErrCorrupt)
		}
		r := runtime.NewReader(e[2:])
		switch e[1] {
		case entryPosition:
			p := position{prefix: string(r.Bytes()), subtask: int(r.Varint()), next: r.Varint()}
			if err := r.Done(); err != nil || p.subtask < 0 || p.next < 0 {
				return st, fmt.Errorf("kafka sink: position entry: %w", runtime.ErrCorrupt)
			}
			st.positions = append(st.positions, p)
		case entryPending:
			p := pendingTxn{id: string(r.Bytes()), subtask: int(r.Varint()), pid: r.Varint(), epoch: int16(r.Varint()), checkpoint: r.Varint()}
			if err := r.Done(); err != nil || p.subtask < 0 {
				return st, fmt.Errorf("kafka sink: pending entry: %w", runtime.ErrCorrupt)
			}
			st.pending = append(st.pending, p)
		default:
			return st, fmt.Errorf("kafka sink: state entry kind %d: %w", e[1], runtime.ErrCorrupt)
		}
	}
	return st, nil
}

func appendPosition(p position) []byte {
	e := []byte{sinkEntryVer, entryPosition}
	e = binary.AppendVarint(e, int64(len(p.prefix)))
	e = append(e, p.prefix...)
	e = binary.AppendVarint(e, int64(p.subtask))
	return binary.AppendVarint(e, p.next)
}

func appendPending(p pendingTxn) []byte {
	e := []byte{sinkEntryVer, entryPending}
	e = binary.AppendVarint(e, int64(len(p.id)))
	e = append(e, p.id...)
	e = binary.AppendVarint(e, int64(p.subtask))
	e = binary.AppendVarint(e, p.pid)
	e = binary.AppendVarint(e, int64(p.epoch))
	return binary.AppendVarint(e, p.checkpoint)
}

// InitializeState recovers after a restore: it commits the transactions
// the restored checkpoint had pre-committed, then fences and aborts every
// transaction a failed attempt may have left open, before this subtask
// writes anything. Old subtask j is handled by new subtask j % parallelism.
func (s *Sink[T]) InitializeState(ctx *runtime.RuntimeContext, entries [][]byte) error {
	s.rc = ctx
	s.eos = s.Guarantee == ExactlyOnce && ctx.CheckpointingEnabled()
	if s.Guarantee == ExactlyOnce && !ctx.CheckpointingEnabled() {
		ctx.Logger().Warn("kafka sink: the job takes no checkpoints; writing at-least-once instead of exactly-once")
	}
	s.prefix = s.TransactionalIDPrefix
	if s.prefix == "" {
		s.prefix = "weir-" + ctx.JobID() + "-" + ctx.UID()
	}
	if err := s.setup(); err != nil {
		return err
	}
	st, err := decodeSinkEntries(entries)
	if err != nil || !s.eos {
		return err
	}
	sub, par := ctx.SubtaskIndex(), ctx.Parallelism()
	for _, p := range st.pending {
		if p.subtask%par != sub {
			continue
		}
		if err := s.recoverCommit(p); err != nil {
			return err
		}
	}
	probed := false
	for _, p := range st.positions {
		if p.subtask%par != sub {
			continue
		}
		end, err := s.abortFrom(p.prefix, p.subtask, p.next)
		if err != nil {
			return err
		}
		switch {
		case p.prefix != s.prefix:
			// Another job's IDs (this one started from its savepoint):
			// nothing of it will be restored again.
		case p.subtask == sub:
			s.nextSeq, probed = end, true
		default:
			// Old subtask p.subtask is gone at this parallelism; keep its
			// position, so a later scale-up resumes there instead of
			// probing every ID it ever used.
			s.inherited = append(s.inherited, position{prefix: p.prefix, subtask: p.subtask, next: end})
		}
	}
	if !probed {
		// A subtask new at this parallelism, or a fresh start: a failed
		// attempt before the first checkpoint may still have left
		// transactions under this prefix.
		end, err := s.abortFrom(s.prefix, sub, 0)
		if err != nil {
			return err
		}
		s.nextSeq = end
	}
	return nil
}

func (s *Sink[T]) setup() error {
	if s.Encode == nil {
		return errors.New("kafka sink: no Encode function")
	}
	if s.Topic == "" {
		return errors.New("kafka sink: no topic")
	}
	if s.TransactionTimeout <= 0 {
		s.TransactionTimeout = time.Minute
	}
	opts, err := s.Client.options()
	if err != nil {
		return err
	}
	s.opts = append(opts, kgo.DefaultProduceTopic(s.Topic), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka sink: %w", err)
	}
	s.raw, s.adm = admCl, kadm.NewClient(admCl)
	ctx := s.rc.Context()
	_, err = s.Client.checkTopics(ctx, s.adm, s.Topic)
	if errors.Is(err, ErrUnknownTopic) && s.CreateTopicPartitions > 0 {
		resp, cerr := s.adm.CreateTopic(ctx, s.CreateTopicPartitions, -1, nil, s.Topic)
		if cerr == nil {
			cerr = resp.Err
		}
		// Another subtask may have created it a moment before.
		if cerr != nil && !errors.Is(cerr, kerr.TopicAlreadyExists) {
			return fmt.Errorf("kafka sink: creating topic %q: %w", s.Topic, cerr)
		}
		err = nil
	}
	if err != nil {
		s.adm.Close()
		return fmt.Errorf("kafka sink: %w", err)
	}
	return nil
}

// recoverCommit commits a transaction pre-committed for the restored
// checkpoint, speaking EndTxn with its producer ID and epoch as the
// producer that wrote it would have. A transaction committed before is
// acknowledged again by the broker (a retried commit); one the broker has
// aborted, for running past its timeout, cannot be committed: its records
// are lost, and the job fails with an error saying so.
func (s *Sink[T]) recoverCommit(p pendingTxn) error {
	req := kmsg.NewPtrEndTxnRequest()
	req.TransactionalID = p.id
	req.ProducerID = p.pid
	req.ProducerEpoch = p.epoch
	req.Commit = true
	ctx, cancel := context.WithTimeout(s.rc.Context(), 30*time.Second)
	defer cancel()
	for {
		resp, err := req.RequestWith(ctx, s.raw)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		switch {
		case err == nil:
			s.rc.Logger().Info("kafka sink: committed a transaction of the restored checkpoint", "transaction", p.id, "checkpoint", p.checkpoint)
			return nil
		case errors.Is(err, kerr.ConcurrentTransactions) || errors.Is(err, kerr.CoordinatorLoadInProgress) || errors.Is(err, kerr.NotCoordinator):
			select {
			case <-ctx.Done():
				return fmt.Errorf("kafka sink: committing transaction %s of checkpoint %d: %w", p.id, p.checkpoint, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		case errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) || errors.Is(err, kerr.InvalidTxnState) || errors.Is(err, kerr.InvalidProducerIDMapping) || errors.Is(err, kerr.TransactionalIDNotFound):
			if s.SkipLostTransactions {
				s.rc.Logger().Error("kafka sink: a transaction of a completed checkpoint was aborted by the broker; its records are lost",
					"transaction", p.id, "checkpoint", p.checkpoint, "err", err)
				return nil
			}
			return fmt.Errorf("kafka sink: transaction %s of completed checkpoint %d can no longer be committed (%w): "+
				"the broker aborted it, most likely because it stayed open longer than the transaction timeout (%v); its records are lost. "+
				"Raise the transaction timeout above the checkpoint interval plus the time checkpoints take; to restore anyway, accepting the gap, set skip-lost-transactions: %w",
				p.id, p.checkpoint, err, s.TransactionTimeout, runtime.ErrUnrecoverable)
		default:
			return fmt.Errorf("kafka sink: committing transaction %s of checkpoint %d: %w", p.id, p.checkpoint, err)
		}
	}
}

// abortFrom fences and aborts the transactions of a failed attempt: the
// sink uses IDs prefix-subtask-0, -1, ... in order, each for one
// transaction, so InitProducerID on each from the restored position on,
// up to the first never used (epoch 0), aborts whatever is open. It
// returns the sequence number of that first unused ID.
func (s *Sink[T]) abortFrom(prefix string, subtask int, seq int64) (int64, error) {
	ctx, cancel := context.WithTimeout(s.rc.Context(), time.Minute)
	defer cancel()
	timeout := int32(s.TransactionTimeout.Milliseconds())
	aborted := 0
	for ; ; seq++ {
		id := TransactionalID(prefix, subtask, seq)
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID = &id
		req.TransactionTimeoutMillis = timeout
		req.ProducerID, req.ProducerEpoch = -1, -1
		var epoch int16
		for {
			resp, err := req.RequestWith(ctx, s.raw)
			if err == nil {
				err = kerr.ErrorForCode(resp.ErrorCode)
			}
			if err == nil {
				epoch = resp.ProducerEpoch
				break
			}
			if !errors.Is(err, kerr.ConcurrentTransactions) && !errors.Is(err, kerr.CoordinatorLoadInProgress) && !errors.Is(err, kerr.NotCoordinator) {
				return 0, fmt.Errorf("kafka sink: fencing transaction %s: %w", id, err)
			}
			select {
			case <-ctx.Done():
				return 0, fmt.Errorf("kafka sink: fencing transaction %s: %w", id, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
		if epoch == 0 {
			break
		}
		aborted++
	}
	s.fenced += aborted
	if aborted > 0 {
		s.rc.Logger().Info("kafka sink: fenced the transactional IDs of earlier attempts, aborting what they left open", "prefix", prefix, "subtask", subtask, "ids", aborted)
	}
	return seq, nil
}

// Open starts the first transaction, or the plain producer.
func (s *Sink[T]) Open(ctx *runtime.RuntimeContext) error {
	if s.rc == nil { // not restored through InitializeState
		if err := s.InitializeState(ctx, nil); err != nil {
			return err
		}
	}
	s.pool.New = func() any { return &kgo.Record{} }
	if !s.eos {
		cl, err := kgo.NewClient(s.opts...)
		if err != nil {
			return fmt.Errorf("kafka sink: %w", err)
		}
		s.cl = cl
		return nil
	}
	return s.begin()
}

// begin opens the next transaction under a fresh transactional ID.
func (s *Sink[T]) begin() error {
	t := &txn{seq: s.nextSeq, id: TransactionalID(s.prefix, s.rc.SubtaskIndex(), s.nextSeq)}
	opts := append(s.opts[:len(s.opts):len(s.opts)], kgo.TransactionalID(t.id), kgo.TransactionTimeout(s.TransactionTimeout))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka sink: %w", err)
	}
	if err := cl.BeginTransaction(); err != nil {
		cl.Close()
		return fmt.Errorf("kafka sink: beginning transaction %s: %w", t.id, err)
	}
	t.cl = cl
	s.nextSeq++
	s.cur = t
	return nil
}

func (s *Sink[T]) fail(err error) {
	if err != nil && !errors.Is(err, context.Canceled) {
		s.asyncErr.CompareAndSwap(nil, &err)
	}
}

// Invoke encodes v and hands it to the producer; the broker's answer comes
// back asynchronously (its error fails a later Invoke or the checkpoint).
func (s *Sink[T]) Invoke(v T) error {
	if p := s.asyncErr.Load(); p != nil {
		return fmt.Errorf("kafka sink: producing: %w", *p)
	}
	r := s.pool.Get().(*kgo.Record)
	r.Topic = ""
	r.Key = r.Key[:0]
	r.Value = r.Value[:0]
	r.Headers = r.Headers[:0]
	r.Partition = 0
	r.Timestamp = time.Time{}
	s.Encode(r, v)
	cl := s.cl
	if s.eos {
		cl = s.cur.cl
		s.cur.records++
	}
	s.inflight.Add(1)
	cl.Produce(s.rc.Context(), r, s.done)
	return nil
}

func (s *Sink[T]) done(r *kgo.Record, err error) {
	s.fail(err)
	s.pool.Put(r)
	s.inflight.Done()
}

// SnapshotStateAsync pre-commits: on the task goroutine it closes the
// current transaction to new records and opens the next one; the returned
// function flushes the closed one (every record acknowledged inside the
// still-open transaction) concurrently with processing.
func (s *Sink[T]) SnapshotStateAsync(checkpointID int64) (func(context.Context) ([][]byte, error), error) {
	if p := s.asyncErr.Load(); p != nil {
		return nil, fmt.Errorf("kafka sink: producing: %w", *p)
	}
	if !s.eos {
		if s.Guarantee == None {
			return func(context.Context) ([][]byte, error) { return nil, nil }, nil
		}
		cl := s.cl
		return func(ctx context.Context) ([][]byte, error) {
			if err := cl.Flush(ctx); err != nil {
				return nil, fmt.Errorf("kafka sink: flushing: %w", err)
			}
			if p := s.asyncErr.Load(); p != nil {
				return nil, fmt.Errorf("kafka sink: producing: %w", *p)
			}
			return nil, nil
		}, nil
	}
	var flush *txn
	if s.cur.records > 0 {
		flush = s.cur
		flush.checkpoint = checkpointID
		flush.flushed = make(chan struct{})
		s.pending = append(s.pending, flush)
		if err := s.begin(); err != nil {
			return nil, err
		}
	}
	// The entries: this subtask's position (the open transaction's
	// sequence number, which a restore aborts from) and every
	// pre-committed transaction not yet committed, including this one.
	// Producer IDs are only known once flushed, so they are read then.
	pend := append([]*txn(nil), s.pending...)
	pos := position{prefix: s.prefix, subtask: s.rc.SubtaskIndex(), next: s.cur.seq}
	inherited := s.inherited
	sub := s.rc.SubtaskIndex()
	return func(ctx context.Context) ([][]byte, error) {
		if flush != nil {
			flush.flushErr = precommit(ctx, flush, &s.asyncErr)
			close(flush.flushed)
			if flush.flushErr != nil {
				return nil, flush.flushErr
			}
		}
		entries := [][]byte{appendPosition(pos)}
		for _, p := range inherited {
			entries = append(entries, appendPosition(p))
		}
		for _, t := range pend {
			// An earlier checkpoint's pre-commit may still be running.
			select {
			case <-t.flushed:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if t.flushErr != nil {
				return nil, t.flushErr
			}
			entries = append(entries, appendPending(pendingTxn{id: t.id, subtask: sub, pid: t.pid, epoch: t.epoch, checkpoint: t.checkpoint}))
		}
		return entries, nil
	}, nil
}

// precommit flushes t (every record acknowledged inside the open
// transaction) and records its producer ID and epoch.
func precommit(ctx context.Context, t *txn, asyncErr *atomic.Pointer[error]) error {
	if err := t.cl.Flush(ctx); err != nil {
		return fmt.Errorf("kafka sink: flushing transaction %s: %w", t.id, err)
	}
	if p := asyncErr.Load(); p != nil {
		return fmt.Errorf("kafka sink: producing: %w", *p)
	}
	pid, epoch, err := t.cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("kafka sink: transaction %s: %w", t.id, err)
	}
	t.pid, t.epoch = pid, epoch
	return nil
}

// SnapshotState is the synchronous form of SnapshotStateAsync.
func (s *Sink[T]) SnapshotState(checkpointID int64) ([][]byte, error) {
	fn, err := s.SnapshotStateAsync(checkpointID)
	if err != nil {
		return nil, err
	}
	return fn(s.rc.Context())
}

// NotifyCheckpointComplete commits the transactions pre-committed for
// checkpoints up to id.
func (s *Sink[T]) NotifyCheckpointComplete(id int64) error {
	for len(s.pending) > 0 && s.pending[0].checkpoint <= id {
		t := s.pending[0]
		if err := s.commit(t); err != nil {
			return err
		}
		s.pending = s.pending[1:]
	}
	return nil
}

func (s *Sink[T]) commit(t *txn) error {
	ctx, cancel := context.WithTimeout(s.rc.Context(), 30*time.Second)
	defer cancel()
	if err := t.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("kafka sink: committing transaction %s of checkpoint %d: %w", t.id, t.checkpoint, err)
	}
	t.cl.Close()
	return nil
}

// EndInput commits everything written: the input ended normally.
func (s *Sink[T]) EndInput() error {
	ctx := s.rc.Context()
	if !s.eos {
		if err := s.cl.Flush(ctx); err != nil {
			return fmt.Errorf("kafka sink: flushing: %w", err)
		}
		if p := s.asyncErr.Load(); p != nil {
			return fmt.Errorf("kafka sink: producing: %w", *p)
		}
		return nil
	}
	for _, t := range s.pending {
		if err := t.cl.Flush(ctx); err != nil {
			return fmt.Errorf("kafka sink: flushing transaction %s: %w", t.id, err)
		}
		if err := s.commit(t); err != nil {
			return err
		}
	}
	s.pending = nil
	if err := s.cur.cl.Flush(ctx); err != nil {
		return fmt.Errorf("kafka sink: flushing transaction %s: %w", s.cur.id, err)
	}
	if p := s.asyncErr.Load(); p != nil {
		return fmt.Errorf("kafka sink: producing: %w", *p)
	}
	return s.commit(s.cur)
}

// Close aborts the open transaction (its records belong to no checkpoint)
// and leaves the pre-committed ones for a restore to commit.
func (s *Sink[T]) Close() error {
	if s.cur != nil && s.cur.cl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.cur.cl.AbortBufferedRecords(ctx)
		_ = s.cur.cl.EndTransaction(ctx, kgo.TryAbort)
		cancel()
		s.cur.cl.Close()
	}
	for _, t := range s.pending {
		t.cl.Close()
	}
	if s.cl != nil {
		s.cl.Close()
	}
	if s.adm != nil {
		s.adm.Close()
	}
	// A second Close does nothing.
	s.cur, s.pending, s.cl, s.adm = nil, nil, nil, nil
	return nil
}
