package pebblestate

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/weirstream/weir/statebackend"
)

// batchBytes is the size at which a restore commits its batch.
const batchBytes = 4 << 20

// Restore inserts the entries of ks, a state file's key groups, into the
// store. Timer sections go to the timer queue of their name, if one is
// registered; other timer sections and names starting with '_' are the
// runtime's and skipped. Entries outside the store's key groups are an error, checked
// before anything is written; a state restored under another kind than
// it is (or is later) registered with is an error too. Restore may be
// called once per old state file overlapping the store's key groups.
func (s *Store) Restore(ks *statebackend.KeyedState) error {
	if r := ks.KeyGroups(); !r.Empty() && (r.First < s.keyGroups.First || r.Last > s.keyGroups.Last) {
		return fmt.Errorf("restored key groups %v reach outside this subtask's key groups %v", r, s.keyGroups)
	}
	s.settle()
	for _, f := range s.flushers {
		f.drop()
	}
	s.unknownKeys = true // the key filter does not see restored values
	s.commitTimers()
	b := s.db.NewBatch()
	defer func() { b.Close() }()
	commit := func() error {
		if err := s.commit(b); err != nil {
			return fmt.Errorf("state store write: %w", err)
		}
		b.Reset()
		return nil
	}
	var key []byte
	for _, name := range ks.Sections() {
		kind := ks.Kind(name)
		if kind == statebackend.KindTimers {
			if err := s.restoreTimers(b, ks, name, commit); err != nil {
				return err
			}
			continue
		}
		if name[0] == '_' {
			continue
		}
		st, ok := s.states[name]
		if !ok {
			if err := checkName(name); err != nil {
				return err
			}
			var err error
			if st, err = s.add(name, kind); err != nil {
				return err
			}
		} else if st.kind != kind {
			return fmt.Errorf("state %q: the checkpoint holds it as %s state, but it is registered as %s state", name, kind, st.kind)
		}
		err := ks.Each(name, func(kg int, k, v []byte) error {
			key = appendPrefix(key[:0], kg, st.id)
			key = appendField(key, k)
			switch kind {
			case statebackend.KindValue:
				if err := b.Set(key, v, nil); err != nil {
					return err
				}
			case statebackend.KindList:
				n, w := binary.Uvarint(v)
				if w <= 0 {
					return fmt.Errorf("list length: %w", statebackend.ErrCorrupt)
				}
				if c, err := countItems(v[w:]); err != nil || uint64(c) != n {
					return fmt.Errorf("list of %d items holds %d: %w", n, c, statebackend.ErrCorrupt)
				}
				if err := b.Set(key, v[w:], nil); err != nil {
					return err
				}
			case statebackend.KindMap:
				n, w := binary.Uvarint(v)
				if w <= 0 {
					return fmt.Errorf("map length: %w", statebackend.ErrCorrupt)
				}
				rest, p := v[w:], len(key)
				for i := uint64(0); i < n; i++ {
					uk, r1, ok1 := field(rest)
					mv, r2, ok2 := field(r1)
					if !ok1 || !ok2 {
						return fmt.Errorf("truncated map entry: %w", statebackend.ErrCorrupt)
					}
					key = append(key[:p], uk...)
					if err := b.Set(key, mv, nil); err != nil {
						return err
					}
					rest = r2
				}
				if len(rest) != 0 {
					return fmt.Errorf("map of %d entries has %d trailing bytes: %w", n, len(rest), statebackend.ErrCorrupt)
				}
			default:
				return fmt.Errorf("state kind %v: %w", kind, statebackend.ErrCorrupt)
			}
			if b.Len() >= batchBytes {
				return commit()
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return commit()
}

// restoreTimers writes the timers of section name to the timer queue of
// that name and marks the restored key groups' heads for a refill.
func (s *Store) restoreTimers(b *pebble.Batch, ks *statebackend.KeyedState, name string, commit func() error) error {
	var q timerQueue
	for _, t := range s.timers {
		if t.name() == name {
			q = t
		}
	}
	if q == nil {
		return nil
	}
	var key []byte
	err := ks.Each(name, func(kg int, k, v []byte) error {
		ts, n := binary.Varint(v)
		if n <= 0 || n != len(v) {
			return fmt.Errorf("timer time: %w", statebackend.ErrCorrupt)
		}
		key = appendPrefix(key[:0], kg, q.queueID())
		key = binary.BigEndian.AppendUint64(key, uint64(ts)^1<<63)
		key = append(key, k...)
		s.timerMax = max(s.timerMax, ts)
		if err := b.Set(key, nil, nil); err != nil {
			return err
		}
		if b.Len() >= batchBytes {
			return commit()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("timers %q: %w", name, err)
	}
	if r := ks.KeyGroups(); !r.Empty() {
		for kg := r.First; kg <= r.Last; kg++ {
			q.restored(kg)
		}
	}
	return nil
}

// field splits uvarint(len) f off b.
func field(b []byte) (f, rest []byte, ok bool) {
	l, w := binary.Uvarint(b)
	if w <= 0 || l > uint64(len(b)-w) {
		return nil, nil, false
	}
	return b[w : w+int(l)], b[w+int(l):], true
}
