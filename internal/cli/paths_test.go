package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirstream/weir/jobs"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
)

func init() {
	jobs.Register(jobs.Job{Name: "cli-test-paths", Description: "a job with a path parameter, for the CLI's tests",
		Params: []jobs.Param{{Name: "output", Type: jobs.Path}, {Name: "label", Type: jobs.String}},
		Build:  func(*runtime.Env, *runtime.Params) error { return nil }})
}

func TestAbsURL(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"":                  "",
		"out":               filepath.Join(wd, "out"),
		"./a/../sp":         filepath.Join(wd, "sp"),
		"/abs/dir":          "/abs/dir",
		"file:///abs/dir":   "file:///abs/dir",
		"s3://bucket/x/y":   "s3://bucket/x/y",
		"s3://bucket":       "s3://bucket",
		"dir-with-a:colon":  filepath.Join(wd, "dir-with-a:colon"),
		"../up/checkpoints": filepath.Join(filepath.Dir(wd), "up", "checkpoints"),
	} {
		got, err := absURL("--target", in)
		if err != nil || got != want {
			t.Errorf("absURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"file://relative/dir", "ftp://host/x"} {
		if _, err := absURL("--target", bad); err == nil || !strings.Contains(err.Error(), "--target") {
			t.Errorf("absURL(%q): %v, want an error naming --target", bad, err)
		}
	}
}

func TestSubmitPathsMadeAbsolute(t *testing.T) {
	wd, _ := os.Getwd()
	f := checkpointFlags{interval: 1, retained: 1, fromSavepoint: "sp/savepoint-1"}
	req := &weirv1.SubmitJobRequest{JobName: "cli-test-paths", Params: map[string]string{"output": "out", "label": "x/y"}}
	if err := f.apply(req); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "sp", "savepoint-1"); req.FromSavepoint != want {
		t.Errorf("FromSavepoint %q, want %q", req.FromSavepoint, want)
	}
	if want := filepath.Join(wd, "out"); req.Params["output"] != want || req.Params["label"] != "x/y" {
		t.Errorf("params %v, want output=%s and the string parameter untouched", req.Params, want)
	}
	req.Params["output"] = "file://rel/out"
	if err := f.apply(req); err == nil || !strings.Contains(err.Error(), "--param output") {
		t.Errorf("relative file:// output: %v, want an error naming --param output", err)
	}
}
