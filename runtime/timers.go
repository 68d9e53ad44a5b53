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
}

// timerHeap is a min-heap of timers with an index by (time, key), so that
// registering is idempotent and deleting is O(log n), as in Flink's
// HeapPriorityQueueSet.
type timerHeap[K comparable] struct {
	h   []timerEntry[K]
	pos map[timerKey[K]]int
}

func (t *timerHeap[K]) len() int { return len(t.h) }

func (t *timerHeap[K]) add(e timerEntry[K]) bool {
	if t.pos == nil {
		t.pos = make(map[timerKey[K]]int)
	}
	if _, ok := t.pos[e.timerKey]; ok {
		return false
	}
	t.h = append(t.h, e)
	t.pos[e.timerKey] = len(t.h) - 1
	t.up(len(t.h) - 1)
	return true
}

func (t *timerHeap[K]) remove(k timerKey[K]) bool {
	i, ok := t.pos[k]
	if !ok {
		return false
	}
	t.removeAt(i)
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
	delete(t.pos, t.h[i].timerKey)
	if i != last {
		t.h[i] = t.h[last]
		t.pos[t.h[i].timerKey] = i
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
	t.pos[t.h[i].timerKey] = i
	t.pos[t.h[j].timerKey] = j
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
