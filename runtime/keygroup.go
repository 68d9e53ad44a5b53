package runtime

import (
	"math/bits"

	"github.com/weirstream/weir/statebackend"
)

// KeyGroupRange is an inclusive range of key groups owned by one subtask.
type KeyGroupRange = statebackend.KeyGroupRange

// DefaultMaxParallelism is Flink's default for an operator of parallelism p:
// 1.5 p rounded up to a power of two, at least 128 and at most 32768.
func DefaultMaxParallelism(p int) int {
	n := p + p/2
	if n <= 1 {
		n = 1
	} else {
		n = 1 << bits.Len(uint(n-1))
	}
	return min(max(n, 128), 32768)
}

// murmurHash is Flink's MathUtils.murmurHash: one Murmur3 round over a
// single int followed by the finaliser, made non-negative.
func murmurHash(code int32) int32 {
	h := uint32(code)
	h *= 0xcc9e2d51
	h = bits.RotateLeft32(h, 15)
	h *= 0x1b873593
	h = bits.RotateLeft32(h, 13)
	h = h*5 + 0xe6546b64
	h ^= 4
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	c := int32(h)
	switch {
	case c >= 0:
		return c
	case c != -1<<31:
		return -c
	default:
		return 0
	}
}

// KeyGroupForHash maps a key's 32-bit hash (Java hashCode) to its key group.
func KeyGroupForHash(hash int32, maxParallelism int) int {
	return int(murmurHash(hash)) % maxParallelism
}

// keyGroups maps hashes to key groups as KeyGroupForHash does, for one
// maxParallelism fixed in advance. A division by a number known only at
// run time is a hardware divide, some 10 to 40 cycles on every record
// routed or processed; the remainder by a multiply (Lemire, Kaser and
// Kurz, "Faster remainder by direct computation") is a few cycles.
type keyGroups struct {
	m uint64 // ceil(2^64 / n); 0 (wrapped) for n = 1, which gives 0 too
	n uint64
}

func newKeyGroups(maxParallelism int) keyGroups {
	n := uint64(maxParallelism)
	return keyGroups{m: ^uint64(0)/n + 1, n: n}
}

// of is KeyGroupForHash(hash, n). murmurHash is non-negative, and the
// multiply's remainder is exact for 32-bit numerators.
func (g keyGroups) of(hash int32) int {
	hi, _ := bits.Mul64(g.m*uint64(murmurHash(hash)), g.n)
	return int(hi)
}

// SubtaskForKeyGroup is the subtask that owns key group kg.
func SubtaskForKeyGroup(kg, parallelism, maxParallelism int) int {
	return kg * parallelism / maxParallelism
}

// KeyGroupRangeForSubtask is the inclusive range of key groups subtask i of
// parallelism p owns; the ranges of all subtasks partition [0, maxP).
func KeyGroupRangeForSubtask(maxParallelism, parallelism, i int) KeyGroupRange {
	first := (i*maxParallelism + parallelism - 1) / parallelism
	last := ((i+1)*maxParallelism - 1) / parallelism
	return KeyGroupRange{First: first, Last: last}
}

// Int64Hash is Java's Long.hashCode.
func Int64Hash(v int64) int32 { return int32(v ^ int64(uint64(v)>>32)) }

// StringHash is Java's String.hashCode over UTF-16 code units.
func StringHash(s string) int32 {
	var h int32
	for _, r := range s {
		if r >= 0x10000 { // a surrogate pair in Java
			r -= 0x10000
			h = 31*h + int32(0xD800+(r>>10))
			h = 31*h + int32(0xDC00+(r&0x3FF))
			continue
		}
		h = 31*h + int32(r)
	}
	return h
}

// KeyType tells the runtime how to hash and serialise keys of type K. Hashes
// follow Java's hashCode so key groups match Flink's.
type KeyType[K comparable] interface {
	Hash(K) int32
	Codec[K]
}

type int64Key struct{ Int64Codec }

func (int64Key) Hash(k int64) int32 { return Int64Hash(k) }

type stringKey struct{ StringCodec }

func (stringKey) Hash(k string) int32 { return StringHash(k) }

// Int64Key and StringKey are the key types for int64 and string keys.
var (
	Int64Key  KeyType[int64]  = int64Key{}
	StringKey KeyType[string] = stringKey{}
)
