package runtime

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/pebblestate"
)

// RuntimeContext tells an operator instance where it runs.
type RuntimeContext struct {
	jobID          string
	jobName        string
	operatorName   string
	uid            string
	subtask        int
	parallelism    int
	maxParallelism int
	stdout         io.Writer
	logger         *slog.Logger
	attempt        int
	restored       bool
	noCheckpoints  bool
	openStorage    StorageOpener
	ctx            context.Context
	// sideOuts maps an output tag's ID to its Collector[T].
	sideOuts map[string]any
	// ts is the timestamp of the record (or event-time timer) being
	// processed and wm the task's watermark; both belong to the task.
	ts, wm *int64
	// broadcast holds a broadcast operator's states.
	broadcast *broadcastStore
	// metrics is the task's registry of user metrics.
	metrics *userMetrics
	// clock is the task's processing-time service, and now its reading
	// for the current batch (the task's; nil outside a task).
	clock engine.Clock
	now   *procTime
	// inRecords is the task's: true while a source's poll or an input
	// buffer is handing records to the chain, during which keyed
	// operators may hold records back (see processOperator.Collect).
	inRecords *bool
	// note is what the function says about its condition (SetNote);
	// shared by copies of the context.
	note *atomic.Pointer[string]
}

// SetNote sets a short line about the function's condition that the
// JobManager shows in the job's status (`weir job status`), such as "rules:
// etcd unreachable since ...; keeping the current rules"; "" clears it. It
// travels with the task's metrics (every heartbeat), so a note reaches the
// status within a heartbeat. Safe from any goroutine.
func (c *RuntimeContext) SetNote(note string) {
	if c.note == nil {
		return // a context made outside a task
	}
	if note == "" {
		c.note.Store(nil)
		return
	}
	c.note.Store(&note)
}

// JobID is the ID of the running job; it stays the same across restarts
// and rescales, and a job submitted from a savepoint gets a new one.
func (c *RuntimeContext) JobID() string { return c.jobID }

func (c *RuntimeContext) JobName() string      { return c.jobName }
func (c *RuntimeContext) OperatorName() string { return c.operatorName }
func (c *RuntimeContext) UID() string          { return c.uid }
func (c *RuntimeContext) SubtaskIndex() int    { return c.subtask }
func (c *RuntimeContext) Parallelism() int     { return c.parallelism }
func (c *RuntimeContext) MaxParallelism() int  { return c.maxParallelism }

// Stdout is where print-style sinks write job output.
func (c *RuntimeContext) Stdout() io.Writer { return c.stdout }

// Logger logs with the task's attributes.
func (c *RuntimeContext) Logger() *slog.Logger { return c.logger }

// opContext is what a node's factory needs to build one operator instance.
type opContext struct {
	RuntimeContext
	counters  *opCounters
	keyGroups KeyGroupRange
	// countKeyGroups gives a keyed operator its per-key-group record
	// counters and makes them the task's (operators are built tail first,
	// so the head-most keyed operator's are the task's in the end).
	countKeyGroups func() []int64
	// generator is set by a timestamp assigner; eventTimers by keyed
	// operators, which fire them as the watermark advances.
	generator   watermarkGenerator
	eventTimers []eventTimerOwner
	fail        func(error)
	opens       []func() error
	closes      []func() error
	timers      []timerOwner

	// Checkpointing: what the operator restores from and how the task
	// snapshots and notifies it.
	restore   *OperatorRestore
	keyedSnap func() ([]statebackend.Section, error)
	// nativeSnap, set for Pebble operators, takes a native checkpoint
	// (see operatorState.native).
	nativeSnap func(id int64) (*pebblestate.Checkpoint, []statebackend.Section, error)
	// stateBackend is where keyed operators keep their state.
	stateBackend StateBackend
	fnState      CheckpointedFunction
	listeners    []CheckpointListener
	endInputs    []BoundedInput
	flushers     []PreBarrierFlusher
	// batchers process the records their operator holds back; the task
	// calls them at the end of each batch of records.
	batchers []func()
}

type opCounters struct{ in, out int64 }

// KeyedContext is the context of a keyed operator: the current key, its
// state, and processing-time timers. State handles obtained from it (in
// Open) always act on the key of the record or timer being processed.
type KeyedContext[K comparable] struct {
	*RuntimeContext
	backend *statebackend.Backend
	// lsm, when set, holds the keyed state instead of backend (the pebble
	// state backend); the Get*State functions pick the handles for it.
	lsm *pebblestate.Store
	kt  KeyType[K]
	key K
	kg  int
	// hash is kt.Hash(key), computed once per record (it gives kg) and
	// reused by every state and timer access for the record.
	hash    int32
	timers  timerService[K]
	etimers timerService[K]
	// lsmTimers, with the pebble backend, hold the processing-time (0)
	// and event-time (1) timers in the store instead of timers and
	// etimers.
	lsmTimers [2]*pebblestate.TimerQueue[K]
	// lsmPrefetch are the pebble value tables, which the operator asks to
	// prefetch the keys of the records it holds back.
	lsmPrefetch []keyPrefetcher[K]
	domain      TimeDomain
}

// Timestamp is the event time (Unix ms) of the record being processed, or
// in OnTimer the time of an event-time timer; NoTimestamp if it has none.
func (c *KeyedContext[K]) Timestamp() int64 { return *c.ts }

// CurrentWatermark is the operator's event-time clock: no record with an
// earlier timestamp is expected any more (NoTimestamp before the first
// watermark).
func (c *KeyedContext[K]) CurrentWatermark() int64 { return *c.wm }

// TimeDomain says, in OnTimer, which kind of timer fired.
func (c *KeyedContext[K]) TimeDomain() TimeDomain { return c.domain }

// RegisterEventTimeTimer asks for OnTimer(ts) for the current key once the
// watermark reaches ts. Registering the same time twice for a key yields
// one call; a time the watermark has passed fires with the next watermark.
func (c *KeyedContext[K]) RegisterEventTimeTimer(ts int64) {
	if q := c.lsmTimers[1]; q != nil {
		q.Add(c.kg, c.key, ts)
		return
	}
	c.etimers.add(timerEntry[K]{timerKey: timerKey[K]{ts: ts, key: c.key}, kg: c.kg, hash: c.hash})
}

// DeleteEventTimeTimer cancels the current key's event-time timer at ts.
func (c *KeyedContext[K]) DeleteEventTimeTimer(ts int64) {
	if q := c.lsmTimers[1]; q != nil {
		q.Delete(c.kg, c.key, ts)
		return
	}
	c.etimers.remove(c.kg, c.hash, c.key, ts)
}

// CurrentKey is the key of the record or timer being processed.
func (c *KeyedContext[K]) CurrentKey() K { return c.key }

// CurrentProcessingTime is the task's processing time (the wall clock
// unless the TaskManager gave the task another) in Unix milliseconds, as
// read at the start of the current batch: a source's poll, an input
// buffer, a round of timers. Every record of a batch sees the same time,
// which never runs ahead of the clock, so a timer registered at
// CurrentProcessingTime()+d fires once the clock has reached that, at
// least d after the reading; processing-time timers fire between batches
// anyway. A function that spends long on each record of a batch sees a
// time up to the batch's duration behind the clock.
func (c *KeyedContext[K]) CurrentProcessingTime() int64 {
	if c.now != nil && c.now.ok {
		return c.now.ms
	}
	return c.clock.Now() / int64(time.Millisecond)
}

// procTime is a task's processing time for one batch. Reading the clock
// for every record cost the state-heavy fraud job 8 to 16 % of its CPU
// (time.Now is two vDSO calls); a batch reads it once.
type procTime struct {
	ms int64 // Unix ms
	ok bool  // ms holds the current batch's reading
}

// enter starts a batch, reading c, unless the batch is within another
// (a source's poll that advances the watermark), whose reading it keeps.
// It reports which, for leave.
func (p *procTime) enter(c engine.Clock) (inner bool) {
	if p.ok {
		return true
	}
	p.ms, p.ok = c.Now()/int64(time.Millisecond), true
	return false
}

// leave ends the batch enter started.
func (p *procTime) leave(inner bool) {
	if !inner {
		p.ok = false
	}
}

// at starts a batch at ms, a reading taken already; restore(prev) ends it.
func (p *procTime) at(ms int64) (prev procTime) {
	prev = *p
	p.ms, p.ok = ms, true
	return prev
}

func (p *procTime) restore(prev procTime) { *p = prev }

// RegisterProcessingTimeTimer asks for OnTimer(ts) for the current key once
// the wall clock reaches ts (Unix ms). Registering the same time twice for a
// key yields one call.
func (c *KeyedContext[K]) RegisterProcessingTimeTimer(ts int64) {
	if q := c.lsmTimers[0]; q != nil {
		q.Add(c.kg, c.key, ts)
		return
	}
	c.timers.add(timerEntry[K]{timerKey: timerKey[K]{ts: ts, key: c.key}, kg: c.kg, hash: c.hash})
}

// DeleteProcessingTimeTimer cancels the current key's timer at ts, if any.
func (c *KeyedContext[K]) DeleteProcessingTimeTimer(ts int64) {
	if q := c.lsmTimers[0]; q != nil {
		q.Delete(c.kg, c.key, ts)
		return
	}
	c.timers.remove(c.kg, c.hash, c.key, ts)
}
