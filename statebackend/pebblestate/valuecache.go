package pebblestate

import (
	"hash/maphash"
	"math/bits"
	"unsafe"

	"github.com/weirstream/weir/statebackend"
)

// clockCache is a value table's cache of decoded values: a dense array of
// fixed-size slots and an open-addressing index over them, evicted by
// CLOCK (second chance).
//
// Why this shape: a Go map per table allocated nothing per entry either,
// but it could only be emptied whole when full (its iteration order is no
// eviction policy), so after each fill the hit rate started again from
// zero. Here a hand sweeps the slots: a slot read or written since the
// hand last passed has its reference bit cleared and stays, the others
// are victims. The table writes a batch of victims back at once (the dirty
// ones, in key order) and reuses their slots, so the hot set stays cached.
//
// The index holds, per entry, the top 32 bits of the key's hash and the
// slot's number: a probe compares keys only on a tag match, and an entry's
// home position is its tag's top bits, so deletion shifts entries back
// without rehashing (the index has at most 2^32 positions).
type clockCache[K comparable, V any] struct {
	hash  func(K) uint64
	slots []cslot[K, V]
	index []uint64
	shift uint8
	// maxIndex is the index's length at the cache's full size.
	maxIndex int
	free     []int32
	n, dirty int
	hand     int
}

// cslot is one cached key. A slot without slotUsed is free.
type cslot[K comparable, V any] struct {
	k     K
	v     V
	kg    uint16
	flags uint8
}

const (
	slotUsed    = 1 << iota
	slotPresent // the key has a value, v
	slotDirty   // Pebble (as the task sees it) lacks this entry
	slotRef     // read or written since the hand passed
	slotVictim  // chosen by the current sweep
)

const minIndex = 64

func newClockCache[K comparable, V any](hash func(K) uint64, maxIndex int) *clockCache[K, V] {
	return &clockCache[K, V]{hash: hash, maxIndex: max(maxIndex, minIndex)}
}

// slotBytes is the size of one slot.
func slotBytes[K comparable, V any]() int { return int(unsafe.Sizeof(cslot[K, V]{})) }

// cacheSize returns how many keys a cache of at most bytes holds, and the
// index's length for that many, given perKey bytes per key besides the
// index: the largest count over the index lengths that fit, at a load of
// at most 3/4.
func cacheSize(bytes, perKey int) (keys, index int) {
	index = minIndex
	for p := minIndex; p*8 < bytes && p <= 1<<32; p *= 2 {
		if l := min((bytes-p*8)/perKey, p*3/4); l > keys {
			keys, index = l, p
		}
	}
	return keys, index
}

// bytes is the memory the cache holds: slots, index and free list.
func (c *clockCache[K, V]) bytes() int {
	return cap(c.slots)*slotBytes[K, V]() + len(c.index)*8 + cap(c.free)*4
}

// find returns k's slot, or -1; h is c.hash(k).
func (c *clockCache[K, V]) find(h uint64, k K) int32 {
	if c.n == 0 {
		return -1
	}
	mask := uint64(len(c.index) - 1)
	tag := h >> 32
	for p := h >> c.shift; ; p = (p + 1) & mask {
		e := c.index[p]
		if e == 0 {
			return -1
		}
		if e>>32 == tag {
			if i := int32(uint32(e)) - 1; c.slots[i].k == k {
				return i
			}
		}
	}
}

// add puts k in a free slot and returns it; the caller makes room first
// (c.n below its limit, which is at most len(c.slots) grown to limit).
func (c *clockCache[K, V]) add(h uint64, kg int, k K, limit int) int32 {
	var i int32
	if n := len(c.free); n > 0 {
		i = c.free[n-1]
		c.free = c.free[:n-1]
	} else {
		if len(c.slots) == cap(c.slots) {
			s := make([]cslot[K, V], len(c.slots), min(max(2*cap(c.slots), 64), max(limit, 1)))
			copy(s, c.slots)
			c.slots = s
		}
		i = int32(len(c.slots))
		c.slots = c.slots[:i+1]
	}
	if (c.n+1)*4 > len(c.index)*3 {
		c.rehash(max(2*len(c.index), minIndex))
	}
	c.slots[i] = cslot[K, V]{k: k, kg: uint16(kg), flags: slotUsed}
	c.insert(h, i)
	c.n++
	return i
}

func (c *clockCache[K, V]) insert(h uint64, i int32) {
	mask := uint64(len(c.index) - 1)
	p := h >> c.shift
	for c.index[p] != 0 {
		p = (p + 1) & mask
	}
	c.index[p] = h>>32<<32 | uint64(i+1)
}

// rehash rebuilds the index at size entries (a power of two).
func (c *clockCache[K, V]) rehash(size int) {
	c.index = make([]uint64, size)
	c.shift = uint8(64 - bits.TrailingZeros(uint(size)))
	for i := range c.slots {
		if c.slots[i].flags&slotUsed != 0 {
			c.insert(c.hash(c.slots[i].k), int32(i))
		}
	}
}

// remove frees slot i.
func (c *clockCache[K, V]) remove(i int32) {
	s := &c.slots[i]
	h := c.hash(s.k)
	mask := uint64(len(c.index) - 1)
	want := h>>32<<32 | uint64(i+1)
	p := h >> c.shift
	for c.index[p] != want {
		p = (p + 1) & mask
	}
	// Backward-shift deletion: move up each later entry of the run whose
	// home is not between the hole and itself.
	for {
		c.index[p] = 0
		q := p
		for {
			q = (q + 1) & mask
			e := c.index[q]
			if e == 0 {
				goto done
			}
			home := e >> c.shift
			// e may move to p unless its home lies cyclically in (p, q].
			if (q > p && (home <= p || home > q)) || (q < p && home <= p && home > q) {
				c.index[p] = e
				p = q
				break
			}
		}
	}
done:
	if s.flags&slotDirty != 0 {
		c.dirty--
	}
	*s = cslot[K, V]{}
	c.free = append(c.free, i)
	c.n--
}

// sweep moves the hand until it has chosen want victims (marked
// slotVictim) or gone twice round, and appends them to dst. A slot whose
// key frozen holds is never a victim (see ValueTable.makeRoom).
func (c *clockCache[K, V]) sweep(want int, frozen *clockCache[K, V], dst []int32) []int32 {
	for steps := 2 * len(c.slots); steps > 0 && len(dst) < want; steps-- {
		if c.hand >= len(c.slots) {
			c.hand = 0
		}
		i := c.hand
		c.hand++
		s := &c.slots[i]
		switch {
		case s.flags&(slotUsed|slotVictim) != slotUsed:
		case s.flags&slotRef != 0:
			s.flags &^= slotRef
		case frozen != nil && frozen.find(c.hash(s.k), s.k) >= 0:
		default:
			s.flags |= slotVictim
			dst = append(dst, int32(i))
		}
	}
	return dst
}

// keyHash is the hash a value table's cache probes with: the key codec's
// (the runtime's key types know it, see statebackend.KeyHasher), mixed
// to 64 bits, or else a seeded hash of the key.
func keyHash[K comparable](kc statebackend.Codec[K]) func(K) uint64 {
	if h, ok := kc.(statebackend.KeyHasher[K]); ok {
		return func(k K) uint64 { return mix64(uint64(uint32(h.Hash(k)))) }
	}
	seed := maphash.MakeSeed()
	return func(k K) uint64 { return maphash.Comparable(seed, k) }
}

// mix64 spreads x's bits over all 64 (the finaliser of SplitMix64): the
// key codec's hash also picks key groups, so its low bits alone are
// skewed within one subtask.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// keyFilter is a store's blocked Bloom filter of the value-table keys that
// were ever given a value: a cache miss on a key it has never seen is
// answered "absent" without a Pebble read, which at millions of keys
// costs several microseconds (memtables, then filter and index blocks
// per level), and most of a state-heavy job's first reads are of new
// keys. Each key sets four bits of one 64-bit word, so a test is one
// cache miss. It is only valid while every value in the store went
// through a table (Store.unknownKeys after a restore turns it off).
type keyFilter struct {
	words []uint64
	shift uint8
}

func newKeyFilter(bytes int) *keyFilter {
	n := 1
	for n*2*8 <= bytes {
		n *= 2
	}
	return &keyFilter{words: make([]uint64, n), shift: uint8(64 - bits.TrailingZeros(uint(n)))}
}

// filterHash combines a table's key hash with its state id.
func filterHash(h uint64, id uint16) uint64 { return mix64(h ^ uint64(id)<<48) }

func (f *keyFilter) mask(h uint64) (w uint64, m uint64) {
	w = h >> f.shift // 0 for a one-word filter (shift 64)
	return w, 1<<(h&63) | 1<<(h>>6&63) | 1<<(h>>12&63) | 1<<(h>>18&63)
}

func (f *keyFilter) add(h uint64) {
	w, m := f.mask(h)
	f.words[w] |= m
}

func (f *keyFilter) mayContain(h uint64) bool {
	w, m := f.mask(h)
	return f.words[w]&m == m
}
