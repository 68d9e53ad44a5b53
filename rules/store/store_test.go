package store

import (
	"errors"
	"testing"

	"github.com/weirstream/weir/internal/etcdtest"
	"github.com/weirstream/weir/rules"
)

func specs(t *testing.T, text string) []*rules.Spec {
	t.Helper()
	s, err := rules.Parse("r.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPutConflictAndStats: two writers that read the same version cannot
// both build on it, and Stats sums what subtasks publish by rule and
// version.
func TestPutConflictAndStats(t *testing.T) {
	srv := etcdtest.Start(t)
	st := New(srv.Client(t), "c", "j")
	ctx := t.Context()
	rule := "id: r\nkey: [a]\nkind: filter\ncondition: 'e.n > 1'\n"
	if _, err := st.Put(ctx, specs(t, rule), Change{By: "a", At: 1, IfVersion: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, specs(t, rule), Change{By: "b", At: 2, IfVersion: 0}); !errors.Is(err, ErrConflict) {
		t.Fatalf("second put on version 0: %v", err)
	}
	if e, err := st.SetState(ctx, "r", Paused, Change{By: "a", At: 3, IfVersion: 1}); err != nil || e.Version != 2 {
		t.Fatalf("pause: %+v %v", e, err)
	}
	if _, err := st.SetState(ctx, "r", Active, Change{By: "b", At: 4, IfVersion: 1}); !errors.Is(err, ErrConflict) {
		t.Fatalf("resume on a stale version: %v", err)
	}
	if _, err := st.Put(ctx, specs(t, "id: r\nkey: [a]\nkind: filter\ncondition: 'e.n >'\n"), Change{IfVersion: Any}); !errors.Is(err, ErrRefused) {
		t.Fatalf("a rule that does not compile: %v", err)
	}
	if err := st.PublishStats(ctx, 0, []RuleStat{{Rule: "r", Version: 1, Evaluations: 5, Alerts: 2, EvalNanos: 100, Keys: 4}}, 10); err != nil {
		t.Fatal(err)
	}
	if err := st.PublishStats(ctx, 1, []RuleStat{{Rule: "r", Version: 1, Evaluations: 3, Errors: 1, Keys: 3}, {Rule: "r", Version: 2, Evaluations: 1}}, 10); err != nil {
		t.Fatal(err)
	}
	got, err := st.Stats(ctx)
	want := []RuleStat{{Rule: "r", Version: 1, Evaluations: 8, Alerts: 2, Errors: 1, EvalNanos: 100, Keys: 7}, {Rule: "r", Version: 2, Evaluations: 1}}
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("stats %+v, %v; want %+v", got, err, want)
	}
}
