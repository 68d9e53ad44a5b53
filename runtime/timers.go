package runtime

// timerOwner is an operator with processing-time timers.
type timerOwner interface {
	// nextTimer returns the earliest registered timer (Unix ms).
	nextTimer() (int64, bool)
	// fireTimers calls OnTimer for every timer at or before now (Unix ms).
	fireTimers(now int64)
}

// eventTimerOwner is an operator with event-time timers.
type eventTimerOwner interface {
	// fireEventTimers calls OnTimer for every event-time timer at or
	// before the watermark wm.
	fireEventTimers(wm int64)
}

type timerKey[K comparable] struct {
	ts  int64
	key K
}

type timerEntry[K comparable] struct {
	timerKey[K]
	kg int
	// slot is the timer's index in timerHeap.pos while it is registered.
	slot int32
}

// timerHeap is a min-heap of timers with an index by (time, key), so that
// registering is idempotent and deleting is O(log n), as in Flink's
// HeapPriorityQueueSet. The index maps a timer to a stable slot, and the
// slot to the timer's heap position, so that moving timers within the heap
// writes a slice, not the map: with many keys, map writes on every swap
// made the heap the larger part of a window operator's cost.
type timerHeap[K comparable] struct {
	h     []timerEntry[K]
	slots map[timerKey[K]]int32
	pos   []int32 // heap position by slot
	free  []int32 // slots to reuse
}

func (t *timerHeap[K]) len() int { return len(t.h) }

func (t *timerHeap[K]) add(e timerEntry[K]) bool {
	if t.slots == nil {
		t.slots = make(map[timerKey[K]]int32)
	}
	if _, ok := t.slots[e.timerKey]; ok {
		return false
	}
	if n := len(t.free); n > 0 {
		e.slot = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		e.slot = int32(len(t.pos))
		t.pos = append(t.pos, 0)
	}
	t.slots[e.timerKey] = e.slot
	t.h = append(t.h, e)
	t.pos[e.slot] = int32(len(t.h) - 1)
	t.up(len(t.h) - 1)
	return true
}

func (t *timerHeap[K]) remove(k timerKey[K]) bool {
	slot, ok := t.slots[k]
	if !ok {
		return false
	}
	t.removeAt(int(t.pos[slot]))
	return true
}

func (t *timerHeap[K]) peek() (timerEntry[K], bool) {
	if len(t.h) == 0 {
		return timerEntry[K]{}, false
	}
	return t.h[0], true
}

func (t *timerHeap[K]) pop() timerEntry[K] {
	e := t.h[0]
	t.removeAt(0)
	return e
}

func (t *timerHeap[K]) removeAt(i int) {
	last := len(t.h) - 1
	e := t.h[i]
	delete(t.slots, e.timerKey)
	t.free = append(t.free, e.slot)
	if i != last {
		t.h[i] = t.h[last]
		t.pos[t.h[i].slot] = int32(i)
	}
	t.h = t.h[:last]
	if i < last {
		t.down(i)
		t.up(i)
	}
}

func (t *timerHeap[K]) less(i, j int) bool { return t.h[i].ts < t.h[j].ts }

func (t *timerHeap[K]) swap(i, j int) {
	t.h[i], t.h[j] = t.h[j], t.h[i]
	t.pos[t.h[i].slot] = int32(i)
	t.pos[t.h[j].slot] = int32(j)
}

func (t *timerHeap[K]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !t.less(i, p) {
			return
		}
		t.swap(i, p)
		i = p
	}
}

func (t *timerHeap[K]) down(i int) {
	n := len(t.h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && t.less(r, l) {
			m = r
		}
		if !t.less(m, i) {
			return
		}
		t.swap(i, m)
		i = m
	}
}
