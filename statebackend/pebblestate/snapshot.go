package pebblestate

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/weirstream/weir/statebackend"
)

var errCorruptList = fmt.Errorf("list value: %w", statebackend.ErrCorrupt)

// snap is a Pebble snapshot shared by the sections of one checkpoint; the
// last section released closes it and drops its reference on the store.
type snap struct {
	s *Store
	// ep takes the Pebble snapshot (ep.ps) on its goroutine.
	ep   *epoch
	refs atomic.Int32
	// err is the first iteration error: AppendGroup has no error to
	// return, so the sections report it through Err.
	mu  sync.Mutex
	err error
}

func (sn *snap) fail(err error) {
	sn.mu.Lock()
	if sn.err == nil {
		sn.err = err
	}
	sn.mu.Unlock()
}

func (sn *snap) release() {
	if sn.refs.Add(-1) == 0 {
		<-sn.ep.done
		if sn.ep.ps != nil {
			sn.ep.ps.Close()
		}
		sn.s.release()
	}
}

// snapshot waits for the Pebble snapshot; on an error it fails the
// sections.
func (sn *snap) snapshot() *pebble.Snapshot {
	<-sn.ep.done
	if sn.ep.err != nil {
		sn.fail(sn.ep.err)
		return nil
	}
	return sn.ep.ps
}

// Snapshot is the synchronous part of a checkpoint: it freezes the writes
// Pebble lacks (see epoch), in O(tables), and returns one section per
// registered state, in registration order, reading the Pebble snapshot the
// epoch's goroutine takes once it wrote them back. The sections are
// readable from any goroutine (they wait for that snapshot; a failed
// write-back is their Err); each must be released once
// (statebackend.Release) after the state file is written.
func (s *Store) Snapshot() ([]statebackend.Section, error) {
	if len(s.order) == 0 && len(s.timers) == 0 {
		return nil, nil
	}
	e, err := s.freeze("snapshot", "")
	if err != nil {
		return nil, err
	}
	sn := &snap{s: s, ep: e}
	sn.refs.Store(int32(len(s.order) + len(s.timers)))
	out := make([]statebackend.Section, 0, len(s.order)+len(s.timers))
	for _, name := range s.order {
		st := s.states[name]
		out = append(out, &section{snap: sn, name: name, kind: st.kind, id: st.id, keyGroups: s.keyGroups})
	}
	// Timer sections come last, as the memory backend's: the runtime
	// appends them after the state tables'.
	for _, q := range s.timers {
		out = append(out, &section{snap: sn, name: q.name(), kind: statebackend.KindTimers, id: q.queueID(), keyGroups: s.keyGroups})
	}
	return out, nil
}

// section is one state of a snapshot.
type section struct {
	snap      *snap
	name      string
	kind      statebackend.Kind
	id        uint16
	keyGroups statebackend.KeyGroupRange
	keys      atomic.Int64
	released  atomic.Bool
	scratch   []byte
}

func (c *section) Name() string            { return c.name }
func (c *section) Kind() statebackend.Kind { return c.kind }

// Keys counts the keys the section's AppendGroup calls have written so far
// (all of them once the state file is written).
func (c *section) Keys() int64 { return c.keys.Load() }

// Err reports an error met while reading the snapshot.
func (c *section) Err() error {
	c.snap.mu.Lock()
	defer c.snap.mu.Unlock()
	return c.snap.err
}

// Release lets go of the snapshot; the last section released closes it.
func (c *section) Release() {
	if c.released.CompareAndSwap(false, true) {
		c.snap.release()
	}
}

// AppendGroup appends key group kg's entries in the state file's section
// encoding (see package statebackend): one entry per key, a map's user
// keys and values gathered into its value.
func (c *section) AppendGroup(dst []byte, kg int) ([]byte, int) {
	if !c.keyGroups.Contains(kg) || c.released.Load() {
		return dst, 0
	}
	ps := c.snap.snapshot()
	if ps == nil {
		return dst, 0
	}
	lower := appendPrefix(nil, kg, c.id)
	it, err := ps.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		c.snap.fail(err)
		return dst, 0
	}
	defer it.Close()
	n := 0
	switch c.kind {
	case statebackend.KindMap:
		dst, n = c.appendMaps(dst, it)
	case statebackend.KindTimers:
		dst, n = c.appendTimers(dst, it)
	default:
		for ok := it.First(); ok; ok = it.Next() {
			k, ok := splitKey(it.Key())
			if !ok {
				c.snap.fail(fmt.Errorf("state %q: bad key in the store: %w", c.name, statebackend.ErrCorrupt))
				return dst, n
			}
			v, err := it.ValueAndErr()
			if err != nil {
				c.snap.fail(err)
				return dst, n
			}
			dst = appendField(dst, k)
			if c.kind == statebackend.KindList {
				cnt, err := countItems(v)
				if err != nil {
					c.snap.fail(fmt.Errorf("state %q: %w", c.name, err))
					return dst, n
				}
				if cnt == 0 {
					continue
				}
				c.scratch = binary.AppendUvarint(c.scratch[:0], uint64(cnt))
				c.scratch = append(c.scratch, v...)
				dst = appendField(dst, c.scratch)
			} else {
				dst = appendField(dst, v)
			}
			n++
		}
	}
	if err := it.Error(); err != nil {
		c.snap.fail(err)
	}
	c.keys.Add(int64(n))
	return dst, n
}

// appendMaps gathers each key's run of user-key entries into one entry.
func (c *section) appendMaps(dst []byte, it *pebble.Iterator) ([]byte, int) {
	n := 0
	var cur []byte // the current key's encoding (uvarint len, k)
	count := 0
	flush := func() {
		if count == 0 {
			return
		}
		_, k, _ := cutKey(cur)
		dst = appendField(dst, k)
		p := len(dst)
		dst = binary.AppendUvarint(append(dst, 0), uint64(count))
		dst = append(dst, c.scratch...)
		dst = fixLen(dst, p)
		n++
	}
	for ok := it.First(); ok; ok = it.Next() {
		key := it.Key()[prefixLen:]
		enc, _, uk := cutKey(key)
		if enc == nil {
			c.snap.fail(fmt.Errorf("state %q: bad key in the store: %w", c.name, statebackend.ErrCorrupt))
			return dst, n
		}
		if count == 0 || string(enc) != string(cur) {
			flush()
			cur = append(cur[:0], enc...)
			c.scratch = c.scratch[:0]
			count = 0
		}
		v, err := it.ValueAndErr()
		if err != nil {
			c.snap.fail(err)
			return dst, n
		}
		c.scratch = appendField(c.scratch, uk)
		c.scratch = appendField(c.scratch, v)
		count++
	}
	flush()
	return dst, n
}

// appendTimers writes each timer as the memory backend's timer section
// does: the key's encoding, and the time as a varint.
func (c *section) appendTimers(dst []byte, it *pebble.Iterator) ([]byte, int) {
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		key := it.Key()
		if len(key) < prefixLen+8 {
			c.snap.fail(fmt.Errorf("timers %q: bad key in the store: %w", c.name, statebackend.ErrCorrupt))
			return dst, n
		}
		ts := int64(binary.BigEndian.Uint64(key[prefixLen:]) ^ 1<<63)
		dst = appendField(dst, key[prefixLen+8:])
		c.scratch = binary.AppendVarint(c.scratch[:0], ts)
		dst = appendField(dst, c.scratch)
		n++
	}
	return dst, n
}

// cutKey splits b = uvarint(len) k rest into uvarint(len) k, k and rest;
// enc is nil if b is malformed.
func cutKey(b []byte) (enc, k, rest []byte) {
	l, w := binary.Uvarint(b)
	if w <= 0 || l > uint64(len(b)-w) {
		return nil, nil, nil
	}
	end := w + int(l)
	return b[:end], b[w:end], b[end:]
}

// splitKey returns the key's encoding k of a value or list entry's key.
func splitKey(key []byte) ([]byte, bool) {
	enc, k, rest := cutKey(key[prefixLen:])
	return k, enc != nil && len(rest) == 0
}

func appendField(dst, b []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(b))), b...)
}

// countItems counts the uvarint-length-prefixed items of a list value.
func countItems(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		l, w := binary.Uvarint(b)
		if w <= 0 || l > uint64(len(b)-w) {
			return n, errCorruptList
		}
		b = b[w+int(l):]
		n++
	}
	return n, nil
}
