package taskmanager

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/weirstream/weir/internal/leader"
)

func TestFence(t *testing.T) {
	f := &fence{log: slog.New(slog.DiscardHandler)}
	call := func(term string) error {
		md := metadata.MD{}
		if term != "" {
			md.Set(leader.TermKey, term)
		}
		return f.admit(metadata.NewIncomingContext(context.Background(), md), "/test")
	}
	if err := call(""); err != nil {
		t.Fatalf("a call without a term before any term: %v", err)
	}
	f.observe(3)
	for _, tc := range []struct {
		term  string
		stale bool
	}{{"", true}, {"2", true}, {"3", false}, {"4", false}, {"3", true}} {
		if err := call(tc.term); errors.Is(err, ErrStaleTerm) != tc.stale {
			t.Errorf("term %q after the highest %d: %v, want stale %v", tc.term, f.term(), err, tc.stale)
		}
	}
	if err := call("x"); err == nil || errors.Is(err, ErrStaleTerm) {
		t.Errorf("a malformed term: %v", err)
	}
	if got := f.term(); got != 4 {
		t.Errorf("highest term %d, want 4", got)
	}
}
