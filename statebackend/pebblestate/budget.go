package pebblestate

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// Budget is the memory of the stores of one TaskManager slot, as Flink
// sizes RocksDB from a slot's managed memory: one figure split between
// Pebble's block cache, the timers' in-memory tier, the value states'
// write-back caches and the memtables.
//
//   - A quarter is one block cache shared by every store of the slot, so
//     the slot's cache stays within it however many keyed operators run
//     there.
//   - A quarter bounds the timers' in-memory tier (timerBuffer, Go heap),
//     divided evenly between the stores open at the time; a store re-reads
//     its share whenever its tier would grow. It was half of the block
//     cache's half: at 10 M keys a state-heavy job gains far more from
//     keeping its timers' churn out of Pebble than from the larger cache,
//     whose reads the value caches mostly spare.
//   - A quarter bounds the decoded values that the slot's value tables
//     cache (Go heap): an eighth of it is each store's key filter, the
//     rest is divided evenly between the tables open at the time; a table
//     re-reads its share whenever it resizes.
//   - A quarter is for memtables: each store's memtable is a quarter of
//     it (at least 4 MiB, at most 256 MiB), so that one memtable being
//     written, one being flushed and some slack fit. Pebble cannot resize
//     an open store's memtables, so the size is per store, meant for one
//     keyed operator per slot (a slot with several has that much each).
//
// The block cache and memtables are outside the Go heap, so GOMEMLIMIT
// does not count them; the value caches are inside it.
type Budget struct {
	bytes int64
	cache *pebble.Cache

	mu     sync.Mutex
	refs   int // the owner's and one per open store
	closed bool
	tables atomic.Int64
	stores atomic.Int64
}

// MinBudget is the smallest budget NewBudget accepts.
const MinBudget = 16 << 20

// Memtable bounds for a budget's stores. A store's write-back batches
// (writeBatchBytes) must stay below half a memtable, and Pebble caps a
// memtable below 4 GiB.
const (
	minMemTable = 4 << 20
	maxMemTable = 256 << 20
)

// NewBudget makes a slot's budget of bytes. Close it when the slot goes;
// stores still open keep the shared cache until they close.
func NewBudget(bytes int64) (*Budget, error) {
	if bytes < MinBudget {
		return nil, fmt.Errorf("state memory %s is below the minimum of %s", FormatBytes(bytes), FormatBytes(MinBudget))
	}
	return &Budget{bytes: bytes, cache: pebble.NewCache(bytes / 4), refs: 1}, nil
}

// Bytes is the budget's size.
func (b *Budget) Bytes() int64 { return b.bytes }

// CacheBytes is the shared block cache's size.
func (b *Budget) CacheBytes() int64 { return b.bytes / 4 }

// TimerBytes is the timers' in-memory tiers' share, for all the slot's
// stores.
func (b *Budget) TimerBytes() int64 { return b.bytes / 4 }

// timerBytes is one store's share of TimerBytes.
func (b *Budget) timerBytes() int { return int(b.TimerBytes() / max(b.stores.Load(), 1)) }

// MemTableBytes is the size of each store's memtable.
func (b *Budget) MemTableBytes() uint64 {
	return uint64(min(max(b.bytes/4/4, minMemTable), maxMemTable))
}

// valueBytes is one value table's share of the value caches' quarter,
// less the eighth of it that each store's key filter takes.
func (b *Budget) valueBytes() int {
	return int((b.bytes/4 - b.bytes/32) / max(b.tables.Load(), 1))
}

// acquire takes a reference for a store, with the shared cache.
func (b *Budget) acquire() (*pebble.Cache, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("pebblestate: the slot's state memory budget is closed")
	}
	b.refs++
	b.stores.Add(1)
	b.cache.Ref()
	return b.cache, nil
}

// release drops a store's reference and its value tables.
func (b *Budget) release(tables int) {
	b.tables.Add(-int64(tables))
	b.stores.Add(-1)
	b.drop()
}

// Close drops the owner's reference; the cache goes with the last store.
func (b *Budget) Close() {
	b.mu.Lock()
	closing := !b.closed
	b.closed = true
	b.mu.Unlock()
	if closing {
		b.drop()
	}
}

func (b *Budget) drop() {
	b.mu.Lock()
	b.refs--
	last := b.refs == 0
	b.mu.Unlock()
	if last {
		b.cache.Unref()
	}
}

// ParseBytes reads a size such as 512MiB, 2GiB, 64MB or 1048576.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with KiB, MiB, GiB, TiB, KB, MB, GB or TB", s)
	}
	return n * mult, nil
}

// FormatBytes writes n in the largest binary unit that divides it.
func FormatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// DefaultBudgetBytes is the budget per slot when none is given: a quarter
// of the process's memory limit, split between the slots, or 64 MiB per
// slot when there is no limit. The limit is the smaller of GOMEMLIMIT (if
// set) and the container's memory limit (cgroup v2 memory.max or v1
// memory.limit_in_bytes). A quarter leaves the Go heap room under a limit
// that, as GOMEMLIMIT does, does not count Pebble's off-heap memory.
func DefaultBudgetBytes(slots int) int64 {
	limit := memoryLimit()
	if limit <= 0 {
		return 64 << 20
	}
	return max(limit/4/int64(max(slots, 1)), MinBudget)
}

// memoryLimit is the process's memory limit, or 0 if it has none.
func memoryLimit() int64 {
	var limit int64
	if l := debug.SetMemoryLimit(-1); l > 0 && l < 1<<62 {
		limit = l
	}
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 { // "max", or v1's "no limit"
			continue
		}
		if limit == 0 || n < limit {
			limit = n
		}
	}
	return limit
}
