package jobmanager

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// The resource limits refuse, with the flag named and the right code, a
// job whose parameters are too large, one whose vertices together run too
// many subtasks (the test job has three vertices), and a job beyond
// --max-jobs live ones; a canceled job frees its place.
func TestResourceLimits(t *testing.T) {
	c := startJobManager(t, Config{Limits: Limits{MaxJobs: 2, MaxParallelismPerJob: 5, MaxParamBytes: 40}})
	submit := func(parallelism int, params map[string]string) (string, error) {
		resp, err := c.client.SubmitJob(c.ctx(), &weirv1.SubmitJobRequest{JobName: testJob, Parallelism: int32(parallelism),
			Params: params, Checkpointing: &weirv1.CheckpointConfig{}})
		return resp.GetJobId(), err
	}
	refused := func(err error, code codes.Code, want string) {
		t.Helper()
		if st := status.Convert(err); st.Code() != code || !strings.Contains(st.Message(), want) {
			t.Errorf("got %v, want %v naming %s", err, code, want)
		}
	}
	_, err := submit(1, map[string]string{"source-parallelism": strings.Repeat("1", 40)})
	refused(err, codes.InvalidArgument, "--max-param-bytes 40")
	_, err = submit(5, nil) // a source of 1 subtask and a chain of 5: 6
	refused(err, codes.InvalidArgument, "6 subtasks, above the JobManager's --max-parallelism-per-job 5")
	_, err = submit(100000, nil)
	refused(err, codes.InvalidArgument, "--max-parallelism-per-job 5")

	first, err := submit(2, nil) // 3 subtasks
	if err != nil {
		t.Fatal(err)
	}
	if _, err := submit(1, nil); err != nil {
		t.Fatal(err)
	}
	_, err = submit(1, nil)
	refused(err, codes.ResourceExhausted, "2 jobs are running or waiting, the JobManager's --max-jobs 2")
	if _, err := c.client.CancelJob(c.ctx(), &weirv1.CancelJobRequest{JobId: first}); err != nil {
		t.Fatal(err)
	}
	c.waitState(first, weirv1.JobState_JOB_STATE_CANCELED)
	if _, err := submit(1, nil); err != nil {
		t.Errorf("after a cancel: %v", err)
	}
}

// TestLabels: a job's labels come back in its summary (list and status);
// too many, empty or long keys, long values and control characters are
// refused with a sentence naming the label.
func TestLabels(t *testing.T) {
	c := startJobManager(t, Config{})
	submit := func(labels map[string]string) (string, error) {
		resp, err := c.client.SubmitJob(c.ctx(), &weirv1.SubmitJobRequest{JobName: testJob, Parallelism: 1,
			Checkpointing: &weirv1.CheckpointConfig{}, Labels: labels})
		return resp.GetJobId(), err
	}
	id, err := submit(map[string]string{"weir.dev/apply-name": "fraud", "team": "risk"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.client.GetJobStatus(c.ctx(), &weirv1.GetJobStatusRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	if l := st.Summary.Labels; len(l) != 2 || l["weir.dev/apply-name"] != "fraud" || l["team"] != "risk" {
		t.Errorf("status labels %v", l)
	}
	list, err := c.client.ListJobs(c.ctx(), &weirv1.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Jobs) != 1 || list.Jobs[0].Labels["team"] != "risk" {
		t.Errorf("list %v", list.Jobs)
	}
	many := map[string]string{}
	for i := range 17 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	for _, bad := range []struct {
		labels map[string]string
		want   string
	}{
		{many, "17 labels, at most 16"},
		{map[string]string{"": "x"}, `label key "" must be 1 to 63 bytes`},
		{map[string]string{strings.Repeat("k", 64): "x"}, "must be 1 to 63 bytes"},
		{map[string]string{"k": strings.Repeat("v", 254)}, "label k is 254 bytes"},
		{map[string]string{"k": "a\nb"}, "control character"},
	} {
		_, err := submit(bad.labels)
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), bad.want) {
			t.Errorf("labels %v: got %v, want InvalidArgument naming %q", bad.labels, err, bad.want)
		}
	}
}
