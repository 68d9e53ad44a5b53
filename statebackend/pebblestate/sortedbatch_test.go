package pebblestate

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestSortedBatchOrder sorts batches below and above bucketSortOps, with
// keys over many key groups (and a few of the highest), of every length
// around the 16 abbreviated bytes, and many writes of each key: the
// writes must come out in key order, of one key in the order written.
func TestSortedBatchOrder(t *testing.T) {
	for _, n := range []int{1, 100, bucketSortOps - 1, bucketSortOps, 3 * bucketSortOps} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(n), 9))
			var b sortedBatch
			for round := range 2 { // the scratch space is reused
				var keys [][]byte
				for range max(n/4, 1) {
					kg := rng.IntN(300)
					if rng.IntN(20) == 0 {
						kg = 0xffff - rng.IntN(2)
					}
					k := appendPrefix(nil, kg, uint16(rng.IntN(3)))
					for range rng.IntN(20) {
						k = append(k, byte(rng.IntN(3)))
					}
					keys = append(keys, k)
				}
				for i := range n {
					k := keys[rng.IntN(len(keys))]
					if rng.IntN(3) == 0 {
						b.del(k)
					} else {
						b.set(k, []byte(fmt.Sprint(i)))
					}
				}
				b.sort()
				if len(b.ops) != n {
					t.Fatalf("round %d: %d writes after sorting, want %d", round, len(b.ops), n)
				}
				for i := 1; i < len(b.ops); i++ {
					x, y := b.ops[i-1], b.ops[i]
					c := bytes.Compare(b.key(x), b.key(y))
					if c > 0 || c == 0 && x.off >= y.off {
						t.Fatalf("round %d: write %d (%x at %d) before write %d (%x at %d)", round, i-1, b.key(x), x.off, i, b.key(y), y.off)
					}
				}
				b.reset()
			}
		})
	}
}
