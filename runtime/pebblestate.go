package runtime

import (
	"fmt"
	"iter"
	"os"
	"strings"

	"github.com/weirstream/weir/statebackend/pebblestate"
)

// State backend kinds (StateBackend.Kind).
const (
	StateBackendMemory = "memory"
	StateBackendPebble = "pebble"
)

// Timer services of pebble operators (StateBackend.Timers), as Flink's
// RocksDB backend offers timer-service.factory HEAP or ROCKSDB.
const (
	// TimerServiceStore keeps a pebble operator's timers in its store
	// (pebblestate.TimerQueue), bounded by disk, behind an in-memory tier
	// within the slot's budget: a timer registered and deleted while in
	// the tier costs no Pebble write. The default.
	TimerServiceStore = "store"
	// TimerServiceHeap keeps them in memory, in the memory backend's
	// timer service: no Pebble write per timer, but every timer in
	// memory.
	TimerServiceHeap = "heap"
)

// ParseTimerService checks a timer service's name; "" is the store.
func ParseTimerService(name string) (string, error) {
	switch name {
	case "", TimerServiceStore:
		return TimerServiceStore, nil
	case TimerServiceHeap:
		return name, nil
	}
	return "", fmt.Errorf("unknown timer service %q (want %s or %s)", name, TimerServiceStore, TimerServiceHeap)
}

// StateBackend says where keyed operators keep their state: in memory
// tables (the default) or in an embedded Pebble store on local disk, one
// per keyed operator subtask, for state larger than memory. With Pebble
// the operator's timers are in the store too (pebblestate.TimerQueue),
// unless Timers is TimerServiceHeap. Snapshots hold timers in the same
// sections either way, so a savepoint taken with one timer service
// restores with the other; a native checkpoint's timers are moved too.
type StateBackend struct {
	// Kind is StateBackendMemory ("" too) or StateBackendPebble.
	Kind string
	// Timers is where pebble operators keep their timers:
	// TimerServiceStore ("" too) or TimerServiceHeap. The memory backend
	// has only the heap.
	Timers string
	// Dir is where Pebble stores get their directories; "" is the
	// system's temporary directory. Each store's directory is removed
	// when its task ends.
	Dir string
	// Memory, when set, is the memory budget of the slot the task runs
	// in, shared by its stores (pebblestate.Budget); nil gives each store
	// the fixed defaults of pebblestate.Options.
	Memory *pebblestate.Budget
	// FS, when set, is the file system the stores use instead of the
	// operating system's (tests inject a full disk through it).
	FS pebblestate.FS
	// Changelog, when set, makes the stores' native (incremental)
	// checkpoints changelog checkpoints: a materialization now and then,
	// plus the changelog since (pebblestate.ChangelogOptions).
	Changelog *pebblestate.ChangelogOptions
}

// ParseStateBackend checks a state backend's name; "" is memory.
func ParseStateBackend(kind string) (string, error) {
	switch kind {
	case "", StateBackendMemory:
		return StateBackendMemory, nil
	case StateBackendPebble:
		return kind, nil
	}
	return "", fmt.Errorf("unknown state backend %q (want %s or %s)", kind, StateBackendMemory, StateBackendPebble)
}

// open makes a Pebble store for a keyed operator subtask, in a directory
// of its own.
func (b StateBackend) open(rc *RuntimeContext, kgs KeyGroupRange) (*pebblestate.Store, error) {
	parent := b.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == os.PathSeparator {
			return '_'
		}
		return r
	}, fmt.Sprintf("%s-%d-%s-%d-", rc.jobID, rc.attempt, rc.uid, rc.subtask))
	dir, err := os.MkdirTemp(parent, name)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	s, err := pebblestate.Open(pebblestate.Options{Dir: dir, KeyGroups: kgs, FS: b.FS, Budget: b.Memory, Changelog: b.Changelog})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// keyPrefetcher is a pebble value table as a keyed operator holding
// records back sees it (pebblestate.ValueTable.Prefetch).
type keyPrefetcher[K comparable] interface {
	Prefetch(k K)
}

type pebbleValueState[K comparable, V any] struct {
	ctx *KeyedContext[K]
	t   *pebblestate.ValueTable[K, V]
}

func (s *pebbleValueState[K, V]) Value() (V, bool) { return s.t.Get(s.ctx.kg, s.ctx.key) }
func (s *pebbleValueState[K, V]) Update(v V)       { s.t.Put(s.ctx.kg, s.ctx.key, v) }
func (s *pebbleValueState[K, V]) Clear()           { s.t.Delete(s.ctx.kg, s.ctx.key) }

type pebbleMapState[K comparable, UK comparable, V any] struct {
	ctx *KeyedContext[K]
	t   *pebblestate.MapTable[K, UK, V]
}

func (s *pebbleMapState[K, UK, V]) Get(uk UK) (V, bool) { return s.t.Get(s.ctx.kg, s.ctx.key, uk) }
func (s *pebbleMapState[K, UK, V]) Put(uk UK, v V)      { s.t.Put(s.ctx.kg, s.ctx.key, uk, v) }
func (s *pebbleMapState[K, UK, V]) Remove(uk UK)        { s.t.Remove(s.ctx.kg, s.ctx.key, uk) }
func (s *pebbleMapState[K, UK, V]) Contains(uk UK) bool {
	_, ok := s.t.Get(s.ctx.kg, s.ctx.key, uk)
	return ok
}
func (s *pebbleMapState[K, UK, V]) Len() int              { return s.t.Len(s.ctx.kg, s.ctx.key) }
func (s *pebbleMapState[K, UK, V]) All() iter.Seq2[UK, V] { return s.t.All(s.ctx.kg, s.ctx.key) }
func (s *pebbleMapState[K, UK, V]) Clear()                { s.t.Clear(s.ctx.kg, s.ctx.key) }

type pebbleListState[K comparable, V any] struct {
	ctx *KeyedContext[K]
	t   *pebblestate.ListTable[K, V]
}

func (s *pebbleListState[K, V]) Get() []V     { return s.t.List(s.ctx.kg, s.ctx.key) }
func (s *pebbleListState[K, V]) Add(v V)      { s.t.Append(s.ctx.kg, s.ctx.key, v) }
func (s *pebbleListState[K, V]) Update(l []V) { s.t.Set(s.ctx.kg, s.ctx.key, l) }
func (s *pebbleListState[K, V]) Clear()       { s.t.Clear(s.ctx.kg, s.ctx.key) }
