// Package pebblestate keeps a keyed operator's state in an embedded
// Pebble LSM tree on local disk, so that state can outgrow memory.
//
// # Layout
//
// Every entry of every state of an operator subtask lives in one Pebble
// database under the subtask's own directory. A key is
//
//	u16 key group (big-endian) | u16 state id (big-endian) | uvarint(len(k)) k | [user key]
//
// where k is the key codec's encoding of the current key and the user key
// (map state only) the user-key codec's. The key group comes first, so a
// range of key groups is one range of Pebble keys (a rescale can drop what
// a subtask no longer owns with one range delete), and within a key group
// a state's entries are contiguous, so a snapshot reads a (group, state)
// section with one bounded iterator. uvarint(len(k)) k is a prefix-free
// code, so the user keys of one key sort together and a key's map is one
// contiguous run.
//
// Values are the value codec's encoding; a list is its items, each as
// uvarint(len) item, concatenated, and ListState.Add is a Pebble merge
// (Pebble's default merger concatenates), so appending never reads.
//
// # Snapshots
//
// Store.Snapshot returns one statebackend.Section per registered state,
// reading a Pebble snapshot (O(1): a sequence number) that the barrier's
// asynchronous part takes (see Barriers).
// The sections write the same entries, in the same encoding, as the
// memory backend's, so state files of both backends are interchangeable:
// a job can be restored from either backend's checkpoint onto either
// backend, and at another parallelism. Restoring inserts the entries of
// the key groups a subtask owns with batches; no codec is needed, since
// the stored bytes are the codecs' output already.
//
// Store.Checkpoint is the other way: a native checkpoint (native.go), the
// store's own files, for incremental checkpoints that upload only the
// SSTs an earlier checkpoint did not. Its asynchronous part flushes the
// memtable, then Pebble hard-links the live SSTs into a directory beside
// the store's, where they stay readable whatever the store compacts
// meanwhile. A StatesFile beside them maps state ids
// to names. RestoreNative takes such files back: those of one old
// subtask become the store (a range delete drops the key groups it does
// not own); those of several are copied entry by entry, state ids mapped
// by name.
//
// # Changelog checkpoints
//
// A native checkpoint uploads every SST that is new since the previous
// one, and leveled compaction rewrites much of the tree in some intervals:
// at 10 M keys with 1 % written per interval that averaged 31 % of a full
// checkpoint. With Options.Changelog (changelog.go), as Flink's changelog
// state backend, every batch committed to Pebble (Store.commit, the one
// place writes reach it: value write-backs, map and list writes, timers,
// restores' range deletes) is also appended to a local changelog. A
// checkpoint's asynchronous part then only writes back and cuts the
// changelog segment at the barrier; the checkpoint is the newest finished
// materialization (a Pebble checkpoint as above) plus the segments since,
// hard-linked into its directory with a WEIR-CHANGELOG list. Segments are
// immutable and shared like SSTs. A materialization is taken by a barrier's
// epoch after it cut its segment (the checkpoint does not wait for it) once
// the changelog since the last one passes a fraction of the store's size
// (ChangelogOptions.Ratio, 0.75) or an interval (10 min); the checkpoints
// after it refer to it and the older segments are dropped. RestoreNative
// opens the materialization as above and replays the segments in order,
// keeping the key groups the store owns (for a scale-down, into each old
// materialization before its entries are copied); a missing, short or
// corrupt segment is an error naming it.
//
// # Value caches
//
// A value state's reads and writes go to a write-back cache of decoded
// values (ValueTable, clockCache): fixed-size slots in one array with an
// open-addressing index, no allocation per entry, sized exactly from the
// table's share of the memory budget. When it is full, CLOCK picks a batch
// of keys not used since its hand last passed; the dirty ones are written
// back in one sorted batch and their slots reused, so the hot set stays.
// A store-wide Bloom filter of the keys ever given a value (keyFilter)
// answers most misses on new keys without a Pebble read; a restore, whose
// values it never saw, turns it off.
//
// At millions of keys these structures are hundreds of MiB read at random,
// so the costs are memory latency, not Pebble: each access is a cache miss
// and, on 4 KiB pages, a TLB miss too. Three things cut them. The caches'
// arrays and the filter are on transparent huge pages (internal/hugepage),
// and a cache gets its full-size array on its first key instead of
// doubling into it. An operator's first two value states of small
// pointer-free values share one cache (valueCore with two columns): a slot
// of 32 bytes holds both values, one miss where two states had two, while
// Pebble still has a key per state. And the runtime holds a batch of
// records back and prefetches each one's cache slot and filter word
// (ValueTable.Prefetch) before processing them, so their misses overlap.
//
// # Barriers
//
// The state at a barrier is Pebble's plus what the task has not written
// to it yet: the value caches' dirty entries and the pending timer
// writes. Writing those back takes time in proportion to them (some
// 300 ms at 3 M keys), so the synchronous part of Snapshot and Checkpoint
// only freezes them, a few pointer swaps per table, and an epoch's
// goroutine writes them back and then takes the Pebble snapshot or
// checkpoint. Until it has, the task's writes are held back in an indexed
// batch that its reads see through, and a value table reads its fresh
// cache, then its frozen one, then that batch and Pebble; after, the held
// writes are committed. The task waits for the goroutine only at bounds:
// held writes past 32 MiB, a value cache full of keys that shadow frozen
// ones, a timer refill (until the frozen timers, written first, are in),
// AppendKeys, a restore, and the next barrier (see epoch). An error of the
// write-back fails the barrier's checkpoint and the store.
//
// # Timers
//
// A keyed operator's timers live in the store too, one TimerQueue per
// time domain, each under a state id of its own taken from the top of
// the id space (0xffff, 0xfffe, ...; states count up from 0):
//
//	u16 key group | u16 queue id | u64 time (big-endian, sign bit flipped) | k
//
// with an empty value. The key group still comes first, so a key-group
// range of the store holds its timers too (a rescale's range delete or an
// SST ingest moves them with the state), and within a key group the
// timers are in time order, so the earliest are one bounded iterator
// away. A small in-memory head per key group and a heap over the groups
// keep that iterator off the per-record path (see TimerQueue). Timer
// sections in snapshots and restores have the memory backend's encoding
// (the key, and the time as a varint), under the runtime's section names.
//
// Timer writes first go to an in-memory tier bounded by the store's share
// of the budget (timerBuffer), which drops a timer registered and deleted
// there if its time is above every timer time the store ever held
// (Store.timerMax), and reaches Pebble in sorted batches (sortedBatch)
// when full, before a head's refill, and at barriers. Anything that puts
// timer keys into the store other than a TimerQueue (a restore, an SST
// ingest) must raise timerMax to their highest time.
//
// AppendKeys lists a state's keys in one key group with one bounded scan
// of its (key group, state) run, after writing the value caches back.
//
// # Durability
//
// The write-ahead log is off: a subtask's state is rebuilt from the last
// checkpoint after any failure, so the database is scratch space that is
// deleted when the task ends.
package pebblestate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/statebackend"
)

// prefixLen is the length of the key-group and state-id prefix.
const prefixLen = 4

// Options configure a Store.
type Options struct {
	// Dir is the database's directory; it must not exist or be empty. The
	// Store removes it when closed.
	Dir string
	// KeyGroups is the range of key groups the subtask owns.
	KeyGroups statebackend.KeyGroupRange
	// CacheBytes is the block cache's size; 0 means 32 MiB.
	CacheBytes int64
	// MemTableBytes is the size of one memtable; 0 means 4 MiB.
	MemTableBytes uint64
	// CacheKeys bounds each value state's write-back cache of decoded
	// values (see ValueTable); 0 means 1<<20, negative disables it.
	CacheKeys int
	// ValueCacheBytes bounds the same caches by their approximate size;
	// 0 means 16 MiB each.
	ValueCacheBytes int
	// Budget, when set, is the memory of the slot the store runs in: it
	// replaces CacheBytes, MemTableBytes, CacheKeys and ValueCacheBytes
	// (see Budget).
	Budget *Budget
	// BallastBytes is the room a ballast file reserves for the flush that
	// meets a full disk; 0 means 16 MiB.
	BallastBytes int64
	// FS, when set, replaces the operating system's file system (tests
	// inject errors through it).
	FS FS
	// TimerBytes bounds the timers' in-memory tier, the registers and
	// deletes not yet written to Pebble (see timerBuffer); 0 means 8 MiB.
	TimerBytes int
	// Changelog, when set, makes native checkpoints changelog checkpoints
	// (see ChangelogOptions): a materialization taken now and then plus
	// the changelog segments since.
	Changelog *ChangelogOptions
}

// stateInfo is a state's id and kind, fixed when the name first appears
// (registration or restore).
type stateInfo struct {
	id         uint16
	kind       statebackend.Kind
	registered bool
}

// Store is one operator subtask's Pebble state. Its tables are used by the
// task goroutine only; snapshots are read on other goroutines.
type Store struct {
	db         *pebble.DB
	dir        string
	keyGroups  statebackend.KeyGroupRange
	wo         *pebble.WriteOptions
	states     map[string]*stateInfo
	order      []string
	cache      *pebble.Cache
	cacheKeys  int
	cacheBytes int
	// budget is the slot's memory, when set; tables counts the value
	// tables the store added to it.
	budget *Budget
	tables int
	// options makes the database's options (a native restore reopens it).
	options func() *pebble.Options
	// flushers are the tables with write-back caches: Snapshot and
	// Restore write them back first.
	flushers []flusher
	// pairing is the *pairing[K] of the value tables' key type: the
	// first small value table, which the second may share a cache with.
	pairing any
	// timers are the registered timer queues; tb holds their pending
	// writes (see TimerQueue).
	timers []timerQueue
	tb     *timerBuffer
	// spareTB, if not nil, is an empty timer buffer, which replaces tb at
	// a barrier.
	spareTB *timerBuffer
	// timerLimit is the timer buffer's share of memory.
	timerLimit int
	// timerPrefetch: a value table prefetches the timer buffer's slots
	// (ValueTable.tp).
	timerPrefetch bool
	// tbGen counts the times the timer buffer was emptied into Pebble
	// (or frozen to go there): see timerGroup.bufTS.
	tbGen uint64
	// timerMax is the highest time of a timer ever written to Pebble (or
	// frozen at a barrier, on its way there).
	timerMax int64
	// wb is the value caches' write-back, committed by each flush.
	wb sortedBatch
	// one is the batch of a single write (set, del, merge, deleteRange),
	// reused; nil after the database is reopened.
	one *pebble.Batch
	// cl is the changelog, when Options.Changelog is set.
	cl *changelog
	// filter holds the value tables' keys ever given a value (see
	// keyFilter), unless unknownKeys: a restore put values into the
	// store that no table saw.
	filter      *keyFilter
	unknownKeys bool

	// ep is the latest barrier's asynchronous part, until the task
	// settles it; pend holds the task's writes meanwhile (see epoch).
	ep   *epoch
	pend *pebble.Batch
	// iters counts the task's open iterators (newIter); retired holds
	// the committed pend batches they may still read.
	iters   int
	retired []*pebble.Batch
	settles settleStats
	// holdWriteBack, when set (tests), is called by an epoch's
	// goroutine once it wrote the frozen timers, before the value
	// tables' entries; onWait when the task waits for an epoch.
	holdWriteBack, onWait func()

	// err is the first error of a read or write; the runtime fails the
	// task with it (a table method has no error to return).
	err atomic.Pointer[error]

	mu      sync.Mutex
	refs    int  // the owner's reference and one per open snapshot
	closing bool // Close was called: the last reference closes the DB
	closed  chan struct{}
	closeEr error
}

// Open creates a Store in o.Dir.
func Open(o Options) (*Store, error) {
	if o.Dir == "" {
		return nil, errors.New("pebblestate: no directory")
	}
	if o.KeyGroups.Last >= statebackend.MaxKeyGroups || o.KeyGroups.First < 0 {
		return nil, fmt.Errorf("pebblestate: key groups %v out of range", o.KeyGroups)
	}
	// The block cache and memtables are off the Go heap, so GOMEMLIMIT
	// does not see them: with 64 MiB and 16 MiB memtables (or 32 and 8)
	// a TaskManager holding a 400 MB state at GOMEMLIMIT=96MiB went over
	// 3/4 of the state in resident memory. At 10 M keys a larger cache holds more of the
	// bloom filters (some 25 MiB for two states): pass CacheBytes.
	if o.CacheBytes == 0 {
		o.CacheBytes = 32 << 20
	}
	if o.Budget != nil {
		// The budget bounds the caches by bytes; the key bound only
		// keeps a map from growing without limit.
		o.CacheKeys, o.ValueCacheBytes = 1<<30, 0
		o.MemTableBytes = o.Budget.MemTableBytes()
	}
	if o.TimerBytes <= 0 {
		o.TimerBytes = 8 << 20
	}
	if o.CacheKeys == 0 {
		o.CacheKeys = 1 << 20
	}
	if o.ValueCacheBytes <= 0 {
		o.ValueCacheBytes = 16 << 20
	}
	if o.BallastBytes == 0 {
		o.BallastBytes = 16 << 20
	}
	// The write-back batches (writeBatchBytes) stay below Pebble's
	// large-batch threshold (half a memtable), above which a batch is
	// flushed as a memtable of its own.
	if o.MemTableBytes == 0 {
		o.MemTableBytes = 4 << 20
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("pebblestate: %w", err)
	}
	if ents, err := os.ReadDir(o.Dir); err != nil {
		return nil, fmt.Errorf("pebblestate: %w", err)
	} else if len(ents) > 0 {
		return nil, fmt.Errorf("pebblestate: state directory %s is not empty", o.Dir)
	}
	s := &Store{dir: o.Dir, keyGroups: o.KeyGroups, wo: pebble.NoSync, states: map[string]*stateInfo{},
		timerMax: math.MinInt64, timerLimit: o.TimerBytes,
		refs: 1, closed: make(chan struct{}), cacheKeys: max(o.CacheKeys, 0),
		cacheBytes: o.ValueCacheBytes}
	if o.Budget != nil {
		c, err := o.Budget.acquire()
		if err != nil {
			return nil, err
		}
		s.cache, s.budget = c, o.Budget
		s.timerLimit = o.Budget.timerBytes()
	} else {
		s.cache = pebble.NewCache(o.CacheBytes)
	}
	s.timerLimit = max(s.timerLimit, minTimerBuffer)
	s.tb = newTimerBuffer(s.timerLimit)
	base := vfs.FS(vfs.Default)
	if o.FS != nil {
		base = o.FS
	}
	// A ballast file reserves room for the flush that runs into a full
	// disk: the first ENOSPC removes it and records the error, the write
	// is retried into the freed space, and the store writes nothing more,
	// so the task fails with the reason instead of waiting forever in a
	// write stall behind flushes that cannot succeed.
	ballast := base.PathJoin(o.Dir, ballastName)
	if err := writeBallast(base, ballast, o.BallastBytes); err != nil {
		s.unrefCache()
		return nil, fmt.Errorf("pebblestate: reserving %d bytes in %s: %w", o.BallastBytes, o.Dir, err)
	}
	var released atomic.Bool
	fs := noSyncFS{vfs.OnDiskFull(base, func() {
		if released.CompareAndSwap(false, true) {
			base.Remove(ballast)
		}
		s.fail(fmt.Errorf("state store %s: the disk is full: %w", o.Dir, syscall.ENOSPC))
	})}
	s.options = func() *pebble.Options { return s.pebbleOptions(o, fs) }
	if o.Changelog != nil {
		s.cl = newChangelog(o.Dir, *o.Changelog)
		os.RemoveAll(s.cl.dir) // stale, of a store that had this directory
	}
	db, err := pebble.Open(o.Dir, s.options())
	if err != nil {
		s.unrefCache()
		return nil, fmt.Errorf("pebblestate: open %s: %w", o.Dir, err)
	}
	s.db = db
	return s, nil
}

// unrefCache lets go of the block cache (and the store's part of its
// budget).
func (s *Store) unrefCache() {
	s.cache.Unref()
	if s.budget != nil {
		s.budget.release(s.tables)
	}
}

// valueCacheBytes is one value table's bound on its cache's size.
func (s *Store) valueCacheBytes() int {
	if s.budget != nil {
		return s.budget.valueBytes()
	}
	return s.cacheBytes
}

// filterBytes is the size of the store's key filter: an eighth of the
// budget's value-cache quarter (see Budget), or of one table's cache
// without a budget.
func (s *Store) filterBytes() int {
	if s.budget != nil {
		return int(s.budget.bytes / 32)
	}
	return s.cacheBytes / 8
}

// ballastName is the ballast file's name in the store's directory.
const ballastName = "ballast"

// pebbleOptions are the options the store's database opens with, on fs;
// a native restore reopens it with them.
func (s *Store) pebbleOptions(o Options, fs vfs.FS) *pebble.Options {
	opts := &pebble.Options{
		Cache:        s.cache,
		DisableWAL:   true,
		MemTableSize: o.MemTableBytes,
		// Room for several memtables waiting for a flush before writes
		// stall: when a flush fails (a full disk) the store records the
		// error and stops writing, so the task fails instead of waiting
		// forever in a stall no flush will end.
		MemTableStopWritesThreshold: 8,
		Logger:                      quietLogger{},
		EventListener: &pebble.EventListener{
			// A flush or compaction that fails (a full disk) would
			// otherwise only be retried; the task fails instead and
			// restarts from its last checkpoint.
			BackgroundError: func(err error) { s.fail(fmt.Errorf("state store %s: %w", o.Dir, err)) },
		},
	}
	// Bloom filters on every level: most reads of a state-heavy job are
	// point lookups, many of keys without state yet, which the filters
	// answer without reading the level's blocks.
	//
	// No compression: the store is local scratch space, and in a profile of
	// the state-heavy job at 10 M keys snappy's encoding in flushes and
	// compactions and its decoding in reads took a tenth of the one core.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		opts.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	opts.FS = fs
	return opts
}

// writeBallast writes n zero bytes to name.
func writeBallast(fs vfs.FS, name string, n int64) error {
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for n > 0 {
		w := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:w]); err != nil {
			f.Close()
			return err
		}
		n -= w
	}
	return f.Close()
}

// quietLogger drops Pebble's informational logs; errors reach the task
// through the event listener.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// flusher is a table with a write-back cache.
type flusher interface {
	// flush writes the cache's dirty entries to Pebble (during an epoch
	// to the store's pend).
	flush()
	// drop flushes and empties the cache.
	drop()
	// freeze makes the cache's dirty entries the table's frozen ones,
	// for an epoch's goroutine to write back, and reports whether it had
	// any; the table starts an empty cache.
	freeze() bool
	// writeFrozen writes the frozen entries to Pebble; it runs on the
	// epoch's goroutine, concurrently with the task's use of the table.
	writeFrozen() error
	// thaw drops the frozen entries, which Pebble has.
	thaw()
}

// KeyGroups is the range of key groups the store owns.
func (s *Store) KeyGroups() statebackend.KeyGroupRange { return s.keyGroups }

// Dir is the database's directory.
func (s *Store) Dir() string { return s.dir }

// Err returns the first read or write error, or nil. After an error the
// state is not to be trusted: the runtime fails the task.
func (s *Store) Err() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// failed reports an earlier error: writes then stop, since the state is
// lost anyway and a write could wait forever for a flush that cannot
// succeed (a full disk stalls Pebble's writes).
func (s *Store) failed() bool { return s.err.Load() != nil }

func (s *Store) fail(err error) {
	s.err.CompareAndSwap(nil, &err)
}

// state returns the info of name, registering it with kind.
func (s *Store) state(name string, kind statebackend.Kind) (*stateInfo, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if st, ok := s.states[name]; ok {
		if st.kind != kind {
			return nil, fmt.Errorf("state %q is %s state, not %s state", name, st.kind, kind)
		}
		if !st.registered {
			st.registered = true
			s.order = append(s.order, name)
		}
		return st, nil
	}
	st, err := s.add(name, kind)
	if err != nil {
		return nil, err
	}
	st.registered = true
	s.order = append(s.order, name)
	return st, nil
}

func (s *Store) add(name string, kind statebackend.Kind) (*stateInfo, error) {
	if len(s.states) >= firstTimerID+1-maxTimerQueues {
		return nil, errors.New("too many states")
	}
	st := &stateInfo{id: uint16(len(s.states)), kind: kind}
	s.states[name] = st
	return st, nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("state name is empty")
	case name[0] == '_':
		return fmt.Errorf("state name %q: names starting with '_' are reserved for the runtime", name)
	case len(name) > 1024:
		return fmt.Errorf("state name %q... is too long", name[:32])
	}
	return nil
}

// Unclaimed lists, sorted, the restored states no table has registered.
func (s *Store) Unclaimed() []string {
	var out []string
	for name, st := range s.states {
		if !st.registered {
			out = append(out, name)
		}
	}
	sortStrings(out)
	return out
}

func sortStrings(a []string) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// appendPrefix appends the key-group and state-id prefix.
func appendPrefix(dst []byte, kg int, id uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(dst, uint16(kg)), id)
}

// appendKey appends prefix | uvarint(len(k)) k, k encoded by c.
func appendKey[K any](dst []byte, kg int, id uint16, c statebackend.Codec[K], k K) []byte {
	dst = appendPrefix(dst, kg, id)
	p := len(dst)
	dst = c.Append(append(dst, 0), k)
	return fixLen(dst, p)
}

// fixLen turns the placeholder byte at dst[p] into the uvarint length of
// dst[p+1:], shifting the bytes right when it needs more than one byte.
func fixLen(dst []byte, p int) []byte {
	n := len(dst) - p - 1
	if n < 0x80 {
		dst[p] = byte(n)
		return dst
	}
	var tmp [binary.MaxVarintLen64]byte
	w := binary.PutUvarint(tmp[:], uint64(n))
	dst = append(dst, tmp[:w-1]...)
	copy(dst[p+w:], dst[p+1:p+1+n])
	copy(dst[p:], tmp[:w])
	return dst
}

// prefixEnd is the smallest key after every key starting with prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // all 0xff: no upper bound
}

// get reads key into the store's scratch copy; found is false when the key
// has no value. The returned bytes are valid until the next get.
func (s *Store) get(key []byte, buf *[]byte) ([]byte, bool) {
	s.poll()
	v, closer, err := s.reader().Get(key)
	if err != nil {
		if !errors.Is(err, pebble.ErrNotFound) {
			s.fail(fmt.Errorf("state store read: %w", err))
		}
		return nil, false
	}
	*buf = append((*buf)[:0], v...)
	closer.Close()
	return *buf, true
}

func (s *Store) set(key, value []byte) { s.write(pebble.InternalKeyKindSet, key, value) }

func (s *Store) del(key []byte) { s.write(pebble.InternalKeyKindDelete, key, nil) }

func (s *Store) deleteRange(start, end []byte) {
	s.write(pebble.InternalKeyKindRangeDelete, start, end)
}

func (s *Store) merge(key, value []byte) { s.write(pebble.InternalKeyKindMerge, key, value) }

// write is a single write of the task's: during an epoch into pend, else
// committed at once (commit). For a range delete value is the end.
func (s *Store) write(kind pebble.InternalKeyKind, key, value []byte) {
	if s.failed() {
		return
	}
	s.poll()
	b := s.pend
	if b == nil {
		if s.one == nil {
			s.one = s.db.NewBatch()
		}
		b = s.one
	}
	err := addWrite(b, kind, key, value)
	if s.pend != nil {
		defer s.checkPend()
	} else {
		if err == nil {
			err = s.commit(b)
		}
		b.Reset()
	}
	if err != nil {
		s.fail(fmt.Errorf("state store write: %w", err))
	}
}

// writeNow commits one write at once, outside an epoch (a restore).
func (s *Store) writeNow(kind pebble.InternalKeyKind, key, value []byte) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := addWrite(b, kind, key, value); err != nil {
		return err
	}
	return s.commit(b)
}

// addWrite adds one write to b.
func addWrite(b *pebble.Batch, kind pebble.InternalKeyKind, key, value []byte) error {
	switch kind {
	case pebble.InternalKeyKindSet:
		return b.Set(key, value, nil)
	case pebble.InternalKeyKindDelete:
		return b.Delete(key, nil)
	case pebble.InternalKeyKindMerge:
		return b.Merge(key, value, nil)
	case pebble.InternalKeyKindRangeDelete:
		return b.DeleteRange(key, value, nil)
	}
	return fmt.Errorf("write of kind %v", kind)
}

// commit is the one place where writes reach Pebble: every batch of the
// task, of a barrier's write-back and of a restore is committed here, so
// that the changelog (when the store has one) logs each, in commit order,
// before Pebble has it.
func (s *Store) commit(b *pebble.Batch) error {
	if s.cl != nil && b.Count() > 0 {
		if err := s.cl.append(b.Repr()); err != nil {
			return fmt.Errorf("changelog: %w", err)
		}
	}
	return b.Commit(s.wo)
}

// acquire takes a reference for a snapshot; false once the store closed.
func (s *Store) acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs == 0 {
		return false
	}
	s.refs++
	return true
}

// release drops a reference; the last one closes the database and
// removes its directory.
func (s *Store) release() {
	s.mu.Lock()
	s.refs--
	last := s.refs == 0
	s.mu.Unlock()
	if !last {
		return
	}
	var err error
	if s.db != nil { // nil after a native restore failed to reopen it
		err = s.db.Close()
	}
	s.unrefCache()
	if s.cl != nil {
		s.cl.close()
	}
	if rerr := os.RemoveAll(s.dir); err == nil && rerr != nil {
		err = fmt.Errorf("pebblestate: removing %s: %w", s.dir, rerr)
	}
	s.closeEr = err
	close(s.closed)
}

// Close releases the owner's reference: the database is closed and its
// directory removed at once, or, if an upload still reads a snapshot,
// when that snapshot is released. Close returns without waiting for it.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	s.mu.Unlock()
	// Writes held back by an epoch are dropped with the store.
	if s.pend != nil {
		s.pend.Close()
		s.ep, s.pend = nil, nil
	}
	s.release()
	select {
	case <-s.closed:
		return s.closeEr
	default:
		return nil
	}
}

// Done is closed once the database is closed and its directory removed.
func (s *Store) Done() <-chan struct{} { return s.closed }
