package runtime

import (
	"math/bits"
	"slices"
	"unsafe"

	"github.com/weirstream/weir/internal/prefetch"
	"github.com/weirstream/weir/statebackend"
)

// timerService is the timer service of one time domain of a keyed
// operator.
//
// A key's first timer lives in the key's entry of the operator's entry
// table (statebackend.Entries), next to its value states: a record that
// reads its key's state, deletes the key's timer and registers another
// touches that one entry, found by the hash the runtime computed for the
// record. The order of timers is kept apart, in a queue of buckets of
// timers of one time (see bucketQueue), which only ever appends: the
// entry notes its timer's bucket and sequence number there, and a delete
// marks that timer dead in the bucket's bitmap and counts the bucket's
// live timers down. A bucket whose timers were all deleted is recycled
// whole.
//
// Further timers of a key (a window operator's several window ends) go to
// a timerHeap, marked in the entry so that keys without any never look
// there.
type timerService[K comparable] struct {
	d       int // 0: processing time, 1: event time; the entry's timer index
	entries *statebackend.Entries[K]
	inline  int // keys with an inline timer
	q       bucketQueue[K]
	more    timerHeap[K]
}

func (s *timerService[K]) init(d int, e *statebackend.Entries[K]) {
	s.d, s.entries = d, e
	s.q.init()
}

// len is the number of registered timers.
func (s *timerService[K]) len() int { return s.inline + s.more.len() }

// add registers timer e; false if the key already has one at e.ts.
func (s *timerService[K]) add(e timerEntry[K]) bool {
	en := s.entries.Edit(e.kg, e.hash, e.key)
	if ts, _, ok := en.Timer(s.d); ok {
		if ts == e.ts || !s.more.add(e) {
			return false
		}
		en.SetMore(s.d, true)
		return true
	}
	if en.More(s.d) && s.more.has(e.hash, e.timerKey) {
		return false
	}
	ref := s.q.push(e.ts, bucketItem[K]{key: e.key, hash: e.hash, kg: int32(e.kg)})
	en.SetTimer(s.d, e.ts, ref)
	s.inline++
	return true
}

// remove deletes the timer at ts of key k (key group kg, hash h).
func (s *timerService[K]) remove(kg int, h int32, k K, ts int64) bool {
	en := s.entries.Get(kg, h, k)
	if en == nil {
		return false
	}
	if t, ref, ok := en.Timer(s.d); ok && t == ts {
		s.clearInline(kg, h, k)
		s.q.deleted(ref)
		return true
	}
	if !en.More(s.d) || !s.more.remove(timerKey[K]{ts: ts, key: k}, h) {
		return false
	}
	s.lessMore(kg, h, k)
	return true
}

// lessMore clears the entry's mark of further timers once the heap holds
// none of the key's.
func (s *timerService[K]) lessMore(kg int, h int32, k K) {
	if s.more.index.get(uint32(h), k) >= 0 {
		return
	}
	en := s.entries.Edit(kg, h, k)
	en.SetMore(s.d, false)
	if en.Empty() {
		s.entries.Drop(kg, h, k)
	}
}

func (s *timerService[K]) clearInline(kg int, h int32, k K) {
	en := s.entries.Edit(kg, h, k)
	en.ClearTimer(s.d)
	if en.Empty() {
		s.entries.Drop(kg, h, k)
	}
	s.inline--
}

// peek returns the earliest timer.
func (s *timerService[K]) peek() (timerEntry[K], bool) {
	ts, it, ok := s.q.peek()
	m, mok := s.more.peek()
	switch {
	case ok && (!mok || ts <= m.ts):
		return timerEntry[K]{timerKey: timerKey[K]{ts: ts, key: it.key}, kg: int(it.kg), hash: it.hash}, true
	case mok:
		return m, true
	}
	return timerEntry[K]{}, false
}

// pop removes and returns the earliest timer; there must be one.
func (s *timerService[K]) pop() timerEntry[K] {
	ts, it, ok := s.q.peek()
	if m, mok := s.more.peek(); mok && (!ok || m.ts < ts) {
		s.more.pop()
		s.lessMore(m.kg, m.hash, m.key)
		return m
	}
	e := timerEntry[K]{timerKey: timerKey[K]{ts: ts, key: it.key}, kg: int(it.kg), hash: it.hash}
	s.q.popTop()
	s.clearInline(e.kg, e.hash, e.key)
	return e
}

// has reports whether timer k of a key with hash h is in the heap.
func (t *timerHeap[K]) has(h int32, k timerKey[K]) bool {
	s, _ := t.find(h, k)
	return s >= 0
}

// bucketQueue orders inline timers: buckets of timers of one time, in
// registration order, and a min-heap of the buckets' times. A push goes to
// the bucket of its time if a small direct-mapped cache of recent buckets
// knows one, and to a new bucket otherwise (so one time may have several
// buckets, which fire in any order, like timers of one time): the
// processing-time timers of consecutive records mostly share their
// millisecond. A timer's reference is its bucket and its sequence number
// there (the count of the bucket's pushes before it); a delete counts the
// bucket's live items down and sets the item's bit in the bucket's dead
// bitmap (a batch of deletes later, see pending), and a bucket with none
// left is recycled whole, keeping its arrays.
//
// Dead items are skipped when reached, or dropped when they outnumber the
// live ones of their bucket seven to one, so that dead items take at most
// seven times the memory of live ones. Dropping them moves the live ones
// to the bucket's front, in order, and from then on the bucket keeps a
// bitmap of the sequence numbers whose items it holds, with each word's
// count of the set bits before it (seqs): the item of a delete's sequence
// number is at that count plus the set bits below its own in its word,
// one line and a popcount. (A sorted array of the sequence numbers,
// searched from an interpolated guess, was 10 % of a state-heavy run with
// few keys, where nearly every bucket is compacted.) The bitmap costs two
// bits per push the bucket ever took, against 128 for the item of the
// push. The entries are not told: before, each move
// updated the moved timer's entry, a probe of a random entry that missed
// the cache, and those updates were 6 to 8 % of the state-heavy fraud
// job's CPU at 100 k keys. A bucket mostly drains by itself (its keys come
// back, delete their timers and register later ones), so most buckets are
// never compacted and a delete's item is at its sequence number.
type bucketQueue[K comparable] struct {
	bs    []bucket[K]
	free  []int32
	heap  []bucketRef
	stale int // heap refs to recycled buckets
	// recent maps a hash of a time to the last bucket opened for it
	// (possibly recycled or reused since: checked against the bucket).
	recent [64]int32
	// pending are deletes whose dead bits are not set yet, npending of
	// them, as references to positions: setting a bit is a cache miss
	// on a random bitmap word, so a delete prefetches the word and the
	// bits are set a batch later, overlapping the misses. Live counts are current; the bits are applied before
	// anything reads them (peek), moves items (compact) or recycles a
	// bucket.
	pending  [pendingDeletes]uint64
	npending int
	// opened is the bucket opened last. fill is the most pushes the
	// recent ones took by the time the next one opened (the maximum,
	// decaying by a sixteenth per bucket): a new bucket whose arrays are
	// smaller gets new ones with room for a quarter more. Under a steady
	// stream of processing-time timers every millisecond's bucket takes
	// about as many as the recent ones, give or take a batch or two, and
	// growing each from empty by doubling was 5 to 7 % of the state-heavy
	// fraud job's CPU (copying, and faulting in the copies).
	opened bucketRef
	fill   int
}

// maxPresized bounds fill: past a burst, the buckets of many distinct
// times that may follow (each with a few timers) must not each get a
// burst's worth of memory. Beyond it a bucket grows by doubling, as
// every bucket did before.
const maxPresized = 1 << 14

// pendingDeletes is how many deletes wait for their dead bits: enough for
// their prefetches to arrive, few enough that the words stay in the cache.
const pendingDeletes = 16

type bucket[K comparable] struct {
	ts    int64
	items []bucketItem[K]
	dead  []uint64 // bit i: items[i] was deleted
	pos   int      // items before pos were popped or skipped
	live  int
	// next is the sequence number of the next push. Until the bucket is
	// compacted, items[i] has sequence number i; after, items holds, in
	// order, the items of the sequence numbers whose bits are set in seqs
	// (see position).
	next      int
	seqs      []seqWord
	compacted bool
	gen       uint32
	inUse     bool
}

// seqWord is 64 sequence numbers of a compacted bucket: bit i stands for
// number 64w+i (w the word's index), and before counts the set bits of
// the words before it. Both are in one line.
type seqWord struct {
	bits   uint64
	before int64
}

type bucketItem[K comparable] struct {
	key  K
	hash int32
	kg   int32
}

type bucketRef struct {
	ts  int64
	id  int32
	gen uint32
}

// A timer's reference packs its bucket and sequence number into the 56
// bits an entry has for it (statebackend.MaxTimerRef); a pending delete
// packs its bucket and item position the same way.
const refBits = 28

func timerRef(id int32, pos int) uint64 { return uint64(id)<<refBits | uint64(pos) }

func splitRef(ref uint64) (int32, int) { return int32(ref >> refBits), int(ref & (1<<refBits - 1)) }

func (q *bucketQueue[K]) init() {
	for i := range q.recent {
		q.recent[i] = -1
	}
	q.opened.id = -1
}

// push queues it at ts and returns its reference.
func (q *bucketQueue[K]) push(ts int64, it bucketItem[K]) uint64 {
	// Fibonacci hashing: window ends a power of two apart (or 60 s, a
	// multiple of 64 ms) would share their low bits and evict each other.
	c := &q.recent[uint64(ts)*0x9e3779b97f4a7c15>>58]
	id := *c
	if id < 0 || !q.bs[id].inUse || q.bs[id].ts != ts || q.bs[id].next == 1<<refBits {
		id = q.newBucket(ts)
		*c = id
	}
	b := &q.bs[id]
	pos, seq := len(b.items), b.next
	b.items = append(b.items, it)
	if b.compacted {
		w := seq >> 6
		if w == len(b.seqs) {
			var before int64
			if w > 0 {
				p := &b.seqs[w-1]
				before = p.before + int64(bits.OnesCount64(p.bits))
			}
			b.seqs = append(b.seqs, seqWord{before: before})
		}
		b.seqs[w].bits |= 1 << (seq & 63)
	}
	if pos>>6 == len(b.dead) {
		b.dead = append(b.dead, 0)
	}
	b.next++
	b.live++
	return timerRef(id, seq)
}

func (q *bucketQueue[K]) newBucket(ts int64) int32 {
	var id int32
	if n := len(q.free); n > 0 {
		id = q.free[n-1]
		q.free = q.free[:n-1]
	} else {
		id = int32(len(q.bs))
		if id == 1<<refBits {
			// Every bucket holds a live timer: 2^28 of them, far more
			// than fit in memory as entries.
			panic("timer service: 2^28 timer buckets in use")
		}
		q.bs = append(q.bs, bucket[K]{})
	}
	if o := q.opened; o.id >= 0 && int(o.id) < len(q.bs) && q.bs[o.id].gen == o.gen {
		q.fill = min(max(q.bs[o.id].next, q.fill-q.fill/16), maxPresized)
	}
	b := &q.bs[id]
	if cap(b.items) < q.fill {
		want := q.fill + q.fill/4
		b.items = make([]bucketItem[K], 0, want)
		b.dead = make([]uint64, 0, (want+63)>>6)
	}
	b.ts, b.pos, b.live, b.next, b.compacted, b.inUse = ts, 0, 0, 0, false, true
	q.opened = bucketRef{id: id, gen: b.gen}
	q.heap = append(q.heap, bucketRef{ts: ts, id: id, gen: b.gen})
	q.up(len(q.heap) - 1)
	return id
}

// recycle frees bucket id, keeping its arrays for the next bucket.
// inHeap says its heap ref is still there, and now stale.
func (q *bucketQueue[K]) recycle(id int32, inHeap bool) {
	b := &q.bs[id]
	clear(b.items) // drop string keys' references
	b.items = b.items[:0]
	clear(b.dead)
	b.dead = b.dead[:0]
	b.seqs = b.seqs[:0]
	b.gen++
	b.inUse = false
	q.free = append(q.free, id)
	if inHeap {
		q.stale++
		if q.stale > 64 && q.stale > len(q.heap)/2 {
			q.compactHeap()
		}
	}
}

func (b *bucket[K]) isDead(i int) bool { return b.dead[i>>6]&(1<<(i&63)) != 0 }

// position is where in items the item with sequence number seq is.
func (b *bucket[K]) position(seq int) int {
	if !b.compacted {
		return seq
	}
	w := &b.seqs[seq>>6]
	bit := uint64(1) << (seq & 63)
	if w.bits&bit == 0 {
		// The entry named a timer its bucket does not hold: the
		// bookkeeping is broken, and going on would fire or drop the
		// wrong timers.
		panic("timer service: a live timer is missing from its bucket")
	}
	return int(w.before) + bits.OnesCount64(w.bits&(bit-1))
}

// deleted marks the timer at ref dead. Its bucket's live count goes down
// at once, but the bit is set later, with those of the next deletes (see
// pending): the bitmap word is prefetched now and written once it is in
// the cache.
func (q *bucketQueue[K]) deleted(ref uint64) {
	id, seq := splitRef(ref)
	b := &q.bs[id]
	b.live--
	if b.live == 0 {
		q.applyDeletes() // before the bucket's positions are recycled
		q.recycle(id, true)
		return
	}
	pos := b.position(seq)
	prefetch.Line(unsafe.Pointer(&b.dead[pos>>6]))
	q.pending[q.npending] = timerRef(id, pos)
	if q.npending++; q.npending == len(q.pending) {
		q.applyDeletes()
	}
}

// applyDeletes sets the dead bits of the pending deletes, then compacts
// the buckets whose dead timers outnumber the live ones seven to one.
// Everything that reads the bits, or moves or recycles a bucket's items,
// applies the pending deletes first.
func (q *bucketQueue[K]) applyDeletes() {
	pending := q.pending[:q.npending]
	q.npending = 0
	for _, ref := range pending {
		id, pos := splitRef(ref)
		q.bs[id].dead[pos>>6] |= 1 << (pos & 63)
	}
	for _, ref := range pending {
		id, _ := splitRef(ref)
		// A bucket whose live count reached 0 is being recycled by
		// deleted, which called this.
		if b := &q.bs[id]; b.live > 0 && len(b.items)-b.pos-b.live > 7*b.live {
			q.compact(id)
		}
	}
}

// compact moves bucket id's live items to its front, keeping their order,
// and keeps the set of their sequence numbers in seqs.
func (q *bucketQueue[K]) compact(id int32) {
	b := &q.bs[id]
	if !b.compacted {
		// Until now items[i] had sequence number i, for every i below next.
		n := (b.next + 63) >> 6
		b.seqs = slices.Grow(b.seqs[:0], n)[:n]
		for w := range b.seqs {
			b.seqs[w] = seqWord{bits: ^uint64(0)}
		}
		if r := b.next & 63; r != 0 {
			b.seqs[n-1].bits = 1<<r - 1
		}
		b.compacted = true
	}
	// i is the position of the item of the next set bit, j the count of
	// items kept: each set bit's item is in items, in order.
	i, j := 0, 0
	for w := range b.seqs {
		s := &b.seqs[w]
		s.before = int64(j)
		var kept uint64
		for rest := s.bits; rest != 0; rest &= rest - 1 {
			if i >= b.pos && !b.isDead(i) {
				b.items[j] = b.items[i]
				kept |= rest & -rest
				j++
			}
			i++
		}
		s.bits = kept
	}
	clear(b.items[j:])
	b.items, b.pos = b.items[:j], 0
	clear(b.dead)
	b.dead = b.dead[:(j+63)>>6]
}

// peek returns the earliest live item, skipping dead ones and recycling
// spent buckets on the way.
func (q *bucketQueue[K]) peek() (int64, *bucketItem[K], bool) {
	if q.npending > 0 {
		q.applyDeletes()
	}
	for len(q.heap) > 0 {
		r := q.heap[0]
		b := &q.bs[r.id]
		if b.gen != r.gen {
			q.popHeap()
			q.stale--
			continue
		}
		for b.pos < len(b.items) {
			if !b.isDead(b.pos) {
				return b.ts, &b.items[b.pos], true
			}
			b.pos++
		}
		// Unreachable while live counts are right: a bucket whose items
		// are all dead was recycled by deleted. Kept for safety.
		q.popHeap()
		q.recycle(r.id, false)
	}
	return 0, nil, false
}

// popTop takes the item peek returned off its bucket.
func (q *bucketQueue[K]) popTop() {
	id := q.heap[0].id
	b := &q.bs[id]
	b.pos++
	b.live--
	if b.live == 0 {
		q.popHeap()
		q.recycle(id, false)
	}
}

func (q *bucketQueue[K]) popHeap() {
	last := len(q.heap) - 1
	q.heap[0] = q.heap[last]
	q.heap = q.heap[:last]
	if last > 0 {
		q.down(0)
	}
}

// compactHeap drops the refs of recycled buckets.
func (q *bucketQueue[K]) compactHeap() {
	kept := q.heap[:0]
	for _, r := range q.heap {
		if q.bs[r.id].gen == r.gen {
			kept = append(kept, r)
		}
	}
	q.heap, q.stale = kept, 0
	for i := len(q.heap)/2 - 1; i >= 0; i-- {
		q.down(i)
	}
}

func (q *bucketQueue[K]) up(i int) {
	r := q.heap[i]
	for i > 0 {
		p := (i - 1) / 2
		if r.ts >= q.heap[p].ts {
			break
		}
		q.heap[i] = q.heap[p]
		i = p
	}
	q.heap[i] = r
}

func (q *bucketQueue[K]) down(i int) {
	n := len(q.heap)
	r := q.heap[i]
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if l+1 < n && q.heap[l+1].ts < q.heap[l].ts {
			m = l + 1
		}
		if q.heap[m].ts >= r.ts {
			break
		}
		q.heap[i] = q.heap[m]
		i = m
	}
	q.heap[i] = r
}
