package pebblestate

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"

	"github.com/cockroachdb/pebble/v2"

	"github.com/weirstream/weir/internal/hugepage"
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
// of everything, after compacting the dead records away if they are most
// of it), when a timer queue reads the store (a head's refill), and at a
// barrier, which freezes the buffer as it freezes the value caches (see
// epoch). Firing order is unaffected: the queues' heads keep every
// group's earliest timers in memory whether the timer is buffered or in
// Pebble (see TimerQueue).
//
// Layout, for few cache misses and no pointers: records are appended to
// one byte arena as a flags byte, the key's length (uvarint) and the key;
// deleting marks a record dead. The index is an open-addressing table of
// uint64 slots (linear probing, at most 3/4 full, deletion by backward
// shift): the high 32 bits of the key's hash, which also pick the home
// slot, and the record's offset plus one; zero is empty. The detector's
// timers (20-byte keys) take 22 bytes of arena and some 11 of index.
type timerBuffer struct {
	arena []byte
	slots []uint64
	live  int // records not dead
	dead  int // bytes of dead records
	// maxSet is the highest time of a timer registered in the buffer: a
	// barrier freezing it raises the store's timerMax to it first.
	maxSet int64
	// limit bounds cap(arena) plus the index's bytes.
	limit int
	seed  maphash.Seed
	// sb is apply's scratch: the writes of one sorted chunk.
	sb sortedBatch
}

// Record flags.
const (
	recDel  = 1 << 0 // a delete, else a register
	recDead = 1 << 1 // dropped: skipped by apply and compact
)

// Bounds of a buffer: minTimerBuffer is its smallest limit, and offsets
// are 32 bits.
const (
	minTimerBuffer = 1 << 20
	maxTimerBuffer = 1 << 31
	minTimerSlots  = 1 << 10
)

func newTimerBuffer(limit int) *timerBuffer {
	return &timerBuffer{limit: min(max(limit, minTimerBuffer), maxTimerBuffer), maxSet: math.MinInt64, seed: maphash.MakeSeed()}
}

// bytes is the memory the buffer holds.
func (b *timerBuffer) bytes() int { return cap(b.arena) + 8*len(b.slots) }

func (b *timerBuffer) hash(key []byte) uint32 { return uint32(maphash.Bytes(b.seed, key) >> 32) }

// rec returns the key of the record at off and the offset past it.
func (b *timerBuffer) rec(off int) (key []byte, end int) {
	n, w := binary.Uvarint(b.arena[off+1:])
	start := off + 1 + w
	return b.arena[start : start+int(n)], start + int(n)
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
			if k, _ := b.rec(int(uint32(v)) - 1); bytes.Equal(k, key) {
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
	return found && b.arena[int(uint32(b.slots[i]))-1]&recDel != 0
}

// full reports whether adding a record for a key of klen bytes might
// take the buffer past its limit.
func (b *timerBuffer) full(klen int) bool {
	need := len(b.arena) + klen + binary.MaxVarintLen32 + 1
	if need > cap(b.arena) && b.arenaCap(need) < need {
		return true
	}
	return (b.live+1)*4 > len(b.slots)*3 && cap(b.arena)+16*max(len(b.slots), minTimerSlots) > b.limit
}

// arenaCap is the capacity the arena grows to when it needs need bytes.
func (b *timerBuffer) arenaCap(need int) int {
	c := max(2*cap(b.arena), 64<<10, need)
	return min(c, b.limit-8*len(b.slots))
}

// add buffers a register (del false) or delete of key. timerMax is the
// store's: a timer above it cannot be in Pebble, so deleting it needs no
// write. The caller has made room (full).
func (b *timerBuffer) add(key []byte, del bool, timerMax int64) {
	if (b.live+1)*4 > len(b.slots)*3 {
		b.grow()
	}
	h := b.hash(key)
	i, found := b.find(key, h)
	ts := timerTime(key)
	if found {
		off := int(uint32(b.slots[i])) - 1
		f := b.arena[off]
		switch {
		case del && f&recDel == 0 && ts > timerMax:
			// Registered here and never stored: forget it.
			_, end := b.rec(off)
			b.arena[off] = f | recDead
			b.dead += end - off
			b.live--
			b.remove(i)
		case del:
			b.arena[off] = f | recDel
		default:
			b.arena[off] = f &^ recDel
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
	off := len(b.arena)
	if need := off + len(key) + binary.MaxVarintLen32 + 1; need > cap(b.arena) {
		a := hugepage.Make[byte](b.arenaCap(need))
		b.arena = a[:copy(a, b.arena)]
	}
	b.arena = append(b.arena, f)
	b.arena = binary.AppendUvarint(b.arena, uint64(len(key)))
	b.arena = append(b.arena, key...)
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
// rebuilds the index.
func (b *timerBuffer) compact() {
	clear(b.slots)
	mask := len(b.slots) - 1
	w := 0
	for off := 0; off < len(b.arena); {
		f := b.arena[off]
		key, end := b.rec(off)
		if f&recDead == 0 {
			h := b.hash(key)
			n := copy(b.arena[w:], b.arena[off:end])
			i := int(h) & mask
			for b.slots[i] != 0 {
				i = (i + 1) & mask
			}
			b.slots[i] = uint64(h)<<32 | uint64(w+1)
			w += n
		}
		off = end
	}
	b.arena, b.dead = b.arena[:w], 0
}

// chunks hands fn the live writes in sorted batches of at most
// timerBatchOps (each batch sorted; the batches are in arena order). The
// batches point into the arena: fn must not keep them.
func (b *timerBuffer) chunks(fn func(sb *sortedBatch) error) error {
	sb := &b.sb
	sb.timers, sb.arena, sb.ops = true, b.arena, sb.ops[:0]
	defer func() { sb.arena, sb.ops = nil, sb.ops[:0] }()
	for off := 0; off < len(b.arena); {
		f := b.arena[off]
		key, end := b.rec(off)
		if f&recDead == 0 {
			var a [16]byte
			copy(a[:], key)
			sb.ops = append(sb.ops, batchOp{abbr: [2]uint64{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])},
				off: uint32(end - len(key)), klen: uint32(len(key)), del: f&recDel != 0})
			if len(sb.ops) == timerBatchOps {
				if err := fn(sb); err != nil {
					return err
				}
				sb.ops = sb.ops[:0]
			}
		}
		off = end
	}
	if len(sb.ops) > 0 {
		return fn(sb)
	}
	return nil
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
	if len(b.arena) == 0 {
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
	b.arena, b.live, b.dead, b.maxSet = b.arena[:0], 0, 0, math.MinInt64
	clear(b.slots)
}

// makeRoom frees room for a key of klen bytes in a full buffer: by
// compacting when dead records are at least half the arena (and that
// leaves a quarter of it free), else by writing it all to Pebble.
func (s *Store) makeRoom(klen int) {
	b := s.tb
	if b.dead > 0 && b.dead*2 >= len(b.arena) {
		b.compact()
		if len(b.arena)*4 <= cap(b.arena)*3 && !b.full(klen) {
			return
		}
	}
	s.commitTimers()
}
