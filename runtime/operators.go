package runtime

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/pebblestate"
)

// ErrEndOfInput is returned by SourceFunction.Poll when a bounded source has
// emitted its last record.
var ErrEndOfInput = engine.ErrEndOfInput

// sourceRunner is the type-erased face of a source operator.
type sourceRunner interface {
	poll() (time.Duration, error)
}

// sourceOperator polls its function into the chain. Its records-out count
// is its successor's records-in, or the output writer's count.
type sourceOperator[T any] struct {
	fn  SourceFunction[T]
	out Collector[T]
}

func (s *sourceOperator[T]) poll() (time.Duration, error) { return s.fn.Poll(s.out) }

type mapOperator[IN, OUT any] struct {
	fn    func(IN) OUT
	out   Collector[OUT]
	count *opCounters
}

func (o *mapOperator[IN, OUT]) Collect(v IN) {
	o.count.in++
	o.out.Collect(o.fn(v))
}

type filterOperator[T any] struct {
	fn    func(T) bool
	out   Collector[T]
	count *opCounters
}

func (o *filterOperator[T]) Collect(v T) {
	o.count.in++
	if o.fn(v) {
		o.out.Collect(v)
	}
}

type flatMapOperator[IN, OUT any] struct {
	fn    func(IN, Collector[OUT])
	out   Collector[OUT]
	count *opCounters
}

func (o *flatMapOperator[IN, OUT]) Collect(v IN) {
	o.count.in++
	o.fn(v, o.out)
}

type sinkOperator[T any] struct {
	fn    SinkFunction[T]
	fail  func(error)
	count *opCounters
	name  string
}

func (o *sinkOperator[T]) Collect(v T) {
	o.count.in++
	if err := o.fn.Invoke(v); err != nil {
		o.fail(fmt.Errorf("sink %s: %w", o.name, err))
	}
}

type processOperator[K comparable, IN, OUT any] struct {
	fn        KeyedProcessFunction[K, IN, OUT]
	kt        KeyType[K]
	sel       func(IN) K
	ctx       *KeyedContext[K]
	out       Collector[OUT]
	count     *opCounters
	kgOf      keyGroups
	keyGroups KeyGroupRange
	// kgRecords counts records per key group of keyGroups (index kg -
	// keyGroups.First).
	kgRecords []int64
	fail      func(error)
	// lsm is the operator's Pebble store when the job's state backend is
	// pebble (ctx.lsm too); nil on the memory backend.
	lsm *pebblestate.Store

	// held are records taken in but not processed yet, nheld of them
	// from held[hhead] on, cyclically (see Collect); held is nil when the
	// operator processes each record as it comes. inRecords is the
	// task's: records may be held back.
	held      []heldRecord[K, IN]
	hhead     int
	nheld     int
	inRecords *bool
	entries   *statebackend.Entries[K]
}

// heldRecord is a record held back with what Collect computed for it.
type heldRecord[K comparable, IN any] struct {
	v    IN
	key  K
	ts   int64
	hash int32
	kg   int32
}

// holdRecords is how many records a keyed operator holds back at most:
// enough for their first cache misses to overlap, few enough that they
// stay in the cache until processed. A power of two (held is a ring).
const holdRecords = 16

// slotLead is how many records after a record's arrival its entry slot is
// prefetched, and holdRecords-slotLead how many before it is processed:
// with millions of keys the directory entry, prefetched on arrival, must
// be in the cache before the slot's address can be read from it.
const slotLead = holdRecords / 2

// holdBackRecords turns holding back on; tests compare with it off.
var holdBackRecords = true

func newProcessOperator[K comparable, IN, OUT any](oc *opContext, fn KeyedProcessFunction[K, IN, OUT], kt KeyType[K], sel func(IN) K, out Collector[OUT]) (*processOperator[K, IN, OUT], error) {
	var kgRecords []int64
	if oc.countKeyGroups != nil {
		kgRecords = oc.countKeyGroups()
	} else {
		kgRecords = make([]int64, oc.keyGroups.Len()) // an operator outside a task (tests)
	}
	ctx := &KeyedContext[K]{RuntimeContext: &oc.RuntimeContext, backend: statebackend.NewBackend(oc.keyGroups), kt: kt}
	// A new backend has no entry table, so this cannot fail on the key type.
	entries, _ := statebackend.EntriesOf(ctx.backend, Codec[K](kt))
	ctx.timers.init(0, entries)
	ctx.etimers.init(1, entries)
	op := &processOperator[K, IN, OUT]{
		fn: fn, kt: kt, sel: sel, out: out, count: oc.counters, kgRecords: kgRecords,
		kgOf: newKeyGroups(oc.maxParallelism), keyGroups: oc.keyGroups, fail: oc.fail, ctx: ctx, entries: entries,
	}
	if oc.stateBackend.Kind == StateBackendPebble {
		s, err := oc.stateBackend.open(&oc.RuntimeContext, oc.keyGroups)
		if err != nil {
			return nil, err
		}
		op.lsm, op.ctx.lsm = s, s
		oc.closes = append(oc.closes, s.Close)
		// Timers go to the store too, under the sections' names, so that
		// restore and snapshots find them there; or, with the heap timer
		// service, to ctx.timers and ctx.etimers as on the memory backend.
		for d, name := range []string{timersSection, eventTimersSection} {
			if oc.stateBackend.Timers == TimerServiceHeap {
				break
			}
			q, err := pebblestate.NewTimerQueue[K](s, name, kt)
			if err != nil {
				return nil, err
			}
			op.ctx.lsmTimers[d] = q
		}
		oc.nativeSnap = op.nativeSnapshot
	}
	return op, nil
}

// holdBack lets the operator hold records back within the task's batches
// of records, so that flush can touch their entries (and, on pebble, the
// value caches' slots) before processing them. Only one-input operators
// do: a second input's records would overtake the held ones.
func (o *processOperator[K, IN, OUT]) holdBack(oc *opContext) {
	if oc.inRecords == nil || !holdBackRecords {
		return
	}
	o.held, o.inRecords = make([]heldRecord[K, IN], holdRecords), oc.inRecords
	oc.batchers = append(oc.batchers, o.flush)
}

// restore loads the operator's keyed state and timers. It runs before the
// function's Open, which registers (and so decodes) the state tables.
func (o *processOperator[K, IN, OUT]) restore(r *OperatorRestore) error {
	if len(r.Native) > 0 {
		if o.lsm == nil {
			r.discardNative()
			return fmt.Errorf("the checkpoint holds this operator's keyed state as Pebble files (an incremental pebble checkpoint), which the %s state backend cannot read: restore with --state-backend %s, or take a savepoint on pebble and restore from that (savepoints are in the common format)", StateBackendMemory, StateBackendPebble)
		}
		if err := o.lsm.RestoreNative(r.Native); err != nil {
			o.lsm.Close() // the task is not built: nobody else closes it
			return err
		}
		if o.ctx.lsmTimers[0] == nil {
			// Timers on the heap: take those of a checkpoint whose
			// timers were in the store out of it.
			if err := o.takeStoreTimers(); err != nil {
				o.lsm.Close()
				return err
			}
		}
	}
	for _, ks := range r.Keyed {
		restore := o.ctx.backend.Restore
		if o.lsm != nil {
			restore = o.lsm.Restore
		}
		if err := restore(ks); err != nil {
			if o.lsm != nil {
				o.lsm.Close() // the task is not built: nobody else closes it
			}
			return err
		}
		if o.ctx.lsmTimers[0] != nil {
			continue // the store restored the timers with the state
		}
		if err := restoreTimers(&o.ctx.timers, timersSection, o.kt, ks); err != nil {
			return fmt.Errorf("restoring timers: %w", err)
		}
		if err := restoreTimers(&o.ctx.etimers, eventTimersSection, o.kt, ks); err != nil {
			return fmt.Errorf("restoring event-time timers: %w", err)
		}
	}
	return nil
}

// takeStoreTimers moves the timers a restored native checkpoint holds in
// the store (taken with the store timer service) to the heap timers.
func (o *processOperator[K, IN, OUT]) takeStoreTimers() error {
	for d, h := range []*timerService[K]{&o.ctx.timers, &o.ctx.etimers} {
		err := o.lsm.TakeTimers(d, func(kg int, key []byte, ts int64) error {
			k, err := o.kt.Decode(key)
			if err != nil {
				return fmt.Errorf("timer key: %w", err)
			}
			h.add(timerEntry[K]{timerKey: timerKey[K]{ts: ts, key: k}, kg: kg, hash: o.kt.Hash(k)})
			return nil
		})
		if err != nil {
			return fmt.Errorf("restoring timers from the store: %w", err)
		}
	}
	return nil
}

// nativeSnapshot is the synchronous part of a native checkpoint of a
// Pebble operator: the store's checkpoint, and the timers' sections.
func (o *processOperator[K, IN, OUT]) nativeSnapshot(id int64) (*pebblestate.Checkpoint, []statebackend.Section, error) {
	o.flush() // nothing is held between batches; kept for safety
	cp, err := o.lsm.Checkpoint(id)
	if err != nil {
		return nil, nil, err
	}
	return cp, o.memorySections(), nil
}

// snapshot is the synchronous part of a checkpoint: copy-on-write views of
// the state tables and of the timers, in O(key groups + pages) whatever
// the number of entries.
func (o *processOperator[K, IN, OUT]) snapshot() ([]statebackend.Section, error) {
	o.flush() // nothing is held between batches; kept for safety
	var sections []statebackend.Section
	if o.lsm != nil {
		var err error
		if sections, err = o.lsm.Snapshot(); err != nil {
			return nil, err
		}
	}
	return append(sections, o.memorySections()...), nil
}

// memorySections snapshots the memory backend and the timers. With pebble
// the memory backend still holds the timers' entries, which its snapshot
// freezes for the timer sections.
func (o *processOperator[K, IN, OUT]) memorySections() []statebackend.Section {
	sections := o.ctx.backend.Snapshot()
	if o.ctx.timers.len() > 0 {
		sections = append(sections, newTimerSection(timersSection, &o.ctx.timers, o.kt, o.keyGroups))
	}
	if o.ctx.etimers.len() > 0 {
		sections = append(sections, newTimerSection(eventTimersSection, &o.ctx.etimers, o.kt, o.keyGroups))
	}
	return sections
}

// Collect processes a record, or, within a batch of records, holds it
// back in a sliding window of holdRecords: on arrival its entry's page
// directory entry is prefetched (with millions of keys that is a miss of
// its own), slotLead records later its entry slot (and on pebble its key's
// value cache slots), and once the window is
// full the oldest record is processed. The cache misses of successive
// records then overlap instead of each stalling its record in turn, and
// every record's slot was prefetched a constant holdRecords-slotLead
// records before its use: processing the window in batches left the
// first records of each batch with no lead. At 100 k keys the first touch
// of the entry was 30 to 45 % of the state-heavy fraud job's CPU. Records
// are processed in order and before anything else reaches the operator
// (timers, watermarks, snapshots: see flush's callers), so only the time
// they are processed changes, within the batch.
func (o *processOperator[K, IN, OUT]) Collect(v IN) {
	o.count.in++
	k := o.sel(v)
	h := o.kt.Hash(k)
	kg := o.kgOf.of(h)
	if !o.keyGroups.Contains(kg) {
		o.fail(fmt.Errorf("%s: record with key group %d reached subtask %d, which owns %v", o.ctx.operatorName, kg, o.ctx.subtask, o.keyGroups))
		return
	}
	o.kgRecords[kg-o.keyGroups.First]++
	if o.held != nil && *o.inRecords {
		const mask = holdRecords - 1
		r := &o.held[(o.hhead+o.nheld)&mask]
		r.v, r.key, r.ts, r.hash, r.kg = v, k, *o.ctx.ts, h, int32(kg)
		o.entries.PrefetchDir(kg, h)
		if o.nheld++; o.nheld > slotLead {
			o.prefetchSlots(&o.held[(o.hhead+o.nheld-1-slotLead)&mask])
		}
		if o.nheld == holdRecords {
			o.processHeld()
		}
		return
	}
	// Outside a batch (a record emitted upstream while the task flushes
	// or fires timers), records still held go first.
	o.flush()
	o.process(v, k, h, kg)
}

// processHeld processes the oldest held record.
func (o *processOperator[K, IN, OUT]) processHeld() {
	r := &o.held[o.hhead]
	o.hhead = (o.hhead + 1) & (holdRecords - 1)
	o.nheld--
	ts := *o.ctx.ts
	*o.ctx.ts = r.ts
	o.process(r.v, r.key, r.hash, int(r.kg))
	*o.ctx.ts = ts
	*r = heldRecord[K, IN]{} // let go of what the record refers to
}

// flush processes the records held back, in order, after prefetching the
// slots of those whose slot was not prefetched yet.
func (o *processOperator[K, IN, OUT]) flush() {
	if o.nheld == 0 {
		return
	}
	for i := max(o.nheld-slotLead, 0); i < o.nheld; i++ {
		o.prefetchSlots(&o.held[(o.hhead+i)&(holdRecords-1)])
	}
	for o.nheld > 0 {
		o.processHeld()
	}
}

// prefetchSlots prefetches held record r's entry slot and, on pebble, its
// key's slots in the value caches.
func (o *processOperator[K, IN, OUT]) prefetchSlots(r *heldRecord[K, IN]) {
	o.entries.Prefetch(int(r.kg), r.hash)
	for _, t := range o.ctx.lsmPrefetch {
		t.Prefetch(r.key)
	}
}

func (o *processOperator[K, IN, OUT]) process(v IN, k K, h int32, kg int) {
	o.ctx.key, o.ctx.kg, o.ctx.hash = k, kg, h
	if err := o.fn.ProcessElement(v, o.ctx, o.out); err != nil {
		o.fail(fmt.Errorf("%s: %w", o.ctx.operatorName, err))
	}
	if o.lsm != nil {
		o.checkStore()
	}
}

// checkStore fails the task on the Pebble store's first error (a state
// access has no error to return; a full disk shows up here).
func (o *processOperator[K, IN, OUT]) checkStore() {
	if err := o.lsm.Err(); err != nil {
		o.fail(fmt.Errorf("%s: keyed state: %w", o.ctx.operatorName, err))
	}
}

func (o *processOperator[K, IN, OUT]) nextTimer() (int64, bool) {
	if q := o.ctx.lsmTimers[0]; q != nil {
		// A lower bound is enough to schedule the next firing, which
		// finds the timers themselves; it reads nothing from the store.
		return q.Earliest()
	}
	e, ok := o.ctx.timers.peek()
	return e.ts, ok
}

func (o *processOperator[K, IN, OUT]) fireTimers(now int64) {
	o.flush()
	if q := o.ctx.lsmTimers[0]; q != nil {
		o.fireLSM(q, now, ProcessingTime)
		return
	}
	o.fire(&o.ctx.timers, now, ProcessingTime)
}

func (o *processOperator[K, IN, OUT]) fireEventTimers(wm int64) {
	o.flush() // records before the watermark first
	if q := o.ctx.lsmTimers[1]; q != nil {
		o.fireLSM(q, wm, EventTime)
		return
	}
	o.fire(&o.ctx.etimers, wm, EventTime)
}

// fireLSM is fire for the timers of a Pebble store.
func (o *processOperator[K, IN, OUT]) fireLSM(q *pebblestate.TimerQueue[K], limit int64, d TimeDomain) {
	for {
		t, ok := q.Peek()
		if !ok || t.TS > limit {
			o.checkStore()
			return
		}
		q.Pop()
		o.ctx.key, o.ctx.kg, o.ctx.hash, o.ctx.domain = t.Key, t.KeyGroup, o.kt.Hash(t.Key), d
		*o.ctx.ts = NoTimestamp
		if d == EventTime {
			*o.ctx.ts = t.TS
		}
		if err := o.fn.OnTimer(t.TS, o.ctx, o.out); err != nil {
			o.fail(fmt.Errorf("%s: %v timer: %w", o.ctx.operatorName, d, err))
			return
		}
		o.checkStore()
	}
}

// fire calls OnTimer for each timer of h at or before limit, earliest
// first. What OnTimer emits carries the timer's time in event time and no
// timestamp in processing time, as in Flink.
func (o *processOperator[K, IN, OUT]) fire(h *timerService[K], limit int64, d TimeDomain) {
	for {
		e, ok := h.peek()
		if !ok || e.ts > limit {
			return
		}
		h.pop()
		o.ctx.key, o.ctx.kg, o.ctx.hash, o.ctx.domain = e.key, e.kg, e.hash, d
		*o.ctx.ts = NoTimestamp
		if d == EventTime {
			*o.ctx.ts = e.ts
		}
		if err := o.fn.OnTimer(e.ts, o.ctx, o.out); err != nil {
			o.fail(fmt.Errorf("%s: %v timer: %w", o.ctx.operatorName, d, err))
			return
		}
		if o.lsm != nil {
			o.checkStore()
		}
	}
}
