package pebblestate

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/statebackend"
)

// StatesFile is the file a native checkpoint adds to Pebble's: the
// store's state names, ids and kinds, which its keys' state ids refer to.
const StatesFile = "WEIR-STATES"

// stateRecord is one line of StatesFile's JSON list.
type stateRecord struct {
	Name string `json:"name"`
	ID   uint16 `json:"id"`
	Kind uint8  `json:"kind"`
}

// Checkpoint is a store's native checkpoint: a Pebble checkpoint in a
// directory of its own, whose SSTs are hard links to the store's (they
// are immutable, so the store may go on writing and compacting), plus
// StatesFile. The barrier's epoch takes it on a goroutine of its own
// (Store.Checkpoint); Files waits for it. Its files are read on the upload
// goroutine; Release removes the directory.
type Checkpoint struct {
	s    *Store
	dir  string
	ep   *epoch
	once sync.Once
}

// Dir is the checkpoint's directory.
func (c *Checkpoint) Dir() string { return c.dir }

// Files waits until the checkpoint is taken and lists the names of its
// files in Dir, sorted. An error (the write-back of the state at the
// barrier failed, or the checkpoint did, or ctx ended) fails the
// checkpoint.
func (c *Checkpoint) Files(ctx context.Context) ([]string, error) {
	if err := c.ep.waitReady(ctx); err != nil {
		return nil, err
	}
	return c.ep.files, nil
}

// Shared reports whether the file name may be shared by several
// checkpoints: an SST or a changelog segment never changes once written,
// and its name is never reused by the store, so a checkpoint may refer to
// an earlier one's upload of it. The other files (MANIFEST, OPTIONS, ...) are the
// checkpoint's own.
func Shared(name string) bool { return strings.HasSuffix(name, ".sst") || isSegment(name) }

// Release removes the checkpoint's directory and drops its reference on
// the store, once the checkpoint is taken (it waits for it). It may be
// called more than once.
func (c *Checkpoint) Release() {
	c.once.Do(func() {
		<-c.ep.done
		os.RemoveAll(c.dir)
		c.s.release()
	})
}

// Checkpoint is the synchronous part of a native checkpoint: it freezes
// the writes Pebble lacks (see epoch), in O(tables) whatever the state's
// size. The epoch's goroutine then writes them to Pebble, flushes the
// memtable, so that every write up to the barrier is in an SST, and has
// Pebble link the live files into a new directory beside the store's;
// nothing the task writes meanwhile reaches Pebble before. Its cost is the
// write-back, one memtable flush and a hard link per SST. With a
// changelog (Options.Changelog) the goroutine instead cuts the changelog
// segment after the write-back and links the newest materialization's
// files and the segments since (see changelogCheckpoint); Files returns
// then, and a materialization that is due follows on the same goroutine.
func (s *Store) Checkpoint(id int64) (*Checkpoint, error) {
	dir := fmt.Sprintf("%s.chk-%d", s.dir, id)
	e, err := s.freeze("checkpoint", dir)
	if err != nil {
		return nil, err
	}
	return &Checkpoint{s: s, dir: dir, ep: e}, nil
}

func writeStates(name string, recs []stateRecord) error {
	data, err := json.Marshal(recs)
	if err != nil {
		return err
	}
	return os.WriteFile(name, data, 0o644)
}

func readStates(dir string) ([]stateRecord, error) {
	name := filepath.Join(dir, StatesFile)
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("native checkpoint: %w", err)
	}
	var recs []stateRecord
	if err := json.Unmarshal(data, &recs); err != nil {
		return nil, fmt.Errorf("native checkpoint %s: %w: %w", name, statebackend.ErrCorrupt, err)
	}
	for _, r := range recs {
		if err := checkName(r.Name); err != nil || r.Kind < uint8(statebackend.KindValue) || r.Kind > uint8(statebackend.KindList) {
			return nil, fmt.Errorf("native checkpoint %s: state %q of kind %d: %w", name, r.Name, r.Kind, statebackend.ErrCorrupt)
		}
	}
	return recs, nil
}

// NativeState is an old subtask's native checkpoint, its files
// downloaded into Dir under their local names.
type NativeState struct {
	Dir       string
	KeyGroups statebackend.KeyGroupRange
}

// RestoreNative restores the store from the native checkpoints of the old
// subtasks whose key groups overlap the store's, before any state is
// registered or restored otherwise. With one old checkpoint (the same
// parallelism, or a scale-up) the store becomes a copy of it: its files
// move into the store's directory, which Pebble reopens, and a range
// delete drops the key groups the store does not own. With several (a
// scale-down) the entries of each one's key groups within the store's are
// copied in batches, since their state ids may differ. The Dirs are
// removed in any case.
func (s *Store) RestoreNative(olds []NativeState) (err error) {
	defer func() {
		for _, o := range olds {
			os.RemoveAll(o.Dir)
		}
	}()
	if len(s.states) > 0 {
		return errors.New("pebblestate: a native restore must come before any other")
	}
	s.unknownKeys = true // the key filter does not see restored values
	// The files may hold timers of any time: the queues read their heads
	// again, and only a timer above the latest restored one may have its
	// delete dropped as never stored (see timerBuffer).
	defer func() {
		s.timerMax = math.MaxInt64
		if err == nil {
			s.timerMax = s.storedTimerMax()
		}
		for _, q := range s.timers {
			for kg := s.keyGroups.First; kg <= s.keyGroups.Last; kg++ {
				q.restored(kg)
			}
		}
	}()
	if len(olds) == 1 {
		return s.adopt(olds[0])
	}
	for _, o := range olds {
		if err := s.copyFrom(o); err != nil {
			return err
		}
	}
	return nil
}

// adopt makes old's checkpoint the store's database.
func (s *Store) adopt(old NativeState) error {
	recs, err := readStates(old.Dir)
	if err != nil {
		return err
	}
	segs, err := readSegments(old.Dir)
	if err != nil {
		return err
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("pebblestate: %w", err)
	}
	s.db, s.one = nil, nil
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("pebblestate: %w", err)
	}
	for _, e := range ents {
		if e.Name() != ballastName {
			if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
				return fmt.Errorf("pebblestate: %w", err)
			}
		}
	}
	ents, err = os.ReadDir(old.Dir)
	if err != nil {
		return fmt.Errorf("pebblestate: %w", err)
	}
	for _, e := range ents {
		if e.Name() == StatesFile || e.Name() == ballastName || isChangelogFile(e.Name()) {
			continue
		}
		if err := moveFile(filepath.Join(old.Dir, e.Name()), filepath.Join(s.dir, e.Name())); err != nil {
			return fmt.Errorf("pebblestate: %w", err)
		}
	}
	if len(segs) > 0 {
		if err := s.replayInto(old.Dir, segs); err != nil {
			return err
		}
	}
	if s.db, err = s.openRestored(); err != nil {
		return err
	}
	for _, r := range recs {
		if _, dup := s.states[r.Name]; dup {
			return fmt.Errorf("pebblestate: native checkpoint: state %q twice: %w", r.Name, statebackend.ErrCorrupt)
		}
		s.states[r.Name] = &stateInfo{id: r.ID, kind: statebackend.Kind(r.Kind)}
	}
	// The key groups another subtask owns now: one range delete each
	// side, which compactions turn into dropped files.
	if s.keyGroups.First > 0 {
		if err := s.writeNow(pebble.InternalKeyKindRangeDelete, groupKey(0), groupKey(s.keyGroups.First)); err != nil {
			return fmt.Errorf("pebblestate: %w", err)
		}
	}
	if end := groupKey(s.keyGroups.Last + 1); end != nil {
		if err := s.writeNow(pebble.InternalKeyKindRangeDelete, end, []byte{0xff, 0xff, 0xff, 0xff, 0xff}); err != nil {
			return fmt.Errorf("pebblestate: %w", err)
		}
	}
	return nil
}

// groupKey is the first key of key group kg; nil past the last one.
func groupKey(kg int) []byte {
	if kg >= 1<<16 {
		return nil
	}
	return binary.BigEndian.AppendUint16(nil, uint16(kg))
}

// moveFile renames from to to, copying when they are on different file
// systems.
func moveFile(from, to string) error {
	if err := os.Rename(from, to); err == nil {
		return nil
	}
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// copyFrom copies old's entries of the store's key groups, mapping old's
// state ids to the store's.
func (s *Store) copyFrom(old NativeState) error {
	recs, err := readStates(old.Dir)
	if err != nil {
		return err
	}
	ids := map[uint16]uint16{}
	for _, r := range recs {
		st, ok := s.states[r.Name]
		if !ok {
			if st, err = s.add(r.Name, statebackend.Kind(r.Kind)); err != nil {
				return err
			}
		} else if st.kind != statebackend.Kind(r.Kind) {
			return fmt.Errorf("state %q: one checkpoint holds it as %s state, another as %s state", r.Name, statebackend.Kind(r.Kind), st.kind)
		}
		ids[r.ID] = st.id
	}
	first, last := max(s.keyGroups.First, old.KeyGroups.First), min(s.keyGroups.Last, old.KeyGroups.Last)
	if first > last {
		return nil
	}
	segs, err := readSegments(old.Dir)
	if err != nil {
		return err
	}
	// A changelog checkpoint's segments are replayed into its
	// materialization first, in its own state ids.
	o := &pebble.Options{ReadOnly: segs == nil, DisableWAL: true, FS: vfs.Default, Logger: quietLogger{}}
	if segs != nil {
		// The copy is read once and dropped: the replay neither
		// compacts nor flushes more than its memtable forces.
		replayOptions(o, segs, s.replayMemTableLimit())
	}
	chunk := replayChunk(o.MemTableSize)
	src, err := pebble.Open(old.Dir, o)
	if err != nil {
		return fmt.Errorf("pebblestate: opening a restored checkpoint: %w", err)
	}
	defer src.Close()
	if err := replay(src, old.Dir, segs, first, last, chunk); err != nil {
		return err
	}
	it, err := src.NewIter(&pebble.IterOptions{LowerBound: groupKey(first), UpperBound: groupKey(last + 1)})
	if err != nil {
		return fmt.Errorf("pebblestate: %w", err)
	}
	defer it.Close()
	b := s.db.NewBatch()
	defer func() { b.Close() }()
	var key []byte
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) < prefixLen {
			return fmt.Errorf("pebblestate: short key in a restored checkpoint: %w", statebackend.ErrCorrupt)
		}
		id, ok := ids[binary.BigEndian.Uint16(k[2:4])]
		if tid := binary.BigEndian.Uint16(k[2:4]); !ok && tid > firstTimerID-maxTimerQueues {
			id, ok = tid, true // a timer queue's id, the same in every store
		}
		if !ok {
			return fmt.Errorf("pebblestate: key of unknown state %d in a restored checkpoint: %w", binary.BigEndian.Uint16(k[2:4]), statebackend.ErrCorrupt)
		}
		key = binary.BigEndian.AppendUint16(append(key[:0], k[:2]...), id)
		key = append(key, k[prefixLen:]...)
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("pebblestate: reading a restored checkpoint: %w", err)
		}
		if err := b.Set(key, v, nil); err != nil {
			return err
		}
		if b.Len() >= batchBytes {
			if err := s.commit(b); err != nil {
				return fmt.Errorf("state store write: %w", err)
			}
			b.Reset()
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("pebblestate: reading a restored checkpoint: %w", err)
	}
	if err := s.commit(b); err != nil {
		return fmt.Errorf("state store write: %w", err)
	}
	return nil
}

// replayInto opens the store's database, which holds a changelog
// checkpoint's materialization, for the replay of its segments in dir,
// replays them, flushes and closes it; openRestored then opens it with
// the store's options.
//
// The replay runs with automatic compactions off and a memtable as large
// as the segments (within replayMemTableLimit): the task processes
// nothing meanwhile, so it may take the memory. With the store's small
// memtable, each flush of the replay's random keys was an L0 file
// overlapping the whole tree, compacted at once, and the open itself
// waited for a compaction of the materialization's L0 files; now the
// replay is (mostly) one flush, and the reopened store compacts the
// result in the background.
func (s *Store) replayInto(dir string, segs []segment) error {
	o := s.options()
	replayOptions(o, segs, s.replayMemTableLimit())
	db, err := pebble.Open(s.dir, o)
	if err != nil {
		return fmt.Errorf("pebblestate: opening the restored checkpoint: %w", err)
	}
	err = replay(db, dir, segs, s.keyGroups.First, s.keyGroups.Last, replayChunk(o.MemTableSize))
	if err == nil {
		// The WAL is off: the replay exists only in memtables until
		// flushed.
		if err = db.Flush(); err != nil {
			err = fmt.Errorf("pebblestate: flushing the replayed changelog: %w", err)
		}
	}
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("pebblestate: %w", cerr)
	}
	return err
}

// openRestored opens the store's database on restored files with the
// store's options, its compactions held until the open returns (see
// gatedScheduler).
func (s *Store) openRestored() (*pebble.DB, error) {
	o := s.options()
	g := newGatedScheduler()
	o.Experimental.CompactionScheduler = g
	db, err := pebble.Open(s.dir, o)
	if err != nil {
		return nil, fmt.Errorf("pebblestate: opening the restored checkpoint: %w", err)
	}
	g.open()
	return db, nil
}

// replayMemTableLimit bounds a replay's memtable: half the slot's state
// memory (the block cache's and the timer tier's quarters are hardly used
// while nothing reads or registers timers), or maxMemTable without a
// budget.
func (s *Store) replayMemTableLimit() uint64 {
	if s.budget != nil {
		return uint64(max(s.budget.Bytes()/2, minMemTable))
	}
	return maxMemTable
}

// replayOptions adapts o for replaying segs: no automatic compactions
// (so no L0 write stall either), and a memtable of some three times the
// segments' bytes, which a batch's record of a small key and value
// roughly takes with its skiplist node, within limit.
func replayOptions(o *pebble.Options, segs []segment, limit uint64) {
	var n uint64
	for _, sg := range segs {
		n += uint64(sg.Size)
	}
	o.MemTableSize = max(o.MemTableSize, min(3*n+minMemTable, limit, maxReplayMemTable))
	o.DisableAutomaticCompactions = true
	o.L0StopWritesThreshold = math.MaxInt32
	o.L0CompactionThreshold = math.MaxInt32
}

// replayChunk is how many bytes of keys and values a replay sorts at a
// time (its coalescer): a third of the memtable, which holds them with
// their skiplist nodes.
func replayChunk(memTable uint64) int {
	return int(max(memTable/3, 1<<20))
}

// maxReplayMemTable stays under Pebble's bound on a memtable (4 GiB).
const maxReplayMemTable = 2 << 30

// storedTimerMax is the highest time of the timers in the store (of any
// timer queue id), math.MinInt64 if none, or math.MaxInt64 if it cannot
// tell: one seek per key group and queue, for a native restore, whose
// files hold timers nothing else has seen.
func (s *Store) storedTimerMax() int64 {
	m := int64(math.MinInt64)
	var lo []byte
	for kg := s.keyGroups.First; kg <= s.keyGroups.Last; kg++ {
		for i := range maxTimerQueues {
			lo = appendPrefix(lo[:0], kg, uint16(firstTimerID-i))
			it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
			if err != nil {
				return math.MaxInt64
			}
			if it.Last() {
				m = max(m, timerTime(it.Key()))
			}
			if it.Close() != nil {
				return math.MaxInt64
			}
		}
	}
	return m
}
