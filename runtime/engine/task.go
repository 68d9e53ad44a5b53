package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// ErrEndOfInput is returned by a source's poll when a bounded source has
// emitted its last record.
var ErrEndOfInput = errors.New("end of input")

// Chain is a task's operator chain as the engine drives it. Package
// runtime implements it over the typed operators; the engine calls it on
// the task goroutine, once per buffer, batch or event, never per record.
type Chain interface {
	// Open opens the operators; ctx ends when the task does.
	Open(ctx context.Context) error
	// Poll runs a source chain's source once: it emits what is ready and
	// returns how long to wait before the next call, or ErrEndOfInput.
	Poll() (time.Duration, error)
	// Process hands the records of one data buffer of input channel ch
	// (length-prefixed frames) to the chain's head.
	Process(ch int, data []byte) error
	// NextTimer is the chain's earliest processing-time timer (Unix ms).
	NextTimer() (int64, bool)
	// FireTimers fires the processing-time timers at or before now (Unix
	// ms).
	FireTimers(now int64)
	// AdvanceWatermark moves the chain's watermark to wm and fires its
	// event-time timers up to it, head first.
	AdvanceWatermark(wm int64)
	// AdvanceInputWatermark moves the watermark of the operators upstream
	// of the chain's Generator to wm, the inputs' combined watermark,
	// which the generator replaces for the rest of the chain. Only chains
	// with a Generator and inputs get it.
	AdvanceInputWatermark(wm int64)
	// Generator is the chain's timestamp assigner, which makes the task's
	// watermarks; nil when the chain has none.
	Generator() WatermarkGenerator
	// Snapshot takes the synchronous part of checkpoint id; a savepoint's
	// state must be self-contained, in the common state file format.
	Snapshot(id int64, savepoint bool) ([]StateSnapshot, error)
	// NotifyCheckpointComplete tells the operators that listen.
	NotifyCheckpointComplete(id int64) error
	// EndInput tells the operators their input ended normally.
	EndInput() error
	// Close closes the operators, after a normal end or a failure.
	Close() error
	// Publish copies the operators' counters for readers on other
	// goroutines; it runs after every batch.
	Publish()
}

// WatermarkGenerator is the task-facing side of a timestamp assigner.
type WatermarkGenerator interface {
	// Watermark is the watermark the records so far allow.
	Watermark() int64
	// Records counts the records seen; the task watches it change to
	// tell an idle stream from an active one.
	Records() int64
	// IdleTimeout is how long without records makes the stream idle (0:
	// never).
	IdleTimeout() time.Duration
}

// IdleDeclarer is a watermark generator that says itself whether its
// input is idle (a source that knows its partitions are quiet), instead
// of the task timing its records.
type IdleDeclarer interface{ IsIdle() bool }

// Config is what a task is given: its place in the job, its I/O, and the
// services the TaskManager injects (clock, uploader, checkpoint reports).
type Config struct {
	// VertexName and SourceName (the chain's head) name the task in
	// errors and logs.
	VertexName, SourceName string
	Subtask                int
	// Source says the chain's head is a source, polled by the task.
	Source bool
	// Input merges the input channels; nil for sources.
	Input InputGate
	// NoWatermark[ch] marks the input channels whose input has no event
	// time; it has one entry per input channel.
	NoWatermark []bool
	// EventTime says records carry timestamps and watermarks flow.
	EventTime bool
	// Clock is the processing-time service; nil is the wall clock.
	Clock  Clock
	Logger *slog.Logger
	// LatencyInterval is how often a source emits latency markers; 0
	// means 200ms, negative disables them.
	LatencyInterval time.Duration
	// FlushInterval bounds how long a record may wait in a partly filled
	// output buffer while the task is busy; 0 means 2ms. An idle task
	// flushes at once.
	FlushInterval time.Duration
	// Checkpoints receives checkpoint reports; nil without a JobManager
	// (tests), which still lets barriers through.
	Checkpoints CheckpointResponder
	// Checkpointing says periodic checkpoints are on: a source that
	// reaches the end of its input then waits for one more checkpoint
	// before it finishes, so sinks commit its last records exactly once.
	Checkpointing bool
	// Uploader stores snapshots; nil is a StorageUploader with the
	// environment's S3 settings.
	Uploader Uploader
}

// Task runs one subtask: its chain on one goroutine, fed by a source or by
// the input gate, between the control requests of its mailbox.
type Task struct {
	cfg   Config
	chain Chain
	gen   WatermarkGenerator
	// genIdle is gen's own idleness when it declares it; nil for an
	// assigner, whose idleness the task times.
	genIdle IdleDeclarer
	clock   Clock
	log     *slog.Logger
	ctx     context.Context
	err     error
	writers []*Writer
	mailbox *Mailbox
	align   *Aligner
	inWM    *InputWatermarks

	// wm is the task's watermark, publishedWM the same for status readers.
	wm          int64
	publishedWM atomic.Int64
	// publishedIn is the combined watermark of the input channels, which
	// differs from wm when an assigner in the chain replaces it.
	publishedIn atomic.Int64
	idleOut     bool
	genSeen     int64
	genAt       int64 // clock time the generator last saw a record

	eop        int
	nextMarker int64
	pollStart  int64
	lastFlush  int64
	sleeper    Timer
	latency    Histogram
	stats      ioCounters
	// lastAck is the newest checkpoint acknowledgement, for metrics.
	lastAck atomic.Pointer[CheckpointAck]
	// lastCheckpoint is the newest checkpoint the task snapshotted.
	lastCheckpoint atomic.Int64
	async          sync.WaitGroup
	// A source that ended its input, or was stopped by a savepoint,
	// emits nothing more and finishes once checkpoint finalBarrier (the
	// first it took part in since) is complete.
	ended, stopped bool
	finalBarrier   int64
}

// NewTask returns a task; its writers are added with NewWriter and its
// chain with SetChain before Run.
func NewTask(cfg Config) (*Task, error) {
	if (cfg.Input == nil) != cfg.Source {
		return nil, fmt.Errorf("vertex %s: input gate given=%v, source=%v", cfg.VertexName, cfg.Input != nil, cfg.Source)
	}
	if cfg.Input != nil && len(cfg.NoWatermark) != cfg.Input.NumChannels() {
		return nil, fmt.Errorf("vertex %s: the input gate has %d channels, the graph %d", cfg.VertexName, cfg.Input.NumChannels(), len(cfg.NoWatermark))
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LatencyInterval == 0 {
		cfg.LatencyInterval = 200 * time.Millisecond
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 2 * time.Millisecond
	}
	if cfg.Uploader == nil {
		cfg.Uploader = StorageUploader{}
	}
	t := &Task{cfg: cfg, clock: cfg.Clock, log: cfg.Logger, mailbox: NewMailbox(64), wm: NoTimestamp,
		inWM: NewInputWatermarks(cfg.NoWatermark)}
	t.publishedWM.Store(NoTimestamp)
	t.publishedIn.Store(NoTimestamp)
	if cfg.Input != nil {
		t.align = NewAligner(cfg.Input.NumChannels())
	}
	return t, nil
}

// NewWriter adds a writer over output channels chs (markers starting at
// channel first).
func (t *Task) NewWriter(chs []OutputChannel, first int) *Writer {
	w := NewWriter(t, chs, first)
	t.writers = append(t.writers, w)
	return w
}

// SetChain gives the task its operator chain.
func (t *Task) SetChain(c Chain) {
	t.chain = c
	t.gen = c.Generator()
	t.genIdle, _ = t.gen.(IdleDeclarer)
}

// Clock is the task's processing-time service.
func (t *Task) Clock() Clock { return t.clock }

// Context is the context Run was called with (WriterHost).
func (t *Task) Context() context.Context { return t.ctx }

// Failed reports whether the task has failed (WriterHost).
func (t *Task) Failed() bool { return t.err != nil }

// Fail records the task's first failure; the task ends with it at the end
// of the current batch. Operators call it on the task goroutine.
func (t *Task) Fail(err error) {
	if t.err == nil {
		t.err = err
	}
}

// Sent counts a data buffer sent (WriterHost).
func (t *Task) Sent(n int) {
	t.stats.bytesOut += int64(n)
	t.stats.buffersOut++
}

// Run processes until the input ends (nil), the context is cancelled
// (its error) or an operator fails. It MUST be called once.
func (t *Task) Run(ctx context.Context) (err error) {
	if t.chain == nil {
		return fmt.Errorf("vertex %s: task has no chain", t.cfg.VertexName)
	}
	t.ctx = ctx
	t.sleeper = t.clock.NewTimer()
	t.stats.started.Store(t.clock.Now())
	defer func() {
		for _, w := range t.writers {
			w.Close()
		}
		t.publish()
		t.stats.ended.Store(t.clock.Now())
	}()
	// State uploads in flight finish (or fail with ctx) before the task
	// reports its end, so their acknowledgements are not lost.
	defer t.async.Wait()
	defer t.refuseTriggers()
	if err := t.chain.Open(ctx); err != nil {
		return fmt.Errorf("open: %w", err)
	}
	now := t.clock.Now()
	t.lastFlush = now
	t.genAt = now
	t.nextMarker = now + int64(t.cfg.LatencyInterval)
	if t.cfg.Source {
		err = t.runSource(ctx)
	} else {
		err = t.runInput(ctx)
	}
	if err == nil && t.err == nil {
		// Functions see the end only after their snapshots' async parts.
		t.async.Wait()
		if err = t.chain.EndInput(); err != nil {
			err = fmt.Errorf("end of input: %w", err)
		}
	}
	if cerr := t.chain.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	if err == nil {
		err = t.err
	}
	if err != nil {
		return err
	}
	// Finished: what is buffered goes out, then end-of-partition.
	for _, w := range t.writers {
		w.Flush()
		w.Broadcast(BufferEndOfPartition, 0)
	}
	return t.err
}

func (t *Task) runSource(ctx context.Context) error {
	for {
		// Control requests first; a source that ended or was stopped
		// emits nothing more and waits for the checkpoint that lets it
		// finish (or, after an aborted stop, resume).
		idle := t.ended || t.stopped
		if idle {
			t.flush(t.clock.Now())
		}
		handled, finished, err := t.nextControl(ctx, idle)
		if err != nil || finished {
			return err
		}
		if handled {
			continue
		}
		t.pollStart = t.clock.Now()
		wait, perr := t.chain.Poll()
		if t.err != nil {
			return t.err
		}
		if perr != nil {
			if errors.Is(perr, ErrEndOfInput) {
				if t.cfg.EventTime {
					// A bounded input's end closes every window.
					t.advanceWatermark(MaxWatermark)
				}
				if t.cfg.Checkpointing && t.cfg.Checkpoints != nil {
					t.ended = true
					t.cfg.Checkpoints.EndOfInput()
					continue
				}
				return nil
			}
			return fmt.Errorf("source %s: %w", t.cfg.SourceName, perr)
		}
		now := t.clock.Now()
		t.afterBatch(now)
		if t.err != nil {
			return t.err
		}
		if wait > 0 {
			t.flush(now)
			wake := now + int64(wait)
			if t.cfg.LatencyInterval > 0 {
				wake = min(wake, t.nextMarker)
			}
			if ts, ok := t.chain.NextTimer(); ok {
				wake = min(wake, ts*int64(time.Millisecond))
			}
			if d := t.idleDeadline(); d > 0 {
				wake = min(wake, d)
			}
			finished, err := t.sleep(ctx, wake)
			if err != nil || finished {
				return err
			}
			t.afterBatch(t.clock.Now()) // fire what the sleep was for
			if t.err != nil {
				return t.err
			}
		}
	}
}

// sleep waits until deadline (clock time) for a source's next poll,
// handling control requests that arrive meanwhile; it reports whether one
// of them finished the source.
func (t *Task) sleep(ctx context.Context, deadline int64) (bool, error) {
	since := t.clock.Now()
	if deadline <= since {
		return false, nil
	}
	t.sleeper.Reset(deadline)
	defer t.sleeper.Stop()
	t.stats.idleFrom(since)
	defer func() { t.stats.idleUntil(since, t.clock.Now()) }()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.sleeper.C():
			return false, nil
		case c := <-t.mailbox.C():
			if t.handleControl(c) {
				return true, nil
			}
			if t.err != nil {
				return false, t.err
			}
			if t.ended || t.stopped {
				return false, nil
			}
		}
	}
}

// nextControl handles one control request, waiting for one if block is
// set. It reports whether it handled one and whether that finished the
// (source) task.
func (t *Task) nextControl(ctx context.Context, block bool) (handled, finished bool, err error) {
	var c Control
	if block {
		since := t.clock.Now()
		t.stats.idleFrom(since)
		select {
		case c = <-t.mailbox.C():
		case <-ctx.Done():
		}
		t.stats.idleUntil(since, t.clock.Now())
		if ctx.Err() != nil {
			return false, false, ctx.Err()
		}
	} else {
		select {
		case c = <-t.mailbox.C():
		case <-ctx.Done():
			return false, false, ctx.Err()
		default:
			return false, false, nil
		}
	}
	if t.handleControl(c) {
		return true, true, nil
	}
	return true, false, t.err
}

// handleControl carries out a control request on the task goroutine. It
// reports whether the (source) task has finished.
func (t *Task) handleControl(c Control) bool {
	switch c.Kind {
	case ControlTrigger:
		t.checkpoint(c.Barrier, 0)
		if c.Barrier.Stop {
			t.stopped, t.finalBarrier = true, c.Barrier.ID
		} else if t.ended && t.finalBarrier == 0 {
			t.finalBarrier = c.Barrier.ID
		}
	case ControlComplete:
		if err := t.chain.NotifyCheckpointComplete(c.ID); err != nil {
			t.Fail(fmt.Errorf("checkpoint %d complete: %w", c.ID, err))
			return false
		}
		if (t.ended || t.stopped) && t.finalBarrier != 0 && c.ID >= t.finalBarrier {
			return true
		}
	case ControlAbort:
		if t.finalBarrier == c.ID {
			t.finalBarrier = 0
			if t.stopped {
				t.stopped = false // the savepoint failed: go on
			} else if t.ended && t.cfg.Checkpoints != nil {
				t.cfg.Checkpoints.EndOfInput()
			}
		}
	}
	return false
}

// TriggerCheckpoint asks a source task to take checkpoint b and emit its
// barrier. It returns at once; the outcome is reported through
// Config.Checkpoints.
func (t *Task) TriggerCheckpoint(b Barrier) error {
	if !t.cfg.Source {
		return fmt.Errorf("%w: %s is not a source; barriers reach it from its inputs", ErrCheckpointDeclined, t.cfg.VertexName)
	}
	if err := t.mailbox.Trigger(b); err != nil {
		return fmt.Errorf("%w: task %s (%d) %w", ErrCheckpointDeclined, t.cfg.VertexName, t.cfg.Subtask, err)
	}
	return nil
}

// refuseTriggers ends the task's part in checkpoints: later triggers fail
// and queued ones are declined.
func (t *Task) refuseTriggers() {
	for _, b := range t.mailbox.Close() {
		if t.cfg.Checkpoints != nil {
			t.cfg.Checkpoints.Decline(b.ID, fmt.Errorf("%w: task %s (%d) %w", ErrCheckpointDeclined, t.cfg.VertexName, t.cfg.Subtask, ErrTaskEnded))
		}
	}
}

// NotifyCheckpointComplete tells the task that checkpoint id is complete.
func (t *Task) NotifyCheckpointComplete(id int64) { t.mailbox.Notify(ControlComplete, id) }

// NotifyCheckpointAborted tells the task that checkpoint id was aborted.
func (t *Task) NotifyCheckpointAborted(id int64) { t.mailbox.Notify(ControlAbort, id) }

// Ended reports whether Run has returned: the task goroutine no longer
// touches the chain (the end is recorded last).
func (t *Task) Ended() bool { return t.stats.ended.Load() != 0 }

// LastCheckpoint is the newest checkpoint the task has snapshotted.
func (t *Task) LastCheckpoint() int64 { return t.lastCheckpoint.Load() }

func (t *Task) runInput(ctx context.Context) error {
	gate := t.cfg.Input
	bufs, errs := gate.Buffers(), gate.Err()
	armed := int64(-1)
	for {
		// Sleep until a buffer arrives or the next timer is due.
		wake, ok := t.chain.NextTimer()
		if d := t.idleDeadline(); d > 0 {
			// An assigner after an exchange turns idle without input.
			ms := d/int64(time.Millisecond) + 1
			if !ok || ms < wake {
				wake, ok = ms, true
			}
		}
		if ok && wake != armed {
			t.sleeper.Reset(wake * int64(time.Millisecond))
			armed = wake
		}
		// Idle time is the wait for the select; a buffer that is ready
		// makes it a few nanoseconds. Two clock reads per buffer (of up
		// to BufferSize bytes) are the whole cost.
		since := t.clock.Now()
		t.stats.idleFrom(since)
		var b *Buffer
		var c Control
		var gotControl bool
		select {
		case b = <-bufs:
		case <-t.sleeper.C():
			armed = -1
		case c = <-t.mailbox.C():
			gotControl = true
		case err := <-errs:
			t.stats.idleUntil(since, t.clock.Now())
			return fmt.Errorf("input: %w", err)
		case <-ctx.Done():
			t.stats.idleUntil(since, t.clock.Now())
			return ctx.Err()
		}
		now := t.clock.Now()
		t.stats.idleUntil(since, now)
		if b != nil {
			if t.handle(b) {
				return t.err
			}
			now = t.clock.Now()
		} else if gotControl {
			t.handleControl(c)
		}
		if t.err != nil {
			return t.err
		}
		t.afterBatch(now)
		if len(bufs) == 0 {
			t.flush(now) // idle: send partial buffers for latency's sake
		}
	}
}

// handle consumes one input buffer and reports whether the input is done.
func (t *Task) handle(b *Buffer) bool {
	if t.align.Blocked(b.Channel) {
		t.align.Hold(b)
		return false
	}
	switch b.Kind {
	case BufferData:
		t.stats.bytesIn += int64(len(b.Data))
		t.stats.buffersIn++
		if err := t.chain.Process(b.Channel, b.Data); err != nil {
			t.Fail(fmt.Errorf("input channel %d: %w", b.Channel, err))
		}
		t.cfg.Input.Recycle(b)
	case BufferEndOfPartition:
		t.eop++
		t.align.EndOfPartition(b.Channel)
		t.cfg.Input.Recycle(b)
		if t.eop == t.cfg.Input.NumChannels() {
			return true
		}
		return !t.maybeAligned()
	case BufferBarrier:
		ch := b.Channel
		bar, err := DecodeBarrier(b.Data)
		t.cfg.Input.Recycle(b)
		if err != nil {
			t.Fail(fmt.Errorf("input channel %d: %w", ch, err))
			return false
		}
		return !t.onBarrier(ch, bar)
	case BufferWatermark, BufferWatermarkStatus:
		ch, kind, v := b.Channel, b.Kind, b.Value
		t.cfg.Input.Recycle(b)
		t.onInputWatermark(ch, kind, v)
	case BufferLatencyMarker:
		if len(t.writers) == 0 {
			t.latency.Record(t.clock.Now() - b.Value)
		}
		for _, w := range t.writers {
			w.ForwardMarker(b.Value)
		}
		t.cfg.Input.Recycle(b)
	}
	return false
}

// onBarrier handles a barrier from channel ch. It reports whether the task
// must go on reading (false when the input is done).
func (t *Task) onBarrier(ch int, b Barrier) bool {
	for {
		switch t.align.OnBarrier(ch, b, t.clock.Now()) {
		case BarrierIgnore:
			return true
		case BarrierOvertaken:
			old, _ := t.align.Pending()
			t.log.Debug("checkpoint alignment abandoned", "checkpoint", old.ID, "newer", b.ID)
			if t.releaseQueued() {
				return false
			}
		case BarrierAccepted:
			return t.maybeAligned()
		}
	}
}

// maybeAligned completes the alignment once every open channel delivered
// the barrier. It reports whether the task must go on reading.
func (t *Task) maybeAligned() bool {
	b, alignNs, ok := t.align.Aligned(t.clock.Now())
	if !ok {
		return true
	}
	t.checkpoint(b, alignNs)
	return !t.releaseQueued()
}

// releaseQueued ends the alignment and processes the held buffers in
// their channels' order. It reports whether the input is done.
func (t *Task) releaseQueued() bool {
	for _, q := range t.align.Release() {
		for i, b := range q {
			if t.handle(b) {
				for _, rest := range q[i+1:] {
					t.cfg.Input.Recycle(rest)
				}
				return true
			}
		}
	}
	return false
}

// afterBatch does the periodic work between batches: counters, timers,
// latency markers and the flush deadline.
func (t *Task) afterBatch(now int64) {
	t.publish()
	if t.gen != nil {
		t.generateWatermark(now)
	}
	if ts, ok := t.chain.NextTimer(); ok {
		if ms := now / int64(time.Millisecond); ts <= ms {
			t.chain.FireTimers(ms)
		}
	}
	if t.cfg.Source && t.cfg.LatencyInterval > 0 && now >= t.nextMarker {
		t.nextMarker = now + int64(t.cfg.LatencyInterval)
		if len(t.writers) == 0 {
			// Fully chained: records reach the sink by direct calls, so the
			// longest any record waited is the poll batch's duration.
			t.latency.Record(now - t.pollStart)
		}
		for _, w := range t.writers {
			w.ForwardMarker(now)
		}
	}
	if now-t.lastFlush >= int64(t.cfg.FlushInterval) {
		t.flush(now)
	}
}

func (t *Task) flush(now int64) {
	t.lastFlush = now
	for _, w := range t.writers {
		w.Flush()
	}
}

func (t *Task) publish() {
	t.stats.publish()
	t.chain.Publish()
}

// Latency returns the latency-marker histogram of a sink task's buckets.
func (t *Task) Latency() []int64 { return t.latency.Snapshot() }

// checkpoint takes the task's part of checkpoint b: the synchronous
// snapshot (copy-on-write views and operator state), then the barrier goes
// downstream, then the Uploader writes the state files on another
// goroutine while the task goes on processing.
func (t *Task) checkpoint(b Barrier, alignNs int64) {
	start := t.clock.Now()
	if b.Drain {
		t.chain.FireTimers(math.MaxInt64)
		t.advanceWatermark(MaxWatermark)
	}
	states, err := t.chain.Snapshot(b.ID, b.Savepoint)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrCheckpointDeclined, err)
	}
	for _, w := range t.writers {
		w.BroadcastBarrier(b)
	}
	s := &Snapshot{Barrier: b, Subtask: t.cfg.Subtask, States: states, SyncNs: t.clock.Now() - start, AlignmentNs: alignNs}
	t.lastCheckpoint.Store(b.ID)
	ctx := t.ctx
	if t.cfg.Checkpoints == nil {
		// No JobManager to report to (tests): still finish the async parts.
		t.async.Add(1)
		go func() {
			defer t.async.Done()
			defer releaseNative(s.States)
			for _, st := range s.States {
				st.Encode(ctx)
			}
		}()
		return
	}
	if err != nil {
		releaseNative(states)
		t.cfg.Checkpoints.Decline(b.ID, err)
		return
	}
	t.async.Add(1)
	go func() {
		defer t.async.Done()
		// Whatever the uploader did, native checkpoints' files are done
		// with (Release may be called more than once).
		defer releaseNative(s.States)
		ack, err := t.cfg.Uploader.Upload(ctx, s)
		if err != nil {
			if !errors.Is(err, ErrCheckpointDeclined) {
				err = fmt.Errorf("%w: %w", ErrCheckpointDeclined, err)
			}
			t.cfg.Checkpoints.Decline(b.ID, err)
			return
		}
		t.lastAck.Store(ack)
		t.cfg.Checkpoints.Acknowledge(*ack)
	}()
}

// releaseNative releases the native checkpoints of states.
func releaseNative(states []StateSnapshot) {
	for _, st := range states {
		if st.Native != nil {
			st.Native.Release()
		}
	}
}

// LastAck returns the acknowledgement of the newest checkpoint the
// task stored its state for (sizes and key counts per operator), or nil.
func (t *Task) LastAck() *CheckpointAck { return t.lastAck.Load() }
