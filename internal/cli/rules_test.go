package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// runSplit executes the command line in-process with stdout and stderr
// apart.
func runSplit(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err = root.ExecuteContext(t.Context())
	return out.String(), errb.String(), err
}

// Every shipped example gives exactly its expected alerts.
func TestRulesTestShippedExamples(t *testing.T) {
	dirs, err := filepath.Glob("../../rules/examples/*/rules.yaml")
	if err != nil || len(dirs) < 6 {
		t.Fatalf("examples: %v, %d found", err, len(dirs))
	}
	for _, f := range dirs {
		dir := filepath.Dir(f)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(dir, "expected.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			if len(bytes.TrimSpace(want)) == 0 {
				t.Fatal("expected.jsonl is empty: an example must show alerts")
			}
			out, stderr, err := runSplit(t, "rules", "test", dir, "--events", filepath.Join(dir, "events.jsonl"))
			if err != nil {
				t.Fatalf("weir rules test: %v\n%s", err, stderr)
			}
			if out != string(want) {
				t.Errorf("alerts:\n%s\nwant:\n%s", out, want)
			}
			wantD, err := os.ReadFile(filepath.Join(dir, "decisions.jsonl"))
			if os.IsNotExist(err) {
				return
			}
			out, stderr, err = runSplit(t, "rules", "test", dir, "--events", filepath.Join(dir, "events.jsonl"), "--decisions")
			if err != nil {
				t.Fatalf("weir rules test --decisions: %v\n%s", err, stderr)
			}
			if got, want := decisionsWithoutSource(t, out), decisionsWithoutSource(t, string(wantD)); len(want) == 0 || !reflect.DeepEqual(got, want) {
				t.Errorf("decisions:\n%s\nwant (sources aside):\n%s", out, wantD)
			}
		})
	}
}

// decisionsWithoutSource are the decision lines of s without their
// source, which names the events file as the command was given it.
func decisionsWithoutSource(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		var d map[string]any
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("decision %q: %v", l, err)
		}
		delete(d, "source")
		out = append(out, d)
	}
	return out
}

func TestRulesTestErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rule := write("r.yaml", "id: big\nkind: filter\ncondition: 'e.amount > p.max'\nparams: {max: 10}\n")
	bad := write("bad.yaml", "id: big\nkind: filter\ncondition: 'e.amount > p.limit'\nparams: {max: 10}\n")
	good := write("ev.jsonl", `{"ts": 1, "amount": 5}`+"\n"+`{"ts": 2, "amount": 50}`+"\n")
	badEv := write("bad.jsonl", `{"ts": 1, "amount": 5}`+"\n"+`{"amount": 50}`+"\n"+`[1]`+"\n")
	failing := write("failing.jsonl", `{"ts": 1, "amount": "x"}`+"\n"+`{"ts": 2, "amount": 50}`+"\n")

	cases := []struct {
		name    string
		args    []string
		wantOut string
		wantErr string // in the error, or on stderr
	}{
		{"ok", []string{rule, "--events", good},
			`{"rule":"big","version":1,"key":{},"time":2,"action":"alert"}` + "\n", ""},
		{"no events flag", []string{rule}, "", "--events FILE is required"},
		{"bad rule", []string{bad, "--events", good}, "",
			bad + ":3: rule big: condition: unknown name p.limit (params: max)"},
		{"bad events", []string{rule, "--events", badEv}, "",
			badEv + `:2: no time field "ts"`},
		{"not an object", []string{rule, "--events", badEv}, "", badEv + ":3: an event must be a JSON object"},
		{"evaluation error", []string{rule, "--events", failing},
			`{"rule":"big","version":1,"key":{},"time":2,"action":"alert"}` + "\n",
			failing + ":1: rule big version 1: condition: invalid operation: string > float64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, stderr, err := runSplit(t, append([]string{"rules", "test"}, c.args...)...)
			if out != c.wantOut {
				t.Errorf("stdout %q, want %q", out, c.wantOut)
			}
			if c.wantErr == "" {
				if err != nil {
					t.Errorf("error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", c.wantErr)
			}
			if got := err.Error() + "\n" + stderr; !strings.Contains(got, c.wantErr) {
				t.Errorf("error and stderr:\n%s\nwant them to contain %q", got, c.wantErr)
			}
		})
	}
}
