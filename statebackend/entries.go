package statebackend

import (
	"fmt"
	"hash/maphash"
	"reflect"
	"sync"
	"unsafe"

	"github.com/weirstream/weir/internal/prefetch"
)

// EntryWords is how many word-sized value states an entry holds inline.
// Two keep an int64-keyed slot at 64 bytes, one cache line, and fit the
// common "flag and its timer" detector; further value states of an
// operator go to their own ValueTable.
const EntryWords = 2

// Entry is everything the fast path keeps for one key of an operator: up
// to EntryWords word-sized values and one timer per time domain, so that
// a record which reads and writes its key's values and moves its timer
// touches one slot of one table.
//
// The runtime owns the timer fields: what a timer's reference means and
// where a key's further timers live is its business (see
// runtime/timerservice.go); the table only stores and snapshots them.
type Entry struct {
	words [EntryWords]uint64
	ts    [2]int64
	// ref holds the runtime's timer references, of 56 bits, and the top
	// byte of ref[0] the flags: bit i (i < EntryWords) says words[i]
	// holds a value; bit timerBit+d that timer d is set; bit moreBit+d
	// that the runtime may hold more timers of domain d for the key
	// elsewhere. Packed so that an int64-keyed slot is 64 bytes, one
	// cache line.
	ref [2]uint64
}

const (
	timerBit = 2
	moreBit  = 4
	// MaxTimerRef is the largest timer reference an entry holds.
	MaxTimerRef = 1<<56 - 1
	flagShift   = 56
)

func (e *Entry) used() uint8        { return uint8(e.ref[0] >> flagShift) }
func (e *Entry) has(bit uint8) bool { return e.ref[0]&(1<<(flagShift+bit)) != 0 }
func (e *Entry) set(bit uint8)      { e.ref[0] |= 1 << (flagShift + bit) }
func (e *Entry) unset(bit uint8)    { e.ref[0] &^= 1 << (flagShift + bit) }

// Empty reports whether the entry holds nothing, when it may be dropped.
func (e *Entry) Empty() bool { return e.used() == 0 }

// Timer returns timer d (0 or 1) and the runtime's reference to where it
// is queued, if set.
func (e *Entry) Timer(d int) (ts int64, ref uint64, ok bool) {
	return e.ts[d], e.ref[d] & MaxTimerRef, e.has(timerBit + uint8(d))
}

// SetTimerRef changes the reference of timer d, which must be set; ref
// must not exceed MaxTimerRef.
func (e *Entry) SetTimerRef(d int, ref uint64) { e.ref[d] = e.ref[d]&^MaxTimerRef | ref }

// SetTimer sets timer d; ref must not exceed MaxTimerRef.
func (e *Entry) SetTimer(d int, ts int64, ref uint64) {
	e.ts[d] = ts
	e.SetTimerRef(d, ref)
	e.set(timerBit + uint8(d))
}

// ClearTimer unsets timer d.
func (e *Entry) ClearTimer(d int) { e.unset(timerBit + uint8(d)) }

// More reports the runtime's mark that the key may have more timers of
// domain d than the one inline.
func (e *Entry) More(d int) bool { return e.has(moreBit + uint8(d)) }

// SetMore sets or clears that mark.
func (e *Entry) SetMore(d int, on bool) {
	if on {
		e.set(moreBit + uint8(d))
	} else {
		e.unset(moreBit + uint8(d))
	}
}

// Entries is the per-key entry table of one operator subtask: one
// copy-on-write open-addressing table (cowTable) per key group, probed
// with the hash the runtime computed for the record. Word tables and the
// runtime's timers share it; a backend has at most one (see EntriesOf).
type Entries[K comparable] struct {
	kc    Codec[K]
	hash  func(K) int32
	first int
	gs    []cowTable[K, Entry]
	// words counts the inline words handed out to word tables.
	words int
	// The slot of the key last found, since a record's state and timer
	// accesses all ask for the same key: ci is its index in key group
	// ckg's table, -1 when unknown. Only deletes and grows move entries;
	// a delete forgets it, a grow happens on an insert, which sets it.
	//
	// The cached entry may be empty: Drop leaves it until the cache moves
	// to another key (or a snapshot or Len looks), because a record
	// typically clears its key's state and sets it again, and deleting
	// and reinserting would shift its neighbours back and forth.
	//
	// ckg is -1 when ci is. cp points at the cached entry, so that the
	// record's further accesses skip the directory and the bounds checks;
	// wkg is ckg when cp's page is the current version's, so that Edit
	// may write it as is, and -1 otherwise. Only the methods here move
	// entries or copy pages, and each forgets or renews the pointer when
	// it does.
	ck  K
	ckg int
	wkg int
	ci  int32
	cp  *Entry
	// writes counts changes to the table; snap is the last snapshot,
	// taken at snapWrites, which the next one reuses if nothing changed
	// in between (the sections of one checkpoint: word states, timers).
	writes     uint64
	snap       *entriesSnap[K]
	snapWrites uint64
	// snapRound is the backend's snapshot round of snap: a view is shared
	// only within one round, one checkpoint, or an idle job's views
	// would pile up every checkpoint's columns.
	b         *Backend
	snapRound uint64
}

// EntriesOf returns b's entry table, creating it on first use. Every
// caller of one backend must use the same key type; kc hashes keys for
// restores when it is a KeyHasher (the runtime's key types are).
func EntriesOf[K comparable](b *Backend, kc Codec[K]) (*Entries[K], error) {
	if b.entries != nil {
		e, ok := b.entries.(*Entries[K])
		if !ok {
			return nil, fmt.Errorf("entry table has key type %T, not %T", b.entries, e)
		}
		return e, nil
	}
	e := &Entries[K]{kc: kc, first: b.keyGroups.First, gs: newTables[K, Entry](b.keyGroups.Len()), ci: -1, ckg: -1, wkg: -1, b: b}
	if h, ok := kc.(KeyHasher[K]); ok {
		e.hash = h.Hash
	} else {
		seed := maphash.MakeSeed()
		e.hash = func(k K) int32 { return int32(maphash.Comparable(seed, k)) }
	}
	b.entries = e
	return e, nil
}

// Get returns k's entry for reading, or nil (or an empty entry); h is
// the key codec's hash of k (see KeyHasher). The pointer is valid until
// the next write.
func (t *Entries[K]) Get(kg int, h int32, k K) *Entry {
	if t.ckg == kg && t.ck == k {
		return t.cp
	}
	return t.get(kg, h, k)
}

// get is Get's probe, apart so that Get's check of the key last found is
// inlined.
func (t *Entries[K]) get(kg int, h int32, k K) *Entry {
	t.flush()
	g := &t.gs[kg-t.first]
	i := g.find(uint32(h), k)
	if i < 0 {
		return nil
	}
	t.ck, t.ckg, t.ci = k, kg, int32(i)
	t.cp, t.wkg = &g.at(uint32(i)).val, -1
	// A record that reads its key's entry mostly writes it next: if the
	// page is the current version's, the Edit can take the entry as is.
	// After a snapshot no page is, so the first write after one still
	// goes through edit and counts (see writes).
	if g.meta[uint32(i)>>pageBits].ver == g.ver {
		t.wkg = kg
	}
	return t.cp
}

// Edit returns k's entry for writing, created empty if missing. The
// pointer is valid until the next write to the table; an entry left empty
// must be handed to Drop.
func (t *Entries[K]) Edit(kg int, h int32, k K) *Entry {
	if t.wkg == kg && t.ck == k {
		return t.cp
	}
	return t.edit(kg, h, k)
}

// edit is Edit's probe, and its copy of the entry's page when a snapshot
// shares it.
func (t *Entries[K]) edit(kg int, h int32, k K) *Entry {
	// Counting the writes here is enough: a snapshot forgets the cached
	// entry, so the first write after it comes here.
	t.writes++
	g := &t.gs[kg-t.first]
	if t.ckg != kg || t.ck != k {
		t.flush()
		i := g.find(uint32(h), k)
		if i < 0 {
			i = int(g.insert(uint32(h), k))
		}
		t.ck, t.ckg, t.ci = k, kg, int32(i)
	}
	t.cp, t.wkg = &g.writable(uint32(t.ci)).val, kg
	return t.cp
}

// Drop removes k's entry, which must be empty; the entry of the key last
// found is removed later, if still empty then.
func (t *Entries[K]) Drop(kg int, h int32, k K) {
	if t.ckg == kg && t.ck == k {
		return
	}
	t.flush() // the delete below may shift the cached entry
	t.writes++
	t.gs[kg-t.first].del(uint32(h), k)
}

// flush removes the cached entry if it is empty and forgets it.
func (t *Entries[K]) flush() {
	if t.ci < 0 {
		return
	}
	// cp is the cached entry in the table: any move or copy of its
	// page renews or forgets it.
	if t.cp.used() == 0 {
		g := &t.gs[t.ckg-t.first]
		g.del(g.at(uint32(t.ci)).hash, t.ck)
		t.writes++
	}
	t.ci, t.ckg, t.wkg, t.cp = -1, -1, -1, nil
}

// PrefetchDir starts loading the directory entry and version of the page
// holding the slot Prefetch will load. A key group's directory outgrows
// the cache only with tens of thousands of entries (10 M keys make 8 MiB
// of directories): then finding the slot's address is a miss too, and the
// caller prefetches the directory entries of all its records before their
// slots. With a small directory it does nothing.
func (t *Entries[K]) PrefetchDir(kg int, h int32) {
	g := &t.gs[kg-t.first]
	if len(g.pages) < bigDirPages {
		return
	}
	pi := g.home(uint32(h)) >> pageBits
	prefetch.Line(unsafe.Pointer(&g.pages[pi]))
	prefetch.Line(unsafe.Pointer(&g.meta[pi]))
}

// bigDirPages is the directory length (of 16 bytes per page: pointer and
// metadata) from which PrefetchDir prefetches: at 1024 pages a key group's
// directory is 16 KiB, and all 128 key groups' 2 MiB, more than a core's
// L2 cache keeps.
const bigDirPages = 1024

// Prefetch starts loading the slot where the probe for a key with hash h
// starts, in key group kg, so that a Get or Edit soon after finds it in
// the cache. Prefetching the entries of several records before processing
// them overlaps their cache misses: unlike a load, a prefetch does not
// hold up the instructions after it (see internal/prefetch).
func (t *Entries[K]) Prefetch(kg int, h int32) {
	g := &t.gs[kg-t.first]
	if g.pages == nil {
		return
	}
	i := g.home(uint32(h))
	prefetch.Line(unsafe.Pointer(g.at(i)))
}

// Hash is the hash Get and Edit expect for k.
func (t *Entries[K]) Hash(k K) int32 { return t.hash(k) }

// Len is the number of entries in key group kg.
func (t *Entries[K]) Len(kg int) int {
	t.flush()
	return t.gs[kg-t.first].n
}

// EntriesView is a snapshot of an entry table, immutable and readable
// from any goroutine.
//
// Several sections read one view (each word state, the timers of each
// time domain), and a state file is written key group by key group, each
// section in turn. So that a key group's entries are walked once rather
// than once per section, a section registers a column (Column) and reads
// it with AppendColumn: the first section asking for a key group walks it
// and encodes every column, the others copy theirs.
type EntriesView[K comparable] struct{ s *entriesSnap[K] }

type entriesSnap[K comparable] struct {
	first int
	views []cowView[K, Entry]

	mu   sync.Mutex
	cols []EntryColumn[K]
	// The encoded columns of key group kg, if walked (ncols columns).
	kg     int
	ncols  int
	bufs   [][]byte
	counts []int
}

// EntryColumn appends the encoding of one section's entry for key k to
// dst, if entry e has one, and reports whether it did.
type EntryColumn[K comparable] func(dst []byte, k K, e *Entry) ([]byte, bool)

// Snapshot freezes the table in O(key groups) and returns its view; a
// second snapshot in the same round of Backend.Snapshot, with no write in
// between, returns the same view.
func (t *Entries[K]) Snapshot() EntriesView[K] {
	t.flush()
	if t.snap != nil && t.writes == t.snapWrites && t.snapRound == t.b.round {
		return EntriesView[K]{t.snap}
	}
	s := &entriesSnap[K]{first: t.first, views: make([]cowView[K, Entry], len(t.gs)), kg: -1}
	for i := range t.gs {
		s.views[i] = t.gs[i].snapshot()
	}
	t.snap, t.snapWrites, t.snapRound = s, t.writes, t.b.round
	return EntriesView[K]{s}
}

// Each calls f for every entry of key group kg in the view.
func (v EntriesView[K]) Each(kg int, f func(k K, e *Entry)) {
	i := kg - v.s.first
	if i < 0 || i >= len(v.s.views) {
		return
	}
	for _, p := range v.s.views[i].pages {
		for j := range p {
			if sl := &p[j]; sl.full {
				f(sl.key, &sl.val)
			}
		}
	}
}

// Column registers a column and returns its number for AppendColumn.
func (v EntriesView[K]) Column(c EntryColumn[K]) int {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	v.s.cols = append(v.s.cols, c)
	return len(v.s.cols) - 1
}

// AppendColumn appends column col's encoding of key group kg to dst and
// returns it with the number of entries encoded.
func (v EntriesView[K]) AppendColumn(dst []byte, kg, col int) ([]byte, int) {
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kg != kg || s.ncols != len(s.cols) {
		s.walk(kg)
	}
	return append(dst, s.bufs[col]...), s.counts[col]
}

// walk encodes every column of key group kg.
func (s *entriesSnap[K]) walk(kg int) {
	n := len(s.cols)
	for len(s.bufs) < n {
		s.bufs = append(s.bufs, nil)
		s.counts = append(s.counts, 0)
	}
	for c := range n {
		s.bufs[c], s.counts[c] = s.bufs[c][:0], 0
	}
	EntriesView[K]{s}.Each(kg, func(k K, e *Entry) {
		for c, col := range s.cols[:n] {
			var ok bool
			if s.bufs[c], ok = col(s.bufs[c], k, e); ok {
				s.counts[c]++
			}
		}
	})
	s.kg, s.ncols = kg, n
}

// WordTable is a value table whose values live inline in the operator's
// entry table: one word of each entry. Only types of at most 8 bytes
// without pointers qualify (bool, integers, floats, small arrays and
// structs of them), since the word holds the value's bytes; the
// conversion is an unsafe copy decided once, at registration.
type WordTable[K comparable, V any] struct {
	name string
	e    *Entries[K]
	bit  uint8
	vc   Codec[V]
	// keys counts the entries holding this table's word, per key group.
	keys []int
}

// NewWordTable registers (or returns the existing) word table name in
// b's entry table. ok is false, and nothing is registered, when V is not
// word-sized or the entries have no free word: the caller then uses a
// ValueTable.
func NewWordTable[K comparable, V any](b *Backend, name string, kc Codec[K], vc Codec[V]) (t *WordTable[K, V], ok bool, err error) {
	if old, found := b.tables[name]; found {
		t, ok = old.(*WordTable[K, V])
		if !ok {
			return nil, false, nil // registered as something else: let the caller's register say so
		}
		return t, true, nil
	}
	if !WordSized[V]() {
		return nil, false, nil
	}
	e, err := EntriesOf(b, kc)
	if err != nil {
		return nil, false, err
	}
	if e.words >= EntryWords {
		return nil, false, nil
	}
	t = &WordTable[K, V]{name: name, e: e, bit: uint8(e.words), vc: vc, keys: make([]int, len(e.gs))}
	if t, err = register(b, t); err != nil {
		return nil, false, err
	}
	e.words++
	return t, true, nil
}

// WordSized reports whether values of type V fit an entry's word.
func WordSized[V any]() bool {
	ty := reflect.TypeFor[V]()
	return ty.Size() <= 8 && pointerFree(ty)
}

func pointerFree(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64:
		return true
	case reflect.Array:
		return pointerFree(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !pointerFree(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false
}

func (t *WordTable[K, V]) Name() string           { return t.name }
func (t *WordTable[K, V]) Kind() Kind             { return KindValue }
func (t *WordTable[K, V]) KeysInGroup(kg int) int { return t.keys[kg-t.e.first] }

// fromWord and toWord reinterpret a word as a V and back; V was checked
// by WordSized.
func fromWord[V any](w *uint64) V { return *(*V)(unsafe.Pointer(w)) }

func toWord[V any](v V) uint64 {
	var w uint64
	*(*V)(unsafe.Pointer(&w)) = v
	return w
}

// GetHashed returns k's value; h is the key codec's hash of k.
func (t *WordTable[K, V]) GetHashed(kg int, h int32, k K) (V, bool) {
	e := t.e.Get(kg, h, k)
	if e == nil || !e.has(t.bit) {
		var zero V
		return zero, false
	}
	return fromWord[V](&e.words[t.bit]), true
}

// PutHashed sets k's value.
func (t *WordTable[K, V]) PutHashed(kg int, h int32, k K, v V) {
	e := t.e.Edit(kg, h, k)
	if !e.has(t.bit) {
		e.set(t.bit)
		t.keys[kg-t.e.first]++
	}
	e.words[t.bit] = toWord(v)
}

// DeleteHashed drops k's value, and the entry once it holds nothing.
func (t *WordTable[K, V]) DeleteHashed(kg int, h int32, k K) {
	e := t.e.Get(kg, h, k)
	if e == nil || !e.has(t.bit) {
		return // nothing to delete, so no page to copy
	}
	e = t.e.Edit(kg, h, k)
	e.unset(t.bit)
	e.words[t.bit] = 0
	if e.Empty() {
		t.e.Drop(kg, h, k)
	}
	t.keys[kg-t.e.first]--
}

// Group copies key group kg's values into a new map (nil when empty), for
// tests and tools; it is not for the per-record path.
func (t *WordTable[K, V]) Group(kg int) map[K]V {
	if t.keys[kg-t.e.first] == 0 {
		return nil
	}
	m := make(map[K]V, t.keys[kg-t.e.first])
	g := &t.e.gs[kg-t.e.first]
	cowView[K, Entry]{pages: g.pages, n: g.n}.each(func(k K, e Entry) {
		if e.has(t.bit) {
			m[k] = fromWord[V](&e.words[t.bit])
		}
	})
	return m
}

// Get, Put and Delete hash the key themselves.
func (t *WordTable[K, V]) Get(kg int, k K) (V, bool) { return t.GetHashed(kg, t.e.hash(k), k) }
func (t *WordTable[K, V]) Put(kg int, k K, v V)      { t.PutHashed(kg, t.e.hash(k), k, v) }
func (t *WordTable[K, V]) Delete(kg int, k K)        { t.DeleteHashed(kg, t.e.hash(k), k) }

// wordSection is a word table's snapshot: a view of the entry table,
// of which it encodes the entries holding its word.
type wordSection[K comparable, V any] struct {
	name string
	bit  uint8
	view EntriesView[K]
	col  int
	kc   Codec[K]
	vc   Codec[V]
	keys int64
}

func (t *WordTable[K, V]) snapshot() Section {
	s := &wordSection[K, V]{name: t.name, bit: t.bit, view: t.e.Snapshot(), kc: t.e.kc, vc: t.vc}
	for _, n := range t.keys {
		s.keys += int64(n)
	}
	s.col = s.view.Column(s.encode)
	return s
}

// encode is the section's column: k's value, if e holds one.
func (s *wordSection[K, V]) encode(dst []byte, k K, e *Entry) ([]byte, bool) {
	if !e.has(s.bit) {
		return dst, false
	}
	p := len(dst)
	dst = s.kc.Append(append(dst, 0), k)
	dst = fixLen(dst, p)
	p = len(dst)
	dst = s.vc.Append(append(dst, 0), fromWord[V](&e.words[s.bit]))
	return fixLen(dst, p), true
}

func (s *wordSection[K, V]) Name() string { return s.name }
func (s *wordSection[K, V]) Kind() Kind   { return KindValue }

// Keys is the number of keys with a value in the snapshot.
func (s *wordSection[K, V]) Keys() int64 { return s.keys }

func (s *wordSection[K, V]) AppendGroup(dst []byte, kg int) ([]byte, int) {
	return s.view.AppendColumn(dst, kg, s.col)
}

func (t *WordTable[K, V]) restore(p *restoredSection) error {
	for _, ge := range p.groups {
		i := ge.kg - t.e.first
		before, data := t.keys[i], ge.data
		t.e.flush() // the grow below moves the cached entry
		t.e.gs[i].grow(t.e.gs[i].n + ge.count)
		for len(data) > 0 {
			kb, vb, rest, ok := nextEntry(data)
			if !ok {
				return p.corrupt(ge.kg, nil, "truncated entry")
			}
			k, err := decodeKey(t.e.kc, kb)
			if err == nil {
				var v V
				if v, err = decodeValue(t.vc, vb); err == nil {
					e := t.e.Edit(ge.kg, t.e.hash(k), k)
					if e.has(t.bit) {
						err = fmt.Errorf("key %v: %w", k, errDuplicateKey)
					} else {
						e.set(t.bit)
						e.words[t.bit] = toWord(v)
						t.keys[i]++
					}
				}
			}
			if err != nil {
				return p.corrupt(ge.kg, err, "entry %d", t.keys[i]-before)
			}
			data = rest
		}
		if t.keys[i]-before != ge.count {
			return p.corrupt(ge.kg, nil, "%d new distinct keys, the block says %d entries", t.keys[i]-before, ge.count)
		}
	}
	return nil
}

var errDuplicateKey = fmt.Errorf("key restored twice")
