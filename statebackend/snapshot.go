package statebackend

import "encoding/binary"

// Section is one named section of keyed state in a snapshot, readable from
// any goroutine, concurrently.
type Section interface {
	Name() string
	Kind() Kind
	// AppendGroup appends the encoded entries of key group kg to dst and
	// returns it with the number of entries (dst unchanged and 0 for a
	// group without entries or outside the section's range).
	AppendGroup(dst []byte, kg int) ([]byte, int)
}

// Snapshot freezes every table and returns one Section per table, in
// registration order. It copies no entries, only one page directory (value
// tables) or map reference (map and list tables) per key group; the first
// write afterwards to a frozen page copies that page, to a frozen map that
// map. The sections stay valid and immutable forever, may be read
// concurrently with further writes and snapshots, and also have a
// Keys() int64 method counting their entries.
//
// Snapshot must be called on the goroutine that writes the tables; handing
// the sections to another goroutine (go statement, channel) orders the
// snapshot before their reads.
func (b *Backend) Snapshot() []Section {
	out := make([]Section, len(b.order))
	for i, n := range b.order {
		out[i] = b.tables[n].snapshot()
	}
	return out
}

// frozen is what every table's section shares: its frozen group maps.
type frozen[K comparable, V any] struct {
	name  string
	first int
	maps  []map[K]V
	keys  int64
}

func (s *frozen[K, V]) Name() string { return s.name }

// Keys is the number of keys with state in the snapshot.
func (s *frozen[K, V]) Keys() int64 { return s.keys }

// group is key group kg's map, nil outside the range.
func (s *frozen[K, V]) group(kg int) map[K]V {
	i := kg - s.first
	if i < 0 || i >= len(s.maps) {
		return nil
	}
	return s.maps[i]
}

func freezeGroups[K comparable, V any](name string, g *groups[K, V]) frozen[K, V] {
	maps, keys := g.freeze()
	return frozen[K, V]{name: name, first: g.first, maps: maps, keys: keys}
}

// valueSection is a value table's snapshot: the copy-on-write view of
// every key group's table.
type valueSection[K comparable, V any] struct {
	name  string
	first int
	views []cowView[K, V]
	keys  int64
	kc    Codec[K]
	vc    Codec[V]
}

func (t *ValueTable[K, V]) snapshot() Section {
	s := &valueSection[K, V]{name: t.name, first: t.first, views: make([]cowView[K, V], len(t.gs)), kc: t.kc, vc: t.vc}
	for i := range t.gs {
		s.views[i] = t.gs[i].snapshot()
		s.keys += int64(s.views[i].n)
	}
	return s
}

func (s *valueSection[K, V]) Name() string { return s.name }
func (s *valueSection[K, V]) Kind() Kind   { return KindValue }

// Keys is the number of keys with state in the snapshot.
func (s *valueSection[K, V]) Keys() int64 { return s.keys }

func (s *valueSection[K, V]) AppendGroup(dst []byte, kg int) ([]byte, int) {
	i := kg - s.first
	if i < 0 || i >= len(s.views) {
		return dst, 0
	}
	for _, pg := range s.views[i].pages {
		for j := range pg {
			e := &pg[j]
			if !e.full {
				continue
			}
			p := len(dst)
			dst = s.kc.Append(append(dst, 0), e.key)
			dst = fixLen(dst, p)
			p = len(dst)
			dst = s.vc.Append(append(dst, 0), e.val)
			dst = fixLen(dst, p)
		}
	}
	return dst, s.views[i].n
}

type mapSection[K comparable, UK comparable, V any] struct {
	frozen[K, map[UK]V]
	kc  Codec[K]
	ukc Codec[UK]
	vc  Codec[V]
}

func (t *MapTable[K, UK, V]) snapshot() Section {
	return &mapSection[K, UK, V]{frozen: freezeGroups(t.name, &t.groups), kc: t.kc, ukc: t.ukc, vc: t.vc}
}

func (s *mapSection[K, UK, V]) Kind() Kind { return KindMap }

func (s *mapSection[K, UK, V]) AppendGroup(dst []byte, kg int) ([]byte, int) {
	m := s.group(kg)
	for k, inner := range m {
		p := len(dst)
		dst = s.kc.Append(append(dst, 0), k)
		dst = fixLen(dst, p)
		p = len(dst)
		dst = binary.AppendUvarint(append(dst, 0), uint64(len(inner)))
		for uk, v := range inner {
			q := len(dst)
			dst = s.ukc.Append(append(dst, 0), uk)
			dst = fixLen(dst, q)
			q = len(dst)
			dst = s.vc.Append(append(dst, 0), v)
			dst = fixLen(dst, q)
		}
		dst = fixLen(dst, p)
	}
	return dst, len(m)
}

type listSection[K comparable, V any] struct {
	frozen[K, []V]
	kc Codec[K]
	vc Codec[V]
}

func (t *ListTable[K, V]) snapshot() Section {
	return &listSection[K, V]{frozen: freezeGroups(t.name, &t.groups), kc: t.kc, vc: t.vc}
}

func (s *listSection[K, V]) Kind() Kind { return KindList }

func (s *listSection[K, V]) AppendGroup(dst []byte, kg int) ([]byte, int) {
	m := s.group(kg)
	for k, l := range m {
		p := len(dst)
		dst = s.kc.Append(append(dst, 0), k)
		dst = fixLen(dst, p)
		p = len(dst)
		dst = binary.AppendUvarint(append(dst, 0), uint64(len(l)))
		for _, v := range l {
			q := len(dst)
			dst = s.vc.Append(append(dst, 0), v)
			dst = fixLen(dst, q)
		}
		dst = fixLen(dst, p)
	}
	return dst, len(m)
}

// fixLen turns the one-byte placeholder at dst[p] into the uvarint length
// of dst[p+1:]. Encoding in place and fixing the prefix afterwards avoids a
// scratch buffer per value; the common short value needs no move, a value
// of 128 bytes or more is shifted right by the extra prefix bytes.
func fixLen(dst []byte, p int) []byte {
	n := len(dst) - p - 1
	if n < 0x80 {
		dst[p] = byte(n)
		return dst
	}
	w := uvarintLen(uint64(n))
	dst = append(dst, make([]byte, w-1)...)
	copy(dst[p+w:], dst[p+1:p+1+n])
	binary.PutUvarint(dst[p:], uint64(n))
	return dst
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
