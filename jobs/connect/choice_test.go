package connect_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirstream/weir/jobs"
	_ "github.com/weirstream/weir/jobs/anomaly"
	"github.com/weirstream/weir/jobs/connect"
	_ "github.com/weirstream/weir/jobs/nexmark"
	_ "github.com/weirstream/weir/jobs/rulesjob"
	_ "github.com/weirstream/weir/jobs/seqcheck"
	_ "github.com/weirstream/weir/jobs/threshold"
	"github.com/weirstream/weir/runtime"
)

func TestChoiceReadsFileAsFiles(t *testing.T) {
	for _, tc := range []struct{ given, want string }{{"", "files"}, {"file", "files"}, {"files", "files"}, {"kafka", "kafka"}} {
		m := map[string]string{}
		if tc.given != "" {
			m["sink"] = tc.given
		}
		if got := connect.Choice(runtime.NewParams(m), "sink", connect.Files); got != tc.want {
			t.Errorf("sink=%q: got %q, want %q", tc.given, got, tc.want)
		}
	}
}

// Every job with a file connector builds with either spelling, so a
// parameter written for one job works for the others.
func TestEveryJobTakesBothFileSpellings(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	rule := filepath.Join(dir, "rule.yaml")
	if err := os.WriteFile(rule, []byte("apiVersion: weir.rules/v1\nid: big\nkind: filter\ncondition: e.amount > 10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]map[string]string{
		"threshold-alerts":  {"input": in},
		"anomaly-detection": {"input": in},
		"transfer-monitor":  {"input": in},
		"impossible-travel": {"input": in},
		"rules":             {"input": in, "rules": rule, "schema": "amount:number"},
		"sequence-check":    {},
		"nexmark":           {},
	}
	for name, base := range cases {
		for _, spelling := range []string{"file", "files"} {
			p := map[string]string{"output": filepath.Join(dir, "out")}
			for k, v := range base {
				p[k] = v
			}
			if _, ok := base["input"]; ok {
				p["source"] = spelling
			}
			p["sink"] = spelling
			if _, err := jobs.Build(name, 1, p); err != nil {
				t.Errorf("%s with %s: %v", name, spelling, err)
			}
		}
	}
}

func TestCheckChoiceAndOutput(t *testing.T) {
	p := runtime.NewParams(nil)
	connect.CheckChoice(p, "sink", "files", connect.Files, "kafka")
	connect.CheckChoice(p, "sink", "filez", connect.Files, "kafka", "slack")
	connect.CheckOutput(p, "", "the alerts")
	connect.CheckOutput(p, "ftp://x/y", "the alerts")
	err := p.CheckUnused()
	if err == nil {
		t.Fatal("no error for a bad sink and outputs")
	}
	for _, want := range []string{`"filez" is not a sink: use files, kafka or slack`, "must not be empty: the directory or s3://bucket/prefix URL the alerts go to", "ftp"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
