package pebblestate

import (
	"reflect"
	"slices"
	"unsafe"

	"github.com/weirstream/weir/internal/prefetch"
	"github.com/weirstream/weir/statebackend"
)

// ValueTable holds one value per key, in Pebble behind a write-back cache
// of decoded values.
//
// Why a cache: every Pebble read seeks the memtables and the levels and
// every write goes through the commit pipeline, some microseconds each,
// while a state-heavy operator reads and rewrites the same key several
// times per record (clear, then set again). The cache (clockCache) holds
// keys found, absent or deleted, with their decoded values; writes stay
// in it, dirty, until a barrier or an eviction writes them to Pebble. A
// key rewritten many times between two checkpoints costs one Pebble
// write, and a job whose hot keys fit in the cache runs at nearly the
// speed of the memory backend. When the cache is full, CLOCK picks a
// batch of victims (a 32nd of the cache) among the keys not used since
// the hand last passed, writes the dirty ones back in key order, and
// removes them; the rest stays. Its size is the table's share of the
// value-cache memory (see Budget) in slots and eviction lists, exactly,
// plus, for values that refer to more memory (strings, slices), the
// encoded size of one sampled value in 1024 per key.
//
// An operator's first two value states of small pointer-free values
// (bool, numbers: at most 8 bytes), registered before either is used,
// share one cache whose slots hold both values (pairing): a record
// reading and writing both finds one slot, one cache line, instead of one
// per state; the memory backend's entry table does the same. In Pebble
// each state keeps its own keys, so snapshots, checkpoints and restore
// do not see the difference. A shared slot holds both states' values or
// neither, so a write to a key the cache lacks reads the other state's
// value first (a read the fraud detector's pattern, read then write,
// makes anyway).
//
// A miss on a key the store's keyFilter has never seen given a value
// needs no Pebble read.
type ValueTable[K comparable, V any] struct {
	// c is the table's own cache, or nil when the table shares p's,
	// whose column col holds its values as words.
	c   *valueCore[K, V]
	p   *valueCore[K, words]
	col int
	vc  statebackend.Codec[V]
	// tp, for the store's first value table, prefetches the timer
	// buffer's slot of the key too.
	tp *timerPrefetcher[K]
}

// timerPrefetcher prefetches the timer buffer's index slot of a key.
type timerPrefetcher[K comparable] struct {
	s   *Store
	kc  statebackend.Codec[K]
	buf []byte
}

func (p *timerPrefetcher[K]) prefetch(k K) {
	p.buf = p.kc.Append(p.buf[:0], k)
	p.s.tb.prefetch(p.buf)
}

// words are the values of a shared slot's two columns, each a small
// pointer-free value in the first bytes of its word (toWord).
type words [2]uint64

// small reports whether values of V fit a word of a shared slot.
func small[V any]() bool {
	var v V
	return unsafe.Sizeof(v) <= 8 && !hasPointers(reflect.TypeFor[V]())
}

// toWord and fromWord move a small value (see small) in and out of a
// word without reflection.
func toWord[V any](v V) (w uint64) {
	*(*V)(unsafe.Pointer(&w)) = v
	return w
}

func fromWord[V any](w uint64) V { return *(*V)(unsafe.Pointer(&w)) }

// hasPointers reports whether values of t refer to other memory. It runs
// once per table.
func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	case reflect.String, reflect.Slice, reflect.Map, reflect.Pointer, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	}
	return false
}

// pairing is a store's candidate for a shared cache: its first small
// value table, while nothing has used it.
type pairing[K comparable] struct {
	first interface {
		stateID() uint16
		untouched() bool
		column(col int) column[words]
		share(p *valueCore[K, words], col int)
	}
}

// NewValueTable registers (or reopens) the value state name.
func NewValueTable[K comparable, V any](s *Store, name string, kc statebackend.Codec[K], vc statebackend.Codec[V]) (*ValueTable[K, V], error) {
	st, err := s.state(name, statebackend.KindValue)
	if err != nil {
		return nil, err
	}
	if s.budget != nil {
		s.tables++
		s.budget.tables.Add(1)
	}
	if s.filter == nil && !s.unknownKeys {
		s.filter = newKeyFilter(s.filterBytes())
	}
	t := &ValueTable[K, V]{vc: vc}
	if !s.timerPrefetch {
		s.timerPrefetch = true
		t.tp = &timerPrefetcher[K]{s: s, kc: kc}
	}
	if small[V]() {
		switch pr, _ := s.pairing.(*pairing[K]); {
		case pr == nil:
			s.pairing = &pairing[K]{first: t}
		case pr.first != nil && pr.first.untouched() && pr.first.stateID() != st.id:
			// The second small state: both move to a shared cache.
			p := newValueCore[K, words](s, kc, []column[words]{pr.first.column(0), t.wordColumn(st.id, 1, vc)}, false)
			pr.first.share(p, 0)
			t.p, t.col = p, 1
			pr.first = nil
			return t, nil
		case pr.first != nil && pr.first.stateID() == st.id:
			// The first state registered again: it cannot pair with
			// itself, and may still pair with another.
		default:
			pr.first = nil // the pair is made, or the first state in use
		}
	}
	safe := copies(vc)
	t.c = newValueCore[K, V](s, kc, []column[V]{{
		id:  st.id,
		enc: func(dst []byte, v *V) []byte { return vc.Append(dst, *v) },
		dec: func(b []byte, v *V) (err error) { *v, err = decode(vc, safe, b); return err },
	}}, hasPointers(reflect.TypeFor[V]()))
	return t, nil
}

// wordColumn is the column of a shared cache that holds state id's values
// (V being small).
func (t *ValueTable[K, V]) wordColumn(id uint16, col int, vc statebackend.Codec[V]) column[words] {
	safe := copies(vc)
	return column[words]{
		id:  id,
		enc: func(dst []byte, w *words) []byte { return vc.Append(dst, fromWord[V](w[col])) },
		dec: func(b []byte, w *words) error {
			v, err := decode(vc, safe, b)
			w[col] = toWord(v)
			return err
		},
	}
}

func (t *ValueTable[K, V]) untouched() bool { return t.c != nil && !t.c.used }

func (t *ValueTable[K, V]) stateID() uint16 {
	if t.c != nil {
		return t.c.cols[0].id
	}
	return t.p.cols[t.col].id
}

func (t *ValueTable[K, V]) column(col int) column[words] {
	return t.wordColumn(t.c.cols[0].id, col, t.vc)
}

// share moves the (untouched) table to column col of p.
func (t *ValueTable[K, V]) share(p *valueCore[K, words], col int) {
	s := t.c.s
	if i := slices.Index(s.flushers, flusher(t.c)); i >= 0 {
		s.flushers = slices.Delete(s.flushers, i, i+1)
	}
	t.c, t.p, t.col = nil, p, col
}

// Get returns k's value in key group kg.
func (t *ValueTable[K, V]) Get(kg int, k K) (V, bool) {
	if p := t.p; p != nil {
		e := p.get(kg, k)
		if e == nil {
			var zero V
			return zero, false
		}
		return fromWord[V](e.v[t.col]), e.flags&presentBit(t.col) != 0
	}
	e := t.c.get(kg, k)
	if e == nil {
		var zero V
		return zero, false
	}
	return e.v, e.flags&slotPresent != 0
}

// Put sets k's value.
func (t *ValueTable[K, V]) Put(kg int, k K, v V) {
	if p := t.p; p != nil {
		if p.sampleNow(true) {
			p.resample(0) // other tables may have taken part of the share
		}
		if w := p.write(t.col, kg, k, true); w != nil {
			w[t.col] = toWord(v)
		}
		return
	}
	c := t.c
	if c.sampleNow(true) {
		t.sample(v)
	}
	if e := c.write(0, kg, k, true); e != nil {
		*e = v
	}
}

// Delete drops k's value.
func (t *ValueTable[K, V]) Delete(kg int, k K) {
	if p := t.p; p != nil {
		p.sampleNow(false)
		if w := p.write(t.col, kg, k, false); w != nil {
			w[t.col] = 0
		}
		return
	}
	t.c.sampleNow(false)
	if e := t.c.write(0, kg, k, false); e != nil {
		var zero V
		*e = zero
	}
}

// sample resizes the cache for values of v's encoded size.
func (t *ValueTable[K, V]) sample(v V) {
	c := t.c
	if !c.pointers {
		c.resample(0) // other tables may have taken part of the share
		return
	}
	c.val = t.vc.Append(c.val[:0], v)
	c.resample(len(c.val))
}

// Prefetch starts loading what a Get, Put or Delete of k will touch
// first: the cache slot where its probe starts and, for a key the cache
// may lack, the key filter's word. With millions of keys each is a cache
// miss; the runtime prefetches for all the records it holds back before
// processing them, so that their misses overlap (see internal/prefetch).
// A shared cache needs it once for both states: the second does nothing.
// The store's first value table also prefetches the timer buffer's slot
// of k, where the key's timer is found when the record moves it.
func (t *ValueTable[K, V]) Prefetch(k K) {
	if t.tp != nil {
		t.tp.prefetch(k)
	}
	if p := t.p; p != nil {
		if t.col == 0 {
			p.prefetch(k)
		}
		return
	}
	t.c.prefetch(k)
}

// cacheBytes is the memory of the table's cache: slots and eviction lists
// (not what values point to). Tables sharing a cache both count it.
func (t *ValueTable[K, V]) cacheBytes() int {
	if t.p != nil {
		return t.p.cacheBytes()
	}
	return t.c.cacheBytes()
}

// column is one state of a cache: its id and how its value in a slot's
// payload S is encoded and decoded. Only Pebble reads and write-backs
// call enc and dec, not cache hits.
type column[S any] struct {
	id  uint16
	enc func(dst []byte, v *S) []byte
	dec func(b []byte, v *S) error
}

// valueCore is a write-back cache of one or two value states (columns)
// with slots of payload S: V for a table of its own, words for a shared
// one. See ValueTable.
type valueCore[K comparable, S any] struct {
	s      *Store
	id     uint16 // the first column's: the key filter's id for the cache's keys
	kc     statebackend.Codec[K]
	cols   []column[S]
	hash   func(K) uint64
	key    []byte
	val    []byte
	valBuf []byte
	loaded S // a miss's values, read (load)
	cache  *clockCache[K, S]
	// frozen is the cache at a barrier, while its epoch writes its dirty
	// entries back (see epoch): read by the task after cache, written by
	// neither. fkey, fval and fwb are the write-back's own scratch space.
	frozen *clockCache[K, S]
	// prev is the frozen cache once its epoch ended: Pebble has all of
	// it, and the task moves its entries into cache a few per added key
	// (warm), so that a barrier does not cost the hot set. prev lives
	// only while cache has room, so nothing is evicted meanwhile and a
	// read finds cache first; a key added to cache is removed from prev
	// all the same, to be in one place.
	prev       *clockCache[K, S]
	prevPos    int
	fkey, fval []byte
	fwb        sortedBatch
	// victims and vkeys are an eviction's slots and their keys (the
	// slots move as victims are removed).
	victims []int32
	vkeys   []K
	// limit is the cache's bound in keys, from the table's share of
	// memory and the sampled value size, at most maxKeys; maxLen is the
	// cache's array length at that size, and batch the keys one eviction
	// takes.
	limit, maxLen, maxKeys, batch int
	writes                        int
	sampleDue                     bool
	// used: a key was added (a table in use cannot join a shared cache).
	used bool
	// presize: the first cache has not been allocated yet (presizeCache).
	presize bool
	// pointers is whether the values refer to memory beyond their Go
	// size (a string, a slice): the cache then counts a sampled value's
	// encoded size per key on top of its slot.
	pointers bool
}

func newValueCore[K comparable, S any](s *Store, kc statebackend.Codec[K], cols []column[S], pointers bool) *valueCore[K, S] {
	t := &valueCore[K, S]{s: s, id: cols[0].id, kc: kc, cols: cols, maxKeys: s.cacheKeys, hash: keyHash(kc),
		pointers: pointers, presize: true}
	s.flushers = append(s.flushers, t)
	t.size(0)
	t.cache = newClockCache[K, S](t.hash, t.maxLen)
	return t
}

// size sets limit, maxLen and batch for values that refer to extra bytes
// beyond their slot: the share (one table's per column) holds maxLen
// slots, the extra bytes of 3/4 of them (the most the cache fills them),
// and an eviction's lists of a 32nd of those keys.
func (t *valueCore[K, S]) size(extra int) {
	var k K
	kv := int(unsafe.Sizeof(k)) + 4
	share := t.s.valueCacheBytes() * len(t.cols)
	n := 128 * max(share-2*kv, 0) / (128*slotBytes[K, S]() + 96*extra + 3*kv)
	t.limit = max(min(n*3/4, t.maxKeys), 1)
	t.maxLen = (t.limit*4 + 2) / 3
	if t.cache != nil {
		t.cache.maxLen = t.maxLen // shrink follows if it is over
	}
	if b := max(t.limit/32, 1); b != t.batch {
		t.batch = b
		t.victims, t.vkeys = make([]int32, 0, b), make([]K, 0, b)
	}
}

// sampleNow counts a write and reports whether it is the one to sample
// the value size from: the first present one from each 1024th write on
// (a clear-then-set pattern would never show one at the 1024th itself).
func (t *valueCore[K, S]) sampleNow(present bool) bool {
	if t.writes&1023 == 0 {
		t.sampleDue = true
	}
	t.writes++
	if t.sampleDue && present {
		t.sampleDue = false
		return true
	}
	return false
}

// resample resizes the cache for values of extra bytes beyond the slot.
func (t *valueCore[K, S]) resample(extra int) {
	t.size(extra)
	if c := t.cache; c != nil && cap(c.slots) > t.maxLen {
		t.shrink()
	}
}

// get returns k's slot, reading it on a miss; nil if the store failed.
// The slot is valid until the next add or eviction.
func (t *valueCore[K, S]) get(kg int, k K) *cslot[K, S] {
	h := t.hash(k)
	if i := t.cache.find(h, k); i >= 0 {
		e := &t.cache.slots[i]
		e.flags |= slotRef
		return e
	}
	return t.load(kg, h, k)
}

// load adds k, which the cache lacks, with every column's value: from
// the frozen cache, or else from Pebble (as the task sees it) unless the
// key filter says it never had one. It returns nil if the store failed.
func (t *valueCore[K, S]) load(kg int, h uint64, k K) *cslot[K, S] {
	// v is a field: the columns' decoders, called through func values,
	// would make a local escape, an allocation per miss.
	v := &t.loaded
	*v = *new(S)
	var flags uint8
	found := false
	for _, f := range [2]*clockCache[K, S]{t.frozen, t.prev} {
		if f == nil {
			continue
		}
		if i := f.find(h, k); i >= 0 {
			e := &f.slots[i]
			*v, flags, found = e.v, e.flags&slotAnyValue, true
			break
		}
	}
	if !found && (t.s.filter == nil || t.s.unknownKeys || t.s.filter.mayContain(filterHash(h, t.id))) {
		for col := range t.cols {
			c := &t.cols[col]
			t.key = appendKey(t.key[:0], kg, c.id, t.kc, k)
			b, ok := t.s.get(t.key, &t.valBuf)
			if !ok {
				continue
			}
			if err := c.dec(b, v); err != nil {
				t.s.fail(err)
				return nil
			}
			flags |= presentBit(col)
		}
	}
	if t.s.failed() {
		return nil
	}
	t.makeRoom()
	e := &t.cache.slots[t.add(h, kg, k)]
	e.v = *v
	if flags != 0 {
		e.flags |= flags | slotFiltered // a stored value went through the filter
	}
	return e
}

// add adds k to the cache, which has room for it (makeRoom), and drops
// it from prev. The returned slot is valid until the next add or
// eviction.
func (t *valueCore[K, S]) add(h uint64, kg int, k K) int32 {
	if t.presize {
		t.presizeCache()
	}
	t.used = true
	if p := t.prev; p != nil {
		if j := p.find(h, k); j >= 0 {
			p.removeAt(int(j))
		}
		t.warm()
	}
	return t.cache.add(h, kg, k)
}

// presizeCache gives the table's first cache, on its first key, the
// array of its full size. Growing it by doubling moved every key several
// times, each move a cache miss at millions of keys (10 % of a state-heavy
// run's first 2 M events at 10 M keys); memory the keys never reach stays
// untouched. By the first key the operator has registered all its tables,
// so the share is final. Only caches of pointer-free values do: the size
// of others depends on their sampled values. A cache made at a barrier
// (freeze) grows instead, so that the task does not clear an array of
// the whole share at once.
func (t *valueCore[K, S]) presizeCache() {
	t.presize = false
	if t.pointers || len(t.cache.slots) > 0 {
		return
	}
	t.size(0)
	t.cache.resize(t.maxLen)
}

// warm copies a few of prev's entries into the cache while it has room
// for them and one more key; prev is dropped once it is done or the cache
// full.
func (t *valueCore[K, S]) warm() {
	p, c := t.prev, t.cache
	for moved := 0; moved < 4; t.prevPos++ {
		if t.prevPos >= len(p.slots) || c.n+1 >= t.limit {
			t.prev = nil
			return
		}
		e := &p.slots[t.prevPos]
		if e.flags&slotUsed == 0 {
			continue
		}
		h := t.hash(e.k)
		if c.find(h, e.k) < 0 {
			j := c.add(h, int(e.kg), e.k)
			c.slots[j].v = e.v
			c.slots[j].flags |= e.flags & (slotAnyValue | slotFiltered)
		}
		moved++
	}
}

// write marks column col of k's slot written (present: with a value, or
// else deleted) and returns the slot's payload for the caller to set the
// value in, or nil when there is nothing to write: the key is absent
// already, or the store failed.
func (t *valueCore[K, S]) write(col, kg int, k K, present bool) *S {
	if t.s.ep != nil {
		t.s.poll()
	}
	h := t.hash(k)
	c := t.cache
	pb, db := presentBit(col), dirtyBit(col)
	var e *cslot[K, S]
	if i := c.find(h, k); i >= 0 || len(t.cols) > 1 {
		if i >= 0 {
			e = &c.slots[i]
		} else if e = t.load(kg, h, k); e == nil {
			// A shared slot holds every column's value: the others are
			// read first.
			return nil
		}
		if !present && e.flags&(pb|db) == 0 {
			e.flags |= slotRef
			return nil // absent already, as Pebble has it (or will, from the frozen cache)
		}
	} else {
		// A blind write: the key's value in Pebble does not matter.
		t.makeRoom()
		if t.s.failed() {
			return nil
		}
		e = &c.slots[t.add(h, kg, k)]
		if !present && t.s.filter != nil && !t.s.unknownKeys && !t.s.filter.mayContain(filterHash(h, t.id)) {
			// Never given a value (nor frozen, which only holds keys
			// given one): the delete changes nothing in Pebble.
			return nil
		}
	}
	if present && e.flags&slotFiltered == 0 && t.s.filter != nil {
		t.s.filter.add(filterHash(h, t.id))
		e.flags |= slotFiltered
	}
	if e.flags&slotAnyDirty == 0 {
		c.dirty++
	}
	e.flags = e.flags&^(pb|slotVictim) | slotUsed | slotRef | db
	if present {
		e.flags |= pb
	}
	return &e.v
}

// prefetch starts loading k's home slot and key filter word (see
// ValueTable.Prefetch).
func (t *valueCore[K, S]) prefetch(k K) {
	h := t.hash(k)
	if c := t.cache; len(c.slots) > 0 {
		prefetch.Line(unsafe.Pointer(&c.slots[c.home(uint32(h>>32))]))
	}
	if f := t.s.filter; f != nil && !t.s.unknownKeys {
		w, _ := f.mask(filterHash(h, t.id))
		prefetch.Line(unsafe.Pointer(&f.words[w]))
	}
}

// cacheBytes is the memory of the cache: slots and eviction lists (not
// what values point to).
func (t *valueCore[K, S]) cacheBytes() int {
	var k K
	return t.cache.bytes() + cap(t.victims)*4 + cap(t.vkeys)*int(unsafe.Sizeof(k))
}

// makeRoom evicts until the cache has room for one more key.
//
// During an epoch a key that the frozen cache holds is not evicted: a
// read must find its new value before the frozen one. If no other key is
// left, the task waits for the epoch to end.
func (t *valueCore[K, S]) makeRoom() {
	c := t.cache
	for c.n >= t.limit && !t.s.failed() {
		t.victims = c.sweep(t.batch, t.frozen, t.victims[:0])
		if len(t.victims) == 0 {
			t.s.settle() // thaws the frozen cache
			continue
		}
		t.evict(c, t.victims)
	}
}

// evict writes the dirty ones of the victims back, in key order (during
// an epoch to the store's pend), and removes them; c is t.cache, or the
// old cache of a shrink.
func (t *valueCore[K, S]) evict(c *clockCache[K, S], victims []int32) {
	wb := &t.s.wb
	t.vkeys = t.vkeys[:0]
	for _, i := range victims {
		e := &c.slots[i]
		if e.flags&slotAnyDirty != 0 {
			t.writeEntry(wb, e, &t.key, &t.val)
			if wb.size() >= batchBytes {
				wb.commit(t.s)
			}
		}
		t.vkeys = append(t.vkeys, e.k)
	}
	wb.commit(t.s)
	// Removing a slot moves later ones: find each victim again.
	for _, k := range t.vkeys {
		c.removeAt(int(c.find(c.hash(k), k)))
	}
}

// writeEntry adds the writes of e's dirty columns to wb, encoding into
// the scratch space key and val: the task's (t.key, t.val) or the
// write-back goroutine's (t.fkey, t.fval).
func (t *valueCore[K, S]) writeEntry(wb *sortedBatch, e *cslot[K, S], key, val *[]byte) {
	for col := range t.cols {
		if e.flags&dirtyBit(col) == 0 {
			continue
		}
		c := &t.cols[col]
		*key = appendKey((*key)[:0], int(e.kg), c.id, t.kc, e.k)
		if e.flags&presentBit(col) != 0 {
			*val = c.enc((*val)[:0], &e.v)
			wb.set(*key, *val)
		} else {
			wb.del(*key)
		}
	}
}

// shrink evicts down to a lowered limit and reallocates the cache at its
// new size, so that its memory stays within the table's share (tables
// registered later take part of it).
func (t *valueCore[K, S]) shrink() {
	c := t.cache
	for c.n > t.limit && !t.s.failed() {
		t.victims = c.sweep(min(c.n-t.limit, t.batch), t.frozen, t.victims[:0])
		if len(t.victims) == 0 {
			t.s.settle()
			continue
		}
		t.evict(c, t.victims)
	}
	t.prev = nil // within the lowered share
	c.maxLen = t.maxLen
	c.resize(min(max((c.n*4+2)/3*2, minSlots), t.maxLen))
}

// flush writes the dirty entries to Pebble, in key order (sortedBatch);
// they stay cached, clean.
func (t *valueCore[K, S]) flush() {
	c := t.cache
	if c.dirty == 0 || t.s.failed() {
		return
	}
	wb := &t.s.wb
	for i := range c.slots {
		e := &c.slots[i]
		if e.flags&slotAnyDirty == 0 {
			continue
		}
		t.writeEntry(wb, e, &t.key, &t.val)
		e.flags &^= slotAnyDirty
		// Commit in parts: a huge batch would be held in memory whole.
		if wb.size() >= batchBytes {
			wb.commit(t.s)
		}
	}
	c.dirty = 0
	wb.commit(t.s)
}

// drop empties the cache after writing it back (before a restore writes
// to Pebble underneath it).
func (t *valueCore[K, S]) drop() {
	t.s.settle()
	t.flush()
	t.cache, t.prev = newClockCache[K, S](t.hash, t.maxLen), nil
}

func (t *valueCore[K, S]) freeze() bool {
	if t.cache.dirty == 0 {
		return false // Pebble has the whole cache: it stays
	}
	t.frozen, t.prev = t.cache, nil
	t.cache = newClockCache[K, S](t.hash, t.maxLen)
	return true
}

func (t *valueCore[K, S]) thaw() {
	// Pebble has the frozen entries now, dirty ones included: warm reads
	// only their values.
	t.prev, t.prevPos, t.frozen = t.frozen, 0, nil
}

// writeFrozen writes the frozen dirty entries to Pebble, in key order. It
// runs on an epoch's goroutine: it only reads the frozen cache, and
// encodes with the codecs concurrently with the task (as the memory
// backend's snapshots do).
func (t *valueCore[K, S]) writeFrozen() error {
	wb := &t.fwb
	defer wb.reset()
	f := t.frozen
	for i := range f.slots {
		e := &f.slots[i]
		if e.flags&slotAnyDirty == 0 {
			continue
		}
		t.writeEntry(wb, e, &t.fkey, &t.fval)
		// Commit in parts: a huge batch would be held in memory whole.
		if wb.size() >= batchBytes {
			if err := t.writeBack(wb); err != nil {
				return err
			}
		}
	}
	return t.writeBack(wb)
}

// writeBack commits wb to Pebble and empties it; after a store error it
// writes nothing (a full disk would otherwise stall the write for good).
func (t *valueCore[K, S]) writeBack(wb *sortedBatch) error {
	if err := t.s.Err(); err != nil {
		return err
	}
	_, err := wb.apply(t.s, nil, 0)
	wb.reset()
	return err
}
