package statebackend

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// Restore adds restored keyed state to the backend. Tables registered
// already decode their section at once; the other sections wait for the
// table of their name, which decodes them when it is registered
// (operators register state in Open, after restore), and a decoding error
// is then returned by NewValueTable, NewMapTable or NewListTable.
//
// Restore may be called once per old state file overlapping the backend's
// key groups; their key groups are disjoint. Entries for key groups outside
// the backend's range are an error, checked before anything is restored.
// Sections of kind KindTimers or named with a leading '_' belong to the
// runtime, which reads them itself with KeyedState.Each: Restore skips
// them and Unclaimed never lists them.
func (b *Backend) Restore(s *KeyedState) error {
	for _, sec := range s.sections {
		for _, g := range sec.groups {
			if !b.keyGroups.Contains(g.kg) {
				return fmt.Errorf("%s: state %q has entries in key group %d, outside this subtask's key groups %v",
					s.file, sec.name, g.kg, b.keyGroups)
			}
		}
	}
	for _, sec := range s.sections {
		if sec.kind == KindTimers || hasReservedName(sec.name) {
			continue
		}
		if t, ok := b.tables[sec.name]; ok {
			if err := restoreInto(t, sec); err != nil {
				return err
			}
			continue
		}
		b.pending[sec.name] = append(b.pending[sec.name], sec)
	}
	return nil
}

// Unclaimed lists, sorted, the restored sections no table has claimed yet,
// so that the runtime can report state the job's code no longer registers.
func (b *Backend) Unclaimed() []string {
	out := make([]string, 0, len(b.pending))
	for name := range b.pending {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func restoreInto(t table, p *restoredSection) error {
	if p.kind != t.Kind() {
		return fmt.Errorf("state %q: %s holds it as %s state, but it is registered as %s state",
			p.name, p.file, p.kind, t.Kind())
	}
	return t.restore(p)
}

// restoreTable walks p's entries group by group into the tables gs
// (index kg - first): decode decodes one entry. A group's keys must be new
// and distinct (the table's key is the entry's key), which also catches a
// file restored twice.
func restoreTable[K comparable, V any](p *restoredSection, gs []cowTable[K, V], first int, hash func(K) int32,
	decode func(g *cowTable[K, V], k, v []byte) (K, V, error)) error {
	for _, ge := range p.groups {
		g := &gs[ge.kg-first]
		before, data := g.n, ge.data
		g.grow(before + ge.count)
		for len(data) > 0 {
			kb, vb, rest, ok := nextEntry(data)
			if !ok {
				return p.corrupt(ge.kg, nil, "truncated entry")
			}
			k, v, err := decode(g, kb, vb)
			if err == nil {
				h := uint32(hash(k))
				if g.find(h, k) >= 0 {
					err = fmt.Errorf("key %v: %w", k, errDuplicateKey)
				} else {
					g.put(h, k, v)
				}
			}
			if err != nil {
				return p.corrupt(ge.kg, err, "entry %d", g.n-before)
			}
			data = rest
		}
		if g.n-before != ge.count {
			return p.corrupt(ge.kg, nil, "%d new distinct keys, the block says %d entries", g.n-before, ge.count)
		}
	}
	return nil
}

func decodeKey[K any](c Codec[K], b []byte) (K, error) {
	k, err := c.Decode(b)
	if err != nil {
		return k, fmt.Errorf("key: %w", err)
	}
	return k, nil
}

func decodeValue[V any](c Codec[V], b []byte) (V, error) {
	v, err := c.Decode(b)
	if err != nil {
		return v, fmt.Errorf("value: %w", err)
	}
	return v, nil
}

// collection splits the uvarint element count off a map or list value; a
// stored map or list is never empty (tables drop emptied ones) and each
// element takes at least one byte, which bounds the allocation.
func collection(b []byte, perElem int) (int, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n == 0 || n > uint64(len(b)-w)/uint64(perElem) {
		return 0, nil, fmt.Errorf("bad element count")
	}
	return int(n), b[w:], nil
}

func (t *ValueTable[K, V]) restore(p *restoredSection) error {
	for _, ge := range p.groups {
		g := &t.gs[ge.kg-t.first]
		before, data := g.n, ge.data
		g.grow(before + ge.count)
		for len(data) > 0 {
			kb, vb, rest, ok := nextEntry(data)
			if !ok {
				return p.corrupt(ge.kg, nil, "truncated entry")
			}
			k, err := decodeKey(t.kc, kb)
			if err == nil {
				var v V
				if v, err = decodeValue(t.vc, vb); err == nil {
					g.put(uint32(t.hash(k)), k, v)
				}
			}
			if err != nil {
				return p.corrupt(ge.kg, err, "entry %d", g.n-before)
			}
			data = rest
		}
		if g.n-before != ge.count {
			return p.corrupt(ge.kg, nil, "%d new distinct keys, the block says %d entries", g.n-before, ge.count)
		}
	}
	return nil
}

func (t *MapTable[K, UK, V]) restore(p *restoredSection) error {
	return restoreTable(p, t.gs, t.first, t.hash, func(g *cowTable[K, userMap[UK, V]], kb, vb []byte) (K, userMap[UK, V], error) {
		k, err := decodeKey(t.kc, kb)
		if err != nil {
			return k, userMap[UK, V]{}, err
		}
		n, b, err := collection(vb, 2)
		if err != nil {
			return k, userMap[UK, V]{}, err
		}
		inner := make(map[UK]V, n)
		for range n {
			ukb, v, rest, ok := nextEntry(b)
			if !ok {
				return k, userMap[UK, V]{}, fmt.Errorf("truncated map entry")
			}
			uk, err := t.ukc.Decode(ukb)
			if err != nil {
				return k, userMap[UK, V]{}, fmt.Errorf("map key: %w", err)
			}
			if inner[uk], err = decodeValue(t.vc, v); err != nil {
				return k, userMap[UK, V]{}, err
			}
			b = rest
		}
		if len(b) != 0 || len(inner) != n {
			return k, userMap[UK, V]{}, fmt.Errorf("map of %d entries has %d distinct keys and %d trailing bytes", n, len(inner), len(b))
		}
		return k, userMap[UK, V]{m: inner, ver: g.ver}, nil
	})
}

func (t *ListTable[K, V]) restore(p *restoredSection) error {
	return restoreTable(p, t.gs, t.first, t.hash, func(_ *cowTable[K, []V], kb, vb []byte) (K, []V, error) {
		k, err := decodeKey(t.kc, kb)
		if err != nil {
			return k, nil, err
		}
		n, b, err := collection(vb, 1)
		if err != nil {
			return k, nil, err
		}
		l := make([]V, n)
		for i := range l {
			item, rest, ok := field(b)
			if !ok {
				return k, nil, fmt.Errorf("truncated list item")
			}
			if l[i], err = decodeValue(t.vc, item); err != nil {
				return k, nil, err
			}
			b = rest
		}
		if len(b) != 0 {
			return k, nil, fmt.Errorf("list of %d items has %d trailing bytes", n, len(b))
		}
		return k, l, nil
	})
}
