package pebblestate

import (
	"runtime/debug"
	"testing"

	"github.com/weirstream/weir/statebackend"
)

// TestBudgetSizes checks size parsing and formatting, the minimum budget
// and the default derived from the memory limit.
func TestBudgetSizes(t *testing.T) {
	for in, want := range map[string]int64{"512MiB": 512 << 20, "2GiB": 2 << 30, "64MB": 64e6, "1048576": 1 << 20,
		" 3 KiB ": 3 << 10, "7B": 7} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1MiB", "1.5GiB", "12 parsecs", "99999999999TiB"} {
		if n, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", in, n)
		}
	}
	for n, want := range map[int64]string{512 << 20: "512MiB", 3 << 30: "3GiB", 1000: "1000B", 1536: "1536B", 0: "0B"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
	if _, err := NewBudget(MinBudget - 1); err == nil {
		t.Error("a budget below the minimum was accepted")
	}
	if n := DefaultBudgetBytes(4); n < MinBudget {
		t.Errorf("DefaultBudgetBytes(4) = %d, below the minimum", n)
	}
	// GOMEMLIMIT (here set as the runtime's limit) bounds the default: a
	// quarter of it (or of a smaller container limit) over the slots.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(1 << 30))
	if l := memoryLimit(); l <= 0 || l > 1<<30 {
		t.Fatalf("memory limit %d with GOMEMLIMIT at 1 GiB", l)
	}
	if got, want := DefaultBudgetBytes(2), memoryLimit()/4/2; got != max(want, MinBudget) {
		t.Errorf("DefaultBudgetBytes(2) = %d under a limit of %d, want %d", got, memoryLimit(), want)
	}
}

// TestBudgetShared opens two stores on one budget: they share its block
// cache, split its value caches' quarter between their value tables
// (the share grows back when one closes), and a value table keeps its
// decoded values within its share, writing back and rereading what it
// evicts.
func TestBudgetShared(t *testing.T) {
	b, err := NewBudget(MinBudget)
	if err != nil {
		t.Fatal(err)
	}
	r := statebackend.KeyGroupRange{First: 0, Last: 3}
	s1, err := Open(Options{Dir: t.TempDir() + "/a", KeyGroups: r, Budget: b})
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s2, err := Open(Options{Dir: t.TempDir() + "/b", KeyGroups: r, Budget: b})
	if err != nil {
		t.Fatal(err)
	}
	if s1.cache != s2.cache {
		t.Error("the stores of one budget have block caches of their own")
	}
	if b.CacheBytes()+b.TimerBytes()+b.Bytes()/4+b.Bytes()/4 != b.Bytes() {
		t.Errorf("block cache %d and timer tiers %d are not a quarter each of %d", b.CacheBytes(), b.TimerBytes(), b.Bytes())
	}
	// The second store's timer tier gets half the timers' quarter; the
	// first's re-reads its share when its tier would grow.
	if got, want := s2.tb.limit, MinBudget/4/2; got != want {
		t.Errorf("timer tier limit with two stores %d, want %d", got, want)
	}
	v1, _ := NewValueTable[int64, string](s1, "v", i64{}, str{})
	if _, err := NewValueTable[int64, string](s2, "v", i64{}, str{}); err != nil {
		t.Fatal(err)
	}
	if got, want := s1.valueCacheBytes(), (MinBudget/4-MinBudget/32)/2; got != want {
		t.Errorf("value share with two tables %d, want %d", got, want)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	<-s2.Done()
	share := s1.valueCacheBytes()
	if want := MinBudget/4 - MinBudget/32; share != want {
		t.Errorf("value share after the other store closed %d, want %d", share, want)
	}
	if got, want := s1.budget.timerBytes(), MinBudget/4; got != want {
		t.Errorf("timer share after the other store closed %d, want %d", got, want)
	}
	const n = 100_000 // far more than the share holds
	val := "a value of some forty bytes, give or take"
	for k := int64(0); k < n; k++ {
		v1.Put(int(k%4), k, val)
		// The slots, index and lists exactly, and the strings' bytes.
		if bytes := v1.cacheBytes() + v1.c.cache.n*len(val); bytes > share {
			t.Fatalf("after %d writes the cache holds %d keys, %d bytes, over its share of %d", k+1, v1.c.cache.n, bytes, share)
		}
	}
	for k := int64(0); k < n; k += 997 {
		if got, ok := v1.Get(int(k%4), k); !ok || got != val {
			t.Fatalf("key %d: %q, %v after eviction", k, got, ok)
		}
	}
	if err := s1.Err(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := Open(Options{Dir: t.TempDir() + "/c", KeyGroups: r, Budget: b}); err == nil {
		t.Error("a store opened on a closed budget")
	}
}
