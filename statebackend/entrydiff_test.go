package statebackend

import (
	"context"
	"maps"
	"math/rand/v2"
	"testing"
)

// TestWordTableDeltas churns two word tables between snapshots (puts,
// deletes, growth from empty) and checks each delta: applied over the
// previous snapshot's full file it restores exactly the state of the
// next, and after a few changes it is a small part of the full file.
func TestWordTableDeltas(t *testing.T) {
	r := KeyGroupRange{First: 0, Last: 7}
	kc := hashedInt64Codec{}
	b := NewBackend(r)
	flag, _, _ := NewWordTable[int64, bool](b, "flag", kc, boolCodec{})
	num, _, _ := NewWordTable[int64, int64](b, "num", kc, int64Codec{})
	rng := rand.New(rand.NewPCG(11, 12))
	flags, nums := map[int64]bool{}, map[int64]int64{}
	prev := b.Snapshot()
	for round := range 30 {
		writes := 3000
		if round > 10 {
			writes = 30 // few changes: the delta must be small
		}
		for range writes {
			k := rng.Int64N(5000)
			kg := int(k % 8)
			switch rng.IntN(5) {
			case 0:
				flag.Delete(kg, k)
				delete(flags, k)
			case 1:
				num.Delete(kg, k)
				delete(nums, k)
			case 2:
				v := rng.IntN(2) == 0
				flag.Put(kg, k, v)
				flags[k] = v
			default:
				v := rng.Int64N(1000)
				num.Put(kg, k, v)
				nums[k] = v
			}
		}
		cur := b.Snapshot()
		full := writeSnapshot(t, prev, r)
		delta, err := WriteDeltaFile(r, prev, cur, nil)
		if err != nil {
			t.Fatal(err)
		}
		if round > 10 && len(delta)*10 > len(full) {
			t.Fatalf("round %d: delta of %d bytes after %d writes, full file %d", round, len(delta), writes, len(full))
		}
		fs, _ := openMem(t, "full", full)
		ds, _ := openMem(t, "delta", delta)
		fk, err := fs.ReadKeyGroups(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		dk, err := ds.ReadKeyGroups(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		merged, err := MergeChain([]*KeyedState{fk, dk})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		nb := NewBackend(r)
		if err := nb.Restore(merged); err != nil {
			t.Fatal(err)
		}
		nf, _, _ := NewWordTable[int64, bool](nb, "flag", kc, boolCodec{})
		nn, _, _ := NewWordTable[int64, int64](nb, "num", kc, int64Codec{})
		gotF, gotN := map[int64]bool{}, map[int64]int64{}
		for kg := range 8 {
			maps.Copy(gotF, nf.Group(kg))
			maps.Copy(gotN, nn.Group(kg))
		}
		if !maps.Equal(gotF, flags) || !maps.Equal(gotN, nums) {
			t.Fatalf("round %d: restored %d flags and %d numbers, want %d and %d (or values differ)", round, len(gotF), len(gotN), len(flags), len(nums))
		}
		prev = cur
	}
}
