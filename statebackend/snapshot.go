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
	b.round++
	out := make([]Section, len(b.order))
	for i, n := range b.order {
		out[i] = b.tables[n].snapshot()
	}
	return out
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

// mapSection is a map table's snapshot: the copy-on-write view of every
// key group's table, whose maps the table clones before writing.
type mapSection[K comparable, UK comparable, V any] struct {
	name  string
	first int
	views []cowView[K, userMap[UK, V]]
	keys  int64
	kc    Codec[K]
	ukc   Codec[UK]
	vc    Codec[V]
}

func (t *MapTable[K, UK, V]) snapshot() Section {
	s := &mapSection[K, UK, V]{name: t.name, first: t.first, views: make([]cowView[K, userMap[UK, V]], len(t.gs)),
		kc: t.kc, ukc: t.ukc, vc: t.vc}
	for i := range t.gs {
		s.views[i] = t.gs[i].snapshot()
		s.keys += int64(s.views[i].n)
	}
	return s
}

func (s *mapSection[K, UK, V]) Name() string { return s.name }
func (s *mapSection[K, UK, V]) Kind() Kind   { return KindMap }

// Keys is the number of keys with state in the snapshot.
func (s *mapSection[K, UK, V]) Keys() int64 { return s.keys }

func (s *mapSection[K, UK, V]) AppendGroup(dst []byte, kg int) ([]byte, int) {
	i := kg - s.first
	if i < 0 || i >= len(s.views) {
		return dst, 0
	}
	s.views[i].each(func(k K, e userMap[UK, V]) { dst = s.appendEntry(dst, k, &e) })
	return dst, s.views[i].n
}

// appendEntry appends key k's map as one entry.
func (s *mapSection[K, UK, V]) appendEntry(dst []byte, k K, e *userMap[UK, V]) []byte {
	p := len(dst)
	dst = s.kc.Append(append(dst, 0), k)
	dst = fixLen(dst, p)
	p = len(dst)
	dst = binary.AppendUvarint(append(dst, 0), uint64(len(e.m)))
	for uk, v := range e.m {
		q := len(dst)
		dst = s.ukc.Append(append(dst, 0), uk)
		dst = fixLen(dst, q)
		q = len(dst)
		dst = s.vc.Append(append(dst, 0), v)
		dst = fixLen(dst, q)
	}
	return fixLen(dst, p)
}

// listSection is a list table's snapshot: the copy-on-write view of every
// key group's table (see ListTable on why the lists need no copy).
type listSection[K comparable, V any] struct {
	name  string
	first int
	views []cowView[K, []V]
	keys  int64
	kc    Codec[K]
	vc    Codec[V]
}

func (t *ListTable[K, V]) snapshot() Section {
	s := &listSection[K, V]{name: t.name, first: t.first, views: make([]cowView[K, []V], len(t.gs)), kc: t.kc, vc: t.vc}
	for i := range t.gs {
		s.views[i] = t.gs[i].snapshot()
		s.keys += int64(s.views[i].n)
	}
	return s
}

func (s *listSection[K, V]) Name() string { return s.name }
func (s *listSection[K, V]) Kind() Kind   { return KindList }

// Keys is the number of keys with state in the snapshot.
func (s *listSection[K, V]) Keys() int64 { return s.keys }

func (s *listSection[K, V]) AppendGroup(dst []byte, kg int) ([]byte, int) {
	i := kg - s.first
	if i < 0 || i >= len(s.views) {
		return dst, 0
	}
	s.views[i].each(func(k K, l []V) { dst = s.appendEntry(dst, k, &l) })
	return dst, s.views[i].n
}

// appendEntry appends key k's list as one entry.
func (s *listSection[K, V]) appendEntry(dst []byte, k K, l *[]V) []byte {
	p := len(dst)
	dst = s.kc.Append(append(dst, 0), k)
	dst = fixLen(dst, p)
	p = len(dst)
	dst = binary.AppendUvarint(append(dst, 0), uint64(len(*l)))
	for _, v := range *l {
		q := len(dst)
		dst = s.vc.Append(append(dst, 0), v)
		dst = fixLen(dst, q)
	}
	return fixLen(dst, p)
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
