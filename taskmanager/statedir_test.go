package taskmanager

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/leader"
)

// TestUnusableStateDirStopsTheTaskManager: a --state-dir the TaskManager
// cannot make directories under fails New with the reason, and a usable
// one that did not exist is not left behind.
func TestUnusableStateDirStopsTheTaskManager(t *testing.T) {
	finder, err := leader.NewFinder([]string{"127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer finder.Close()
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	bad := []string{filepath.Join(file, "state")}
	if os.Getuid() != 0 { // root writes into a read-only directory anyway
		bad = append(bad, readOnly)
	}
	for _, dir := range bad {
		_, err := New(Config{ID: "tm-test", Finder: finder, Slots: 1, Stdout: io.Discard, StateDir: dir})
		if err == nil || !strings.Contains(err.Error(), "state directory "+dir+" is not usable") {
			t.Errorf("--state-dir %s: got %v, want it refused as not usable", dir, err)
		}
	}
	fresh := filepath.Join(t.TempDir(), "state")
	tm, err := New(Config{ID: "tm-test", Finder: finder, Slots: 1, Stdout: io.Discard, StateDir: fresh})
	if err != nil {
		t.Fatal(err)
	}
	tm.ln.Close()
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("the check left %s behind (%v)", fresh, err)
	}
}
