package pebblestate

import (
	"hash/maphash"
	"math/bits"
	"unsafe"

	"github.com/weirstream/weir/internal/hugepage"
	"github.com/weirstream/weir/statebackend"
)

// clockCache is a value table's cache of decoded values: one
// open-addressing array of fixed-size slots (linear probing, at most 3/4
// full), evicted by CLOCK (second chance).
//
// Why this shape: a Go map per table allocated nothing per entry either,
// but it could only be emptied whole when full (its iteration order is no
// eviction policy), so after each fill the hit rate started again from
// zero. Here a hand sweeps the array: a slot read or written since the
// hand last passed has its reference bit cleared and stays, the others
// are victims. The table writes a batch of victims back at once (the dirty
// ones, in key order), so the hot set stays cached. The slots are the
// table, with no index beside them, so a hit costs one cache miss, and a
// key of the fraud detector's states takes 21 or 32 bytes.
//
// A slot keeps the top 32 bits of its key's hash (tag): probes compare
// keys only on a tag match, and the tag gives the slot's home position
// (tag times the array's length, over 2^32), so growing and deletion
// (backward shift) never hash again, and the array's length need not be a
// power of two: it is exactly what the table's memory share holds.
type clockCache[K comparable, V any] struct {
	hash  func(K) uint64
	slots []cslot[K, V]
	// maxLen is the array's length at the cache's full size.
	maxLen   int
	n, dirty int
	// The hand visits every slot once per round, stride slots apart
	// (stride is coprime with the length, near its golden section): a
	// hand moving slot by slot would evict runs of neighbours, and the
	// keys added meanwhile, at random homes, would crowd the part of the
	// array it has not reached yet into ever longer runs (clusters of
	// 10^5 slots at 3/4 load in a test).
	hand, stride int
}

// cslot is one cached key. A slot without slotUsed is empty. The fields
// are ordered so that an int64 key with a bool value takes 16 bytes, and
// with an operator's two word states (words) 32.
type cslot[K comparable, V any] struct {
	k     K
	tag   uint32
	kg    uint16
	flags uint8
	v     V
}

// A slot's flags. A slot holds the values of one or two states (columns,
// see valueCore); each column has a present and a dirty bit.
const (
	slotUsed   = 1 << iota
	slotRef    // read or written since the hand passed
	slotVictim // chosen by the current sweep
	// slotFiltered: the store's key filter has the key. It survives a
	// delete, so that a key cleared and set again per record costs no
	// filter write (a cache miss in a filter of megabytes) per record.
	slotFiltered
	slotPresent // column 0 has a value; column 1's bit is the next
	_
	slotDirty // Pebble (as the task sees it) lacks column 0's entry; column 1's bit is the next
	_

	slotAnyDirty = slotDirty | slotDirty<<1
	slotAnyValue = slotPresent | slotPresent<<1
)

func presentBit(col int) uint8 { return slotPresent << col }
func dirtyBit(col int) uint8   { return slotDirty << col }

// minSlots is the array's length when the first key arrives.
const minSlots = 64

func newClockCache[K comparable, V any](hash func(K) uint64, maxLen int) *clockCache[K, V] {
	return &clockCache[K, V]{hash: hash, maxLen: max(maxLen, 2)}
}

// slotBytes is the size of one slot.
func slotBytes[K comparable, V any]() int { return int(unsafe.Sizeof(cslot[K, V]{})) }

// bytes is the memory of the cache's array.
func (c *clockCache[K, V]) bytes() int { return cap(c.slots) * slotBytes[K, V]() }

func (c *clockCache[K, V]) home(tag uint32) int {
	return int(uint64(tag) * uint64(len(c.slots)) >> 32)
}

// find returns k's slot, or -1; h is c.hash(k).
func (c *clockCache[K, V]) find(h uint64, k K) int32 {
	if c.n == 0 {
		return -1
	}
	tag := uint32(h >> 32)
	n := len(c.slots)
	for p := c.home(tag); ; {
		s := &c.slots[p]
		if s.flags&slotUsed == 0 {
			return -1
		}
		if s.tag == tag && s.k == k {
			return int32(p)
		}
		if p++; p == n {
			p = 0
		}
	}
}

// add puts k, which the cache lacks, in an empty slot and returns it; the
// caller keeps c.n within 3/4 of maxLen.
func (c *clockCache[K, V]) add(h uint64, kg int, k K) int32 {
	if (c.n+1)*4 > len(c.slots)*3 {
		c.resize(min(max(2*len(c.slots), minSlots), c.maxLen))
	}
	tag := uint32(h >> 32)
	p := c.place(tag)
	c.slots[p] = cslot[K, V]{k: k, tag: tag, kg: uint16(kg), flags: slotUsed}
	c.n++
	return int32(p)
}

// place returns the first empty slot from tag's home on.
func (c *clockCache[K, V]) place(tag uint32) int {
	n := len(c.slots)
	p := c.home(tag)
	for c.slots[p].flags&slotUsed != 0 {
		if p++; p == n {
			p = 0
		}
	}
	return p
}

// resize moves the slots into a new array of n slots.
func (c *clockCache[K, V]) resize(n int) {
	old := c.slots
	// A cache of millions of keys is read at random: on huge pages its
	// reads miss the TLB far less (see internal/hugepage).
	c.slots = hugepage.Make[cslot[K, V]](n)
	c.hand = 0
	c.stride = max(n*5/8|1, 1)
	for gcd(c.stride, n) != 1 {
		c.stride += 2
	}
	for i := range old {
		if e := &old[i]; e.flags&slotUsed != 0 {
			c.slots[c.place(e.tag)] = *e
		}
	}
}

// removeAt empties slot p, moving later slots of its run back.
func (c *clockCache[K, V]) removeAt(p int) {
	if c.slots[p].flags&slotAnyDirty != 0 {
		c.dirty--
	}
	c.n--
	n := len(c.slots)
	for q := p; ; {
		if q++; q == n {
			q = 0
		}
		e := &c.slots[q]
		if e.flags&slotUsed == 0 {
			c.slots[p] = cslot[K, V]{}
			return
		}
		// e may fill the hole at p unless its home lies cyclically in
		// (p, q].
		if h := c.home(e.tag); (q > p && (h <= p || h > q)) || (q < p && h <= p && h > q) {
			c.slots[p] = *e
			p = q
		}
	}
}

// sweep moves the hand until it has chosen want victims (marked
// slotVictim) or gone twice round, and appends them to dst. A slot whose
// key frozen holds is never a victim (see valueCore.makeRoom).
func (c *clockCache[K, V]) sweep(want int, frozen *clockCache[K, V], dst []int32) []int32 {
	n := len(c.slots)
	for steps := 2 * n; steps > 0 && len(dst) < want; steps-- {
		i := c.hand
		if c.hand += c.stride; c.hand >= n {
			c.hand -= n
		}
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

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
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
	return &keyFilter{words: hugepage.Make[uint64](n), shift: uint8(64 - bits.TrailingZeros(uint(n)))}
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
