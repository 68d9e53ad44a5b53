package cli

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// run executes the command line in-process and returns stdout and the error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

func TestEnvironmentSetsFlags(t *testing.T) {
	t.Setenv("WEIR_JOBMANAGER", "127.0.0.1:1")
	if _, err := run(t, "job", "list"); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("job list with WEIR_JOBMANAGER=127.0.0.1:1: %v, want it to try that address", err)
	}
	// The command line wins.
	if _, err := run(t, "job", "list", "--jobmanager", "127.0.0.1:2"); err == nil || !strings.Contains(err.Error(), "127.0.0.1:2") {
		t.Errorf("job list --jobmanager 127.0.0.1:2: %v, want that address", err)
	}
	t.Setenv("WEIR_WAIT", "soon")
	_, err := run(t, "job", "cancel", "0123")
	if err == nil || !strings.Contains(err.Error(), `WEIR_WAIT="soon"`) || !strings.Contains(err.Error(), "--wait") {
		t.Errorf("WEIR_WAIT=soon: %v, want an error naming the variable and the flag", err)
	}
	// A required flag may come from the environment too; an empty
	// variable counts as unset.
	t.Setenv("WEIR_WAIT", "")
	t.Setenv("WEIR_PARALLELISM", "0")
	if _, err := run(t, "job", "rescale", "0123"); err == nil || !strings.Contains(err.Error(), "--parallelism 0 must be at least 1") {
		t.Errorf("rescale with WEIR_PARALLELISM=0: %v", err)
	}
}

func TestApplyEnv(t *testing.T) {
	cmd := &cobra.Command{Use: "x", Run: func(*cobra.Command, []string) {}}
	slots := cmd.Flags().Int("slots", 2, "")
	storage := cmd.Flags().String("checkpoint-storage", "def", "")
	params := cmd.Flags().StringArray("param", nil, "")
	given := cmd.Flags().String("listen", "def", "")
	if err := cmd.ParseFlags([]string{"--listen", "flag"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"WEIR_SLOTS": "7", "WEIR_CHECKPOINT_STORAGE": "/ck", "WEIR_PARAM": "a=b,c",
		"WEIR_LISTEN": "env", "WEIR_OTHER": "x"}
	if err := applyEnv(cmd, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if *slots != 7 || *storage != "/ck" || len(*params) != 1 || (*params)[0] != "a=b,c" || *given != "flag" {
		t.Errorf("slots %d storage %q params %q listen %q", *slots, *storage, *params, *given)
	}
	if !cmd.Flags().Changed("checkpoint-storage") {
		t.Error("a flag set from the environment does not count as given")
	}
}

func TestEveryFlagNamesItsVariable(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.LocalFlags(), c.InheritedFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if f.Name != "help" && !strings.Contains(f.Usage, flagEnv(f)) {
					t.Errorf("%s --%s: help %q does not name %s", c.CommandPath(), f.Name, f.Usage, flagEnv(f))
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot())
}

func TestRescaleRequiresParallelism(t *testing.T) {
	if _, err := run(t, "job", "rescale", "0123"); err == nil || !strings.Contains(err.Error(), `"parallelism" not set`) {
		t.Errorf("rescale without --parallelism: %v", err)
	}
}

// decodeStrict decodes data into v, refusing fields v lacks.
func decodeStrict(t *testing.T, data []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("decoding %T: %v\n%s", v, err, data)
	}
}

func TestJobStatusJSON(t *testing.T) {
	st := &weirv1.JobStatus{
		Summary: &weirv1.JobSummary{JobId: "j1", JobName: "fraud", State: weirv1.JobState_JOB_STATE_RUNNING,
			SubmitTimeMs: 1_700_000_000_123, Parallelism: 2, Restarts: 1},
		MaxParallelism: 128,
		Params:         map[string]string{"rate": "10"},
		Checkpointing:  &weirv1.CheckpointConfig{IntervalMs: 1000, TimeoutMs: 600_000, Retained: 3},
		LatestCheckpoint: &weirv1.CheckpointInfo{Id: 9, Path: "s3://b/j1/chk-9", TriggerTimeMs: 1_700_000_001_000,
			DurationMs: 55, SizeBytes: 1 << 40, MaxSyncNs: 460_000},
		CompletedCheckpoints: 9,
		Latency:              &weirv1.LatencySummary{Count: 4, P50Ns: 250_000, P99Ns: 2_000_000, MaxNs: 3_500_000},
		Vertices: []*weirv1.VertexStatus{{Id: 0, Name: "src", Parallelism: 2,
			Operators: []*weirv1.OperatorStatus{{Uid: "src", Name: "src", RecordsOut: 1 << 53}},
			Subtasks:  []*weirv1.SubtaskStatus{{Index: 1, State: weirv1.TaskState_TASK_STATE_DEPLOYING, TaskManagerId: "tm-1"}}}},
	}
	var out bytes.Buffer
	if err := printJSON(&out, jobStatusView(st)); err != nil {
		t.Fatal(err)
	}
	var v JobStatusView
	decodeStrict(t, out.Bytes(), &v)
	if v.State != "RUNNING" || v.Vertices[0].Subtasks[0].State != "DEPLOYING" || v.Checkpointing.Latest.SizeBytes != 1<<40 ||
		v.Vertices[0].Operators[0].RecordsOut != 1<<53 || v.Latency.P50Ms != 0.25 || v.Checkpointing.Latest.MaxSyncMs != 0.46 ||
		v.SubmitTimeMs != 1_700_000_000_123 || v.Checkpointing.Restored != nil {
		t.Errorf("decoded %+v", v)
	}
	// Numbers are numbers, states words, absent objects null, empty lists [].
	var raw map[string]any
	if err := json.Unmarshal(out.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["submit_time_ms"].(float64); !ok {
		t.Errorf("submit_time_ms is %T, want a number", raw["submit_time_ms"])
	}
	cp := raw["checkpointing"].(map[string]any)
	if r, ok := cp["restored"]; !ok || r != nil {
		t.Errorf("restored = %v (present %v), want null", r, ok)
	}
	if !strings.Contains(out.String(), `"failure": ""`) || !strings.Contains(out.String(), `"input_partitioning": ""`) {
		t.Errorf("empty strings left out:\n%s", out.String())
	}
	out.Reset()
	if err := printJSON(&out, jobStatusView(&weirv1.JobStatus{})); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"vertices": []`) || !strings.Contains(out.String(), `"params": {}`) {
		t.Errorf("an empty status prints null lists:\n%s", out.String())
	}
}

func TestCommandsWithoutAJobManagerPrintJSON(t *testing.T) {
	out, err := run(t, "jobs", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var all RegisteredJobsView
	decodeStrict(t, []byte(out), &all)
	found := false
	for _, j := range all.Jobs {
		if j.Name == "cli-test-paths" && len(j.Params) == 2 && j.Params[0].Type == "path" {
			found = true
		}
	}
	if !found {
		t.Errorf("weir jobs --json lacks the test job: %+v", all)
	}
	out, err = run(t, "job", "describe", "cli-test-paths", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var one RegisteredJobView
	decodeStrict(t, []byte(out), &one)
	if one.Name != "cli-test-paths" || one.Description == "" {
		t.Errorf("describe --json: %+v", one)
	}
}

func TestVersion(t *testing.T) {
	defer func(v, c, m string) { version, commit, modified = v, c, m }(version, commit, modified)
	version, commit, modified = "v1.2.3", "abcdef", "true"
	out, err := run(t, "version", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var v VersionView
	decodeStrict(t, []byte(out), &v)
	if v.Version != "v1.2.3" || v.Commit != "abcdef" || !v.Modified || !strings.HasPrefix(v.GoVersion, "go") || v.OS == "" {
		t.Errorf("version --json: %+v", v)
	}
	out, err = run(t, "version")
	if err != nil || !strings.Contains(out, "weir v1.2.3") || !strings.Contains(out, "abcdef (modified)") ||
		!strings.Contains(out, v.GoVersion) {
		t.Errorf("version: %v\n%s", err, out)
	}
}

// TestJSONKeysDocumented: every key of every --json view appears in
// docs/json.md.
func TestJSONKeysDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(ty reflect.Type) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] {
			return
		}
		seen[ty] = true
		for i := range ty.NumField() {
			f := ty.Field(i)
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if key == "" || key == "-" {
				t.Errorf("%s.%s has no json key", ty.Name(), f.Name)
			} else if !bytes.Contains(doc, []byte("`"+key+"`")) && !bytes.Contains(doc, []byte(`"`+key+`"`)) {
				t.Errorf("%s.%s: key %q is not in docs/json.md", ty.Name(), f.Name, key)
			}
			walk(f.Type)
		}
	}
	for _, v := range []any{JobListView{}, JobStatusView{}, CheckpointListView{}, SubmitView{}, SavepointView{},
		RescaleView{}, CancelView{}, DisposeView{}, RegisteredJobsView{}, VersionView{}, ClusterStatusView{}, RulesView{}, RuleStatsView{}, BacktestView{}} {
		walk(reflect.TypeOf(v))
	}
}

func TestLogFormat(t *testing.T) {
	var buf bytes.Buffer
	h, err := logHandler(&buf, "json", "debug")
	if err != nil {
		t.Fatal(err)
	}
	slog.New(h).Debug("task running", "job_id", "j1", "subtask", 3)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("a json log line does not decode: %v: %q", err, buf.String())
	}
	if line["msg"] != "task running" || line["level"] != "DEBUG" || line["job_id"] != "j1" || line["subtask"] != 3.0 {
		t.Errorf("json line %v", line)
	}
	buf.Reset()
	if h, err = logHandler(&buf, "text", "info"); err != nil {
		t.Fatal(err)
	}
	l := slog.New(h)
	l.Debug("hidden")
	l.Info("shown", "k", "v")
	if got := buf.String(); !strings.Contains(got, `level=INFO msg=shown k=v`) || strings.Contains(got, "hidden") {
		t.Errorf("text output %q", got)
	}
	if _, err := run(t, "--log-format", "xml", "jobs"); err == nil || !strings.Contains(err.Error(), `--log-format "xml": want text or json`) {
		t.Errorf("--log-format xml: %v", err)
	}
	if _, err := run(t, "--log-level", "loud", "jobs"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("--log-level loud: %v", err)
	}
}
