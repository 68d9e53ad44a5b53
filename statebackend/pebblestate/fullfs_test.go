package pebblestate

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/statebackend"
)

// TestFullDiskIsAnError fills a store on a file system that runs out of
// space 1 MiB beyond the store's 4 MiB ballast: the store's first error
// says so, writes stop instead of stalling for good, and a snapshot is
// refused instead of reading half-written state.
func TestFullDiskIsAnError(t *testing.T) {
	fs := NewLimitedFS(vfs.Default, 5<<20)
	s, err := Open(Options{Dir: t.TempDir() + "/db", KeyGroups: statebackend.KeyGroupRange{First: 0, Last: 0},
		MemTableBytes: 256 << 10, FS: fs, CacheKeys: -1, BallastBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v, _ := NewValueTable[int64, string](s, "v", i64{}, str{})
	big := strings.Repeat("x", 1000)
	deadline := time.Now().Add(time.Minute)
	for k := int64(0); s.Err() == nil; k++ {
		v.Put(0, k, big)
		if time.Now().After(deadline) {
			t.Fatal("no error after a minute of writes on a full disk")
		}
	}
	if err := s.Err(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("store error %v, want one wrapping ENOSPC", err)
	}
	if _, err := s.Snapshot(); err == nil {
		t.Fatal("snapshot of a failed store succeeded")
	}
}

// TestFailedWriteBackFailsTheCheckpoint caches more values than the disk
// holds, so that the write-back of a checkpoint's barrier, on its
// goroutine, meets the full disk: the synchronous part succeeds, but the
// checkpoint's files are an error naming it, and so is the store's.
func TestFailedWriteBackFailsTheCheckpoint(t *testing.T) {
	fs := NewLimitedFS(vfs.Default, 5<<20)
	s, err := Open(Options{Dir: t.TempDir() + "/db", KeyGroups: statebackend.KeyGroupRange{First: 0, Last: 0},
		MemTableBytes: 256 << 10, FS: fs, CacheKeys: 1 << 20, ValueCacheBytes: 64 << 20, BallastBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v, _ := NewValueTable[int64, string](s, "v", i64{}, str{})
	big := strings.Repeat("x", 1000)
	for k := range int64(4000) {
		v.Put(0, k, big)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("error before the write-back: %v", err)
	}
	c, err := s.Checkpoint(1)
	if err != nil {
		t.Fatalf("synchronous part: %v", err)
	}
	defer c.Release()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	files, err := c.Files(ctx)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("checkpoint files %v, error %v; want an error wrapping ENOSPC", files, err)
	}
	t.Logf("checkpoint: %v", err)
	if err := s.Err(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("store error %v, want one wrapping ENOSPC", err)
	}
}
