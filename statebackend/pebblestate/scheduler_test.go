package pebblestate

import (
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestGatedScheduler: a database with a closed gate piles flushes up in
// L0 without compacting; once the gate opens, the compactions run.
func TestGatedScheduler(t *testing.T) {
	g := newGatedScheduler()
	o := &pebble.Options{FS: vfs.NewMem(), DisableWAL: true, Logger: quietLogger{}, L0CompactionThreshold: 2}
	o.Experimental.CompactionScheduler = g
	db, err := pebble.Open("", o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 6 {
		for k := range 100 {
			if err := db.Set(fmt.Appendf(nil, "k%03d", k), fmt.Appendf(nil, "%d", i), pebble.NoSync); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	m := db.Metrics()
	if m.Compact.Count != 0 || m.Levels[0].TablesCount != 6 {
		t.Fatalf("gate closed: %d compactions, %d L0 files; want 0 and 6", m.Compact.Count, m.Levels[0].TablesCount)
	}
	g.open()
	// Waits for the background compaction; the test's own timeout is the
	// bound.
	for db.Metrics().Levels[0].TablesCount >= 2 {
		time.Sleep(10 * time.Millisecond)
	}
	if m := db.Metrics(); m.Compact.Count == 0 {
		t.Fatalf("gate open: no compaction, %d L0 files", m.Levels[0].TablesCount)
	}
	v, closer, err := db.Get([]byte("k042"))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if string(v) != "5" {
		t.Fatalf("k042 = %q after the compactions, want 5", v)
	}
}
