package jobmanager

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/weirstream/weir/statebackend/storage"
)

// TestDeleteDirRemovesTheDirectory: deleting a checkpoint removes chk-N/
// itself and then the job's directory once it is empty; a savepoint
// outside the checkpoint storage goes with its own directory.
func TestDeleteDirRemovesTheDirectory(t *testing.T) {
	root := t.TempDir()
	other := t.TempDir()
	for _, rootURL := range []string{root, "file://" + root} {
		jm, err := New(Config{CheckpointStorage: rootURL, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(jm.node.shutdown)
		st, err := storage.Open(rootURL, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"job/chk-1/_metadata", "job/chk-1/op/0.state", "job/chk-2/_metadata"} {
			if err := st.Put(t.Context(), n, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		sp := filepath.Join(other, "savepoint-job-3")
		if err := os.MkdirAll(filepath.Join(sp, "op"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, url := range []string{storage.Join(rootURL, "job", "chk-1"), sp} {
			if err := jm.deleteDir(t.Context(), url); err != nil {
				t.Fatalf("deleteDir(%s): %v", url, err)
			}
		}
		for _, gone := range []string{filepath.Join(root, "job", "chk-1"), sp} {
			if _, err := os.Stat(gone); !os.IsNotExist(err) {
				t.Errorf("%s still there (%v)", gone, err)
			}
		}
		if err := jm.deleteDir(t.Context(), storage.Join(rootURL, "job", "chk-2")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(root, "job")); !os.IsNotExist(err) {
			t.Errorf("the emptied job directory is still there (%v)", err)
		}
		if _, err := os.Stat(root); err != nil {
			t.Errorf("the checkpoint storage's root is gone: %v", err)
		}
	}
}
