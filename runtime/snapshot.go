package runtime

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/pebblestate"
)

// TaskRestore is the state a subtask starts from.
type TaskRestore struct {
	CheckpointID int64
	// Operators holds, by operator UID, what each chained operator gets
	// back. Operators missing here start empty (new in this version of
	// the job).
	Operators map[string]*OperatorRestore
}

// OperatorRestore is one operator subtask's restored state: the keyed
// state of its key groups, read from every old subtask file overlapping
// them, and the union of all old subtasks' operator state entries.
type OperatorRestore struct {
	Keyed         []*statebackend.KeyedState
	OperatorState [][]byte
	// Native holds the native checkpoints (downloaded Pebble files) of
	// the old subtasks overlapping the key groups, when the checkpoint is
	// an incremental pebble one; Keyed then holds their timers. The
	// restore removes their directories.
	Native []pebblestate.NativeState
}

// DiscardNative removes the directories of the native checkpoints no
// operator took over; r may be nil.
func (r *TaskRestore) DiscardNative() {
	if r == nil {
		return
	}
	for _, o := range r.Operators {
		o.discardNative()
	}
}

// discardNative removes the native checkpoints' directories.
func (r *OperatorRestore) discardNative() {
	for _, n := range r.Native {
		os.RemoveAll(n.Dir)
	}
}

// operatorState is how the task snapshots one chained operator.
type operatorState struct {
	uid       string
	keyGroups KeyGroupRange // empty for operators without keyed state
	keyed     func() ([]statebackend.Section, error)
	fn        CheckpointedFunction
	// inc tracks the chain of incremental checkpoints; nil when the job's
	// checkpoints are full or the operator has no keyed state.
	inc *statebackend.Incremental
	// native takes a native checkpoint of a Pebble operator's keyed
	// state and the other keyed sections (timers), when the job's
	// checkpoints are incremental; uploads remembers the SSTs they
	// uploaded. nil otherwise.
	native  func(id int64) (*pebblestate.Checkpoint, []statebackend.Section, error)
	uploads *statebackend.NativeUploads
}

type operatorSnapshot struct {
	st       *operatorState
	sections []statebackend.Section
	entries  [][]byte
	// async, if set, produces the entries on the upload goroutine.
	async func(context.Context) ([][]byte, error)

	// id is the checkpoint's ID, for incremental checkpoints.
	id int64
}

// timersSection names the keyed-state section holding a keyed operator's
// processing-time timers.
const timersSection = "_timers"

// eventTimersSection holds its event-time timers.
const eventTimersSection = "_event_timers"

// Snapshot implements engine.Chain: the synchronous part of checkpoint
// id (copy-on-write views of keyed state, of the timers, operator
// state), and for each stateful operator the function that encodes its
// state file off the task goroutine.
func (c *chain) Snapshot(id int64, savepoint bool) ([]engine.StateSnapshot, error) {
	// What the flushers emit reaches the chained operators after them
	// before those snapshot, and the writers before the barrier.
	for _, f := range c.flushers {
		if err := f.FlushPreBarrier(id); err != nil {
			return nil, fmt.Errorf("flush before barrier %d: %w", id, err)
		}
	}
	out := make([]engine.StateSnapshot, 0, len(c.states))
	for _, st := range c.states {
		s := &operatorSnapshot{st: st}
		var err error
		var native *nativeSnapshot
		switch {
		case st.native != nil && !savepoint:
			// Savepoints stay in the common format, self-contained.
			native = &nativeSnapshot{uploads: st.uploads, id: id}
			if native.cp, s.sections, err = st.native(id); err != nil {
				return out, fmt.Errorf("operator %s: %w", st.uid, err)
			}
		case st.keyed != nil:
			if s.sections, err = st.keyed(); err != nil {
				return out, fmt.Errorf("operator %s: %w", st.uid, err)
			}
		}
		if a, ok := st.fn.(AsyncSnapshotter); ok {
			s.async, err = a.SnapshotStateAsync(id)
		} else if st.fn != nil {
			s.entries, err = st.fn.SnapshotState(id)
		}
		if err != nil {
			if native != nil {
				native.Release()
			}
			return out, fmt.Errorf("operator %s: %w", st.uid, err)
		}
		ss := engine.StateSnapshot{UID: st.uid, KeyGroups: st.keyGroups, Encode: s.encode,
			Keys: func() int64 { return countKeys(s.sections, st.keyGroups) }}
		if native != nil {
			ss.Native = native
		} else if st.inc != nil {
			s.id = id
			ss.Incremental = s
		}
		out = append(out, ss)
	}
	return out, nil
}

// nativeSnapshot is an operator's native checkpoint as the uploader sees
// it (engine.NativeSnapshot).
type nativeSnapshot struct {
	cp      *pebblestate.Checkpoint
	uploads *statebackend.NativeUploads
	id      int64
}

func (n *nativeSnapshot) Dir() string { return n.cp.Dir() }
func (n *nativeSnapshot) Files(ctx context.Context) ([]string, error) {
	return n.cp.Files(ctx)
}
func (n *nativeSnapshot) Shared(name string) bool { return pebblestate.Shared(name) }
func (n *nativeSnapshot) Release()                { n.cp.Release() }

func (n *nativeSnapshot) Uploaded(baseID int64) map[string]statebackend.FileRef {
	return n.uploads.Base(baseID)
}

func (n *nativeSnapshot) Stored(chain []statebackend.FileRef) { n.uploads.Stored(n.id, chain) }

// Delta implements engine.IncrementalSnapshot: the changes since
// checkpoint baseID, whose chain the file extends. Any checkpoint this
// subtask stored before is older than this snapshot.
func (s *operatorSnapshot) Delta(ctx context.Context, baseID int64) ([]byte, []statebackend.FileRef, bool, error) {
	baseSections, baseChain, ok := s.st.inc.Base(baseID)
	if !ok {
		return nil, nil, false, nil
	}
	if s.async != nil {
		var err error
		if s.entries, err = s.async(ctx); err != nil {
			return nil, nil, false, err
		}
		s.async = nil
	}
	data, err := statebackend.WriteDeltaFile(s.st.keyGroups, baseSections, s.sections, s.entries)
	return data, baseChain, err == nil, err
}

// Stored implements engine.IncrementalSnapshot.
func (s *operatorSnapshot) Stored(chain []statebackend.FileRef) {
	s.st.inc.Stored(s.id, s.sections, chain)
}

// encode runs the operator's asynchronous snapshot part, if any, and
// writes its state file.
func (s *operatorSnapshot) encode(ctx context.Context) ([]byte, error) {
	// Sections reading a Pebble snapshot hold it open until released.
	defer func() {
		for _, sec := range s.sections {
			if r, ok := sec.(interface{ Release() }); ok {
				r.Release()
			}
		}
	}()
	if s.async != nil {
		var err error
		if s.entries, err = s.async(ctx); err != nil {
			return nil, err
		}
	}
	data, err := statebackend.WriteStateFile(s.st.keyGroups, s.sections, s.entries)
	if err != nil {
		return nil, err
	}
	for _, sec := range s.sections {
		if e, ok := sec.(interface{ Err() error }); ok {
			if err := e.Err(); err != nil {
				return nil, fmt.Errorf("reading state %q: %w", sec.Name(), err)
			}
		}
	}
	return data, nil
}

// countKeys counts the keys of the first keyed section, for reports.
func countKeys(sections []statebackend.Section, r KeyGroupRange) int64 {
	for _, s := range sections {
		if c, ok := s.(interface{ Keys() int64 }); ok {
			return c.Keys()
		}
	}
	return 0
}

// timerSection is a snapshot of a keyed operator's timers of one domain:
// a view of the entry table, whose entries hold each key's first timer,
// and the timer heap's copy-on-write pages for further timers, both
// frozen synchronously in O(key groups + pages). The heap's timers are
// grouped by key group on the writer's goroutine.
type timerSection[K comparable] struct {
	name      string
	d         int
	view      statebackend.EntriesView[K]
	col       int // the inline timers' column of view
	pages     []*cowPage[timerSlot[K]]
	n         int32 // slots in pages; free ones are not live
	codec     Codec[K]
	keyGroups KeyGroupRange

	once    sync.Once
	sorted  []timerEntry[K] // heap entries ordered by key group
	offsets []int           // sorted[offsets[i]:offsets[i+1]] is key group First+i
}

func newTimerSection[K comparable](name string, s *timerService[K], codec Codec[K], r KeyGroupRange) *timerSection[K] {
	pages, n := s.more.ents.snapshot()
	t := &timerSection[K]{name: name, d: s.d, view: s.entries.Snapshot(), pages: pages, n: n, codec: codec, keyGroups: r}
	t.col = t.view.Column(t.encodeInline)
	return t
}

// encodeInline is the section's column of the entries' view: k's inline
// timer, if e holds one.
func (s *timerSection[K]) encodeInline(dst []byte, k K, e *statebackend.Entry) ([]byte, bool) {
	ts, _, ok := e.Timer(s.d)
	if !ok {
		return dst, false
	}
	return appendTimer(dst, s.codec, k, ts), true
}

// appendTimer appends one timer entry: the key, and the time as a varint.
func appendTimer[K comparable](dst []byte, codec Codec[K], k K, ts int64) []byte {
	p := len(dst)
	dst = codec.Append(append(dst, 0), k)
	dst = fixEntryLen(dst, p)
	var tsb [binary.MaxVarintLen64]byte
	n := binary.PutVarint(tsb[:], ts)
	dst = binary.AppendUvarint(dst, uint64(n))
	return append(dst, tsb[:n]...)
}

func (s *timerSection[K]) Name() string            { return s.name }
func (s *timerSection[K]) Kind() statebackend.Kind { return statebackend.KindTimers }

// live calls f for every registered timer of the snapshot.
func (s *timerSection[K]) live(f func(*timerEntry[K])) {
	for i := range s.n {
		if e := &s.pages[i>>cowPageBits].s[i&(cowPageLen-1)]; e.live {
			f(&e.timerEntry)
		}
	}
}

// group orders the entries by key group with a counting sort: O(n), and
// the order within a group does not matter to a restore.
func (s *timerSection[K]) group() {
	n := s.keyGroups.Len()
	s.offsets = make([]int, n+1)
	s.live(func(e *timerEntry[K]) { s.offsets[e.kg-s.keyGroups.First+1]++ })
	for i := 1; i <= n; i++ {
		s.offsets[i] += s.offsets[i-1]
	}
	next := slices.Clone(s.offsets[:n])
	s.sorted = make([]timerEntry[K], s.offsets[n])
	s.live(func(e *timerEntry[K]) {
		i := e.kg - s.keyGroups.First
		s.sorted[next[i]] = *e
		next[i]++
	})
	s.pages = nil
}

func (s *timerSection[K]) AppendGroup(dst []byte, kg int) ([]byte, int) {
	s.once.Do(s.group)
	if !s.keyGroups.Contains(kg) {
		return dst, 0
	}
	i := kg - s.keyGroups.First
	g := s.sorted[s.offsets[i]:s.offsets[i+1]]
	dst, count := s.view.AppendColumn(dst, kg, s.col)
	for _, e := range g {
		dst = appendTimer(dst, s.codec, e.key, e.ts)
	}
	return dst, count + len(g)
}

// restoreTimers re-registers the timers of a restored keyed state.
func restoreTimers[K comparable](h interface{ add(timerEntry[K]) bool }, section string, kt KeyType[K], ks *statebackend.KeyedState) error {
	return ks.Each(section, func(kg int, key, value []byte) error {
		k, err := kt.Decode(key)
		if err != nil {
			return fmt.Errorf("timer key: %w", err)
		}
		ts, n := binary.Varint(value)
		if n <= 0 || n != len(value) {
			return fmt.Errorf("timer time: %w", statebackend.ErrCorrupt)
		}
		h.add(timerEntry[K]{timerKey: timerKey[K]{ts: ts, key: k}, kg: kg, hash: kt.Hash(k)})
		return nil
	})
}

// fixEntryLen turns the one-byte placeholder at dst[p] into the uvarint
// length of dst[p+1:], shifting the bytes right if the length needs more
// than one byte: the key is encoded in place, without a scratch buffer.
func fixEntryLen(dst []byte, p int) []byte {
	n := len(dst) - p - 1
	if n < 0x80 {
		dst[p] = byte(n)
		return dst
	}
	var lb [binary.MaxVarintLen64]byte
	w := binary.PutUvarint(lb[:], uint64(n))
	dst = append(dst, lb[:w-1]...)
	copy(dst[p+w:], dst[p+1:p+1+n])
	copy(dst[p:], lb[:w])
	return dst
}
