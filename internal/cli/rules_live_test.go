package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/etcdtest"
	"github.com/weirstream/weir/rules/store"
)

func writeRule(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func liveEntries(t *testing.T, out string) []store.Entry {
	t.Helper()
	var v RulesView
	decodeStrict(t, []byte(out), &v)
	return v.Rules
}

const bigRule = `id: big
key: [user]
kind: filter
params: {max: 100}
condition: 'e.amount > p.max'
emit: {action: alert}
tests:
  - events: [{user: a, amount: 101}, {user: a, amount: 100}]
    expect: [{user: a}]
`

// TestRulesLiveCommands drives put, get, list, pause, resume, shadow,
// delete, history and rollback against a real etcd: versions count up,
// the history keeps who and when, a stale --if-version is a conflict
// (exit 2) that changes nothing, and a bad rule is refused with its line
// and reason before anything is stored.
func TestRulesLiveCommands(t *testing.T) {
	etcd := etcdtest.Start(t)
	dir := t.TempDir()
	common := []string{"--etcd", etcd.Endpoint, "--cluster-id", "c1", "--job", "j1", "--json"}
	live := func(args ...string) ([]store.Entry, error) {
		out, stderr, err := runSplit(t, append(append([]string{"rules"}, args...), common...)...)
		if err != nil {
			return nil, err
		}
		if stderr != "" {
			t.Errorf("%v: stderr %q", args, stderr)
		}
		return liveEntries(t, out), nil
	}
	must := func(args ...string) []store.Entry {
		t.Helper()
		es, err := live(args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return es
	}
	f := writeRule(t, dir, "big.yaml", bigRule)
	es := must("put", f, "--by", "ann", "--at", "1000", "--if-version", "0")
	if len(es) != 1 || es[0].ID != "big" || es[0].Version != 1 || es[0].State != store.Active || es[0].By != "ann" || es[0].At != 1000 {
		t.Fatalf("put: %+v", es)
	}
	// The same expectation again is stale now.
	_, err := live("put", f, "--by", "bob", "--if-version", "0")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "version conflict") {
		t.Fatalf("stale put: %v", err)
	}
	if es := must("put", f, "--by", "bob", "--if-version", "1"); es[0].Version != 2 {
		t.Fatalf("put v2: %+v", es)
	}
	if es := must("pause", "big", "--at", "5000"); es[0].Version != 3 || es[0].State != store.Paused || es[0].At != 5000 {
		t.Fatalf("pause: %+v", es)
	}
	if es := must("shadow", "big"); es[0].State != store.Shadow {
		t.Fatalf("shadow: %+v", es)
	}
	if es := must("resume", "big"); es[0].State != store.Active || es[0].Version != 5 {
		t.Fatalf("resume: %+v", es)
	}
	// A bad rule: refused with the file, line and reason; nothing stored.
	bad := writeRule(t, dir, "bad.yaml", strings.Replace(bigRule, "p.max", "p.mx", 1))
	_, err = live("put", bad)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:5") || !strings.Contains(err.Error(), "unknown name p.mx") {
		t.Fatalf("bad rule: %v", err)
	}
	failing := writeRule(t, dir, "failing.yaml", strings.Replace(bigRule, "expect: [{user: a}]", "expect: []", 1))
	if _, err = live("put", failing); err == nil || !strings.Contains(err.Error(), "tests[0]") {
		t.Fatalf("a rule failing its test: %v", err)
	}
	if es := must("list"); len(es) != 1 || es[0].Version != 5 {
		t.Fatalf("list after refusals: %+v", es)
	}
	// A rule reading a list that is not stored is refused; with the list, accepted.
	listed := writeRule(t, dir, "listed.yaml", "id: banned\nkey: [user]\nkind: filter\ncondition: 'e.user in lists.blacklist'\n")
	if _, err = live("put", listed); err == nil || !strings.Contains(err.Error(), "blacklist") {
		t.Fatalf("a rule without its list: %v", err)
	}
	must("put", writeRule(t, dir, "list.yaml", "id: blacklist\nkind: list\nitems: [mallory]\n"))
	must("put", listed)
	if _, err = live("delete", "blacklist"); err == nil || !strings.Contains(err.Error(), "need blacklist") {
		t.Fatalf("deleting a list a rule reads: %v", err)
	}
	if es := must("delete", "big"); es[0].State != store.Deleted || es[0].Version != 6 {
		t.Fatalf("delete: %+v", es)
	}
	if _, err = live("resume", "big"); err == nil || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("resume of a deleted rule: %v", err)
	}
	if es := must("rollback", "big", "--to", "3"); es[0].Version != 7 || es[0].State != store.Paused {
		t.Fatalf("rollback: %+v", es)
	}
	h := must("history", "big")
	var states []string
	for i, e := range h {
		if e.Version != int64(i+1) || e.Time == 0 || e.By == "" {
			t.Errorf("history[%d] = %+v", i, e)
		}
		states = append(states, e.State)
	}
	if got := strings.Join(states, ","); got != "active,active,paused,shadow,active,deleted,paused" {
		t.Errorf("history states %s", got)
	}
	out, _, err := runSplit(t, "rules", "get", "big", "--etcd", etcd.Endpoint, "--cluster-id", "c1", "--job", "j1")
	if err != nil || !strings.Contains(out, "# big version 7 paused") || !strings.Contains(out, "e.amount > p.max") {
		t.Errorf("get: %q, %v", out, err)
	}
	// Another job's (and another cluster's) rules are apart.
	out, _, err = runSplit(t, "rules", "list", "--etcd", etcd.Endpoint, "--cluster-id", "c2", "--job", "j1", "--json")
	if err != nil || strings.TrimSpace(out) != `{"rules":[]}` && !strings.Contains(out, `"rules": []`) {
		t.Errorf("another cluster: %q, %v", out, err)
	}
	// Marks: only forward, and a change must come after the mark.
	if _, _, err = runSplit(t, "rules", "mark", "--at", "9000", "--etcd", etcd.Endpoint, "--cluster-id", "c1", "--job", "j1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err = runSplit(t, "rules", "mark", "--at", "8000", "--etcd", etcd.Endpoint, "--cluster-id", "c1", "--job", "j1"); err == nil {
		t.Errorf("the mark went back")
	}
	if _, err = live("pause", "banned", "--at", "9000"); err == nil || !strings.Contains(err.Error(), "not after the job's mark 9000") {
		t.Errorf("a change at the mark: %v", err)
	}
	if _, err = live("pause", "banned", "--at", "9001"); err != nil {
		t.Errorf("a change after the mark: %v", err)
	}
}
