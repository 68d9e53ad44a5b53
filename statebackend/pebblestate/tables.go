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
