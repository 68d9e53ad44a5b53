package pebblestate

import (
	"encoding/binary"
	"iter"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

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
// times per record (clear, then set again). The cache holds up to
// cacheCap keys, found, absent or deleted, with their decoded values;
// writes stay in it, dirty, until a snapshot or a full cache writes them
// to Pebble in one batch. A key rewritten many times between two
// checkpoints costs one Pebble write, and a job whose keys fit in the
// cache runs at nearly the speed of the memory backend. When the cache is
// full it is written back and emptied, which bounds memory whatever the
// number of keys. Full means cacheKeys keys, or fewer for large values:
// the table samples the encoded size of one value written in 1024 and
// keeps the cache near cacheBytes.
type ValueTable[K comparable, V any] struct {
	s      *Store
	id     uint16
	kc     statebackend.Codec[K]
	vc     statebackend.Codec[V]
	safe   bool
	key    []byte
	val    []byte
	valBuf []byte
	cache  map[K]cached[V]
	// dirty lists the keys whose cached entry Pebble does not have yet.
	dirty []dirtyKey[K]
	// frozen and frozenDirty are the cache and dirty list at a barrier,
	// while its epoch writes them back (see epoch): read by the task
	// after cache, written by neither. fkey, fval and fwb are the
	// write-back's own scratch space.
	frozen      map[K]cached[V]
	frozenDirty []dirtyKey[K]
	fkey, fval  []byte
	fwb         sortedBatch
	// cap is the current bound on cached keys: maxKeys, or fewer when the
	// sampled value size says so.
	cap, maxKeys int
	writes       int
}

// writeBatchBytes is the size at which a cache's write-back commits its
// batch: a batch of more than half a memtable (in the memtable's terms,
// some twice its bytes for small entries) would be flushed as a memtable
// of its own, an L0 file per write-back.
const writeBatchBytes = 1 << 20

// entryOverhead approximates a cached entry's bytes beyond its value's
// encoding (map slot, key, flags, dirty list).
const entryOverhead = 64

// cached is a key's cached state: its value if present, and whether Pebble
// still lacks it.
type cached[V any] struct {
	v       V
	present bool
	dirty   bool
}

type dirtyKey[K any] struct {
	kg int
	k  K
}

// NewValueTable registers (or reopens) the value state name.
func NewValueTable[K comparable, V any](s *Store, name string, kc statebackend.Codec[K], vc statebackend.Codec[V]) (*ValueTable[K, V], error) {
	st, err := s.state(name, statebackend.KindValue)
	if err != nil {
		return nil, err
	}
	t := &ValueTable[K, V]{s: s, id: st.id, kc: kc, vc: vc, safe: copies(vc), cap: s.cacheKeys, maxKeys: s.cacheKeys,
		cache: map[K]cached[V]{}}
	s.flushers = append(s.flushers, t)
	if s.budget != nil {
		s.tables++
		s.budget.tables.Add(1)
	}
	return t, nil
}

// Get returns k's value in key group kg.
func (t *ValueTable[K, V]) Get(kg int, k K) (V, bool) {
	if c, ok := t.cache[k]; ok {
		return c.v, c.present
	}
	if t.frozen != nil {
		if c, ok := t.frozen[k]; ok {
			return c.v, c.present
		}
	}
	t.key = appendKey(t.key[:0], kg, t.id, t.kc, k)
	var v V
	b, ok := t.s.get(t.key, &t.valBuf)
	if ok {
		var err error
		if v, err = decode(t.vc, t.safe, b); err != nil {
			t.s.fail(err)
			return v, false
		}
	}
	t.room()
	t.cache[k] = cached[V]{v: v, present: ok}
	return v, ok
}

// Put sets k's value.
func (t *ValueTable[K, V]) Put(kg int, k K, v V) {
	t.write(kg, k, cached[V]{v: v, present: true, dirty: true})
}

// Delete drops k's value.
func (t *ValueTable[K, V]) Delete(kg int, k K) { t.write(kg, k, cached[V]{dirty: true}) }

func (t *ValueTable[K, V]) write(kg int, k K, c cached[V]) {
	if t.writes&1023 == 0 && c.present {
		t.sample(c.v)
	}
	t.writes++
	if t.s.ep != nil {
		t.s.poll()
	}
	old, ok := t.cache[k]
	if !ok {
		t.room()
	}
	if !old.dirty {
		t.dirty = append(t.dirty, dirtyKey[K]{kg: kg, k: k})
	}
	t.cache[k] = c
}

// sample resizes the cache for values of v's encoded size.
func (t *ValueTable[K, V]) sample(v V) {
	t.val = t.vc.Append(t.val[:0], v)
	t.cap = min(t.maxKeys, max(t.s.valueCacheBytes()/(len(t.val)+entryOverhead), 64))
	if t.maxKeys == 0 {
		t.cap = 0
	}
}

// room empties the cache, after writing it back, when it is full.
//
// During an epoch the write-back goes to the store's pend, and the keys
// with frozen entries stay cached (clean): a read must find their new
// value before the frozen one. If they fill half the cache, the task waits
// for the epoch to end instead.
func (t *ValueTable[K, V]) room() {
	if len(t.cache) < t.cap {
		return
	}
	t.flush()
	if t.frozen != nil {
		for k := range t.cache {
			if _, ok := t.frozen[k]; !ok {
				delete(t.cache, k)
			}
		}
		if len(t.cache) < t.cap/2 {
			return
		}
		t.s.settle()
	}
	clear(t.cache)
}

// flush writes the dirty entries to Pebble, in key order (sortedBatch);
// they stay cached, clean.
func (t *ValueTable[K, V]) flush() {
	if len(t.dirty) == 0 || t.s.failed() {
		return
	}
	wb := &t.s.wb
	for _, d := range t.dirty {
		c := t.cache[d.k]
		t.key = appendKey(t.key[:0], d.kg, t.id, t.kc, d.k)
		if c.present {
			t.val = t.vc.Append(t.val[:0], c.v)
			wb.set(t.key, t.val)
		} else {
			wb.del(t.key)
		}
		c.dirty = false
		t.cache[d.k] = c
		// Commit in parts: a huge batch would be held in memory whole.
		if wb.size() >= batchBytes {
			wb.commit(t.s)
		}
	}
	clear(t.dirty)
	t.dirty = t.dirty[:0]
	wb.commit(t.s)
}

// drop empties the cache after writing it back (before a restore writes
// to Pebble underneath it).
func (t *ValueTable[K, V]) drop() {
	t.s.settle()
	t.flush()
	clear(t.cache)
}

func (t *ValueTable[K, V]) freeze() bool {
	if len(t.dirty) == 0 {
		return false // Pebble has the whole cache: it stays
	}
	t.frozen, t.frozenDirty = t.cache, t.dirty
	t.cache, t.dirty = map[K]cached[V]{}, nil
	return true
}

func (t *ValueTable[K, V]) thaw() { t.frozen, t.frozenDirty = nil, nil }

// writeFrozen writes the frozen dirty entries to Pebble, in key order. It
// runs on an epoch's goroutine: it only reads the frozen map, and encodes
// with the codecs concurrently with the task (as the memory backend's
// snapshots do).
func (t *ValueTable[K, V]) writeFrozen() error {
	wb := &t.fwb
	defer wb.reset()
	for _, d := range t.frozenDirty {
		c := t.frozen[d.k]
		t.fkey = appendKey(t.fkey[:0], d.kg, t.id, t.kc, d.k)
		if c.present {
			t.fval = t.vc.Append(t.fval[:0], c.v)
			wb.set(t.fkey, t.fval)
		} else {
			wb.del(t.fkey)
		}
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
