package statebackend

import (
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"strings"
)

// MaxKeyGroups is the largest number of key groups (maxParallelism) a job
// may have; state files store key groups as 16-bit-safe numbers below it.
const MaxKeyGroups = 1 << 15

// KeyGroupRange is an inclusive range of key groups. A range with Last <
// First is empty; KeyGroupRange{First: 0, Last: -1} is the usual spelling
// (the zero value is not empty: it is key group 0).
type KeyGroupRange struct {
	First int `json:"first"`
	Last  int `json:"last"`
}

// Len is the number of key groups in the range (0 when empty).
func (r KeyGroupRange) Len() int { return max(r.Last-r.First+1, 0) }

// Empty reports whether the range holds no key group.
func (r KeyGroupRange) Empty() bool { return r.Last < r.First }

// Contains reports whether kg is in the range.
func (r KeyGroupRange) Contains(kg int) bool { return kg >= r.First && kg <= r.Last }

// Intersect is the key groups in both r and o (possibly empty).
func (r KeyGroupRange) Intersect(o KeyGroupRange) KeyGroupRange {
	return KeyGroupRange{First: max(r.First, o.First), Last: min(r.Last, o.Last)}
}

// Overlaps reports whether r and o share a key group.
func (r KeyGroupRange) Overlaps(o KeyGroupRange) bool { return !r.Intersect(o).Empty() }

func (r KeyGroupRange) String() string { return fmt.Sprintf("[%d, %d]", r.First, r.Last) }

// Kind is the kind of a keyed state.
type Kind uint8

const (
	KindValue Kind = iota + 1
	KindMap
	KindList
	// KindTimers marks the runtime's timer section; no table has it.
	KindTimers
)

func (k Kind) String() string {
	switch k {
	case KindValue:
		return "value"
	case KindMap:
		return "map"
	case KindList:
		return "list"
	case KindTimers:
		return "timers"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) valid() bool { return k >= KindValue && k <= KindTimers }

// Codec serialises values of one type. It has the method set of
// runtime.Codec[T], so the runtime's codecs satisfy it.
type Codec[T any] interface {
	// Append appends the encoding of v to dst and returns the extended slice.
	Append(dst []byte, v T) []byte
	// Decode decodes one value from exactly src. On restore src points
	// into the buffer a state file was read into, which is never modified
	// but stays alive as long as a decoded value keeps a reference to it.
	Decode(src []byte) (T, error)
}

// Table is what all state tables share.
type Table interface {
	Name() string
	Kind() Kind
	// KeysInGroup counts the keys with state in key group kg.
	KeysInGroup(kg int) int
}

// table is what the backend needs of its tables beyond Table; the methods
// are unexported so that only this package's tables can be registered.
type table interface {
	Table
	// snapshot freezes the table and returns its copy-on-write view.
	snapshot() Section
	// restore decodes restored entries of the table's section into it.
	restore(p *restoredSection) error
}

// Backend holds the keyed state tables of one operator subtask.
type Backend struct {
	keyGroups KeyGroupRange
	tables    map[string]table
	order     []string
	// pending holds restored sections no table has claimed yet, by name;
	// a section may come from several files (a rescale merging subtasks).
	pending map[string][]*restoredSection
	// entries is the *Entries[K] of word tables and the runtime's
	// timers, if any (see EntriesOf).
	entries any
	// round counts Backend.Snapshot calls; the runtime's timer sections,
	// taken right after, share the entries' view of the same round.
	round uint64
}

// NewBackend creates an empty backend for the key groups r.
func NewBackend(r KeyGroupRange) *Backend {
	return &Backend{keyGroups: r, tables: map[string]table{}, pending: map[string][]*restoredSection{}}
}

// KeyGroups is the range of key groups this backend owns.
func (b *Backend) KeyGroups() KeyGroupRange { return b.keyGroups }

// Tables lists the registered tables in registration order.
func (b *Backend) Tables() []Table {
	out := make([]Table, len(b.order))
	for i, n := range b.order {
		out[i] = b.tables[n]
	}
	return out
}

// checkStateName rejects names the state file or the restore path cannot
// carry: names starting with '_' are the runtime's (timers), which Restore
// skips, so a user state of that name would silently never come back.
func checkStateName(name string) error {
	switch {
	case name == "":
		return errors.New("state name is empty")
	case hasReservedName(name):
		return fmt.Errorf("state name %q: names starting with '_' are reserved for the runtime", name)
	case len(name) > maxNameLen:
		return fmt.Errorf("state name %q is longer than %d bytes", name[:32]+"...", maxNameLen)
	}
	return nil
}

// hasReservedName reports names the runtime keeps for itself (timers).
func hasReservedName(name string) bool { return strings.HasPrefix(name, "_") }

// register adds t, or returns the table already registered under its name
// if it has the same kind and types (an operator reopening its state; the
// first registration's codecs stay). A new table first takes over any
// restored section of its name; if that fails it is not registered.
func register[T table](b *Backend, t T) (T, error) {
	var zero T
	name := t.Name()
	if old, ok := b.tables[name]; ok {
		same, ok := old.(T)
		if !ok {
			return zero, fmt.Errorf("state %q is already registered with another kind or type", name)
		}
		return same, nil
	}
	if err := checkStateName(name); err != nil {
		return zero, err
	}
	for _, p := range b.pending[name] {
		if err := restoreInto(t, p); err != nil {
			return zero, err
		}
	}
	delete(b.pending, name)
	b.tables[name] = t
	b.order = append(b.order, name)
	return t, nil
}

// ValueTable holds one value per key. Values are stored as given: a value
// of a reference type (pointer, slice, map) must not be modified after Put,
// or snapshots taken before would see the change.
//
// Each key group is a cowTable (see there): open addressing over the key's
// hash, with copy-on-write by page. The Hashed methods take the hash the
// caller already has; the others compute it.
type ValueTable[K comparable, V any] struct {
	name  string
	kc    Codec[K]
	vc    Codec[V]
	hash  func(K) int32
	first int
	gs    []cowTable[K, V]
}

// KeyHasher is implemented by key codecs that know the hash a job uses to
// assign keys to key groups (the runtime's KeyType). Tables with such a key
// codec accept that hash in their Hashed methods, so it is computed once
// per record; with another codec they hash keys themselves.
type KeyHasher[K any] interface {
	Hash(K) int32
}

// NewValueTable registers (or returns the existing) value table name;
// kc and vc serialise keys and values for snapshots and restores.
func NewValueTable[K comparable, V any](b *Backend, name string, kc Codec[K], vc Codec[V]) (*ValueTable[K, V], error) {
	t := &ValueTable[K, V]{name: name, kc: kc, vc: vc, first: b.keyGroups.First,
		gs: newTables[K, V](b.keyGroups.Len()), hash: keyHash(kc)}
	return register(b, t)
}

// keyHash is the hash tables probe with: the key codec's, if it is a
// KeyHasher, or else a seeded hash of the key.
func keyHash[K comparable](kc Codec[K]) func(K) int32 {
	if h, ok := kc.(KeyHasher[K]); ok {
		return h.Hash
	}
	seed := maphash.MakeSeed()
	return func(k K) int32 { return int32(maphash.Comparable(seed, k)) }
}

func (t *ValueTable[K, V]) Name() string           { return t.name }
func (t *ValueTable[K, V]) Kind() Kind             { return KindValue }
func (t *ValueTable[K, V]) KeysInGroup(kg int) int { return t.gs[kg-t.first].n }

// Get returns k's value in key group kg.
func (t *ValueTable[K, V]) Get(kg int, k K) (V, bool) { return t.GetHashed(kg, t.hash(k), k) }

// Put sets k's value in key group kg.
func (t *ValueTable[K, V]) Put(kg int, k K, v V) { t.PutHashed(kg, t.hash(k), k, v) }

// Delete drops k's value in key group kg.
func (t *ValueTable[K, V]) Delete(kg int, k K) { t.DeleteHashed(kg, t.hash(k), k) }

// GetHashed is Get with h, the key codec's Hash(k), given by the caller
// (see KeyHasher); a wrong h finds nothing or stores a duplicate.
func (t *ValueTable[K, V]) GetHashed(kg int, h int32, k K) (V, bool) {
	return t.gs[kg-t.first].get(uint32(h), k)
}

// PutHashed is Put with the key's hash (see GetHashed).
func (t *ValueTable[K, V]) PutHashed(kg int, h int32, k K, v V) {
	t.gs[kg-t.first].put(uint32(h), k, v)
}

// DeleteHashed is Delete with the key's hash (see GetHashed).
func (t *ValueTable[K, V]) DeleteHashed(kg int, h int32, k K) { t.gs[kg-t.first].del(uint32(h), k) }

// Group copies key group kg's entries into a new map (nil when empty), for
// tests and tools; it is not for the per-record path.
func (t *ValueTable[K, V]) Group(kg int) map[K]V {
	g := &t.gs[kg-t.first]
	if g.n == 0 {
		return nil
	}
	m := make(map[K]V, g.n)
	cowView[K, V]{pages: g.pages, n: g.n}.each(func(k K, v V) { m[k] = v })
	return m
}

// MapTable holds a map of user keys to values per key.
//
// Each key group is a cowTable of the keys' maps, copied on write by page
// like a ValueTable's, and each map is copied on write by itself: it
// carries the table version it was made under, and Put or Remove on a map
// of an older version (one a snapshot may hold) clones that map first.
// The first write to a key after a snapshot thus copies one page of slots
// and that key's map, never a key group (Flink's CopyOnWriteStateMap
// copies per entry the same way).
type MapTable[K comparable, UK comparable, V any] struct {
	name  string
	kc    Codec[K]
	ukc   Codec[UK]
	vc    Codec[V]
	hash  func(K) int32
	first int
	gs    []cowTable[K, userMap[UK, V]]
}

// userMap is one key's map and the version of its table it was made or
// cloned under.
type userMap[UK comparable, V any] struct {
	m   map[UK]V
	ver uint32
}

// NewMapTable registers (or returns the existing) map table name.
func NewMapTable[K comparable, UK comparable, V any](b *Backend, name string, kc Codec[K], ukc Codec[UK], vc Codec[V]) (*MapTable[K, UK, V], error) {
	return register(b, &MapTable[K, UK, V]{name: name, kc: kc, ukc: ukc, vc: vc, hash: keyHash(kc),
		first: b.keyGroups.First, gs: newTables[K, userMap[UK, V]](b.keyGroups.Len())})
}

func (t *MapTable[K, UK, V]) Name() string           { return t.name }
func (t *MapTable[K, UK, V]) Kind() Kind             { return KindMap }
func (t *MapTable[K, UK, V]) KeysInGroup(kg int) int { return t.gs[kg-t.first].n }

// Map returns k's map, or nil when k has none; callers MUST NOT modify it.
func (t *MapTable[K, UK, V]) Map(kg int, k K) map[UK]V {
	if e := t.gs[kg-t.first].ref(uint32(t.hash(k)), k); e != nil {
		return e.m
	}
	return nil
}

// writable returns k's map ready for writing, made or cloned as needed.
func (t *MapTable[K, UK, V]) writable(kg int, h uint32, k K) map[UK]V {
	g := &t.gs[kg-t.first]
	e := g.upsert(h, k)
	switch {
	case e.m == nil:
		*e = userMap[UK, V]{m: make(map[UK]V), ver: g.ver}
	case e.ver != g.ver:
		*e = userMap[UK, V]{m: maps.Clone(e.m), ver: g.ver}
	}
	return e.m
}

// Put sets uk to v in k's map, creating it if needed.
func (t *MapTable[K, UK, V]) Put(kg int, k K, uk UK, v V) {
	t.writable(kg, uint32(t.hash(k)), k)[uk] = v
}

// Remove deletes uk from k's map and drops the map once empty.
func (t *MapTable[K, UK, V]) Remove(kg int, k K, uk UK) {
	g, h := &t.gs[kg-t.first], uint32(t.hash(k))
	e := g.ref(h, k)
	if e == nil {
		return
	}
	if _, ok := e.m[uk]; !ok {
		return // nothing to remove, so nothing to copy
	}
	if len(e.m) == 1 {
		g.del(h, k)
		return
	}
	delete(t.writable(kg, h, k), uk)
}

// Group copies key group kg's maps into a new map (nil when empty), for
// tests and tools; the inner maps are the table's, not to be modified.
func (t *MapTable[K, UK, V]) Group(kg int) map[K]map[UK]V {
	g := &t.gs[kg-t.first]
	if g.n == 0 {
		return nil
	}
	out := make(map[K]map[UK]V, g.n)
	cowView[K, userMap[UK, V]]{pages: g.pages, n: g.n}.each(func(k K, e userMap[UK, V]) { out[k] = e.m })
	return out
}

// Clear drops k's map.
func (t *MapTable[K, UK, V]) Clear(kg int, k K) { t.gs[kg-t.first].del(uint32(t.hash(k)), k) }

// ListTable holds a list of values per key.
//
// Each key group is a cowTable of the keys' lists, copied on write by
// page; the lists themselves are shared between the table and its
// snapshots. That is safe because the table writes into a list's array
// only in Append, at index len(l) of the live list l, and every other
// slice of that array is a prefix of l no longer than len(l): lists grow
// only by Append, and Set clips the slice it stores to its length, so the
// caller's slice (which may be a snapshot's list's prefix) is never
// appended to in place. A snapshot's list of length n therefore never
// sees its first n elements change.
type ListTable[K comparable, V any] struct {
	name  string
	kc    Codec[K]
	vc    Codec[V]
	hash  func(K) int32
	first int
	gs    []cowTable[K, []V]
}

// NewListTable registers (or returns the existing) list table name.
func NewListTable[K comparable, V any](b *Backend, name string, kc Codec[K], vc Codec[V]) (*ListTable[K, V], error) {
	return register(b, &ListTable[K, V]{name: name, kc: kc, vc: vc, hash: keyHash(kc),
		first: b.keyGroups.First, gs: newTables[K, []V](b.keyGroups.Len())})
}

func (t *ListTable[K, V]) Name() string           { return t.name }
func (t *ListTable[K, V]) Kind() Kind             { return KindList }
func (t *ListTable[K, V]) KeysInGroup(kg int) int { return t.gs[kg-t.first].n }

// List returns k's list (nil when empty); callers MUST NOT modify it.
func (t *ListTable[K, V]) List(kg int, k K) []V {
	l, _ := t.gs[kg-t.first].get(uint32(t.hash(k)), k)
	return l
}

// Append adds v to k's list.
func (t *ListTable[K, V]) Append(kg int, k K, v V) {
	l := t.gs[kg-t.first].upsert(uint32(t.hash(k)), k)
	*l = append(*l, v)
}

// Set replaces k's list with l, which the table then owns; an empty list
// clears it.
func (t *ListTable[K, V]) Set(kg int, k K, l []V) {
	if len(l) == 0 {
		t.Clear(kg, k)
		return
	}
	t.gs[kg-t.first].put(uint32(t.hash(k)), k, l[:len(l):len(l)]) // see ListTable on why the clip
}

// Group copies key group kg's lists into a new map (nil when empty), for
// tests and tools; the lists are the table's, not to be modified.
func (t *ListTable[K, V]) Group(kg int) map[K][]V {
	g := &t.gs[kg-t.first]
	if g.n == 0 {
		return nil
	}
	out := make(map[K][]V, g.n)
	cowView[K, []V]{pages: g.pages, n: g.n}.each(func(k K, l []V) { out[k] = l })
	return out
}

// Clear drops k's list.
func (t *ListTable[K, V]) Clear(kg int, k K) { t.gs[kg-t.first].del(uint32(t.hash(k)), k) }
