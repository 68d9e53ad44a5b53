package runtime

import (
	"testing"
)

func TestKeyGroupsMatchFlink(t *testing.T) {
	// Reference values from Flink's KeyGroupRangeAssignment at maxParallelism 128.
	for key, want := range map[int64]int{1: 86, 2: 127, 3: 113, 4: 7, 5: 126} {
		if got := KeyGroupForHash(Int64Hash(key), 128); got != want {
			t.Errorf("int64 key %d: key group %d, want %d", key, got, want)
		}
	}
	for key, want := range map[string]int{"a": 81, "hello": 35} {
		if got := KeyGroupForHash(StringHash(key), 128); got != want {
			t.Errorf("string key %q: key group %d, want %d", key, got, want)
		}
	}
}

func TestJavaHashes(t *testing.T) {
	if got := StringHash("hello"); got != 99162322 {
		t.Errorf(`StringHash("hello") = %d, want 99162322`, got)
	}
	if got := StringHash("😀"); got != 1772899 { // "\uD83D\uDE00".hashCode() = 31*0xD83D + 0xDE00
		t.Errorf("StringHash(surrogate pair) = %d, want 1772899", got)
	}
	if got := Int64Hash(-1); got != 0 {
		t.Errorf("Int64Hash(-1) = %d, want 0", got)
	}
	if got := Int64Hash(1 << 32); got != 1 {
		t.Errorf("Int64Hash(1<<32) = %d, want 1", got)
	}
}

func TestKeyGroupRangesPartitionAndAgree(t *testing.T) {
	for _, maxP := range []int{1, 7, 128, 1000, 32768} {
		for _, p := range []int{1, 2, 3, 5, 7, 64, 128} {
			if p > maxP {
				continue
			}
			next := 0
			for i := 0; i < p; i++ {
				r := KeyGroupRangeForSubtask(maxP, p, i)
				if r.First != next || r.Last < r.First {
					t.Fatalf("maxP=%d p=%d subtask %d: range %v, want it to start at %d and be non-empty", maxP, p, i, r, next)
				}
				for _, kg := range []int{r.First, r.Last} {
					if s := SubtaskForKeyGroup(kg, p, maxP); s != i {
						t.Fatalf("maxP=%d p=%d: key group %d is in subtask %d's range %v but routes to %d", maxP, p, kg, i, r, s)
					}
				}
				next = r.Last + 1
			}
			if next != maxP {
				t.Fatalf("maxP=%d p=%d: ranges cover [0,%d), want [0,%d)", maxP, p, next, maxP)
			}
		}
	}
	if r := KeyGroupRangeForSubtask(128, 2, 1); r.First != 64 || r.Last != 127 {
		t.Errorf("maxP=128 p=2 subtask 1: %v, want [64, 127]", r)
	}
}

func TestDefaultMaxParallelism(t *testing.T) {
	for p, want := range map[int]int{1: 128, 2: 128, 85: 128, 86: 256, 200: 512, 30000: 32768} {
		if got := DefaultMaxParallelism(p); got != want {
			t.Errorf("DefaultMaxParallelism(%d) = %d, want %d", p, got, want)
		}
	}
}

// TestKeyGroupsByMultiplyMatchDivision checks the multiply-based
// remainder against the division for every maxParallelism a job may have
// and hashes across the whole int32 range, ends included.
func TestKeyGroupsByMultiplyMatchDivision(t *testing.T) {
	hashes := []int32{0, 1, -1, 2, 127, 128, 1 << 30, -1 << 31, 1<<31 - 1}
	x := uint32(12345)
	for range 300 {
		x = x*1664525 + 1013904223
		hashes = append(hashes, int32(x))
	}
	for n := 1; n <= 32768; n++ {
		g := newKeyGroups(n)
		for _, h := range hashes {
			if got, want := g.of(h), KeyGroupForHash(h, n); got != want {
				t.Fatalf("maxParallelism %d, hash %d: key group %d, want %d", n, h, got, want)
			}
		}
	}
}
