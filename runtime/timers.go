package runtime

import "slices"

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

// timerEntry is one registered timer. hash is the key's KeyType hash; the
// index finds timers by (hash, key), so every add and remove of one key
// must give the same hash (the runtime computes it once per record).
type timerEntry[K comparable] struct {
	timerKey[K]
	kg   int
	hash int32
}

// timerHeap holds the timers of a keyed operator beyond each key's first
// (which the key's entry holds, see timerService): a min-heap of timers
// with an index by key, so that registering is idempotent and deleting is
// cheap, without the per-access hashing of a (time, key) struct.
//
// Timers live in slots, stable while registered; the slots of one key form
// a chain, whose first slot the index holds. A key has few timers (most
// operators keep one), so finding (time, key) is one index probe and a
// short walk. The index is open addressing over the key's hash with
// backward-shift deletion: a key's timer deleted and registered again on
// every record leaves no tombstones behind.
//
// Deleting is O(1) and lazy: it frees the slot and bumps its generation;
// the heap item, 16 bytes of (time, slot, generation), stays until it
// reaches the top, where peek and pop drop it, or until dead items
// outnumber live ones, when the heap is rebuilt without them in O(n)
// (amortised O(1) per delete, and at most twice the live items in
// memory). Removing from the middle of a heap instead would sift the last
// item down: a timer registered now+timeout is the latest, so it sank
// through every level, one cache miss each, on every record of a
// detector that moves its key's timer.
//
// The entries themselves (time, key, key group) are in a paged
// copy-on-write array, ents: a snapshot takes its directory in O(1), and
// the first write to a page afterwards copies that page only, so the
// synchronous part of a checkpoint does not grow with the number of
// timers.
type timerHeap[K comparable] struct {
	h     []heapItem
	dead  int // items of h whose slot moved on
	ents  cowSlice[timerSlot[K]]
	free  []int32 // slots to reuse
	index keyIndex[K]
}

type heapItem struct {
	ts   int64
	slot int32
	gen  uint32
}

// timerSlot is a slot: its timer, live (false for free slots), the next
// slot of the same key (-1 at the end), and its generation, bumped when
// the slot is freed so that heap items of earlier timers in it are known
// dead. All in one place, since a remove needs them all.
type timerSlot[K comparable] struct {
	timerEntry[K]
	next int32
	gen  uint32
	live bool
}

func (t *timerHeap[K]) len() int { return len(t.h) - t.dead }

func (t *timerHeap[K]) isDead(it heapItem) bool { return t.ents.at(it.slot).gen != it.gen }

// find returns the slot of timer (k.ts, k.key) and its predecessor in the
// key's chain (-1 if it is the head), or slot -1.
func (t *timerHeap[K]) find(h int32, k timerKey[K]) (slot, prev int32) {
	prev = -1
	for s := t.index.get(uint32(h), k.key); s >= 0; prev, s = s, t.ents.at(s).next {
		if t.ents.at(s).ts == k.ts {
			return s, prev
		}
	}
	return -1, -1
}

func (t *timerHeap[K]) add(e timerEntry[K]) bool {
	head := t.index.get(uint32(e.hash), e.key)
	for s := head; s >= 0; s = t.ents.at(s).next {
		if t.ents.at(s).ts == e.ts {
			return false
		}
	}
	var slot int32
	if n := len(t.free); n > 0 {
		slot = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		slot = t.ents.n
		t.ents.grow()
	}
	es := t.ents.writable(slot)
	es.timerEntry, es.next, es.live = e, head, true
	t.index.put(uint32(e.hash), e.key, slot)
	t.h = append(t.h, heapItem{ts: e.ts, slot: slot, gen: es.gen})
	t.up(len(t.h) - 1)
	return true
}

// remove deletes timer k of a key whose hash is h.
func (t *timerHeap[K]) remove(k timerKey[K], h int32) bool {
	slot, prev := t.find(h, k)
	if slot < 0 {
		return false
	}
	t.unlink(slot, prev, h)
	t.dead++
	if t.dead > 64 && t.dead > len(t.h)/2 {
		t.compact()
	}
	return true
}

// unlink takes slot out of its key's chain and frees it; its heap item is
// dead from then on.
func (t *timerHeap[K]) unlink(slot, prev, h int32) {
	es := t.ents.writable(slot)
	if prev >= 0 {
		t.ents.writable(prev).next = es.next
	} else if es.next >= 0 {
		t.index.put(uint32(h), es.key, es.next)
	} else {
		t.index.del(uint32(h), es.key)
	}
	es.timerEntry, es.next, es.live = timerEntry[K]{}, -1, false
	es.gen++
	t.free = append(t.free, slot)
}

// compact rebuilds the heap from its live items.
func (t *timerHeap[K]) compact() {
	live := t.h[:0]
	for _, it := range t.h {
		if !t.isDead(it) {
			live = append(live, it)
		}
	}
	clear(t.h[len(live):])
	t.h, t.dead = live, 0
	for i := len(t.h)/2 - 1; i >= 0; i-- {
		t.down(i)
	}
}

// dropDead pops dead items off the top, so that the top is live.
func (t *timerHeap[K]) dropDead() {
	for len(t.h) > 0 && t.isDead(t.h[0]) {
		t.removeTop()
		t.dead--
	}
}

func (t *timerHeap[K]) peek() (timerEntry[K], bool) {
	t.dropDead()
	if len(t.h) == 0 {
		return timerEntry[K]{}, false
	}
	return t.ents.at(t.h[0].slot).timerEntry, true
}

// pop removes and returns the earliest timer; the heap must not be empty.
func (t *timerHeap[K]) pop() timerEntry[K] {
	t.dropDead()
	slot := t.h[0].slot
	e := t.ents.at(slot).timerEntry
	_, prev := t.find(e.hash, e.timerKey)
	t.unlink(slot, prev, e.hash)
	t.removeTop()
	return e
}

func (t *timerHeap[K]) removeTop() {
	last := len(t.h) - 1
	t.h[0] = t.h[last]
	t.h = t.h[:last]
	if last > 0 {
		t.down(0)
	}
}

// each calls f for every registered timer, in no particular order.
func (t *timerHeap[K]) each(f func(timerEntry[K])) {
	for _, it := range t.h {
		if !t.isDead(it) {
			f(t.ents.at(it.slot).timerEntry)
		}
	}
}

func (t *timerHeap[K]) up(i int) {
	it := t.h[i]
	for i > 0 {
		p := (i - 1) / 2
		if it.ts >= t.h[p].ts {
			break
		}
		t.h[i] = t.h[p]
		i = p
	}
	t.h[i] = it
}

func (t *timerHeap[K]) down(i int) {
	n := len(t.h)
	it := t.h[i]
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && t.h[r].ts < t.h[l].ts {
			m = r
		}
		if t.h[m].ts >= it.ts {
			break
		}
		t.h[i] = t.h[m]
		i = m
	}
	t.h[i] = it
}

// cowSlice is a growable array in pages of cowPage elements, copied on
// write by page after a snapshot: the page version scheme of
// statebackend's value tables.
type cowSlice[T any] struct {
	pages     []*cowPage[T]
	n         int32
	ver       uint32
	sharedDir bool
}

const (
	cowPageBits = 6
	cowPageLen  = 1 << cowPageBits
)

type cowPage[T any] struct {
	ver uint32
	s   [cowPageLen]T
}

func (c *cowSlice[T]) at(i int32) *T { return &c.pages[i>>cowPageBits].s[i&(cowPageLen-1)] }

// grow appends one zero element.
func (c *cowSlice[T]) grow() {
	if int(c.n)>>cowPageBits == len(c.pages) {
		if c.sharedDir {
			c.pages = slices.Clone(c.pages)
			c.sharedDir = false
		}
		c.pages = append(c.pages, &cowPage[T]{ver: c.ver})
	}
	c.n++
}

// writable returns element i, copying its page first if a snapshot
// shares it.
func (c *cowSlice[T]) writable(i int32) *T {
	p := c.pages[i>>cowPageBits]
	if p.ver != c.ver {
		if c.sharedDir {
			c.pages = slices.Clone(c.pages)
			c.sharedDir = false
		}
		cp := *p
		cp.ver = c.ver
		p = &cp
		c.pages[i>>cowPageBits] = p
	}
	return &p.s[i&(cowPageLen-1)]
}

// snapshot freezes the slice in O(1): the returned pages and their first
// n elements are never written again.
func (c *cowSlice[T]) snapshot() ([]*cowPage[T], int32) {
	c.ver++
	c.sharedDir = true
	return c.pages, c.n
}

// keyIndex maps keys to an int32 (a key's first timer slot): open
// addressing with linear probing over the caller's hash and backward-shift
// deletion, so churn leaves no tombstones.
type keyIndex[K comparable] struct {
	s     []indexSlot[K]
	n     int
	shift uint8
}

type indexSlot[K comparable] struct {
	key  K
	hash uint32
	val  int32 // -1: empty
}

func (x *keyIndex[K]) home(h uint32) int { return int(mix32(h) >> x.shift) }

// mix32 is the MurmurHash3 finalizer: an int64 key's hash is the key, and
// runs of consecutive keys must not cluster.
func mix32(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	return h ^ h>>16
}

func (x *keyIndex[K]) get(h uint32, k K) int32 {
	if x.n == 0 {
		return -1
	}
	mask := len(x.s) - 1
	for i := x.home(h); ; i = (i + 1) & mask {
		s := &x.s[i]
		if s.val < 0 {
			return -1
		}
		if s.hash == h && s.key == k {
			return s.val
		}
	}
}

func (x *keyIndex[K]) put(h uint32, k K, v int32) {
	if (x.n+1)*4 > len(x.s)*3 {
		x.resize()
	}
	mask := len(x.s) - 1
	i := x.home(h)
	for ; x.s[i].val >= 0; i = (i + 1) & mask {
		if x.s[i].hash == h && x.s[i].key == k {
			x.s[i].val = v
			return
		}
	}
	x.s[i] = indexSlot[K]{key: k, hash: h, val: v}
	x.n++
}

func (x *keyIndex[K]) del(h uint32, k K) {
	if x.n == 0 {
		return
	}
	mask := len(x.s) - 1
	gap := x.home(h)
	for ; ; gap = (gap + 1) & mask {
		s := &x.s[gap]
		if s.val < 0 {
			return
		}
		if s.hash == h && s.key == k {
			break
		}
	}
	for j := (gap + 1) & mask; x.s[j].val >= 0; j = (j + 1) & mask {
		if (j-x.home(x.s[j].hash))&mask >= (j-gap)&mask {
			x.s[gap] = x.s[j]
			gap = j
		}
	}
	x.s[gap] = indexSlot[K]{val: -1}
	x.n--
}

func (x *keyIndex[K]) resize() {
	c := max(8, 2*len(x.s))
	old := x.s
	x.s = make([]indexSlot[K], c)
	for i := range x.s {
		x.s[i].val = -1
	}
	bits := 0
	for 1<<bits < c {
		bits++
	}
	x.shift = uint8(32 - bits)
	x.n = 0
	for _, s := range old {
		if s.val >= 0 {
			x.put(s.hash, s.key, s.val)
		}
	}
}
