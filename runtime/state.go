package runtime

import (
	"iter"
	"maps"

	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/pebblestate"
)

// ValueState holds one value for the current key (Flink's ValueState).
type ValueState[V any] interface {
	// Value returns the current key's value and whether it has one.
	Value() (V, bool)
	Update(v V)
	Clear()
}

// MapState holds a map for the current key (Flink's MapState).
type MapState[UK comparable, V any] interface {
	Get(uk UK) (V, bool)
	Put(uk UK, v V)
	Remove(uk UK)
	Contains(uk UK) bool
	Len() int
	// All iterates the current key's entries; do not modify the state
	// while iterating.
	All() iter.Seq2[UK, V]
	Clear()
}

// ListState holds a list for the current key (Flink's ListState).
type ListState[V any] interface {
	// Get returns the current key's list; do not modify it.
	Get() []V
	Add(v V)
	Update(l []V)
	Clear()
}

type valueState[K comparable, V any] struct {
	ctx   *KeyedContext[K]
	t     *statebackend.ValueTable[K, V]
	codec Codec[V]
}

// GetValueState registers (or reopens) the value state name of a keyed
// operator. codec serialises values for snapshots.
//
// The operator's first word-sized states (bool, numbers) live inline in
// the key's entry, beside its timers (statebackend.WordTable), so a
// record touching them and its timer finds one entry; other states have a
// table of their own.
func GetValueState[K comparable, V any](ctx *KeyedContext[K], name string, codec Codec[V]) (ValueState[V], error) {
	if ctx.lsm != nil {
		t, err := pebblestate.NewValueTable[K, V](ctx.lsm, name, ctx.kt, codec)
		if err != nil {
			return nil, err
		}
		ctx.lsmPrefetch = append(ctx.lsmPrefetch, t)
		return &pebbleValueState[K, V]{ctx: ctx, t: t}, nil
	}
	if w, ok, err := statebackend.NewWordTable[K, V](ctx.backend, name, ctx.kt, codec); err != nil {
		return nil, err
	} else if ok {
		return &wordState[K, V]{ctx: ctx, t: w}, nil
	}
	t, err := statebackend.NewValueTable[K, V](ctx.backend, name, ctx.kt, codec)
	if err != nil {
		return nil, err
	}
	return &valueState[K, V]{ctx: ctx, t: t, codec: codec}, nil
}

func (s *valueState[K, V]) Value() (V, bool) { return s.t.GetHashed(s.ctx.kg, s.ctx.hash, s.ctx.key) }
func (s *valueState[K, V]) Update(v V)       { s.t.PutHashed(s.ctx.kg, s.ctx.hash, s.ctx.key, v) }
func (s *valueState[K, V]) Clear()           { s.t.DeleteHashed(s.ctx.kg, s.ctx.hash, s.ctx.key) }

type wordState[K comparable, V any] struct {
	ctx *KeyedContext[K]
	t   *statebackend.WordTable[K, V]
}

func (s *wordState[K, V]) Value() (V, bool) { return s.t.GetHashed(s.ctx.kg, s.ctx.hash, s.ctx.key) }
func (s *wordState[K, V]) Update(v V)       { s.t.PutHashed(s.ctx.kg, s.ctx.hash, s.ctx.key, v) }
func (s *wordState[K, V]) Clear()           { s.t.DeleteHashed(s.ctx.kg, s.ctx.hash, s.ctx.key) }

type mapState[K comparable, UK comparable, V any] struct {
	ctx      *KeyedContext[K]
	t        *statebackend.MapTable[K, UK, V]
	keyCodec Codec[UK]
	codec    Codec[V]
}

// GetMapState registers (or reopens) the map state name of a keyed operator.
func GetMapState[K comparable, UK comparable, V any](ctx *KeyedContext[K], name string, keyCodec Codec[UK], codec Codec[V]) (MapState[UK, V], error) {
	if ctx.lsm != nil {
		t, err := pebblestate.NewMapTable[K, UK, V](ctx.lsm, name, ctx.kt, keyCodec, codec)
		if err != nil {
			return nil, err
		}
		return &pebbleMapState[K, UK, V]{ctx: ctx, t: t}, nil
	}
	t, err := statebackend.NewMapTable[K, UK, V](ctx.backend, name, ctx.kt, keyCodec, codec)
	if err != nil {
		return nil, err
	}
	return &mapState[K, UK, V]{ctx: ctx, t: t, keyCodec: keyCodec, codec: codec}, nil
}

func (s *mapState[K, UK, V]) Get(uk UK) (V, bool) {
	v, ok := s.t.Map(s.ctx.kg, s.ctx.key)[uk]
	return v, ok
}
func (s *mapState[K, UK, V]) Put(uk UK, v V) { s.t.Put(s.ctx.kg, s.ctx.key, uk, v) }
func (s *mapState[K, UK, V]) Remove(uk UK)   { s.t.Remove(s.ctx.kg, s.ctx.key, uk) }
func (s *mapState[K, UK, V]) Contains(uk UK) bool {
	_, ok := s.t.Map(s.ctx.kg, s.ctx.key)[uk]
	return ok
}
func (s *mapState[K, UK, V]) Len() int              { return len(s.t.Map(s.ctx.kg, s.ctx.key)) }
func (s *mapState[K, UK, V]) All() iter.Seq2[UK, V] { return maps.All(s.t.Map(s.ctx.kg, s.ctx.key)) }
func (s *mapState[K, UK, V]) Clear()                { s.t.Clear(s.ctx.kg, s.ctx.key) }

type listState[K comparable, V any] struct {
	ctx   *KeyedContext[K]
	t     *statebackend.ListTable[K, V]
	codec Codec[V]
}

// GetListState registers (or reopens) the list state name of a keyed operator.
func GetListState[K comparable, V any](ctx *KeyedContext[K], name string, codec Codec[V]) (ListState[V], error) {
	if ctx.lsm != nil {
		t, err := pebblestate.NewListTable[K, V](ctx.lsm, name, ctx.kt, codec)
		if err != nil {
			return nil, err
		}
		return &pebbleListState[K, V]{ctx: ctx, t: t}, nil
	}
	t, err := statebackend.NewListTable[K, V](ctx.backend, name, ctx.kt, codec)
	if err != nil {
		return nil, err
	}
	return &listState[K, V]{ctx: ctx, t: t, codec: codec}, nil
}

func (s *listState[K, V]) Get() []V { return s.t.List(s.ctx.kg, s.ctx.key) }
func (s *listState[K, V]) Add(v V)  { s.t.Append(s.ctx.kg, s.ctx.key, v) }
func (s *listState[K, V]) Update(l []V) {
	s.t.Set(s.ctx.kg, s.ctx.key, append([]V(nil), l...))
}
func (s *listState[K, V]) Clear() { s.t.Clear(s.ctx.kg, s.ctx.key) }
