package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

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
	if err := st.PublishStats(ctx, 0, []RuleStat{{Rule: "r", Version: 1, Evaluations: 5, Alerts: 2, EvalNanos: 100}}, 10); err != nil {
		t.Fatal(err)
	}
	if err := st.PublishStats(ctx, 1, []RuleStat{{Rule: "r", Version: 1, Evaluations: 3, Errors: 1}, {Rule: "r", Version: 2, Evaluations: 1}}, 10); err != nil {
		t.Fatal(err)
	}
	got, err := st.Stats(ctx)
	want := []RuleStat{{Rule: "r", Version: 1, Evaluations: 8, Alerts: 2, Errors: 1, EvalNanos: 100}, {Rule: "r", Version: 2, Evaluations: 1}}
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("stats %+v, %v; want %+v", got, err, want)
	}
}

// countingKV counts the reads of a key on a real etcd.
type countingKV struct {
	clientv3.KV
	mu    sync.Mutex
	reads map[string]int
}

func (c *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	c.mu.Lock()
	c.reads[key]++
	c.mu.Unlock()
	return c.KV.Get(ctx, key, opts...)
}

// TestChangesReadOnlyTheirKeys: with many rules stored, a put, pause,
// shadow, resume, delete or rollback of a rule never reads every rule;
// a change of a list does, and keeps the index of lists that lets rule
// changes read only the lists. A stale index never refuses a good rule.
func TestChangesReadOnlyTheirKeys(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	kv := &countingKV{KV: cli.KV, reads: map[string]int{}}
	cli.KV = kv
	st := New(cli, "c", "j")
	ctx := t.Context()
	var many strings.Builder
	for i := range 200 {
		fmt.Fprintf(&many, "---\nid: m%03d\nkey: [a]\nkind: filter\ncondition: 'e.n > %d'\n", i, i)
	}
	many.WriteString("---\nid: bl\nkind: list\nitems: [x]\n")
	if _, err := st.Put(ctx, specs(t, many.String()), Change{By: "a", At: 1, IfVersion: Any}); err != nil {
		t.Fatal(err)
	}
	full := func() int { kv.mu.Lock(); defer kv.mu.Unlock(); return kv.reads[st.RulesPrefix()] }
	before := full()
	listRule := "id: r\nkey: [a]\nkind: filter\ncondition: 'e.u in lists.bl'\n"
	if _, err := st.Put(ctx, specs(t, listRule), Change{By: "a", At: 2, IfVersion: 0}); err != nil {
		t.Fatal(err)
	}
	for _, state := range []string{Paused, Shadow, Active} {
		if _, err := st.SetState(ctx, "m007", state, Change{By: "a", At: 3, IfVersion: Any}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Rollback(ctx, "m007", 1, Change{By: "a", At: 4, IfVersion: Any}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetState(ctx, "m008", Deleted, Change{By: "a", At: 5, IfVersion: Any}); err != nil {
		t.Fatal(err)
	}
	if n := full() - before; n != 0 {
		t.Errorf("rule changes read every rule %d times", n)
	}
	// A list the index does not name (written by an older release, say):
	// the rule reading it is accepted after a full read, which mends the
	// index.
	if _, err := st.Put(ctx, specs(t, "id: gl\nkind: list\nitems: [y]\n"), Change{By: "a", At: 6, IfVersion: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, st.listsKey(), `["bl"]`); err != nil {
		t.Fatal(err)
	}
	before = full()
	if _, err := st.Put(ctx, specs(t, "id: r2\nkey: [a]\nkind: filter\ncondition: 'e.u in lists.gl'\n"), Change{By: "a", At: 7, IfVersion: 0}); err != nil {
		t.Fatalf("a rule reading a list missing from the index: %v", err)
	}
	if full() != before+1 {
		t.Errorf("a stale index: %d full reads, want 1", full()-before)
	}
	r, err := cli.Get(ctx, st.listsKey())
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != `["bl","gl"]` {
		t.Fatalf("the index after a full read: %v %v", r, err)
	}
	// Refusals stand: a rule naming no stored list, and deleting a list a
	// rule reads.
	if _, err := st.Put(ctx, specs(t, "id: r3\nkey: [a]\nkind: filter\ncondition: 'e.u in lists.nope'\n"), Change{IfVersion: Any}); !errors.Is(err, ErrRefused) {
		t.Errorf("a rule naming a list that is not stored: %v", err)
	}
	if _, err := st.SetState(ctx, "bl", Deleted, Change{IfVersion: Any}); !errors.Is(err, ErrRefused) {
		t.Errorf("deleting a list a rule reads: %v", err)
	}
}

// TestWatchRange: the rule source's watch sees the mark and the current
// entries, not the history, the index of lists or the stats.
func TestWatchRange(t *testing.T) {
	st := New(nil, "c", "j")
	key, end := st.WatchRange()
	in := func(k string) bool { return k >= key && k < end }
	for _, k := range []string{st.MarkKey(), st.ruleKey("a"), st.ruleKey("zz.z-9")} {
		if !in(k) {
			t.Errorf("%s is not watched", k)
		}
	}
	for _, k := range []string{st.historyKey("a", 1), st.listsKey(), st.StatsKey(0), Prefix("c", "j2") + "rules/a", Prefix("c", "j") + "rules"} {
		if in(k) {
			t.Errorf("%s is watched", k)
		}
	}
}
