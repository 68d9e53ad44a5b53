package pebblestate

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/weirstream/weir/statebackend"
)

// BenchmarkChangelogReplay restores a checkpoint of 1 M keys whose
// changelog since the materialization holds 30 intervals of 1 % of the
// keys written at random (some 30 % of the store's size): the
// materialization is adopted and the segments replayed. replay-MB is the
// segments' size; the time per op is the restore's.
func BenchmarkChangelogReplay(b *testing.B) {
	const keys, groups, intervals = 1_000_000, 128, 30
	ctx := context.Background()
	r := statebackend.KeyGroupRange{First: 0, Last: groups - 1}
	dir := b.TempDir()
	s, err := Open(Options{Dir: filepath.Join(dir, "db"), KeyGroups: r, Changelog: &ChangelogOptions{Ratio: 100, Interval: -1}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	t, err := NewValueTable[int64, int64](s, "v", i64{}, i64{})
	if err != nil {
		b.Fatal(err)
	}
	for k := range int64(keys) {
		t.Put(int(k%groups), k, k)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var last *Checkpoint
	for i := range int64(intervals + 1) {
		for range keys / 100 {
			k := rng.Int64N(keys)
			t.Put(int(k%groups), k, rng.Int64())
		}
		if last != nil {
			last.Release()
		}
		if last, err = s.Checkpoint(i + 1); err != nil {
			b.Fatal(err)
		}
	}
	names, err := last.Files(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var replay int64
	for _, f := range names {
		if info, err := os.Stat(filepath.Join(last.Dir(), f)); err == nil && isSegment(f) {
			replay += info.Size()
		}
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		from := filepath.Join(dir, "restore")
		os.RemoveAll(from)
		if err := os.MkdirAll(from, 0o755); err != nil {
			b.Fatal(err)
		}
		for _, f := range names {
			if err := copyFile(filepath.Join(last.Dir(), f), filepath.Join(from, f)); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		rs, err := Open(Options{Dir: filepath.Join(dir, "r", string(rune('a'+i%26))), KeyGroups: r})
		if err != nil {
			b.Fatal(err)
		}
		if err := rs.RestoreNative([]NativeState{{Dir: from, KeyGroups: r}}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		rs.Close()
		b.StartTimer()
	}
	last.Release()
	b.ReportMetric(float64(replay)/(1<<20), "replay-MB")
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// BenchmarkChangelogCapture is the cost of the changelog on the write
// path: map puts, each a Pebble write of its own (Store.commit), with the
// changelog off and on (after its first materialization, when every
// commit is logged).
func BenchmarkChangelogCapture(b *testing.B) {
	r := statebackend.KeyGroupRange{First: 0, Last: 127}
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "changelog=off", true: "changelog=on"}[on], func(b *testing.B) {
			o := Options{Dir: filepath.Join(b.TempDir(), "db"), KeyGroups: r}
			if on {
				o.Changelog = &ChangelogOptions{Ratio: 1e6, Interval: -1}
			}
			s, err := Open(o)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			m, err := NewMapTable[int64, string, int64](s, "m", i64{}, str{}, i64{})
			if err != nil {
				b.Fatal(err)
			}
			cp, err := s.Checkpoint(1)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := cp.Files(context.Background()); err != nil {
				b.Fatal(err)
			}
			cp.Release()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				k := int64(i % 100_000)
				m.Put(int(k%128), k, "u", int64(i))
			}
			b.StopTimer()
			if err := s.Err(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
