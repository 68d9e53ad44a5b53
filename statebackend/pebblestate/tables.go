package pebblestate

import (
	"encoding/binary"
	"iter"
	"reflect"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/internal/prefetch"
	"github.com/weirstream/weir/statebackend"
)

// FS is Pebble's file system interface; tests wrap vfs.Default to inject
// errors such as a full disk.
type FS = vfs.FS

// CopyingDecoder is implemented by codecs whose decoded values never
// refer to the bytes they were decoded from. A table reads a value into a
// scratch buffer it reuses; for other codecs it decodes from a fresh copy,
// since a decoded value may keep a reference to its source.
type CopyingDecoder interface {
	DecodeCopies()
}

func copies[T any](c statebackend.Codec[T]) bool {
	_, ok := c.(CopyingDecoder)
	return ok
}

// decode decodes b with c, from a copy when c may keep references.
func decode[T any](c statebackend.Codec[T], safe bool, b []byte) (T, error) {
	if !safe {
		b = append([]byte(nil), b...)
	}
	return c.Decode(b)
}

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
// A miss on a key the store's keyFilter has never seen given a value
// needs no Pebble read.
type ValueTable[K comparable, V any] struct {
	s      *Store
	id     uint16
	kc     statebackend.Codec[K]
	vc     statebackend.Codec[V]
	safe   bool
	hash   func(K) uint64
	key    []byte
	val    []byte
	valBuf []byte
	cache  *clockCache[K, V]
	// frozen is the cache at a barrier, while its epoch writes its dirty
	// entries back (see epoch): read by the task after cache, written by
	// neither. fkey, fval and fwb are the write-back's own scratch space.
	frozen *clockCache[K, V]
	// prev is the frozen cache once its epoch ended: Pebble has all of
	// it, and the task moves its entries into cache a few per added key
	// (warm), so that a barrier does not cost the hot set. prev lives
	// only while cache has room, so nothing is evicted meanwhile and a
	// read finds cache first; a key added to cache is removed from prev
	// all the same, to be in one place.
	prev       *clockCache[K, V]
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
	// presize: the table's first cache has not been allocated yet
	// (presizeCache).
	presize bool
	// pointers is whether V refers to memory beyond its Go size (a
	// string, a slice): the cache then counts a sampled value's encoded
	// size per key on top of its slot.
	pointers bool
}

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

// NewValueTable registers (or reopens) the value state name.
func NewValueTable[K comparable, V any](s *Store, name string, kc statebackend.Codec[K], vc statebackend.Codec[V]) (*ValueTable[K, V], error) {
	st, err := s.state(name, statebackend.KindValue)
	if err != nil {
		return nil, err
	}
	t := &ValueTable[K, V]{s: s, id: st.id, kc: kc, vc: vc, safe: copies(vc), maxKeys: s.cacheKeys, hash: keyHash(kc),
		pointers: hasPointers(reflect.TypeFor[V]()), presize: true}
	if s.budget != nil {
		s.tables++
		s.budget.tables.Add(1)
	}
	s.flushers = append(s.flushers, t)
	t.size(0)
	t.cache = newClockCache[K, V](t.hash, t.maxLen)
	if s.filter == nil && !s.unknownKeys {
		s.filter = newKeyFilter(s.filterBytes())
	}
	return t, nil
}

// size sets limit, maxLen and batch for values that refer to extra bytes
// beyond their slot: the share holds maxLen slots, the extra bytes of
// 3/4 of them (the most the cache fills them), and an eviction's lists
// of a 32nd of those keys.
func (t *ValueTable[K, V]) size(extra int) {
	var k K
	kv := int(unsafe.Sizeof(k)) + 4
	share := t.s.valueCacheBytes()
	n := 128 * max(share-2*kv, 0) / (128*slotBytes[K, V]() + 96*extra + 3*kv)
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

// Get returns k's value in key group kg.
func (t *ValueTable[K, V]) Get(kg int, k K) (V, bool) {
	h := t.hash(k)
	c := t.cache
	if i := c.find(h, k); i >= 0 {
		e := &c.slots[i]
		e.flags |= slotRef
		return e.v, e.flags&slotPresent != 0
	}
	v, ok := t.miss(kg, h, k)
	if t.s.failed() {
		return v, ok
	}
	t.makeRoom()
	e := &c.slots[t.add(h, kg, k)]
	e.v = v
	if ok {
		e.flags |= slotPresent | slotFiltered // a stored value went through the filter
	}
	return v, ok
}

// Prefetch starts loading what a Get, Put or Delete of k will touch
// first: the cache slot where its probe starts and, for a key the cache
// may lack, the key filter's word. With millions of keys each is a cache
// miss; the runtime prefetches for all the records it holds back before
// processing them, so that their misses overlap (see internal/prefetch).
func (t *ValueTable[K, V]) Prefetch(k K) {
	h := t.hash(k)
	if c := t.cache; len(c.slots) > 0 {
		prefetch.Line(unsafe.Pointer(&c.slots[c.home(uint32(h>>32))]))
	}
	if f := t.s.filter; f != nil && !t.s.unknownKeys {
		w, _ := f.mask(filterHash(h, t.id))
		prefetch.Line(unsafe.Pointer(&f.words[w]))
	}
}

// miss reads k's value from the frozen cache, or else from Pebble (as
// the task sees it) unless the key filter says it never had one.
func (t *ValueTable[K, V]) miss(kg int, h uint64, k K) (V, bool) {
	var v V
	for _, f := range [2]*clockCache[K, V]{t.frozen, t.prev} {
		if f == nil {
			continue
		}
		if i := f.find(h, k); i >= 0 {
			e := &f.slots[i]
			return e.v, e.flags&slotPresent != 0
		}
	}
	if t.s.filter != nil && !t.s.unknownKeys && !t.s.filter.mayContain(filterHash(h, t.id)) {
		return v, false
	}
	t.key = appendKey(t.key[:0], kg, t.id, t.kc, k)
	b, ok := t.s.get(t.key, &t.valBuf)
	if ok {
		var err error
		if v, err = decode(t.vc, t.safe, b); err != nil {
			t.s.fail(err)
			return v, false
		}
	}
	return v, ok
}

// add adds k to the cache, which has room for it (makeRoom), and drops
// it from prev. The returned slot is valid until the next add or
// eviction.
func (t *ValueTable[K, V]) add(h uint64, kg int, k K) int32 {
	if t.presize {
		t.presizeCache()
	}
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
// so the share is final. Only tables of pointer-free values do: the size
// of others depends on their sampled values. A cache made at a barrier
// (freeze) grows instead, so that the task does not clear an array of
// the whole share at once.
func (t *ValueTable[K, V]) presizeCache() {
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
func (t *ValueTable[K, V]) warm() {
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
			c.slots[j].flags |= e.flags & (slotPresent | slotFiltered)
		}
		moved++
	}
}

// Put sets k's value.
func (t *ValueTable[K, V]) Put(kg int, k K, v V) { t.write(kg, k, v, true) }

// Delete drops k's value.
func (t *ValueTable[K, V]) Delete(kg int, k K) {
	var zero V
	t.write(kg, k, zero, false)
}

func (t *ValueTable[K, V]) write(kg int, k K, v V, present bool) {
	// Sample the first value written from each 1024th write on (a
	// clear-then-set pattern would never show one at the 1024th itself).
	if t.writes&1023 == 0 {
		t.sampleDue = true
	}
	if t.sampleDue && present {
		t.sample(v)
		t.sampleDue = false
	}
	t.writes++
	if t.s.ep != nil {
		t.s.poll()
	}
	h := t.hash(k)
	c := t.cache
	i := c.find(h, k)
	if i < 0 {
		t.makeRoom()
		if !present && t.s.filter != nil && !t.s.unknownKeys && !t.s.filter.mayContain(filterHash(h, t.id)) {
			// Never given a value (nor frozen, which only holds keys
			// given one): the delete changes nothing in Pebble.
			t.add(h, kg, k)
			return
		}
		i = t.add(h, kg, k)
	} else if e := &c.slots[i]; !present && e.flags&(slotPresent|slotDirty) == 0 {
		e.flags |= slotRef
		return // absent already, as Pebble has it (or will, from the frozen cache)
	}
	e := &c.slots[i]
	if present && e.flags&slotFiltered == 0 && t.s.filter != nil {
		t.s.filter.add(filterHash(h, t.id))
		e.flags |= slotFiltered
	}
	if e.flags&slotDirty == 0 {
		c.dirty++
	}
	e.v = v
	e.flags = slotUsed | slotDirty | slotRef | e.flags&slotFiltered
	if present {
		e.flags |= slotPresent
	}
}

// sample resizes the cache for values of v's encoded size.
func (t *ValueTable[K, V]) sample(v V) {
	if !t.pointers {
		t.size(0) // other tables may have taken part of the share
	} else {
		t.val = t.vc.Append(t.val[:0], v)
		t.size(len(t.val))
	}
	if c := t.cache; c != nil && cap(c.slots) > t.maxLen {
		t.shrink()
	}
}

// cacheBytes is the memory of the table's cache: slots and eviction lists
// (not what values point to).
func (t *ValueTable[K, V]) cacheBytes() int {
	var k K
	return t.cache.bytes() + cap(t.victims)*4 + cap(t.vkeys)*int(unsafe.Sizeof(k))
}

// makeRoom evicts until the cache has room for one more key.
//
// During an epoch a key that the frozen cache holds is not evicted: a
// read must find its new value before the frozen one. If no other key is
// left, the task waits for the epoch to end.
func (t *ValueTable[K, V]) makeRoom() {
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
func (t *ValueTable[K, V]) evict(c *clockCache[K, V], victims []int32) {
	wb := &t.s.wb
	t.vkeys = t.vkeys[:0]
	for _, i := range victims {
		e := &c.slots[i]
		if e.flags&slotDirty != 0 {
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

// writeEntry adds e's write to wb, encoding into the scratch space key
// and val: the task's (t.key, t.val) or the write-back goroutine's
// (t.fkey, t.fval).
func (t *ValueTable[K, V]) writeEntry(wb *sortedBatch, e *cslot[K, V], key, val *[]byte) {
	*key = appendKey((*key)[:0], int(e.kg), t.id, t.kc, e.k)
	if e.flags&slotPresent != 0 {
		*val = t.vc.Append((*val)[:0], e.v)
		wb.set(*key, *val)
	} else {
		wb.del(*key)
	}
}

// shrink evicts down to a lowered limit and reallocates the cache at its
// new size, so that its memory stays within the table's share (tables
// registered later take part of it).
func (t *ValueTable[K, V]) shrink() {
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
func (t *ValueTable[K, V]) flush() {
	c := t.cache
	if c.dirty == 0 || t.s.failed() {
		return
	}
	wb := &t.s.wb
	for i := range c.slots {
		e := &c.slots[i]
		if e.flags&slotDirty == 0 {
			continue
		}
		t.writeEntry(wb, e, &t.key, &t.val)
		e.flags &^= slotDirty
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
func (t *ValueTable[K, V]) drop() {
	t.s.settle()
	t.flush()
	t.cache, t.prev = newClockCache[K, V](t.hash, t.maxLen), nil
}

func (t *ValueTable[K, V]) freeze() bool {
	if t.cache.dirty == 0 {
		return false // Pebble has the whole cache: it stays
	}
	t.frozen, t.prev = t.cache, nil
	t.cache = newClockCache[K, V](t.hash, t.maxLen)
	return true
}

func (t *ValueTable[K, V]) thaw() {
	// Pebble has the frozen entries now, dirty ones included: warm reads
	// only their values.
	t.prev, t.prevPos, t.frozen = t.frozen, 0, nil
}

// writeFrozen writes the frozen dirty entries to Pebble, in key order. It
// runs on an epoch's goroutine: it only reads the frozen cache, and
// encodes with the codecs concurrently with the task (as the memory
// backend's snapshots do).
func (t *ValueTable[K, V]) writeFrozen() error {
	wb := &t.fwb
	defer wb.reset()
	f := t.frozen
	for i := range f.slots {
		e := &f.slots[i]
		if e.flags&slotDirty == 0 {
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
func (t *ValueTable[K, V]) writeBack(wb *sortedBatch) error {
	if err := t.s.Err(); err != nil {
		return err
	}
	_, err := wb.apply(t.s, nil, 0)
	wb.reset()
	return err
}

// writeBatchBytes is the size at which a cache's write-back commits its
// batch: a batch of more than half a memtable (in the memtable's terms,
// some twice its bytes for small entries) would be flushed as a memtable
// of its own, an L0 file per write-back.
const writeBatchBytes = 1 << 20

// MapTable holds a map of user keys to values per key.
type MapTable[K comparable, UK comparable, V any] struct {
	s        *Store
	id       uint16
	kc       statebackend.Codec[K]
	ukc      statebackend.Codec[UK]
	vc       statebackend.Codec[V]
	safeUK   bool
	safeV    bool
	key, val []byte
	valBuf   []byte
}

// NewMapTable registers (or reopens) the map state name.
func NewMapTable[K comparable, UK comparable, V any](s *Store, name string, kc statebackend.Codec[K], ukc statebackend.Codec[UK], vc statebackend.Codec[V]) (*MapTable[K, UK, V], error) {
	st, err := s.state(name, statebackend.KindMap)
	if err != nil {
		return nil, err
	}
	return &MapTable[K, UK, V]{s: s, id: st.id, kc: kc, ukc: ukc, vc: vc, safeUK: copies(ukc), safeV: copies(vc)}, nil
}

// keyPrefix sets t.key to the prefix of k's entries and returns its length.
func (t *MapTable[K, UK, V]) keyPrefix(kg int, k K) int {
	t.key = appendKey(t.key[:0], kg, t.id, t.kc, k)
	return len(t.key)
}

// Get returns uk's value in k's map.
func (t *MapTable[K, UK, V]) Get(kg int, k K, uk UK) (V, bool) {
	t.keyPrefix(kg, k)
	t.key = t.ukc.Append(t.key, uk)
	b, ok := t.s.get(t.key, &t.valBuf)
	if !ok {
		var zero V
		return zero, false
	}
	v, err := decode(t.vc, t.safeV, b)
	if err != nil {
		t.s.fail(err)
		return v, false
	}
	return v, true
}

// Put sets uk to v in k's map.
func (t *MapTable[K, UK, V]) Put(kg int, k K, uk UK, v V) {
	t.keyPrefix(kg, k)
	t.key = t.ukc.Append(t.key, uk)
	t.val = t.vc.Append(t.val[:0], v)
	t.s.set(t.key, t.val)
}

// Remove deletes uk from k's map.
func (t *MapTable[K, UK, V]) Remove(kg int, k K, uk UK) {
	t.keyPrefix(kg, k)
	t.key = t.ukc.Append(t.key, uk)
	t.s.del(t.key)
}

// Clear drops k's map with one range delete.
func (t *MapTable[K, UK, V]) Clear(kg int, k K) {
	t.keyPrefix(kg, k)
	t.s.deleteRange(t.key, prefixEnd(t.key))
}

// Len counts the entries of k's map (it reads them all).
func (t *MapTable[K, UK, V]) Len(kg int, k K) int {
	n := 0
	for range t.All(kg, k) {
		n++
	}
	return n
}

// All iterates k's map in the order of the user keys' encodings.
func (t *MapTable[K, UK, V]) All(kg int, k K) iter.Seq2[UK, V] {
	p := t.keyPrefix(kg, k)
	lower := append([]byte(nil), t.key[:p]...)
	return func(yield func(UK, V) bool) {
		it, err := t.s.newIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
		if err != nil {
			t.s.fail(err)
			return
		}
		defer t.s.closeIter(it)
		for ok := it.First(); ok; ok = it.Next() {
			uk, err := decode(t.ukc, t.safeUK, it.Key()[len(lower):])
			if err != nil {
				t.s.fail(err)
				return
			}
			raw, err := it.ValueAndErr()
			if err != nil {
				t.s.fail(err)
				return
			}
			v, err := decode(t.vc, t.safeV, raw)
			if err != nil {
				t.s.fail(err)
				return
			}
			if !yield(uk, v) {
				return
			}
		}
		if err := it.Error(); err != nil {
			t.s.fail(err)
		}
	}
}

// ListTable holds a list of values per key.
type ListTable[K comparable, V any] struct {
	s        *Store
	id       uint16
	kc       statebackend.Codec[K]
	vc       statebackend.Codec[V]
	safe     bool
	key, val []byte
	valBuf   []byte
}

// NewListTable registers (or reopens) the list state name.
func NewListTable[K comparable, V any](s *Store, name string, kc statebackend.Codec[K], vc statebackend.Codec[V]) (*ListTable[K, V], error) {
	st, err := s.state(name, statebackend.KindList)
	if err != nil {
		return nil, err
	}
	return &ListTable[K, V]{s: s, id: st.id, kc: kc, vc: vc, safe: copies(vc)}, nil
}

// List returns k's list (nil when empty), decoded into a new slice.
func (t *ListTable[K, V]) List(kg int, k K) []V {
	t.key = appendKey(t.key[:0], kg, t.id, t.kc, k)
	b, ok := t.s.get(t.key, &t.valBuf)
	if !ok {
		return nil
	}
	var out []V
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			t.s.fail(errCorruptList)
			return out
		}
		v, err := decode(t.vc, t.safe, b[w:w+int(n)])
		if err != nil {
			t.s.fail(err)
			return out
		}
		out = append(out, v)
		b = b[w+int(n):]
	}
	return out
}

// Append adds v to k's list with a merge: no read.
func (t *ListTable[K, V]) Append(kg int, k K, v V) {
	t.key = appendKey(t.key[:0], kg, t.id, t.kc, k)
	t.val = appendItem(t.val[:0], t.vc, v)
	t.s.merge(t.key, t.val)
}

// Set replaces k's list with l; an empty list clears it.
func (t *ListTable[K, V]) Set(kg int, k K, l []V) {
	if len(l) == 0 {
		t.Clear(kg, k)
		return
	}
	t.key = appendKey(t.key[:0], kg, t.id, t.kc, k)
	t.val = t.val[:0]
	for _, v := range l {
		t.val = appendItem(t.val, t.vc, v)
	}
	t.s.set(t.key, t.val)
}

// Clear drops k's list.
func (t *ListTable[K, V]) Clear(kg int, k K) {
	t.key = appendKey(t.key[:0], kg, t.id, t.kc, k)
	t.s.del(t.key)
}

func appendItem[V any](dst []byte, c statebackend.Codec[V], v V) []byte {
	p := len(dst)
	dst = c.Append(append(dst, 0), v)
	return fixLen(dst, p)
}
