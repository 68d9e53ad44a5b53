// Package statebackend keeps keyed state in memory, organised one table per
// key group. Key groups are the unit Weir snapshots, restores and moves when
// a job is rescaled, so every table is split by key group from the start: a
// snapshot can write key groups one after another with an offset index, and
// a restore at another parallelism reads only the groups its subtask owns.
//
// Tables are generic and owned by one task goroutine; they are not safe for
// concurrent use.
package statebackend

import "fmt"

// KeyGroupRange is an inclusive range of key groups.
type KeyGroupRange struct {
	First, Last int
}

// Len is the number of key groups in the range.
func (r KeyGroupRange) Len() int { return r.Last - r.First + 1 }

// Contains reports whether kg is in the range.
func (r KeyGroupRange) Contains(kg int) bool { return kg >= r.First && kg <= r.Last }

func (r KeyGroupRange) String() string { return fmt.Sprintf("[%d, %d]", r.First, r.Last) }

// Kind is the kind of a keyed state.
type Kind uint8

const (
	KindValue Kind = iota + 1
	KindMap
	KindList
)

// Table is what all state tables share: the backend lists them to snapshot.
type Table interface {
	Name() string
	Kind() Kind
	// KeysInGroup counts the keys with state in key group kg.
	KeysInGroup(kg int) int
}

// Backend holds the keyed state tables of one operator subtask.
type Backend struct {
	keyGroups KeyGroupRange
	tables    map[string]Table
	order     []string
}

// NewBackend creates an empty backend for the key groups r.
func NewBackend(r KeyGroupRange) *Backend {
	return &Backend{keyGroups: r, tables: map[string]Table{}}
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

// register adds t, or returns the table already registered under its name
// if it has the same kind and types (an operator reopening its state).
func register[T Table](b *Backend, t T) (T, error) {
	if old, ok := b.tables[t.Name()]; ok {
		same, ok := old.(T)
		if !ok {
			var zero T
			return zero, fmt.Errorf("state %q is already registered with another kind or type", t.Name())
		}
		return same, nil
	}
	b.tables[t.Name()] = t
	b.order = append(b.order, t.Name())
	return t, nil
}

// groups is a lazily allocated map per key group.
type groups[K comparable, V any] struct {
	first int
	maps  []map[K]V
}

func newGroups[K comparable, V any](r KeyGroupRange) groups[K, V] {
	return groups[K, V]{first: r.First, maps: make([]map[K]V, r.Len())}
}

func (g *groups[K, V]) get(kg int, k K) (V, bool) {
	m := g.maps[kg-g.first]
	v, ok := m[k] // reading a nil map is fine
	return v, ok
}

func (g *groups[K, V]) put(kg int, k K, v V) {
	m := g.maps[kg-g.first]
	if m == nil {
		m = make(map[K]V)
		g.maps[kg-g.first] = m
	}
	m[k] = v
}

func (g *groups[K, V]) del(kg int, k K) { delete(g.maps[kg-g.first], k) }

func (g *groups[K, V]) keys(kg int) int { return len(g.maps[kg-g.first]) }

// Group exposes key group kg's entries for snapshots; callers MUST NOT
// modify the map.
func (g *groups[K, V]) Group(kg int) map[K]V { return g.maps[kg-g.first] }

// ValueTable holds one value per key.
type ValueTable[K comparable, V any] struct {
	name string
	groups[K, V]
}

// NewValueTable registers (or returns the existing) value table name.
func NewValueTable[K comparable, V any](b *Backend, name string) (*ValueTable[K, V], error) {
	return register(b, &ValueTable[K, V]{name: name, groups: newGroups[K, V](b.keyGroups)})
}

func (t *ValueTable[K, V]) Name() string              { return t.name }
func (t *ValueTable[K, V]) Kind() Kind                { return KindValue }
func (t *ValueTable[K, V]) KeysInGroup(kg int) int    { return t.keys(kg) }
func (t *ValueTable[K, V]) Get(kg int, k K) (V, bool) { return t.get(kg, k) }
func (t *ValueTable[K, V]) Put(kg int, k K, v V)      { t.put(kg, k, v) }
func (t *ValueTable[K, V]) Delete(kg int, k K)        { t.del(kg, k) }

// MapTable holds a map of user keys to values per key.
type MapTable[K comparable, UK comparable, V any] struct {
	name string
	groups[K, map[UK]V]
}

// NewMapTable registers (or returns the existing) map table name.
func NewMapTable[K comparable, UK comparable, V any](b *Backend, name string) (*MapTable[K, UK, V], error) {
	return register(b, &MapTable[K, UK, V]{name: name, groups: newGroups[K, map[UK]V](b.keyGroups)})
}

func (t *MapTable[K, UK, V]) Name() string           { return t.name }
func (t *MapTable[K, UK, V]) Kind() Kind             { return KindMap }
func (t *MapTable[K, UK, V]) KeysInGroup(kg int) int { return t.keys(kg) }

// Map returns k's map, or nil when k has none.
func (t *MapTable[K, UK, V]) Map(kg int, k K) map[UK]V {
	m, _ := t.get(kg, k)
	return m
}

// Put sets uk to v in k's map, creating it if needed.
func (t *MapTable[K, UK, V]) Put(kg int, k K, uk UK, v V) {
	m, ok := t.get(kg, k)
	if !ok {
		m = make(map[UK]V)
		t.put(kg, k, m)
	}
	m[uk] = v
}

// Remove deletes uk from k's map and drops the map once empty.
func (t *MapTable[K, UK, V]) Remove(kg int, k K, uk UK) {
	m, ok := t.get(kg, k)
	if !ok {
		return
	}
	delete(m, uk)
	if len(m) == 0 {
		t.del(kg, k)
	}
}

// Clear drops k's map.
func (t *MapTable[K, UK, V]) Clear(kg int, k K) { t.del(kg, k) }

// ListTable holds a list of values per key.
type ListTable[K comparable, V any] struct {
	name string
	groups[K, []V]
}

// NewListTable registers (or returns the existing) list table name.
func NewListTable[K comparable, V any](b *Backend, name string) (*ListTable[K, V], error) {
	return register(b, &ListTable[K, V]{name: name, groups: newGroups[K, []V](b.keyGroups)})
}

func (t *ListTable[K, V]) Name() string           { return t.name }
func (t *ListTable[K, V]) Kind() Kind             { return KindList }
func (t *ListTable[K, V]) KeysInGroup(kg int) int { return t.keys(kg) }

// List returns k's list (nil when empty); callers MUST NOT modify it.
func (t *ListTable[K, V]) List(kg int, k K) []V {
	l, _ := t.get(kg, k)
	return l
}

// Append adds v to k's list.
func (t *ListTable[K, V]) Append(kg int, k K, v V) {
	l, _ := t.get(kg, k)
	t.put(kg, k, append(l, v))
}

// Set replaces k's list; an empty list clears it.
func (t *ListTable[K, V]) Set(kg int, k K, l []V) {
	if len(l) == 0 {
		t.del(kg, k)
		return
	}
	t.put(kg, k, l)
}

// Clear drops k's list.
func (t *ListTable[K, V]) Clear(kg int, k K) { t.del(kg, k) }
