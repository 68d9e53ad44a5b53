package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/internal/miniotest"
	"github.com/weirstream/weir/statebackend/storage"
)

// TestSecretsStaySecret runs a job with a secret parameter on a cluster
// checkpointing to MinIO, then looks for the secret, and the MinIO
// credentials, in every output of the run: each process's stdout and
// stderr, every CLI output (text and --json), and every object under the
// checkpoint storage, _metadata included. The job still gets the secret:
// its builder refuses a short one.
func TestSecretsStaySecret(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "secretjob")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/secretjob").CombinedOutput(); err != nil {
		t.Fatalf("building testdata/secretjob: %v\n%s", err, out)
	}
	const webhook = "whk-7f3a9c2e51b84d06"
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "weir")
	c := startClusterOf(t, bin, cluster.Options{TaskManagers: 1, Slots: 2, Env: srv.Env(),
		JobManagerArgs:  []string{"--checkpoint-storage", "s3://weir/checkpoints", "--log-level", "debug"},
		TaskManagerArgs: func(int) []string { return []string{"--log-level", "debug"} }})
	var outputs strings.Builder
	weirOf := func(args ...string) cluster.Result {
		t.Helper()
		r, err := cluster.Run(t.Context(), bin, append(args, "--jobmanager", c.JobManagerAddrs)...)
		if err != nil {
			t.Fatal(err)
		}
		outputs.WriteString(r.Stdout + r.Stderr)
		return r
	}
	secretArg := "webhook-token=" + webhook
	r := weirOf("job", "submit", "secret-sequence-check", "--parallelism", "2", "--checkpoint-interval", "100ms",
		"--param", "keys=4", "--param", "count=300", "--param", "rate=200", "--param", "output=s3://weir/out",
		"--param", secretArg)
	id := strings.TrimSpace(r.Stdout)
	if r.ExitCode != 0 || len(id) != 32 {
		t.Fatalf("submit: exit %d: %s%s", r.ExitCode, r.Stdout, r.Stderr)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		st := &cli.JobStatusView{}
		r := weirOf("job", "status", id, "--json")
		decodeJSON(t, r, st)
		if st.State == "FINISHED" || st.State == "FAILED" {
			if st.State != "FINISHED" || st.Checkpointing.Completed == 0 {
				t.Fatalf("job %s with %d checkpoints: %s", st.State, st.Checkpointing.Completed, st.Failure)
			}
			if st.Params["webhook-token"] != "***" {
				t.Errorf("status --json shows webhook-token=%q, want ***", st.Params["webhook-token"])
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("job still %s after a minute", st.State)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := weirOf("job", "status", id); !strings.Contains(r.Stdout, "webhook-token=***") {
		t.Errorf("job status does not show webhook-token=***:\n%s", r.Stdout)
	}
	weirOf("job", "list")
	weirOf("job", "checkpoints", id)
	weirOf("job", "checkpoints", id, "--json")
	// A malformed secret is refused without being quoted.
	if r := weirOf("job", "submit", "secret-sequence-check", "--param", "output=s3://weir/out2", "--param", "webhook-token=zq9x"); r.ExitCode == 0 ||
		!strings.Contains(r.Stderr, "too short") || strings.Contains(r.Stderr, "zq9x") {
		t.Errorf("a short webhook-token: exit %d: %s", r.ExitCode, r.Stderr)
	}

	st, err := storage.Open("s3://weir/checkpoints", srv.Options())
	if err != nil {
		t.Fatal(err)
	}
	objs, err := st.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	metadata := 0
	for _, o := range objs {
		data, err := st.Get(t.Context(), o.Name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(o.Name, "_metadata") {
			metadata++
		}
		outputs.WriteString("\n==== " + o.Name + " ====\n" + string(data))
	}
	if metadata == 0 {
		t.Fatalf("no _metadata under the checkpoint storage among %d objects", len(objs))
	}
	c.Stop()
	for _, p := range append(append([]*cluster.Process(nil), c.JobManagers...), c.TaskManagers...) {
		outputs.WriteString(p.Stdout() + p.Stderr())
	}
	all := outputs.String()
	for name, secret := range map[string]string{"webhook-token": webhook, "S3 secret key": srv.SecretKey, "S3 access key": srv.AccessKey} {
		if i := strings.Index(all, secret); i >= 0 {
			t.Errorf("the %s appears in the run's outputs: ...%s...", name, all[max(0, i-300):min(len(all), i+100)])
		}
	}
}
