package pebblestate

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestReplayCoalesced replays segments of random sets, deletes, merges
// and range deletes of a few keys, each key's writes spread over several
// segments, and checks the result against the same batches applied one
// by one in log order: with chunks of every size (the coalescer applies
// several times per segment, or once), keeping key groups 1 to 2 of 0
// to 3.
func TestReplayCoalesced(t *testing.T) {
	for _, chunk := range []int{1, 64, 1 << 10, 1 << 20} {
		t.Run(fmt.Sprint("chunk=", chunk), func(t *testing.T) {
			compared := 0
			for seed := range uint64(8) {
				if testReplayCoalesced(t, seed, chunk) {
					compared++
				}
			}
			// Range deletes may leave nothing of a seed's keys.
			if compared < 4 {
				t.Fatalf("only %d of 8 replays left keys to compare", compared)
			}
		})
	}
}

// testReplayCoalesced reports whether the replay left any keys.
func testReplayCoalesced(t *testing.T, seed uint64, chunk int) bool {
	rng := rand.New(rand.NewPCG(seed, 7))
	dir := t.TempDir()
	c := newChangelog(dir+"/s", ChangelogOptions{})
	c.dir = dir
	c.on = true
	ref := openMem(t)
	key := func() []byte {
		return append(groupKey(rng.IntN(4)), byte('a'+rng.IntN(6)))
	}
	var segs []segment
	for range 6 {
		for range 1 + rng.IntN(4) {
			b := ref.NewBatch()
			for range 1 + rng.IntN(8) {
				var err error
				switch n := rng.IntN(20); {
				case n < 8:
					err = b.Set(key(), []byte(fmt.Sprint(rng.IntN(100))), nil)
				case n < 12:
					err = b.Delete(key(), nil)
				case n < 19:
					err = b.Merge(key(), []byte{byte('A' + rng.IntN(26))}, nil)
				default:
					lo, hi := key(), key()
					if bytes.Compare(lo, hi) > 0 {
						lo, hi = hi, lo
					}
					err = b.DeleteRange(lo, hi, nil)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := c.append(b.Repr()); err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(pebble.NoSync); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		if segs, err = c.cut(); err != nil {
			t.Fatal(err)
		}
	}
	if len(segs) != 6 {
		t.Fatalf("%d segments, want 6", len(segs))
	}
	got := openMem(t)
	if err := replay(got, dir, segs, 1, 2, chunk); err != nil {
		t.Fatal(err)
	}
	want, have := dbContents(t, ref, groupKey(1), groupKey(3)), dbContents(t, got, nil, nil)
	if want != have {
		t.Fatalf("seed %d: replayed\n%s\nwant\n%s", seed, have, want)
	}
	return want != ""
}

func openMem(t *testing.T) *pebble.DB {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), DisableWAL: true, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// dbContents lists db's keys and values from lo to hi (nil: unbounded).
func dbContents(t *testing.T, db *pebble.DB, lo, hi []byte) string {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var s bytes.Buffer
	for it.First(); it.Valid(); it.Next() {
		fmt.Fprintf(&s, "%x=%s\n", it.Key(), it.Value())
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	return s.String()
}
