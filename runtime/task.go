package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// TaskIO connects a task to the world: its input gate, its output channels
// and where job output and logs go. The taskmanager builds it.
type TaskIO struct {
	// Input merges the vertex's input channels; nil for source vertices.
	Input InputGate
	// Outputs holds, per output edge of the vertex (in Vertex.Outputs
	// order), the channels in JobGraph.OutputChannels order.
	Outputs [][]OutputChannel
	Stdout  io.Writer
	Logger  *slog.Logger
	// LatencyInterval is how often source subtasks emit latency markers;
	// 0 means 200ms, negative disables them.
	LatencyInterval time.Duration
	// FlushInterval bounds how long a record may wait in a partly filled
	// output buffer while the task is busy; 0 means 2ms. An idle task
	// flushes at once.
	FlushInterval time.Duration

	// Checkpoints receives the task's checkpoint acknowledgements; nil
	// when the task runs without a JobManager (tests), which still lets
	// barriers through.
	Checkpoints CheckpointResponder
	// Checkpointing says periodic checkpoints are on: a source that
	// reaches the end of its input then waits for one more checkpoint
	// before it finishes, so sinks commit its last records exactly once.
	Checkpointing bool
	// OpenStorage opens checkpoint storage; nil uses the environment's
	// S3 settings.
	OpenStorage StorageOpener
	// JobID is the job's ID, for RuntimeContext.JobID.
	JobID string
	// Attempt is the job's restart attempt.
	Attempt int
	// Restore is the state to start from; nil for a fresh start.
	Restore *TaskRestore
}

// Task runs one subtask of a vertex: its chain of operators on one
// goroutine, fed by a source or by the input gate.
type Task struct {
	graph   *JobGraph
	vertex  *Vertex
	subtask int
	io      TaskIO
	ctx     context.Context
	err     error

	source sourceRunner
	// decoders decode the records of each input; inputOf maps an input
	// channel to its input.
	decoders []func([]byte) error
	inputOf  []uint8
	opens    []func() error
	closes   []func() error
	timers   []timerOwner
	writers  []eventWriter

	counts []opCounters
	// wmk is the task's event-time clock; publishedWM its watermark for
	// status readers.
	wmk         watermarks
	publishedWM atomic.Int64
	// outFrom[i] is the chained main consumer of operator i whose
	// records-in are i's records-out, or -1 when i's output leaves the
	// chain (its first writer counts it).
	outFrom   []int
	published []publishedCounters
	// kgRecords counts records per key group of the keyed operator; nil
	// without one.
	kgRecords *keyGroupRecords
	latency   Histogram
	stats     ioCounters
	// lastAck is the newest checkpoint acknowledgement, for metrics.
	lastAck atomic.Pointer[CheckpointAck]
	// metrics holds what the operators registered through
	// RuntimeContext.Metrics.
	metrics *userMetrics

	nextMarker int64 // Unix ns
	pollStart  int64 // Unix ns
	lastFlush  int64 // Unix ns
	eop        int
	sleeper    *time.Timer

	log       *slog.Logger
	contexts  []*RuntimeContext
	states    []*operatorState
	listeners []CheckpointListener
	endInputs []BoundedInput
	control   chan control
	// ctlMu orders TriggerCheckpoint against the end of Run: once
	// stopped, triggers are refused, and those queued before are declined,
	// so no checkpoint waits for a task that is gone.
	ctlMu          sync.Mutex
	triggersClosed bool
	align          aligner
	eopCh          []bool
	async          sync.WaitGroup
	// lastCheckpoint is the newest checkpoint the task snapshotted.
	lastCheckpoint atomic.Int64
	// A source that ended its input, or was stopped by a savepoint,
	// emits nothing more and finishes once checkpoint finalBarrier (the
	// first it took part in since) is complete.
	ended, stopped bool
	finalBarrier   int64
}

type controlKind uint8

const (
	controlTrigger controlKind = iota
	controlComplete
	controlAbort
)

// control is a request from outside the task goroutine, handled between
// batches like every other mailbox action.
type control struct {
	kind    controlKind
	barrier Barrier
	id      int64
}

type publishedCounters struct{ in, out atomic.Int64 }

// OperatorCounts are an operator's record counts.
type OperatorCounts struct{ In, Out int64 }

// NewTask instantiates subtask i of the vertex with the given ID.
func NewTask(g *JobGraph, vertexID, subtask int, tio TaskIO) (*Task, error) {
	v := g.Vertex(vertexID)
	if v == nil {
		return nil, fmt.Errorf("job %s has no vertex %d", g.Name, vertexID)
	}
	if subtask < 0 || subtask >= v.Parallelism {
		return nil, fmt.Errorf("vertex %s has no subtask %d (parallelism %d)", v.Name, subtask, v.Parallelism)
	}
	if len(tio.Outputs) != len(v.Outputs) {
		return nil, fmt.Errorf("vertex %s has %d output edges, got channels for %d", v.Name, len(v.Outputs), len(tio.Outputs))
	}
	if (tio.Input == nil) != v.IsSource {
		return nil, fmt.Errorf("vertex %s: input gate given=%v, source=%v", v.Name, tio.Input != nil, v.IsSource)
	}
	if tio.Stdout == nil {
		tio.Stdout = os.Stdout
	}
	if tio.Logger == nil {
		tio.Logger = slog.Default()
	}
	if tio.LatencyInterval == 0 {
		tio.LatencyInterval = 200 * time.Millisecond
	}
	if tio.FlushInterval <= 0 {
		tio.FlushInterval = 2 * time.Millisecond
	}
	t := &Task{graph: g, vertex: v, subtask: subtask, io: tio,
		counts: make([]opCounters, len(v.chain)), published: make([]publishedCounters, len(v.chain)),
		control: make(chan control, 64), metrics: &userMetrics{}}
	t.publishedWM.Store(NoTimestamp)
	t.wmk.init(0)
	if tio.Input != nil {
		t.align.init(tio.Input.NumChannels())
		t.eopCh = make([]bool, tio.Input.NumChannels())
		t.wmk.init(tio.Input.NumChannels())
	}

	// Each operator's output goes to its chained consumers and to the
	// output edges leaving it: the tail's, or, where the chain branches
	// at side outputs, an inner operator's.
	pos := make(map[*node]int, len(v.chain))
	for i, n := range v.chain {
		pos[n] = i
	}
	edgeWriters := make(map[*node][]any)
	for i, e := range v.Outputs {
		chs := tio.Outputs[i]
		if want := len(g.OutputChannels(e, subtask)); len(chs) != want {
			return nil, fmt.Errorf("edge %d->%d: got %d channels, want %d", e.Source, e.Target, len(chs), want)
		}
		ew, w := e.from.writer(t, e, g.Vertices[e.Target].chain[0], chs, subtask)
		t.writers = append(t.writers, ew)
		edgeWriters[e.from] = append(edgeWriters[e.from], w)
	}
	t.outFrom = make([]int, len(v.chain))

	// Build the chain from its tail to its head, each operator handed its
	// consumers' input collectors.
	kgs := KeyGroupRangeForSubtask(g.MaxParallelism, v.Parallelism, subtask)
	logger := tio.Logger.With("job", g.Name, "vertex", v.Name, "subtask", subtask)
	t.log = logger
	ins := make([]any, len(v.chain))
	for i := len(v.chain) - 1; i >= 0; i-- {
		n := v.chain[i]
		var outs []any
		sides := map[string][]any{}
		t.outFrom[i] = -1
		for _, c := range n.consumers {
			j, ok := pos[c]
			if !ok || !c.chained {
				continue
			}
			if c.side != "" {
				sides[c.side] = append(sides[c.side], ins[j])
				continue
			}
			outs = append(outs, ins[j])
			t.outFrom[i] = j
		}
		if ws := edgeWriters[n]; len(ws) > 0 {
			setWriterCount(ws[0], &t.counts[i].out)
			outs = append(outs, ws...)
		}
		var out any
		switch len(outs) {
		case 0:
		case 1:
			out = outs[0]
		default:
			out = n.fanOut(outs)
		}
		oc := &opContext{
			RuntimeContext: RuntimeContext{jobID: tio.JobID, jobName: g.Name, operatorName: n.name, uid: n.uid, subtask: subtask,
				parallelism: v.Parallelism, maxParallelism: g.MaxParallelism, stdout: tio.Stdout, logger: logger,
				attempt: tio.Attempt, restored: tio.Restore != nil, openStorage: tio.OpenStorage,
				noCheckpoints: !tio.Checkpointing, ts: &t.wmk.ts, wm: &t.wmk.wm, metrics: t.metrics},
			counters: &t.counts[i], keyGroups: kgs, fail: t.fail,
			countKeyGroups: func() []int64 {
				t.kgRecords = newKeyGroupRecords(kgs)
				return t.kgRecords.counts
			},
		}
		if len(sides) > 0 {
			oc.sideOuts = make(map[string]any, len(sides))
			for tag, cs := range sides {
				oc.sideOuts[tag] = cs[0]
				if len(cs) > 1 {
					// Every consumer of one tag is a side node of the
					// same type, so any of them can combine them.
					for _, c := range n.consumers {
						if c.side == tag {
							oc.sideOuts[tag] = c.fanOut(cs)
							break
						}
					}
				}
			}
		}
		if tio.Restore != nil {
			oc.restore = tio.Restore.Operators[n.uid]
		}
		in, err := n.instantiate(oc, out)
		if err != nil {
			return nil, fmt.Errorf("operator %s (%s): %w", n.name, n.uid, err)
		}
		ins[i] = in
		t.contexts = append(t.contexts, &oc.RuntimeContext)
		if oc.keyedSnap != nil || oc.fnState != nil {
			st := &operatorState{uid: n.uid, keyGroups: KeyGroupRange{First: 0, Last: -1}, keyed: oc.keyedSnap, fn: oc.fnState}
			if oc.keyedSnap != nil {
				st.keyGroups = kgs
			}
			t.states = append(t.states, st)
		}
		t.listeners = append(t.listeners, oc.listeners...)
		t.endInputs = append(oc.endInputs, t.endInputs...) // head first
		t.opens = append(t.opens, oc.opens...)             // tail first, as Flink opens
		t.closes = append(oc.closes, t.closes...)
		t.timers = append(t.timers, oc.timers...)
		t.wmk.timers = append(oc.eventTimers, t.wmk.timers...) // head first
		if oc.generator != nil && t.wmk.gen == nil {
			t.wmk.gen = oc.generator // the one nearest the tail makes the output's watermarks
			t.wmk.genIdle, _ = oc.generator.(idleDeclarer)
		}
	}
	out := ins[0]
	if v.IsSource {
		t.source = out.(sourceRunner)
		return t, nil
	}
	head := v.chain[0]
	if ti, ok := out.(twoInputs); ok {
		t.decoders = []func([]byte) error{head.decoder(ti.first), head.decoder2(ti.second)}
	} else {
		t.decoders = []func([]byte) error{head.decoder(out)}
	}
	// Channels are numbered edge after edge, in Vertex.Inputs order.
	for k, e := range v.Inputs {
		for range g.InputChannels(e, subtask) {
			t.inputOf = append(t.inputOf, uint8(min(k, len(t.decoders)-1)))
			t.wmk.noWM = append(t.wmk.noWM, !e.Watermarks)
		}
	}
	if len(t.inputOf) != tio.Input.NumChannels() {
		return nil, fmt.Errorf("vertex %s: the input gate has %d channels, the graph %d", v.Name, tio.Input.NumChannels(), len(t.inputOf))
	}
	return t, nil
}

func setWriterCount(w any, c *int64) {
	if s, ok := w.(interface{ setCount(*int64) }); ok {
		s.setCount(c)
	}
}

func (w *recordWriter[T]) setCount(c *int64) { w.count = c }

func (t *Task) fail(err error) {
	if t.err == nil {
		t.err = err
	}
}

// Run processes until the input ends (nil), the context is cancelled
// (its error) or an operator fails. It MUST be called once.
func (t *Task) Run(ctx context.Context) (err error) {
	t.ctx = ctx
	for _, c := range t.contexts {
		c.ctx = ctx
	}
	t.sleeper = time.NewTimer(time.Hour)
	t.sleeper.Stop()
	t.stats.started.Store(time.Now().UnixNano())
	defer func() {
		for _, w := range t.writers {
			w.closeChannels()
		}
		t.publish()
		t.stats.ended.Store(time.Now().UnixNano())
	}()
	// State uploads in flight finish (or fail with ctx) before the task
	// reports its end, so their acknowledgements are not lost.
	defer t.async.Wait()
	defer t.refuseTriggers()
	for _, open := range t.opens {
		if err := open(); err != nil {
			return fmt.Errorf("open: %w", err)
		}
	}
	if err := t.metrics.failure(); err != nil {
		return fmt.Errorf("open: %w", err)
	}
	now := time.Now().UnixNano()
	t.lastFlush = now
	t.wmk.genAt = now
	t.nextMarker = now + int64(t.io.LatencyInterval)
	if t.source != nil {
		err = t.runSource(ctx)
	} else {
		err = t.runInput(ctx)
	}
	if err == nil && t.err == nil {
		// Functions see the end only after their snapshots' async parts.
		t.async.Wait()
		for _, e := range t.endInputs {
			if err = e.EndInput(); err != nil {
				err = fmt.Errorf("end of input: %w", err)
				break
			}
		}
	}
	for _, c := range t.closes {
		if cerr := c(); cerr != nil && err == nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}
	if err == nil {
		err = t.err
	}
	if err != nil {
		return err
	}
	// Finished: what is buffered goes out, then end-of-partition.
	for _, w := range t.writers {
		w.flush()
		w.broadcast(BufferEndOfPartition, 0)
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
			t.flush(time.Now().UnixNano())
		}
		handled, finished, err := t.nextControl(ctx, idle)
		if err != nil || finished {
			return err
		}
		if handled {
			continue
		}
		t.pollStart = time.Now().UnixNano()
		t.wmk.ts = NoTimestamp
		wait, perr := t.source.poll()
		if t.err != nil {
			return t.err
		}
		if perr != nil {
			if errors.Is(perr, ErrEndOfInput) {
				if t.graph.EventTime {
					// A bounded input's end closes every window.
					t.advanceWatermark(MaxWatermark)
				}
				if t.io.Checkpointing && t.io.Checkpoints != nil {
					t.ended = true
					t.io.Checkpoints.EndOfInput()
					continue
				}
				return nil
			}
			return fmt.Errorf("source %s: %w", t.vertex.chain[0].name, perr)
		}
		now := time.Now()
		t.afterBatch(now.UnixNano())
		if t.err != nil {
			return t.err
		}
		if wait > 0 {
			t.flush(now.UnixNano())
			wake := now.Add(wait).UnixNano()
			if t.io.LatencyInterval > 0 {
				wake = min(wake, t.nextMarker)
			}
			if ts, ok := t.nextTimer(); ok {
				wake = min(wake, ts*int64(time.Millisecond))
			}
			if d := t.idleDeadline(); d > 0 {
				wake = min(wake, d)
			}
			finished, err := t.sleep(ctx, time.Duration(wake-now.UnixNano()))
			if err != nil || finished {
				return err
			}
			t.afterBatch(time.Now().UnixNano()) // fire what the sleep was for
			if t.err != nil {
				return t.err
			}
		}
	}
}

// sleep waits d for a source's next poll, handling control requests that
// arrive meanwhile; it reports whether one of them finished the source.
func (t *Task) sleep(ctx context.Context, d time.Duration) (bool, error) {
	if d <= 0 {
		return false, nil
	}
	t.sleeper.Reset(d)
	defer t.sleeper.Stop()
	since := time.Now().UnixNano()
	t.stats.idleFrom(since)
	defer func() { t.stats.idleUntil(since, time.Now().UnixNano()) }()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.sleeper.C:
			return false, nil
		case c := <-t.control:
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
	var c control
	if block {
		since := time.Now().UnixNano()
		t.stats.idleFrom(since)
		select {
		case c = <-t.control:
		case <-ctx.Done():
		}
		t.stats.idleUntil(since, time.Now().UnixNano())
		if ctx.Err() != nil {
			return false, false, ctx.Err()
		}
	} else {
		select {
		case c = <-t.control:
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
func (t *Task) handleControl(c control) bool {
	switch c.kind {
	case controlTrigger:
		t.checkpoint(c.barrier, 0)
		if c.barrier.Stop {
			t.stopped, t.finalBarrier = true, c.barrier.ID
		} else if t.ended && t.finalBarrier == 0 {
			t.finalBarrier = c.barrier.ID
		}
	case controlComplete:
		for _, l := range t.listeners {
			if err := l.NotifyCheckpointComplete(c.id); err != nil {
				t.fail(fmt.Errorf("checkpoint %d complete: %w", c.id, err))
				return false
			}
		}
		if (t.ended || t.stopped) && t.finalBarrier != 0 && c.id >= t.finalBarrier {
			return true
		}
	case controlAbort:
		if t.finalBarrier == c.id {
			t.finalBarrier = 0
			if t.stopped {
				t.stopped = false // the savepoint failed: go on
			} else if t.ended && t.io.Checkpoints != nil {
				t.io.Checkpoints.EndOfInput()
			}
		}
	}
	return false
}

// TriggerCheckpoint asks a source task to take checkpoint b and emit its
// barrier. It returns at once; the outcome is reported through
// TaskIO.Checkpoints.
func (t *Task) TriggerCheckpoint(b Barrier) error {
	if t.source == nil {
		return fmt.Errorf("%w: %s is not a source; barriers reach it from its inputs", ErrCheckpointDeclined, t.vertex.Name)
	}
	t.ctlMu.Lock()
	defer t.ctlMu.Unlock()
	if t.triggersClosed {
		return fmt.Errorf("%w: task %s (%d) has ended", ErrCheckpointDeclined, t.vertex.Name, t.subtask)
	}
	select {
	case t.control <- control{kind: controlTrigger, barrier: b}:
		return nil
	default:
		return fmt.Errorf("%w: task %s (%d) has too many pending requests", ErrCheckpointDeclined, t.vertex.Name, t.subtask)
	}
}

// refuseTriggers ends the task's part in checkpoints: later triggers fail
// and queued ones are declined.
func (t *Task) refuseTriggers() {
	t.ctlMu.Lock()
	t.triggersClosed = true
	t.ctlMu.Unlock()
	for {
		select {
		case c := <-t.control:
			if c.kind == controlTrigger && t.io.Checkpoints != nil {
				t.io.Checkpoints.Decline(c.barrier.ID, fmt.Errorf("%w: task %s (%d) %w", ErrCheckpointDeclined, t.vertex.Name, t.subtask, ErrTaskEnded))
			}
		default:
			return
		}
	}
}

// NotifyCheckpointComplete tells the task that checkpoint id is complete.
func (t *Task) NotifyCheckpointComplete(id int64) {
	t.sendControl(control{kind: controlComplete, id: id})
}

// NotifyCheckpointAborted tells the task that checkpoint id was aborted.
func (t *Task) NotifyCheckpointAborted(id int64) { t.sendControl(control{kind: controlAbort, id: id}) }

func (t *Task) sendControl(c control) {
	select {
	case t.control <- c:
	default: // a later notification implies this one
	}
}

// LastCheckpoint is the newest checkpoint the task has snapshotted.
func (t *Task) LastCheckpoint() int64 { return t.lastCheckpoint.Load() }

func (t *Task) fireTimers(ms int64) {
	for _, o := range t.timers {
		o.fireTimers(ms)
	}
}

func (t *Task) runInput(ctx context.Context) error {
	gate := t.io.Input
	bufs, errs := gate.Buffers(), gate.Err()
	armed := int64(-1)
	for {
		// Sleep until a buffer arrives or the next timer is due.
		wake, ok := t.nextTimer()
		if d := t.idleDeadline(); d > 0 {
			// An assigner after an exchange turns idle without input.
			ms := d/int64(time.Millisecond) + 1
			if !ok || ms < wake {
				wake, ok = ms, true
			}
		}
		if ok && wake != armed {
			t.sleeper.Reset(time.Until(time.UnixMilli(wake)))
			armed = wake
		}
		// Idle time is the wait for the select; a buffer that is ready
		// makes it a few nanoseconds. Two clock reads per buffer (of up
		// to BufferSize bytes) are the whole cost.
		since := time.Now().UnixNano()
		t.stats.idleFrom(since)
		var b *Buffer
		var c control
		var gotControl bool
		select {
		case b = <-bufs:
		case <-t.sleeper.C:
			armed = -1
		case c = <-t.control:
			gotControl = true
		case err := <-errs:
			t.stats.idleUntil(since, time.Now().UnixNano())
			return fmt.Errorf("input: %w", err)
		case <-ctx.Done():
			t.stats.idleUntil(since, time.Now().UnixNano())
			return ctx.Err()
		}
		t.stats.idleUntil(since, time.Now().UnixNano())
		if b != nil {
			if t.handle(b) {
				return t.err
			}
		} else if gotControl {
			t.handleControl(c)
		}
		if t.err != nil {
			return t.err
		}
		now := time.Now().UnixNano()
		t.afterBatch(now)
		if len(bufs) == 0 {
			t.flush(now) // idle: send partial buffers for latency's sake
		}
	}
}

// handle consumes one input buffer and reports whether the input is done.
func (t *Task) handle(b *Buffer) bool {
	if t.align.blocked(b.Channel) {
		t.align.queued[b.Channel] = append(t.align.queued[b.Channel], b)
		return false
	}
	switch b.Kind {
	case BufferData:
		t.stats.bytesIn += int64(len(b.Data))
		t.stats.buffersIn++
		data := b.Data
		for len(data) > 0 {
			l, n := binary.Uvarint(data)
			if n <= 0 || l > uint64(len(data)-n) {
				t.fail(fmt.Errorf("corrupt frame on input channel %d", b.Channel))
				break
			}
			rec := data[n : n+int(l)]
			if t.graph.EventTime {
				ts, m := binary.Varint(rec)
				if m <= 0 {
					t.fail(fmt.Errorf("corrupt record timestamp on input channel %d", b.Channel))
					break
				}
				t.wmk.ts, rec = ts, rec[m:]
			}
			if err := t.decoders[t.inputOf[b.Channel]](rec); err != nil {
				t.fail(fmt.Errorf("input channel %d: %w", b.Channel, err))
				break
			}
			data = data[n+int(l):]
		}
		t.io.Input.Recycle(b)
	case BufferEndOfPartition:
		t.eop++
		t.eopCh[b.Channel] = true
		t.io.Input.Recycle(b)
		if t.eop == t.io.Input.NumChannels() {
			return true
		}
		return !t.maybeAligned()
	case BufferBarrier:
		ch := b.Channel
		bar, err := DecodeBarrier(b.Data)
		t.io.Input.Recycle(b)
		if err != nil {
			t.fail(fmt.Errorf("input channel %d: %w", ch, err))
			return false
		}
		return !t.onBarrier(ch, bar)
	case BufferWatermark, BufferWatermarkStatus:
		ch, kind, v := b.Channel, b.Kind, b.Value
		t.io.Input.Recycle(b)
		t.onInputWatermark(ch, kind, v)
	case BufferLatencyMarker:
		if len(t.writers) == 0 {
			t.latency.Record(time.Now().UnixNano() - b.Value)
		}
		for _, w := range t.writers {
			w.forwardMarker(b.Value)
		}
		t.io.Input.Recycle(b)
	}
	return false
}

func (t *Task) nextTimer() (int64, bool) {
	var next int64
	found := false
	for _, o := range t.timers {
		if ts, ok := o.nextTimer(); ok && (!found || ts < next) {
			next, found = ts, true
		}
	}
	return next, found
}

// afterBatch does the periodic work between batches: counters, timers,
// latency markers and the flush deadline.
func (t *Task) afterBatch(now int64) {
	t.publish()
	if t.wmk.gen != nil {
		t.generateWatermark(now)
	}
	if len(t.timers) > 0 {
		ms := now / int64(time.Millisecond)
		for _, o := range t.timers {
			if ts, ok := o.nextTimer(); ok && ts <= ms {
				o.fireTimers(ms)
			}
		}
	}
	if t.source != nil && t.io.LatencyInterval > 0 && now >= t.nextMarker {
		t.nextMarker = now + int64(t.io.LatencyInterval)
		if len(t.writers) == 0 {
			// Fully chained: records reach the sink by direct calls, so the
			// longest any record waited is the poll batch's duration.
			t.latency.Record(now - t.pollStart)
		}
		for _, w := range t.writers {
			w.forwardMarker(now)
		}
	}
	if now-t.lastFlush >= int64(t.io.FlushInterval) {
		t.flush(now)
	}
}

func (t *Task) flush(now int64) {
	t.lastFlush = now
	for _, w := range t.writers {
		w.flush()
	}
}

func (t *Task) publish() {
	t.stats.publish()
	if t.kgRecords != nil {
		t.kgRecords.publish()
	}
	for i := range t.counts {
		c := t.counts[i]
		if j := t.outFrom[i]; j >= 0 {
			c.out = t.counts[j].in
		}
		t.published[i].in.Store(c.in)
		t.published[i].out.Store(c.out)
	}
}

// Operators returns the record counts of the chained operators, head
// first. It is safe to call while the task runs.
func (t *Task) Operators() []OperatorCounts {
	out := make([]OperatorCounts, len(t.published))
	for i := range t.published {
		out[i] = OperatorCounts{In: t.published[i].in.Load(), Out: t.published[i].out.Load()}
	}
	return out
}

// Latency returns the latency-marker histogram of a sink task's buckets.
func (t *Task) Latency() []int64 { return t.latency.Snapshot() }
