package pebblestate

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/weirstream/weir/statebackend"
)

// AppendKeys appends to dst the keys of key group kg that hold a value in
// the registered state name, in the order of their encodings, decoded with
// kc, and returns the extended slice.
//
// It writes the value tables' write-back caches to Pebble first, so that
// what it reads is what the tables hold, and then scans the state's run of
// key group kg (one bounded iterator; a map state's entries of one key are
// contiguous, so each key is listed once). The iterator is closed before
// AppendKeys returns: the caller may change the state while going through
// the keys.
func AppendKeys[K comparable](s *Store, name string, kc statebackend.Codec[K], kg int, dst []K) ([]K, error) {
	st, ok := s.states[name]
	if !ok || !st.registered {
		return dst, fmt.Errorf("no keyed state %q is registered", name)
	}
	if !s.keyGroups.Contains(kg) {
		return dst, fmt.Errorf("key group %d is not in %v", kg, s.keyGroups)
	}
	// The keys of a barrier's frozen entries must be in Pebble.
	s.settle()
	for _, f := range s.flushers {
		f.flush()
	}
	if err := s.Err(); err != nil {
		return dst, err
	}
	lower := appendPrefix(nil, kg, st.id)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return dst, fmt.Errorf("state store read: %w", err)
	}
	safe := copies(kc)
	var last []byte
	have := false
	for ok := it.First(); ok; ok = it.Next() {
		enc, err := encodedKey(it.Key())
		if err != nil {
			it.Close()
			return dst, fmt.Errorf("keyed state %q: %w", name, err)
		}
		if have && bytes.Equal(enc, last) {
			continue // another entry of the same key's map
		}
		last, have = append(last[:0], enc...), true
		k, err := decode(kc, safe, enc)
		if err != nil {
			it.Close()
			return dst, fmt.Errorf("keyed state %q: key: %w", name, err)
		}
		dst = append(dst, k)
	}
	if err := it.Close(); err != nil {
		return dst, fmt.Errorf("state store read: %w", err)
	}
	return dst, nil
}

var errCorruptKey = fmt.Errorf("stored key: %w", statebackend.ErrCorrupt)

// encodedKey is the key codec's part of a stored key: the bytes after the
// prefix and the uvarint length (see the package doc's layout).
func encodedKey(key []byte) ([]byte, error) {
	if len(key) < prefixLen {
		return nil, errCorruptKey
	}
	rest := key[prefixLen:]
	n, w := binary.Uvarint(rest)
	if w <= 0 || n > uint64(len(rest)-w) {
		return nil, errCorruptKey
	}
	return rest[w : w+int(n)], nil
}
