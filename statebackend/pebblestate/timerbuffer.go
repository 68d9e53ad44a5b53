package pebblestate

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"

	"github.com/weirstream/weir/internal/hugepage"
	"github.com/weirstream/weir/internal/prefetch"
)

// timerBuffer is the in-memory tier of the timer queues: the timer writes
// (registers and deletes) that Pebble does not have yet, one record per
// timer key, bounded by the store's share of the slot's --state-memory.
//
// Why: a state-heavy job deletes its key's timer and registers another on
// every record, and with millions of keys the delete comes millions of
// records after the register, far beyond what a batch of a few thousand
// writes can coalesce; written to Pebble, every such pair is a memtable
// insert, a tombstone, and work for every compaction after. Here a delete
// finds the register's record through an index and, when the timer's
// time is above every time Pebble ever held (Store.timerMax: Pebble
// cannot have it), drops the record: a timer registered and deleted
// while buffered never reaches Pebble. Whatever is left reaches Pebble
// sorted, in batches of timerBatchOps, when the buffer is full (a spill
// of everything, unless compacting the dead records away frees enough),
// when a head's refill finds nothing in Pebble before the group's
// buffered timers (see TimerQueue.fill), and at a barrier, which freezes
// the buffer as it freezes the value caches (see epoch). Firing order is unaffected: the queues' heads keep every
// group's earliest timers in memory whether the timer is buffered or in
// Pebble (see TimerQueue).
//
// Layout, for few cache misses and no pointers: records are appended to
// an arena of fixed-size blocks (growing it never copies, and compaction
// and reset keep the blocks) as a flags byte, the key's length (uvarint)
// and the key; deleting marks a record dead. The index is an
// open-addressing table of uint64 slots (linear probing, at most 3/4
// full, deletion by backward shift): 32 bits of the hash of the timer's
// key part (not its time or key group), which also pick the home slot,
// and the record's offset plus one; zero is empty. Hashing the key alone
// lets a value table's Prefetch, which the runtime calls for each record
// it holds back, prefetch the record's slot too (the timers of one key
// then share a probe run, which costs a key with many timers a
// comparison per timer). The detector's timers (20-byte keys) take 22
// bytes of arena and some 11 of index.
type timerBuffer struct {
	// blocks[i] holds the records at offsets i<<shift on, used[i] bytes
	// of it; cur is the block being filled. A record never spans blocks.
	blocks [][]byte
	used   []int
	cur    int
	shift  uint
	slots  []uint64
	live   int // records not dead
	dead   int // bytes of dead records
	// maxSet is the highest time of a timer registered in the buffer: a
	// barrier freezing it raises the store's timerMax to it first.
	maxSet int64
	// limit bounds the blocks' bytes plus the index's.
	limit int
	seed  maphash.Seed
	// sb is apply's scratch: the writes of one sorted chunk.
	sb sortedBatch
	// compactions counts compact's runs (tests).
	compactions int
	// lag holds the hashes of the last keys prefetched (prefetch).
	lag  [prefetchLag]uint32
	lagN int
}

// Record flags.
const (
	recDel  = 1 << 0 // a delete, else a register
	recDead = 1 << 1 // dropped: skipped by apply and compact
)

// Bounds of a buffer: minTimerBuffer is its smallest limit, and offsets
// are 32 bits. A block is an eighth of the limit at most, from 4 KiB (in
// tests) to 32 MiB (on huge pages from 4 MiB: hugepage.Make pads by up to
// 4 MiB).
const (
	minTimerBuffer = 1 << 20
	maxTimerBuffer = 1 << 31
	minTimerSlots  = 1 << 10
	minBlockShift  = 12
	maxBlockShift  = 25
)

func newTimerBuffer(limit int) *timerBuffer {
	limit = min(limit, maxTimerBuffer)
	shift := uint(minBlockShift)
	for shift < maxBlockShift && 8<<(shift+1) <= limit {
		shift++
	}
	return &timerBuffer{limit: limit, shift: shift, maxSet: math.MinInt64, seed: maphash.MakeSeed()}
}

// bytes is the memory the buffer holds.
func (b *timerBuffer) bytes() int { return len(b.blocks)<<b.shift + 8*len(b.slots) }

// empty reports whether the buffer holds no records, dead or alive.
func (b *timerBuffer) empty() bool { return b.cur == 0 && (len(b.used) == 0 || b.used[0] == 0) }

// recLen is the most bytes a record of a key of klen bytes takes.
func recLen(klen int) int { return 1 + binary.MaxVarintLen32 + klen }

// fits reports whether a record of a key of klen bytes fits in a block.
func (b *timerBuffer) fits(klen int) bool { return recLen(klen) <= 1<<b.shift }

// hash is the hash of a timer key's key part (after the key group, queue
// id and time), so that the runtime can prefetch a record's slot before
// it knows the timer's time (prefetch).
func (b *timerBuffer) hash(key []byte) uint32 {
	if len(key) >= prefixLen+8 {
		key = key[prefixLen+8:]
	}
	return b.hashKey(key)
}

func (b *timerBuffer) hashKey(k []byte) uint32 { return uint32(maphash.Bytes(b.seed, k) >> 32) }

// prefetch prefetches the index slot where the timers of the key encoded
// as k start and, for the key prefetched prefetchLag calls before (whose
// slot has arrived by now), the record its home slot points to: a delete
// compares the record's key, a cache miss the slot's prefetch cannot
// cover since it needs the slot first.
func (b *timerBuffer) prefetch(k []byte) {
	if len(b.slots) == 0 {
		return
	}
	mask := len(b.slots) - 1
	h := b.hashKey(k)
	prefetch.Line(unsafe.Pointer(&b.slots[int(h)&mask]))
	i := b.lagN % prefetchLag
	old := b.lag[i]
	b.lag[i] = h
	b.lagN++
	if v := b.slots[int(old)&mask]; v != 0 && uint32(v>>32) == old {
		off := int(uint32(v)) - 1
		prefetch.Line(unsafe.Pointer(&b.blocks[off>>b.shift][off&(1<<b.shift-1)]))
	}
}

// prefetchLag is how many prefetches later a slot is read to prefetch its
// record: the runtime processes a record some 7 prefetches after its own.
const prefetchLag = 4

// rec returns the block holding the record at off, the record's index in
// it, its key, and the offset past it.
func (b *timerBuffer) rec(off int) (blk []byte, i int, key []byte, end int) {
	blk = b.blocks[off>>b.shift]
	i = off & (1<<b.shift - 1)
	n, w := binary.Uvarint(blk[i+1:])
	start := i + 1 + w
	return blk, i, blk[start : start+int(n)], off + 1 + w + int(n)
}

// each calls fn with the offset, flags and key of each record, in order.
func (b *timerBuffer) each(fn func(off int, f byte, key []byte) error) error {
	for bi := 0; bi <= b.cur && bi < len(b.blocks); bi++ {
		base := bi << b.shift
		for off, n := base, base+b.used[bi]; off < n; {
			blk, i, key, end := b.rec(off)
			if err := fn(off, blk[i], key); err != nil {
				return err
			}
			off = end
		}
	}
	return nil
}

// find returns key's slot, or the empty slot where it would go.
func (b *timerBuffer) find(key []byte, h uint32) (int, bool) {
	mask := len(b.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		v := b.slots[i]
		if v == 0 {
			return i, false
		}
		if uint32(v>>32) == h {
			if _, _, k, _ := b.rec(int(uint32(v)) - 1); bytes.Equal(k, key) {
				return i, true
			}
		}
	}
}

// deletes reports whether the buffer holds a delete of key.
func (b *timerBuffer) deletes(key []byte) bool {
	if b.live == 0 {
		return false
	}
	i, found := b.find(key, b.hash(key))
	if !found {
		return false
	}
	blk, j, _, _ := b.rec(int(uint32(b.slots[i])) - 1)
	return blk[j]&recDel != 0
}

// full reports whether adding a record for a key of klen bytes might
// take the buffer past its limit.
func (b *timerBuffer) full(klen int) bool {
	if b.needBlock(klen) && (len(b.blocks)+1)<<b.shift+8*len(b.slots) > b.limit {
		return true
	}
	return (b.live+1)*4 > len(b.slots)*3 && len(b.blocks)<<b.shift+16*max(len(b.slots), minTimerSlots) > b.limit
}

// needBlock reports whether a record of a key of klen bytes needs a block
// the buffer has yet to allocate.
func (b *timerBuffer) needBlock(klen int) bool {
	if len(b.blocks) == 0 {
		return true
	}
	return b.used[b.cur]+recLen(klen) > 1<<b.shift && b.cur+1 >= len(b.blocks)
}

// add buffers a register (del false) or delete of key. timerMax is the
// store's: a timer above it cannot be in Pebble, so deleting it needs no
// write. The caller has made room (full) and checked that it fits.
func (b *timerBuffer) add(key []byte, del bool, timerMax int64) {
	if (b.live+1)*4 > len(b.slots)*3 {
		b.grow()
	}
	h := b.hash(key)
	i, found := b.find(key, h)
	ts := timerTime(key)
	if found {
		off := int(uint32(b.slots[i])) - 1
		blk, j, _, end := b.rec(off)
		f := blk[j]
		switch {
		case del && f&recDel == 0 && ts > timerMax:
			// Registered here and never stored: forget it.
			blk[j] = f | recDead
			b.dead += end - off
			b.live--
			b.remove(i)
		case del:
			blk[j] = f | recDel
		default:
			blk[j] = f &^ recDel
			b.maxSet = max(b.maxSet, ts)
		}
		return
	}
	if del && ts > timerMax {
		return // never stored: nothing to delete
	}
	var f byte
	if del {
		f = recDel
	} else {
		b.maxSet = max(b.maxSet, ts)
	}
	if len(b.blocks) == 0 || b.used[b.cur]+recLen(len(key)) > 1<<b.shift {
		if len(b.blocks) > 0 {
			b.cur++
		}
		if b.cur == len(b.blocks) {
			b.blocks = append(b.blocks, hugepage.Make[byte](1<<b.shift))
			b.used = append(b.used, 0)
		}
		b.used[b.cur] = 0
	}
	blk, n := b.blocks[b.cur], b.used[b.cur]
	off := b.cur<<b.shift + n
	blk[n] = f
	n++
	n += binary.PutUvarint(blk[n:], uint64(len(key)))
	n += copy(blk[n:], key)
	b.used[b.cur] = n
	b.slots[i] = uint64(h)<<32 | uint64(off+1)
	b.live++
}

// remove empties slot i, moving later slots of its probe run back.
func (b *timerBuffer) remove(i int) {
	mask := len(b.slots) - 1
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		v := b.slots[j]
		if v == 0 {
			break
		}
		home := int(uint32(v>>32)) & mask
		// The entry at j may move to i unless its home lies cyclically
		// in (i, j].
		if (i <= j && (home <= i || home > j)) || (i > j && home <= i && home > j) {
			b.slots[i] = v
			i = j
		}
	}
	b.slots[i] = 0
}

// grow doubles the index.
func (b *timerBuffer) grow() {
	old := b.slots
	b.slots = hugepage.Make[uint64](max(2*len(old), minTimerSlots))
	b.reindex(old)
}

// reindex puts the entries of old into b.slots.
func (b *timerBuffer) reindex(old []uint64) {
	mask := len(b.slots) - 1
	for _, v := range old {
		if v == 0 {
			continue
		}
		i := int(uint32(v>>32)) & mask
		for b.slots[i] != 0 {
			i = (i + 1) & mask
		}
		b.slots[i] = v
	}
}

// compact moves the live records to the front of the arena, in order, and
// rebuilds the index. Records only move to lower offsets, so in place.
func (b *timerBuffer) compact() {
	clear(b.slots)
	mask := len(b.slots) - 1
	wb, wi := 0, 0 // where the next live record goes
	last := b.cur
	for bi := 0; bi <= last && bi < len(b.blocks); bi++ {
		base := bi << b.shift
		for off, n := base, base+b.used[bi]; off < n; {
			blk, i, key, end := b.rec(off)
			l := end - off
			if blk[i]&recDead == 0 {
				if wi+l > 1<<b.shift {
					b.used[wb] = wi
					wb, wi = wb+1, 0
				}
				h := b.hash(key)
				copy(b.blocks[wb][wi:], blk[i:i+l])
				j := int(h) & mask
				for b.slots[j] != 0 {
					j = (j + 1) & mask
				}
				b.slots[j] = uint64(h)<<32 | uint64(wb<<b.shift+wi+1)
				wi += l
			}
			off = end
		}
	}
	for j := wb; j < len(b.used); j++ {
		b.used[j] = 0
	}
	if len(b.used) > 0 {
		b.used[wb] = wi
	}
	b.cur, b.dead = wb, 0
	b.compactions++
}

// chunks hands fn the live writes in sorted batches of at most
// timerBatchOps (each batch sorted; the batches are in arena order). The
// batches point into the arena: fn must not keep them.
func (b *timerBuffer) chunks(fn func(sb *sortedBatch) error) error {
	sb := &b.sb
	sb.timers, sb.ops = true, sb.ops[:0]
	defer func() { sb.arena, sb.ops = nil, sb.ops[:0] }()
	// A batch refers to one block's bytes: a new block starts a batch.
	blk := -1
	flush := func() error {
		if len(sb.ops) == 0 {
			return nil
		}
		err := fn(sb)
		sb.ops = sb.ops[:0]
		return err
	}
	err := b.each(func(off int, f byte, key []byte) error {
		if f&recDead != 0 {
			return nil
		}
		if bi := off >> b.shift; bi != blk {
			if err := flush(); err != nil {
				return err
			}
			blk, sb.arena = bi, b.blocks[bi]
		}
		_, _, _, end := b.rec(off)
		var a [16]byte
		copy(a[:], key)
		kOff := (end - len(key)) & (1<<b.shift - 1)
		sb.ops = append(sb.ops, batchOp{abbr: [2]uint64{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])},
			off: uint32(kOff), klen: uint32(len(key)), del: f&recDel != 0})
		if len(sb.ops) == timerBatchOps {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// apply writes the buffer to s's database (into nil) or into the batch
// into, leaving the buffer as it was; as sortedBatch.apply, it returns
// timerMax raised to the times it wrote.
func (b *timerBuffer) apply(s *Store, into *timerSink, timerMax int64) (int64, error) {
	maxTS := timerMax
	err := b.chunks(func(sb *sortedBatch) error {
		m, err := sb.apply(s, into.batch(), timerMax)
		maxTS = max(maxTS, m)
		if err == nil {
			into.chunkDone()
		}
		return err
	})
	return maxTS, err
}

// timerSink is where apply writes: nil for the database; else the store's
// pending batch of the moment (an epoch may end between chunks, see
// Store.checkPend).
type timerSink struct{ s *Store }

func (t *timerSink) batch() *pebble.Batch {
	if t == nil {
		return nil
	}
	return t.s.pend
}

func (t *timerSink) chunkDone() {
	if t != nil {
		t.s.checkPend()
	}
}

// commit writes the buffer to s (during an epoch into its pending batch)
// and empties it.
func (b *timerBuffer) commit(s *Store) {
	if b.empty() {
		return
	}
	if s.failed() {
		b.reset()
		return
	}
	maxTS, err := b.apply(s, &timerSink{s}, s.timerMax)
	b.reset()
	if err != nil {
		s.fail(fmt.Errorf("state store write: %w", err))
		return
	}
	s.timerMax = maxTS
}

// reset empties the buffer, keeping its memory.
func (b *timerBuffer) reset() {
	clear(b.used)
	b.cur, b.live, b.dead, b.maxSet = 0, 0, 0, math.MinInt64
	clear(b.slots)
}

// makeRoom frees room for a key of klen bytes in a full buffer: by
// compacting when dead records are at least half the arena (and that
// leaves a quarter of its blocks free), else by writing it all to Pebble.
func (s *Store) makeRoom(klen int) {
	b := s.tb
	if len(b.blocks) == 0 {
		return // the index alone is over a limit this small (tests)
	}
	if n := b.cur<<b.shift + b.used[b.cur]; b.dead > 0 && b.dead*2 >= n {
		b.compact()
		if n = b.cur<<b.shift + b.used[b.cur]; n*4 <= len(b.blocks)<<b.shift*3 && !b.full(klen) {
			return
		}
	}
	s.commitTimers()
}
