package jobmanager

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadyOnceALeaderIsKnown: a member alone (no quorum) is not ready;
// once the group elects a leader every member is, followers included.
func TestReadyOnceALeaderIsKnown(t *testing.T) {
	peers := map[string]string{}
	for i := range 3 {
		peers[fmt.Sprintf("jm-%d", i+1)] = freeAddr(t)
	}
	dir := t.TempDir()
	var ms []*member
	t.Cleanup(func() {
		for _, m := range ms {
			m.stop()
		}
	})
	for i := range 3 {
		id := fmt.Sprintf("jm-%d", i+1)
		m := &member{t: t, cfg: Config{Raft: RaftConfig{ID: id, Dir: filepath.Join(dir, id), Peers: peers},
			Advertise: freeAddr(t), HeartbeatTimeout: time.Second, Logger: testLogger(t)}}
		if err := m.start(); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
		if i == 0 {
			time.Sleep(200 * time.Millisecond)
			if err := m.jm.Ready(); err == nil || !strings.Contains(err.Error(), "knows no leader") {
				t.Fatalf("a member alone: Ready() = %v, want not ready, knowing no leader", err)
			}
		}
	}
	leaderOf(t, ms)
	deadline := time.Now().Add(waitFor)
	for _, m := range ms {
		for m.jm.Ready() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v after a leader was elected", m.cfg.Raft.ID, m.jm.Ready())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
