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

	source  sourceRunner
	decode  func([]byte) error
	opens   []func() error
	closes  []func() error
	timers  []timerOwner
	writers []eventWriter

	counts    []opCounters
	published []publishedCounters
	latency   Histogram

	nextMarker int64 // Unix ns
	pollStart  int64 // Unix ns
	lastFlush  int64 // Unix ns
	eop        int
	sleeper    *time.Timer
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
		counts: make([]opCounters, len(v.chain)), published: make([]publishedCounters, len(v.chain))}

	// The chain's tail writes to the output edges.
	tail := v.chain[len(v.chain)-1]
	var out any
	var writers []any
	for i, e := range v.Outputs {
		chs := tio.Outputs[i]
		if want := len(g.OutputChannels(e, subtask)); len(chs) != want {
			return nil, fmt.Errorf("edge %d->%d: got %d channels, want %d", e.Source, e.Target, len(chs), want)
		}
		ew, w := tail.writer(t, g.Vertices[e.Target].chain[0], chs, subtask)
		t.writers = append(t.writers, ew)
		writers = append(writers, w)
	}
	if len(writers) > 0 {
		setWriterCount(writers[0], &t.counts[len(t.counts)-1].out)
		out = writers[0]
		if len(writers) > 1 {
			out = tail.fanOut(writers)
		}
	}

	// Build the chain from its tail to its head, each operator handed its
	// successor's input collector.
	kgs := KeyGroupRangeForSubtask(g.MaxParallelism, v.Parallelism, subtask)
	logger := tio.Logger.With("job", g.Name, "vertex", v.Name, "subtask", subtask)
	for i := len(v.chain) - 1; i >= 0; i-- {
		n := v.chain[i]
		oc := &opContext{
			RuntimeContext: RuntimeContext{jobName: g.Name, operatorName: n.name, uid: n.uid, subtask: subtask,
				parallelism: v.Parallelism, maxParallelism: g.MaxParallelism, stdout: tio.Stdout, logger: logger},
			counters: &t.counts[i], keyGroups: kgs, fail: t.fail,
		}
		in, err := n.instantiate(oc, out)
		if err != nil {
			return nil, fmt.Errorf("operator %s: %w", n.name, err)
		}
		t.opens = append(t.opens, oc.opens...) // tail first, as Flink opens
		t.closes = append(oc.closes, t.closes...)
		t.timers = append(t.timers, oc.timers...)
		out = in
	}
	if v.IsSource {
		t.source = out.(sourceRunner)
	} else {
		t.decode = v.chain[0].decoder(out)
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
	t.sleeper = time.NewTimer(time.Hour)
	t.sleeper.Stop()
	defer func() {
		for _, w := range t.writers {
			w.closeChannels()
		}
		t.publish()
	}()
	for _, open := range t.opens {
		if err := open(); err != nil {
			return fmt.Errorf("open: %w", err)
		}
	}
	now := time.Now().UnixNano()
	t.lastFlush = now
	t.nextMarker = now + int64(t.io.LatencyInterval)
	if t.source != nil {
		err = t.runSource(ctx)
	} else {
		err = t.runInput(ctx)
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
	done := ctx.Done()
	for {
		select {
		case <-done:
			return ctx.Err()
		default:
		}
		t.pollStart = time.Now().UnixNano()
		wait, perr := t.source.poll()
		if t.err != nil {
			return t.err
		}
		if perr != nil {
			if errors.Is(perr, ErrEndOfInput) {
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
			if err := t.sleep(ctx, time.Duration(wake-now.UnixNano())); err != nil {
				return err
			}
			t.afterBatch(time.Now().UnixNano()) // fire what the sleep was for
			if t.err != nil {
				return t.err
			}
		}
	}
}

func (t *Task) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t.sleeper.Reset(d)
	select {
	case <-ctx.Done():
		t.sleeper.Stop()
		return ctx.Err()
	case <-t.sleeper.C:
		return nil
	}
}

func (t *Task) runInput(ctx context.Context) error {
	gate := t.io.Input
	bufs, errs := gate.Buffers(), gate.Err()
	armed := int64(-1)
	for {
		// Sleep until a buffer arrives or the next timer is due.
		if ts, ok := t.nextTimer(); ok && ts != armed {
			t.sleeper.Reset(time.Until(time.UnixMilli(ts)))
			armed = ts
		}
		select {
		case b := <-bufs:
			if t.handle(b) {
				return t.err
			}
		case <-t.sleeper.C:
			armed = -1
		case err := <-errs:
			return fmt.Errorf("input: %w", err)
		case <-ctx.Done():
			return ctx.Err()
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
	switch b.Kind {
	case BufferData:
		data := b.Data
		for len(data) > 0 {
			l, n := binary.Uvarint(data)
			if n <= 0 || l > uint64(len(data)-n) {
				t.fail(fmt.Errorf("corrupt frame on input channel %d", b.Channel))
				break
			}
			if err := t.decode(data[n : n+int(l)]); err != nil {
				t.fail(fmt.Errorf("input channel %d: %w", b.Channel, err))
				break
			}
			data = data[n+int(l):]
		}
		t.io.Input.Recycle(b)
	case BufferEndOfPartition:
		t.eop++
		t.io.Input.Recycle(b)
		return t.eop == t.io.Input.NumChannels()
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
	last := len(t.counts) - 1
	for i := range t.counts {
		c := t.counts[i]
		if i < last {
			c.out = t.counts[i+1].in
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
