package statebackend

import "fmt"

// keyLister is implemented by the tables of key type K: it lists the keys
// of one key group that hold a value.
type keyLister[K comparable] interface {
	appendKeys(dst []K, kg int) []K
}

// AppendKeys appends to dst the keys of key group kg that hold a value in
// the table registered as name, in no particular order, and returns the
// extended slice. The keys are copied out, so the caller may change the
// table afterwards, even while going through them (Flink's heap backend
// copies the keys for the same reason before applying a function to each).
// An unknown name, a key group outside the backend's range or a key type
// other than the table's is an error.
func AppendKeys[K comparable](b *Backend, name string, kg int, dst []K) ([]K, error) {
	t, ok := b.tables[name]
	if !ok {
		return dst, fmt.Errorf("no keyed state %q is registered", name)
	}
	if !b.keyGroups.Contains(kg) {
		return dst, fmt.Errorf("key group %d is not in %v", kg, b.keyGroups)
	}
	l, ok := t.(keyLister[K])
	if !ok {
		var k K
		return dst, fmt.Errorf("keyed state %q does not have keys of type %T", name, k)
	}
	return l.appendKeys(dst, kg), nil
}

// appendKeys appends the keys of g's live table (not a snapshot's view).
func appendKeys[K comparable, V any](dst []K, g *cowTable[K, V]) []K {
	if g.n == 0 {
		return dst
	}
	for _, p := range g.pages {
		for i := range p {
			if p[i].full {
				dst = append(dst, p[i].key)
			}
		}
	}
	return dst
}

func (t *ValueTable[K, V]) appendKeys(dst []K, kg int) []K {
	return appendKeys(dst, &t.gs[kg-t.first])
}

func (t *MapTable[K, UK, V]) appendKeys(dst []K, kg int) []K {
	return appendKeys(dst, &t.gs[kg-t.first])
}

func (t *ListTable[K, V]) appendKeys(dst []K, kg int) []K {
	return appendKeys(dst, &t.gs[kg-t.first])
}

// appendKeys lists the entries holding this table's word only: an entry
// may hold other words or timers alone, and the entry last found may be
// empty (see Entries).
func (t *WordTable[K, V]) appendKeys(dst []K, kg int) []K {
	if t.keys[kg-t.e.first] == 0 {
		return dst
	}
	for _, p := range t.e.gs[kg-t.e.first].pages {
		for i := range p {
			if p[i].full && p[i].val.has(t.bit) {
				dst = append(dst, p[i].key)
			}
		}
	}
	return dst
}
