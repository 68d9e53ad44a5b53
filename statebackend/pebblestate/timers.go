package pebblestate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"

	"github.com/weirstream/weir/statebackend"
)

// firstTimerID is the highest state id; timer queues take ids downward
// from it, so they never meet the states' ids, which grow upward from 0.
const firstTimerID = 0xffff

// maxTimerQueues bounds the ids reserved for timer queues (the runtime has
// two per operator: processing and event time).
const maxTimerQueues = 4

// The timers' pending writes (timerBuffer) reach Pebble in sorted batches
// of timerBatchOps writes.
const timerBatchOps = 1 << 16

// timerTime is the time of a timer's Pebble key.
func timerTime(key []byte) int64 {
	if len(key) < prefixLen+8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(key[prefixLen:]) ^ 1<<63)
}

// TimerQueue holds the timers of one time domain of a keyed operator in
// the store, ordered by time within each key group:
//
//	u16 key group | u16 queue id | u64 time (big-endian, sign bit flipped) | k
//
// k being the key codec's encoding. Registering is a Pebble Set and
// deleting a Pebble Delete, both blind: a timer registered twice is
// stored once, and deleting a timer that does not exist writes a
// tombstone and changes nothing, as in the runtime's memory timer
// service. Writes go to the store's in-memory tier (timerBuffer), where a
// delete cancels a register Pebble never saw; it is written to Pebble when
// full, and before anything reads the queue's keys (a refill, a snapshot).
//
// Firing needs the earliest timer without a seek per record: each key
// group keeps, in memory, its earliest timers in order (its head), and a
// heap over the key groups orders them by their heads' first timers. A
// head holds exactly the group's timers below its bound (the first timer
// not in it); a timer registered below the bound joins the head, one
// above it only goes to Pebble. A head that overflows drops its last
// timer and lowers its bound to it. A head that empties (timers fired or
// deleted) stays in the heap under its bound's time, a lower bound of
// the group's earliest timer, and is refilled by one iterator from its
// bound only when it reaches the top and Peek needs it, so the tombstones
// of fired timers below the bound are never read again, and a job whose
// timers are far off (Earliest suffices to schedule them) reads nothing.
// A head that holds all of its group's timers has no bound.
type TimerQueue[K comparable] struct {
	s       *Store
	id      uint16
	section string
	kc      statebackend.Codec[K]
	safe    bool
	groups  []timerGroup[K]
	// heap holds the indexes of the groups with timers, ordered by their
	// first timer's time, or for an empty head (refill) by its bound's.
	heap []int32
	// headCap is the most timers a head holds.
	headCap int
	key     []byte
	a, b    []byte // scratch encodings for comparisons
}

// timerGroup is one key group's head.
type timerGroup[K comparable] struct {
	// head holds the group's earliest timers, in order, from start on.
	head  []timer[K]
	start int
	// bound is the first timer not in head; valid when bounded. When
	// keyless, it is the start of bound.ts instead: the head holds the
	// group's timers of earlier times.
	bound   timer[K]
	bounded bool
	keyless bool
	// bufTS is at most the time of each of the group's timers that
	// the store's timer buffer may hold and the head does not, as of the
	// buffer's generation bufGen (Store.tbGen); math.MaxInt64 if none.
	bufTS  int64
	bufGen uint64
	pos    int32 // index in the queue's heap, -1 when not in it
	// refill: the head is empty while Pebble may hold more of the
	// group's timers, from the bound on (from the start if unbounded).
	refill bool
}

type timer[K comparable] struct {
	ts  int64
	key K
}

// Timer is a registered timer: its time, key group and key.
type Timer[K comparable] struct {
	TS       int64
	KeyGroup int
	Key      K
}

// headBudget is the number of timers all heads of a queue hold together
// at most, unless that leaves fewer than minHead per key group.
const (
	headBudget = 1 << 15
	minHead    = 8
	maxHead    = 256
)

// NewTimerQueue registers the timer queue name, which is also its section
// in the store's snapshots (the runtime's "_timers" and "_event_timers").
// Call it before Restore, so that the restored timers go to the queue.
func NewTimerQueue[K comparable](s *Store, name string, kc statebackend.Codec[K]) (*TimerQueue[K], error) {
	if len(s.timers) >= maxTimerQueues {
		return nil, errors.New("pebblestate: too many timer queues")
	}
	for _, t := range s.timers {
		if t.name() == name {
			return nil, fmt.Errorf("pebblestate: timer queue %q registered twice", name)
		}
	}
	n := s.keyGroups.Len()
	q := &TimerQueue[K]{s: s, id: uint16(firstTimerID - len(s.timers)), section: name, kc: kc, safe: copies(kc),
		groups: make([]timerGroup[K], n), headCap: min(maxHead, max(minHead, headBudget/max(n, 1)))}
	for i := range q.groups {
		q.groups[i].pos = -1
	}
	s.timers = append(s.timers, q)
	return q, nil
}

// timerQueue is the store's untyped view of a TimerQueue.
type timerQueue interface {
	name() string
	queueID() uint16
	// restored marks key group kg's head as needing a refill: timers were
	// written under it.
	restored(kg int)
}

func (q *TimerQueue[K]) name() string    { return q.section }
func (q *TimerQueue[K]) queueID() uint16 { return q.id }

func (q *TimerQueue[K]) restored(kg int) {
	g := &q.groups[kg-q.s.keyGroups.First]
	if g.pos >= 0 {
		q.heapRemove(g.pos)
	}
	clear(g.head)
	g.head, g.start, g.bounded, g.keyless = g.head[:0], 0, false, false
	// An unbounded empty head reads the group from its start, first.
	q.needRefill(kg - q.s.keyGroups.First)
}

// appendTimerKey appends the Pebble key of timer (ts, k) in key group kg.
func appendTimerKey[K any](dst []byte, kg int, id uint16, c statebackend.Codec[K], ts int64, k K) []byte {
	dst = appendPrefix(dst, kg, id)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts)^1<<63)
	return c.Append(dst, k)
}

// Add registers timer (ts, k) in key group kg; registering it again
// changes nothing.
func (q *TimerQueue[K]) Add(kg int, k K, ts int64) {
	q.key = appendTimerKey(q.key[:0], kg, q.id, q.kc, ts, k)
	q.s.timerWrite(q.key, false)
	gi := kg - q.s.keyGroups.First
	g := &q.groups[gi]
	t := timer[K]{ts: ts, key: k}
	if q.above(g, t) {
		// Above the head: the buffer (or Pebble) has it, the head need not.
		q.buffered(g, ts)
		return
	}
	if g.refill {
		// The head is empty and is read from the store (which has the
		// timer by then) from its bound before anything looks at it: a
		// timer below the bound becomes the bound.
		if g.bounded {
			g.bound, g.keyless = t, false
			q.heapFix(g.pos)
		}
		q.buffered(g, ts)
		return
	}
	i, found := q.search(g, t)
	if found {
		return
	}
	wasFirst := len(g.head) == g.start
	i = q.insert(g, i, t)
	if len(g.head)-g.start > q.headCap {
		// Drop the last timer: the bound falls to it, and the buffer or
		// Pebble has it.
		g.bound, g.bounded, g.keyless = g.head[len(g.head)-1], true, false
		q.buffered(g, g.bound.ts)
		g.head[len(g.head)-1] = timer[K]{}
		g.head = g.head[:len(g.head)-1]
	}
	switch {
	case wasFirst:
		q.heapPush(gi)
	case i == g.start:
		q.heapFix(g.pos)
	}
}

// Delete removes timer (ts, k) of key group kg, if registered.
func (q *TimerQueue[K]) Delete(kg int, k K, ts int64) {
	q.key = appendTimerKey(q.key[:0], kg, q.id, q.kc, ts, k)
	q.s.timerWrite(q.key, true)
	gi := kg - q.s.keyGroups.First
	g := &q.groups[gi]
	if g.refill || len(g.head) == g.start {
		return
	}
	t := timer[K]{ts: ts, key: k}
	if q.above(g, t) {
		return
	}
	i, found := q.search(g, t)
	if !found {
		return
	}
	if i == g.start {
		q.popHead(gi)
		return
	}
	copy(g.head[i:], g.head[i+1:])
	g.head[len(g.head)-1] = timer[K]{}
	g.head = g.head[:len(g.head)-1]
}

// Peek returns the earliest timer (of the earliest time; timers of one
// time come in no particular order across key groups).
func (q *TimerQueue[K]) Peek() (Timer[K], bool) {
	for len(q.heap) > 0 {
		gi := q.heap[0]
		g := &q.groups[gi]
		if g.refill {
			q.fill(int(gi))
			if q.s.failed() {
				return Timer[K]{}, false
			}
			continue
		}
		t := g.head[g.start]
		return Timer[K]{TS: t.ts, KeyGroup: int(gi) + q.s.keyGroups.First, Key: t.key}, true
	}
	return Timer[K]{}, false
}

// Earliest returns a time no later than the earliest timer's, without
// reading the store: the earliest timer's, or the bound of a head yet to
// be refilled (whose timers may all have been deleted since: ok may then
// be true with no timer left). It suffices to schedule the next firing,
// which Peek then finds or not.
func (q *TimerQueue[K]) Earliest() (int64, bool) {
	// A restored group has no bound to offer: read it (once).
	for len(q.heap) > 0 && q.groups[q.heap[0]].refill && !q.groups[q.heap[0]].bounded {
		q.fill(int(q.heap[0]))
		if q.s.failed() {
			return 0, false
		}
	}
	if len(q.heap) == 0 {
		return 0, false
	}
	return q.first(q.heap[0]), true
}

// Pop removes and returns the timer Peek returns; there must be one.
func (q *TimerQueue[K]) Pop() Timer[K] {
	t, ok := q.Peek()
	if !ok {
		panic("pebblestate: Pop of an empty timer queue")
	}
	q.key = appendTimerKey(q.key[:0], t.KeyGroup, q.id, q.kc, t.TS, t.Key)
	q.s.timerWrite(q.key, true)
	q.popHead(int(q.heap[0]))
	return t
}

// popHead removes group gi's first timer.
func (q *TimerQueue[K]) popHead(gi int) {
	g := &q.groups[gi]
	g.head[g.start] = timer[K]{}
	g.start++
	if g.start < len(g.head) {
		q.heapFix(g.pos)
		return
	}
	g.head, g.start = g.head[:0], 0
	if g.bounded {
		q.needRefill(gi)
		return
	}
	q.heapRemove(g.pos)
}

// needRefill marks group gi's (empty) head for a refill, keeping the
// group in the heap under its bound.
func (q *TimerQueue[K]) needRefill(gi int) {
	g := &q.groups[gi]
	g.refill = true
	if g.pos < 0 {
		q.heapPush(gi)
	} else {
		q.heapFix(g.pos)
	}
}

// above reports whether t is at or above g's bound (so not in its head).
func (q *TimerQueue[K]) above(g *timerGroup[K], t timer[K]) bool {
	switch {
	case !g.bounded:
		return false
	case g.keyless:
		return t.ts >= g.bound.ts
	}
	return q.cmp(t, g.bound) >= 0
}

// buffered notes that the store's timer buffer may hold a timer of g at
// ts that g's head does not.
func (q *TimerQueue[K]) buffered(g *timerGroup[K], ts int64) {
	if g.bufGen != q.s.tbGen {
		g.bufTS, g.bufGen = math.MaxInt64, q.s.tbGen
	}
	g.bufTS = min(g.bufTS, ts)
}

// bufferedFrom is the earliest time of g's timers that the buffer may
// hold beyond its head, math.MaxInt64 if none.
func (q *TimerQueue[K]) bufferedFrom(g *timerGroup[K]) int64 {
	if g.bufGen != q.s.tbGen {
		return math.MaxInt64
	}
	return g.bufTS
}

// fill reads group gi's earliest timers from its bound on. Pebble lacks
// the timers still in the store's buffer: the group's buffered timers
// are all at or after bufferedFrom, so the head takes Pebble's timers
// before that time (less those the buffer deletes) and is bounded by
// its start. Only when that leaves nothing to fire is the buffer written
// to Pebble first; so a refill at the front of time does not drag the
// buffer's far-off timers into Pebble.
func (q *TimerQueue[K]) fill(gi int) {
	g := &q.groups[gi]
	kg := gi + q.s.keyGroups.First
	lower := appendPrefix(nil, kg, q.id)
	upper := prefixEnd(lower)
	switch {
	case !g.bounded:
	case g.keyless:
		lower = binary.BigEndian.AppendUint64(lower, uint64(g.bound.ts)^1<<63)
	default:
		lower = appendTimerKey(lower[:0], kg, q.id, q.kc, g.bound.ts, g.bound.key)
	}
	g.refill, g.bounded, g.keyless = false, false, false
	for spilled := false; ; spilled = true {
		buf := q.bufferedFrom(g)
		if spilled || (buf != math.MaxInt64 && buf <= timerTime(lower)) || len(lower) == prefixLen {
			if buf != math.MaxInt64 {
				q.s.commitTimers()
				buf = math.MaxInt64
			}
		}
		if e := q.s.ep; e != nil {
			// The timers frozen at the barrier reach Pebble first of what
			// its epoch writes back; the later ones are in pend.
			<-e.timersIn
		}
		if !q.read(g, lower, upper, buf) || len(g.head) > 0 || !g.bounded || spilled {
			break
		}
		// Pebble has nothing of the group before its buffered timers.
		g.bounded, g.keyless = false, false
	}
	if len(g.head) > 0 {
		q.heapFix(g.pos)
	} else {
		q.heapRemove(g.pos)
	}
}

// read fills g's empty head from Pebble's timers in [lower, upper) before
// time buf, skipping those the buffer deletes, and sets its bound; false
// if the store failed.
func (q *TimerQueue[K]) read(g *timerGroup[K], lower, upper []byte, buf int64) bool {
	it, err := q.s.newIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		q.s.fail(fmt.Errorf("state store read: %w", err))
		return false
	}
	defer q.s.closeIter(it)
	for ok := it.First(); ok; ok = it.Next() {
		if timerTime(it.Key()) >= buf {
			break
		}
		if q.s.tb.deletes(it.Key()) {
			continue
		}
		t, err := q.decode(it.Key())
		if err != nil {
			q.s.fail(fmt.Errorf("timer queue %s: %w", q.section, err))
			return false
		}
		if len(g.head) == q.headCap {
			g.bound, g.bounded = t, true
			return true
		}
		g.head = append(g.head, t)
	}
	if err := it.Error(); err != nil {
		q.s.fail(fmt.Errorf("state store read: %w", err))
		return false
	}
	if buf != math.MaxInt64 {
		g.bound, g.bounded, g.keyless = timer[K]{ts: buf}, true, true
	}
	return true
}

// decode reads a timer from its Pebble key.
func (q *TimerQueue[K]) decode(key []byte) (timer[K], error) {
	if len(key) < prefixLen+8 {
		return timer[K]{}, fmt.Errorf("timer key of %d bytes: %w", len(key), statebackend.ErrCorrupt)
	}
	ts := int64(binary.BigEndian.Uint64(key[prefixLen:]) ^ 1<<63)
	k, err := decode(q.kc, q.safe, key[prefixLen+8:])
	if err != nil {
		return timer[K]{}, fmt.Errorf("timer key: %w", err)
	}
	return timer[K]{ts: ts, key: k}, nil
}

// cmp orders timers as their Pebble keys: by time, then by the key's
// encoding (encoded only for timers of one time).
func (q *TimerQueue[K]) cmp(x, y timer[K]) int {
	switch {
	case x.ts < y.ts:
		return -1
	case x.ts > y.ts:
		return 1
	case x.key == y.key:
		return 0
	}
	q.a = q.kc.Append(q.a[:0], x.key)
	q.b = q.kc.Append(q.b[:0], y.key)
	return bytes.Compare(q.a, q.b)
}

// search finds t's place in g's head.
func (q *TimerQueue[K]) search(g *timerGroup[K], t timer[K]) (int, bool) {
	lo, hi := g.start, len(g.head)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if q.cmp(g.head[m], t) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(g.head) && q.cmp(g.head[lo], t) == 0
}

// insert puts t at i of g's head, moving the head to the front of its
// array when the array is full, and returns t's index.
func (q *TimerQueue[K]) insert(g *timerGroup[K], i int, t timer[K]) int {
	if len(g.head) == cap(g.head) && g.start > 0 {
		n := copy(g.head, g.head[g.start:])
		clear(g.head[n:])
		g.head = g.head[:n]
		i -= g.start
		g.start = 0
	}
	if cap(g.head) == 0 {
		g.head = make([]timer[K], 0, q.headCap+1)
	}
	g.head = append(g.head, timer[K]{})
	copy(g.head[i+1:], g.head[i:])
	g.head[i] = t
	return i
}

// The heap of groups, by their first timer's time.

func (q *TimerQueue[K]) first(gi int32) int64 {
	g := &q.groups[gi]
	switch {
	case !g.refill:
		return g.head[g.start].ts
	case g.bounded:
		return g.bound.ts
	}
	return math.MinInt64 // a restored group: its earliest is unknown
}

func (q *TimerQueue[K]) heapPush(gi int) {
	q.heap = append(q.heap, int32(gi))
	q.groups[gi].pos = int32(len(q.heap) - 1)
	q.up(len(q.heap) - 1)
}

func (q *TimerQueue[K]) heapRemove(pos int32) {
	last := len(q.heap) - 1
	gi := q.heap[pos]
	q.groups[gi].pos = -1
	if int(pos) != last {
		q.heap[pos] = q.heap[last]
		q.groups[q.heap[pos]].pos = pos
	}
	q.heap = q.heap[:last]
	if int(pos) < last {
		q.heapFix(pos)
	}
}

func (q *TimerQueue[K]) heapFix(pos int32) {
	if !q.up(int(pos)) {
		q.down(int(pos))
	}
}

func (q *TimerQueue[K]) up(i int) bool {
	gi := q.heap[i]
	ts := q.first(gi)
	moved := false
	for i > 0 {
		p := (i - 1) / 2
		if ts >= q.first(q.heap[p]) {
			break
		}
		q.heap[i] = q.heap[p]
		q.groups[q.heap[i]].pos = int32(i)
		i, moved = p, true
	}
	q.heap[i] = gi
	q.groups[gi].pos = int32(i)
	return moved
}

func (q *TimerQueue[K]) down(i int) {
	n := len(q.heap)
	gi := q.heap[i]
	ts := q.first(gi)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && q.first(q.heap[r]) < q.first(q.heap[l]) {
			m = r
		}
		if q.first(q.heap[m]) >= ts {
			break
		}
		q.heap[i] = q.heap[m]
		q.groups[q.heap[i]].pos = int32(i)
		i = m
	}
	q.heap[i] = gi
	q.groups[gi].pos = int32(i)
}

// timerWrite adds a set (with an empty value) or a delete of key to the
// timers' pending writes.
func (s *Store) timerWrite(key []byte, del bool) {
	if s.failed() {
		return
	}
	if s.ep != nil {
		s.poll()
	}
	if !s.tb.fits(len(key)) {
		s.writeTimerNow(key, del)
		return
	}
	if s.tb.full(len(key)) {
		if s.budget != nil {
			s.tb.limit = min(max(s.budget.timerBytes(), minTimerBuffer), maxTimerBuffer) // stores come and go
		}
		if s.tb.full(len(key)) {
			s.makeRoom(len(key))
		}
	}
	s.tb.add(key, del, s.timerMax)
}

// writeTimerNow writes a timer whose key is too long for the buffer's
// blocks to Pebble (during an epoch to its pending batch), after the
// buffer, which may hold an earlier write of it.
func (s *Store) writeTimerNow(key []byte, del bool) {
	s.commitTimers()
	if s.failed() {
		return
	}
	sb := sortedBatch{timers: true}
	if del {
		sb.del(key)
	} else {
		sb.set(key, nil)
	}
	maxTS, err := sb.apply(s, s.pend, s.timerMax)
	if err != nil {
		s.fail(fmt.Errorf("state store write: %w", err))
		return
	}
	s.timerMax = maxTS
	s.checkPend()
}

// commitTimers writes the timers' pending writes to Pebble.
func (s *Store) commitTimers() {
	s.tb.commit(s)
	s.tbGen++
}

// TakeTimers hands fn the timers the store holds for the i-th timer queue
// (in the order the runtime registers them: 0 "_timers", 1
// "_event_timers"), with its key codec's encoding of each key, then
// deletes them from the store. It is for an operator whose timers live on
// the heap restoring a native checkpoint of one whose timers were in the
// store, so it refuses a queue that is registered. Call it after
// RestoreNative.
func (s *Store) TakeTimers(i int, fn func(kg int, key []byte, ts int64) error) error {
	if i < 0 || i >= maxTimerQueues {
		return fmt.Errorf("pebblestate: timer queue %d out of range", i)
	}
	id := uint16(firstTimerID - i)
	for _, q := range s.timers {
		if q.queueID() == id {
			return fmt.Errorf("pebblestate: timer queue %q is registered: its timers stay in the store", q.name())
		}
	}
	s.commitTimers()
	var lo, hi []byte
	for kg := s.keyGroups.First; kg <= s.keyGroups.Last; kg++ {
		lo, hi = appendPrefix(lo[:0], kg, id), appendPrefix(hi[:0], kg, id+1)
		if id == 0xffff { // id+1 wrapped: the group's end
			hi = appendPrefix(hi[:0], kg+1, 0)
		}
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return fmt.Errorf("pebblestate: %w", err)
		}
		n := 0
		for ok := it.First(); ok; ok = it.Next() {
			k := it.Key()
			if len(k) < prefixLen+8 {
				it.Close()
				return fmt.Errorf("timers: bad key in the store: %w", statebackend.ErrCorrupt)
			}
			if err := fn(kg, k[prefixLen+8:], timerTime(k)); err != nil {
				it.Close()
				return err
			}
			n++
		}
		err = it.Error()
		if cerr := it.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("pebblestate: reading timers: %w", err)
		}
		if n > 0 {
			if err := s.writeNow(pebble.InternalKeyKindRangeDelete, lo, hi); err != nil {
				return fmt.Errorf("state store write: %w", err)
			}
		}
	}
	return nil
}
