package pebblestate

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// sortedBatch gathers writes and hands them to Pebble in key order, each
// key once (its last write). Pebble inserts a batch into the memtable's
// skiplist key by key, remembering where the previous key went: keys in
// order are found next to each other, while the random order of records
// (key groups, times) makes every insert a full descent through a skiplist
// of some 10^5 entries, one cache miss per level. In a profile of
// TimerQueue under the fraud detector's pattern those descents took two
// thirds of the CPU. Keeping each key's last write only also drops a
// timer registered and deleted, or a value rewritten, within one batch.
type sortedBatch struct {
	arena []byte
	ops   []batchOp
	// timers marks the timers' batch: a timer key whose time is above
	// every time ever written (Store.timerMax) cannot be in the store
	// yet, so when its last write in the batch is a delete, nothing is
	// written for it at all. The fraud detector's timers, registered
	// at now + timeout and deleted by the key's next record, mostly
	// never reach Pebble once the batch spans that many records.
	timers bool
	// starts and spare are sort's scratch space: the buckets' counts and
	// offsets, and the other array of writes.
	starts []int32
	spare  []batchOp
	// maxSet is the highest time of a timer set in the batch (timers
	// only): a barrier freezing the batch raises the store's timerMax to
	// it before the batch reaches Pebble.
	maxSet int64
}

type batchOp struct {
	// abbr is the key's first 16 bytes as two big-endian words
	// (zero-padded): most comparisons end there.
	abbr            [2]uint64
	off, klen, vlen uint32
	del             bool
}

func (b *sortedBatch) key(o batchOp) []byte { return b.arena[o.off : o.off+o.klen] }

func (b *sortedBatch) size() int { return len(b.arena) }

// set adds a write of value to key; del a delete of key.
func (b *sortedBatch) set(key, value []byte) { b.add(key, value, false) }
func (b *sortedBatch) del(key []byte)        { b.add(key, nil, true) }

func (b *sortedBatch) add(key, value []byte, del bool) {
	var a [16]byte
	copy(a[:], key)
	if b.timers && !del {
		if ts := timerTime(key); ts > b.maxSet {
			b.maxSet = ts
		}
	}
	b.ops = append(b.ops, batchOp{abbr: [2]uint64{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}, off: uint32(len(b.arena)), klen: uint32(len(key)), vlen: uint32(len(value)), del: del})
	b.arena = append(append(b.arena, key...), value...)
}

// commit writes the gathered writes to s in key order, in Pebble batches
// of up to writeBatchBytes (during an epoch into s.pend), and empties b.
func (b *sortedBatch) commit(s *Store) {
	if len(b.ops) == 0 {
		return
	}
	if s.failed() {
		b.reset()
		return
	}
	maxTS, err := b.apply(s, s.pend, s.timerMax)
	b.reset()
	if err != nil {
		s.fail(fmt.Errorf("state store write: %w", err))
		return
	}
	if b.timers {
		s.timerMax = maxTS
	}
	s.checkPend()
}

// apply writes the gathered writes in key order into the batch into, or
// when it is nil to s's database in batches of up to writeBatchBytes
// (Store.commit).
// timerMax is the highest timer time the store held before (see
// sortedBatch.timers); apply returns it raised to the times it wrote. It
// leaves b as it was, apart from the order of its writes.
func (b *sortedBatch) apply(s *Store, into *pebble.Batch, timerMax int64) (int64, error) {
	if len(b.ops) == 0 {
		return timerMax, nil
	}
	b.sort()
	pb := into
	if pb == nil {
		pb = s.db.NewBatch()
		defer pb.Close()
	}
	// Raised as the loop goes, tested against the store as it was before
	// this batch.
	maxTS := timerMax
	for i, o := range b.ops {
		k := b.key(o)
		// Keys whose first 16 bytes or lengths differ differ: most
		// neighbours are told apart without reading the next key's bytes
		// (a cache miss: the sorted writes point all over the arena).
		if i+1 < len(b.ops) {
			if n := b.ops[i+1]; n.abbr == o.abbr && n.klen == o.klen && bytes.Equal(k, b.key(n)) {
				continue // a later write of the key wins
			}
		}
		var ts int64
		if b.timers {
			ts = timerTime(k)
			if o.del && ts > timerMax {
				continue // never stored: nothing to delete
			}
		}
		var err error
		if o.del {
			err = pb.Delete(k, nil)
		} else {
			err = pb.Set(k, b.arena[o.off+o.klen:o.off+o.klen+o.vlen], nil)
			maxTS = max(maxTS, ts)
		}
		if err == nil && into == nil && pb.Len() >= writeBatchBytes {
			err = s.commit(pb)
			pb.Reset()
		}
		if err != nil {
			return maxTS, err
		}
	}
	if into != nil {
		return maxTS, nil
	}
	return maxTS, s.commit(pb)
}

// sort orders the writes by key; of several writes of one key the last
// (the highest offset) stays last, so an unstable sort with that
// tie-break does. A large batch is first distributed by its keys' first
// two bytes, the key group, in one counting pass, then each group sorted
// by comparison: the timers' batches of 64 Ki writes spread over the key
// groups, and sorting them whole took an eighth of the state-heavy fraud
// job's CPU with timers in the store.
func (b *sortedBatch) sort() {
	cmpOp := func(x, y batchOp) int {
		if x.abbr[0] != y.abbr[0] {
			return cmp.Compare(x.abbr[0], y.abbr[0])
		}
		if x.abbr[1] != y.abbr[1] {
			return cmp.Compare(x.abbr[1], y.abbr[1])
		}
		if c := bytes.Compare(b.key(x), b.key(y)); c != 0 {
			return c
		}
		return cmp.Compare(x.off, y.off)
	}
	if len(b.ops) < bucketSortOps {
		slices.SortFunc(b.ops, cmpOp)
		return
	}
	if b.starts == nil {
		b.starts = make([]int32, 1<<16+1)
	}
	starts := b.starts
	clear(starts)
	for i := range b.ops {
		starts[b.ops[i].abbr[0]>>48+1]++
	}
	for i := 1; i < len(starts); i++ {
		starts[i] += starts[i-1]
	}
	b.spare = slices.Grow(b.spare[:0], len(b.ops))[:len(b.ops)]
	next := starts[:1<<16] // advanced as each bucket fills: then the buckets' ends
	for _, o := range b.ops {
		g := o.abbr[0] >> 48
		b.spare[next[g]] = o
		next[g]++
	}
	b.ops, b.spare = b.spare, b.ops
	// next[g] is now bucket g's end, and the previous bucket's end its start.
	lo := int32(0)
	for g := range next {
		if hi := next[g]; hi > lo {
			if hi-lo > 1 {
				slices.SortFunc(b.ops[lo:hi], cmpOp)
			}
			lo = hi
		}
	}
}

// bucketSortOps is the batch size from which sort distributes by key
// group first.
const bucketSortOps = 4096

func (b *sortedBatch) reset() {
	b.arena, b.ops, b.maxSet = b.arena[:0], b.ops[:0], math.MinInt64
}
