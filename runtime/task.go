package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend"
)

// TaskIO connects a task to the world: its input gate, its output channels,
// where job output and logs go, and the services the TaskManager injects.
// The taskmanager builds it.
type TaskIO struct {
	// Input merges the vertex's input channels; nil for source vertices.
	Input engine.InputGate
	// Outputs holds, per output edge of the vertex (in Vertex.Outputs
	// order), the channels in JobGraph.OutputChannels order.
	Outputs [][]engine.OutputChannel
	Stdout  io.Writer
	Logger  *slog.Logger
	// LatencyInterval is how often source subtasks emit latency markers;
	// 0 means 200ms, negative disables them.
	LatencyInterval time.Duration
	// FlushInterval bounds how long a record may wait in a partly filled
	// output buffer while the task is busy; 0 means 2ms. An idle task
	// flushes at once.
	FlushInterval time.Duration

	// Clock is the processing-time service: processing-time timers,
	// CurrentProcessingTime, flushes and latency markers read it. nil is
	// the wall clock; tests pass an engine.ManualClock.
	Clock engine.Clock
	// Uploader stores the task's checkpoint snapshots; nil writes them to
	// the checkpoint's location opened with OpenStorage.
	Uploader engine.Uploader
	// Checkpoints receives the task's checkpoint acknowledgements; nil
	// when the task runs without a JobManager (tests), which still lets
	// barriers through.
	Checkpoints CheckpointResponder
	// Checkpointing says periodic checkpoints are on: a source that
	// reaches the end of its input then waits for one more checkpoint
	// before it finishes, so sinks commit its last records exactly once.
	Checkpointing bool
	// OpenStorage opens checkpoint and sink storage; nil uses the
	// environment's S3 settings.
	OpenStorage StorageOpener
	// JobID is the job's ID, for RuntimeContext.JobID.
	JobID string
	// Attempt is the job's restart attempt.
	Attempt int
	// Restore is the state to start from; nil for a fresh start.
	Restore *TaskRestore
	// Incremental makes checkpoints of keyed state store only what
	// changed since the latest completed checkpoint (savepoints stay
	// full).
	Incremental bool
	// StateBackend is where keyed operators keep their state; the zero
	// value is memory.
	StateBackend StateBackend
}

// Task runs one subtask of a vertex. The engine's task runs the loop
// (input, timers, watermarks, checkpoints, control requests); Task adds
// the typed operator chain it drives and the job's view of it.
type Task struct {
	eng     *engine.Task
	graph   *JobGraph
	vertex  *Vertex
	subtask int
	chain   *chain
}

// chain is the typed operator chain of a task, type-erased for the
// engine (engine.Chain). Its per-record work is direct calls between
// typed operators; the engine calls it once per buffer or batch.
type chain struct {
	task      *engine.Task
	eventTime bool
	source    sourceRunner
	// decoders decode the records of each input; inputOf maps an input
	// channel to its input.
	decoders []func([]byte) error
	inputOf  []uint8
	opens    []func() error
	closes   []func() error
	timers   []timerOwner
	// eventTimers fire as the task's watermark advances, head first.
	eventTimers []eventTimerOwner
	gen         watermarkGenerator
	// ownWM[i] says operator i has the task's watermark: it is the
	// generator (assigner, watermarking source) or downstream of it, or
	// the chain has none. The others, upstream of the generator, have the
	// input's watermark (inWM), as in Flink, and their event-time timers
	// (inEventTimers, head first) fire with it.
	ownWM         []bool
	inWM          int64
	inEventTimers []eventTimerOwner

	// ts is the timestamp of the record (or event-time timer) being
	// processed, wm the task's watermark; operators read both by pointer.
	ts, wm int64

	counts []opCounters
	// outFrom[i] is the chained main consumer of operator i whose
	// records-in are i's records-out, or -1 when i's output leaves the
	// chain (its first writer counts it).
	outFrom   []int
	published []publishedCounters
	// kgRecords counts records per key group of the keyed operator; nil
	// without one.
	kgRecords *keyGroupRecords
	// metrics holds what the operators registered through
	// RuntimeContext.Metrics.
	metrics *userMetrics

	contexts  []*RuntimeContext
	states    []*operatorState
	listeners []CheckpointListener
	endInputs []BoundedInput
	flushers  []PreBarrierFlusher // head first
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
	if tio.Stdout == nil {
		tio.Stdout = os.Stdout
	}
	if tio.Logger == nil {
		tio.Logger = slog.Default()
	}
	if tio.Clock == nil {
		tio.Clock = engine.SystemClock{}
	}
	if tio.Uploader == nil {
		tio.Uploader = engine.StorageUploader{Open: tio.OpenStorage}
	}
	c := &chain{eventTime: g.EventTime, ts: NoTimestamp, wm: NoTimestamp, inWM: NoTimestamp,
		counts: make([]opCounters, len(v.chain)), published: make([]publishedCounters, len(v.chain)), metrics: &userMetrics{}}
	// Channels are numbered edge after edge, in Vertex.Inputs order.
	var noWM []bool
	for k, e := range v.Inputs {
		for range g.InputChannels(e, subtask) {
			c.inputOf = append(c.inputOf, uint8(min(k, 1)))
			noWM = append(noWM, !e.Watermarks)
		}
	}
	logger := tio.Logger.With("job", g.Name, "vertex", v.Name, "subtask", subtask)
	et, err := engine.NewTask(engine.Config{VertexName: v.Name, SourceName: v.chain[0].name, Subtask: subtask,
		Source: v.IsSource, Input: tio.Input, NoWatermark: noWM, EventTime: g.EventTime, Clock: tio.Clock, Logger: logger,
		LatencyInterval: tio.LatencyInterval, FlushInterval: tio.FlushInterval, Checkpoints: tio.Checkpoints,
		Checkpointing: tio.Checkpointing, Uploader: tio.Uploader})
	if err != nil {
		return nil, err
	}
	c.task = et
	t := &Task{eng: et, graph: g, vertex: v, subtask: subtask, chain: c}

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
		w := e.from.writer(t, e, g.Vertices[e.Target].chain[0], chs, subtask)
		edgeWriters[e.from] = append(edgeWriters[e.from], w)
	}
	c.outFrom = make([]int, len(v.chain))

	// Build the chain from its tail to its head, each operator handed its
	// consumers' input collectors.
	kgs := KeyGroupRangeForSubtask(g.MaxParallelism, v.Parallelism, subtask)
	ins := make([]any, len(v.chain))
	// The generator is the timestamp assigner nearest the tail (the first
	// instantiated below); which operators it reaches is known from the
	// graph, before any is instantiated.
	genAt := -1
	for i, n := range v.chain {
		if n.eventTime {
			genAt = i
		}
	}
	c.ownWM = make([]bool, len(v.chain))
	for i, n := range v.chain {
		c.ownWM[i] = genAt < 0
		for m := n; m != nil && !c.ownWM[i]; m = m.input {
			j, ok := pos[m]
			if !ok {
				break
			}
			c.ownWM[i] = j == genAt
		}
	}
	for i := len(v.chain) - 1; i >= 0; i-- {
		n := v.chain[i]
		var outs []any
		sides := map[string][]any{}
		c.outFrom[i] = -1
		for _, m := range n.consumers {
			j, ok := pos[m]
			if !ok || !m.chained {
				continue
			}
			if m.side != "" {
				sides[m.side] = append(sides[m.side], ins[j])
				continue
			}
			outs = append(outs, ins[j])
			c.outFrom[i] = j
		}
		if ws := edgeWriters[n]; len(ws) > 0 {
			setWriterCount(ws[0], &c.counts[i].out)
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
				noCheckpoints: !tio.Checkpointing, ts: &c.ts, wm: &c.wm, metrics: c.metrics, clock: tio.Clock,
				note: new(atomic.Pointer[string])},
			counters: &c.counts[i], keyGroups: kgs, fail: et.Fail, stateBackend: tio.StateBackend,
			countKeyGroups: func() []int64 {
				c.kgRecords = newKeyGroupRecords(kgs)
				return c.kgRecords.counts
			},
		}
		if len(sides) > 0 {
			oc.sideOuts = make(map[string]any, len(sides))
			for tag, cs := range sides {
				oc.sideOuts[tag] = cs[0]
				if len(cs) > 1 {
					// Every consumer of one tag is a side node of the
					// same type, so any of them can combine them.
					for _, m := range n.consumers {
						if m.side == tag {
							oc.sideOuts[tag] = m.fanOut(cs)
							break
						}
					}
				}
			}
		}
		if !c.ownWM[i] {
			oc.wm = &c.inWM
		}
		if tio.Restore != nil {
			oc.restore = tio.Restore.Operators[n.uid]
		}
		in, err := n.instantiate(oc, out)
		if err != nil {
			return nil, fmt.Errorf("operator %s (%s): %w", n.name, n.uid, err)
		}
		ins[i] = in
		c.contexts = append(c.contexts, &oc.RuntimeContext)
		if oc.keyedSnap != nil || oc.fnState != nil {
			st := &operatorState{uid: n.uid, keyGroups: KeyGroupRange{First: 0, Last: -1}, keyed: oc.keyedSnap, fn: oc.fnState}
			if oc.keyedSnap != nil {
				st.keyGroups = kgs
				// A Pebble operator's incremental checkpoints are native:
				// its SSTs, of which each uploads the new ones.
				switch {
				case tio.Incremental && oc.nativeSnap != nil:
					st.native, st.uploads = oc.nativeSnap, &statebackend.NativeUploads{}
				case tio.Incremental:
					st.inc = &statebackend.Incremental{}
				}
			}
			c.states = append(c.states, st)
		}
		c.listeners = append(c.listeners, oc.listeners...)
		c.endInputs = append(oc.endInputs, c.endInputs...) // head first
		c.flushers = append(oc.flushers, c.flushers...)    // head first
		c.opens = append(c.opens, oc.opens...)             // tail first, as Flink opens
		c.closes = append(oc.closes, c.closes...)
		c.timers = append(c.timers, oc.timers...)
		if c.ownWM[i] {
			c.eventTimers = append(oc.eventTimers, c.eventTimers...) // head first
		} else {
			c.inEventTimers = append(oc.eventTimers, c.inEventTimers...)
		}
		if oc.generator != nil && c.gen == nil {
			c.gen = oc.generator // the one nearest the tail makes the output's watermarks
		}
	}
	out := ins[0]
	if v.IsSource {
		c.source = out.(sourceRunner)
	} else {
		head := v.chain[0]
		if ti, ok := out.(twoInputs); ok {
			c.decoders = []func([]byte) error{head.decoder(ti.first), head.decoder2(ti.second)}
		} else {
			c.decoders = []func([]byte) error{head.decoder(out)}
			clear(c.inputOf) // one input: every channel feeds it
		}
	}
	et.SetChain(c)
	return t, nil
}

func setWriterCount(w any, c *int64) {
	if s, ok := w.(interface{ setCount(*int64) }); ok {
		s.setCount(c)
	}
}

func (w *recordWriter[T]) setCount(c *int64) { w.count = c }

// Run processes until the input ends (nil), the context is cancelled
// (its error) or an operator fails. It MUST be called once.
func (t *Task) Run(ctx context.Context) error { return t.eng.Run(ctx) }

// TriggerCheckpoint asks a source task to take checkpoint b and emit its
// barrier. It returns at once; the outcome is reported through
// TaskIO.Checkpoints.
func (t *Task) TriggerCheckpoint(b Barrier) error { return t.eng.TriggerCheckpoint(b) }

// NotifyCheckpointComplete tells the task that checkpoint id is complete.
func (t *Task) NotifyCheckpointComplete(id int64) { t.eng.NotifyCheckpointComplete(id) }

// NotifyCheckpointAborted tells the task that checkpoint id was aborted.
func (t *Task) NotifyCheckpointAborted(id int64) { t.eng.NotifyCheckpointAborted(id) }

// LastCheckpoint is the newest checkpoint the task has snapshotted.
func (t *Task) LastCheckpoint() int64 { return t.eng.LastCheckpoint() }

// LastAck returns the acknowledgement of the newest checkpoint the task
// stored its state for, or nil.
func (t *Task) LastAck() *CheckpointAck { return t.eng.LastAck() }

// Stats returns the task's I/O and time counters; safe while it runs.
func (t *Task) Stats() engine.TaskStats { return t.eng.Stats() }

// Latency returns the latency-marker histogram of a sink task's buckets.
func (t *Task) Latency() []int64 { return t.eng.Latency() }

// Watermark is the task's current event-time watermark (NoTimestamp
// before the first); safe while the task runs.
func (t *Task) Watermark() int64 { return t.eng.Watermark() }

// OperatorWatermarks returns the event-time watermark of each chained
// operator, head first (NoTimestamp where there is none yet): the task's
// for the timestamp assigner and what follows it, the input's for the
// operators before it (none in a source's chain until its end). It is safe to call while
// the task runs.
func (t *Task) OperatorWatermarks() []int64 {
	out := make([]int64, len(t.chain.ownWM))
	own, in := t.eng.Watermark(), t.eng.InputWatermark()
	if own == MaxWatermark {
		in = own // the end reaches the whole chain
	}
	for i, o := range t.chain.ownWM {
		out[i] = in
		if o {
			out[i] = own
		}
	}
	return out
}

// Vertex is the vertex the task runs a subtask of.
func (t *Task) Vertex() *Vertex { return t.vertex }

// Subtask is the index of the task's subtask.
func (t *Task) Subtask() int { return t.subtask }

// EventTime reports whether the task's job uses event time.
func (t *Task) EventTime() bool { return t.graph.EventTime }

// Notes returns the notes the chained functions set (SetNote), head
// first. It is safe to call while the task runs.
func (t *Task) Notes() []string {
	var out []string
	for _, rc := range t.chain.contexts {
		if rc.note == nil {
			continue
		}
		if n := rc.note.Load(); n != nil {
			out = append(out, *n)
		}
	}
	return out
}

// Operators returns the record counts of the chained operators, head
// first. It is safe to call while the task runs.
func (t *Task) Operators() []OperatorCounts {
	c := t.chain
	out := make([]OperatorCounts, len(c.published))
	for i := range c.published {
		out[i] = OperatorCounts{In: c.published[i].in.Load(), Out: c.published[i].out.Load()}
	}
	return out
}

// Open implements engine.Chain: the functions open tail first, as in
// Flink, so a function's consumers are ready before it emits.
func (c *chain) Open(ctx context.Context) error {
	for _, rc := range c.contexts {
		rc.ctx = ctx
	}
	for _, open := range c.opens {
		if err := open(); err != nil {
			return err
		}
	}
	return c.metrics.failure()
}

// Poll implements engine.Chain.
func (c *chain) Poll() (time.Duration, error) {
	c.ts = NoTimestamp
	return c.source.poll()
}

// Process implements engine.Chain: it decodes one buffer's frames, each
// a record (after its timestamp, in jobs with event time), into the head.
func (c *chain) Process(ch int, data []byte) error {
	decode := c.decoders[c.inputOf[ch]]
	for len(data) > 0 {
		l, n := binary.Uvarint(data)
		if n <= 0 || l > uint64(len(data)-n) {
			return errors.New("corrupt frame")
		}
		rec := data[n : n+int(l)]
		if c.eventTime {
			ts, m := binary.Varint(rec)
			if m <= 0 {
				return errors.New("corrupt record timestamp")
			}
			c.ts, rec = ts, rec[m:]
		}
		if err := decode(rec); err != nil {
			return err
		}
		data = data[n+int(l):]
	}
	return nil
}

// NextTimer implements engine.Chain.
func (c *chain) NextTimer() (int64, bool) {
	var next int64
	found := false
	for _, o := range c.timers {
		if ts, ok := o.nextTimer(); ok && (!found || ts < next) {
			next, found = ts, true
		}
	}
	return next, found
}

// FireTimers implements engine.Chain.
func (c *chain) FireTimers(now int64) {
	for _, o := range c.timers {
		if ts, ok := o.nextTimer(); ok && ts <= now {
			o.fireTimers(now)
		}
	}
}

// AdvanceWatermark implements engine.Chain. The maximum watermark (the
// input ended, or a drain) reaches the operators upstream of the
// generator too, first.
func (c *chain) AdvanceWatermark(wm int64) {
	if wm == MaxWatermark {
		c.AdvanceInputWatermark(wm)
	}
	c.wm = wm
	fireEventTimers(c.task, c.eventTimers, wm)
}

// AdvanceInputWatermark implements engine.Chain.
func (c *chain) AdvanceInputWatermark(wm int64) {
	if wm <= c.inWM {
		return
	}
	c.inWM = wm
	fireEventTimers(c.task, c.inEventTimers, wm)
}

func fireEventTimers(t *engine.Task, owners []eventTimerOwner, wm int64) {
	for _, o := range owners {
		o.fireEventTimers(wm)
		if t.Failed() {
			return
		}
	}
}

// Generator implements engine.Chain.
func (c *chain) Generator() engine.WatermarkGenerator {
	if c.gen == nil {
		return nil // not a typed nil in an interface
	}
	return c.gen
}

// NotifyCheckpointComplete implements engine.Chain.
func (c *chain) NotifyCheckpointComplete(id int64) error {
	for _, st := range c.states {
		if st.inc != nil {
			st.inc.Completed(id)
		}
		if st.uploads != nil {
			st.uploads.Completed(id)
		}
	}
	for _, l := range c.listeners {
		if err := l.NotifyCheckpointComplete(id); err != nil {
			return err
		}
	}
	return nil
}

// EndInput implements engine.Chain, head first.
func (c *chain) EndInput() error {
	for _, e := range c.endInputs {
		if err := e.EndInput(); err != nil {
			return err
		}
	}
	return nil
}

// Close implements engine.Chain; every function is closed, the first
// error is returned.
func (c *chain) Close() error {
	var first error
	for _, cl := range c.closes {
		if err := cl(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Publish implements engine.Chain.
func (c *chain) Publish() {
	if c.kgRecords != nil {
		c.kgRecords.publish()
	}
	for i := range c.counts {
		n := c.counts[i]
		if j := c.outFrom[i]; j >= 0 {
			n.out = c.counts[j].in
		}
		c.published[i].in.Store(n.in)
		c.published[i].out.Store(n.out)
	}
}
