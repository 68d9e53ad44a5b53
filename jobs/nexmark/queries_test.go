package nexmark

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weirstream/weir/jobmanager"
	"github.com/weirstream/weir/jobs"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/taskmanager"
)

// TestQ1MatchesFloatConversion pins q1's integer conversion to the
// suite's 0.908 * price, rounded down.
func TestQ1MatchesFloatConversion(t *testing.T) {
	for _, p := range []int64{100, 101, 999, 123456, 99999999} {
		if got, want := ToEuro(Bid{Price: p}).Price, int64(float64(p)*DollarToEuro); got != want {
			t.Errorf("%d cents: %d euro cents, want %d", p, got, want)
		}
	}
}

const waitFor = 2 * time.Minute

// startCluster runs a JobManager and two TaskManagers of four slots in
// this process, talking gRPC over loopback, and returns a client of the
// JobManager.
func startCluster(t *testing.T) weirv1.JobManagerClient {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	jm, err := jobmanager.New(jobmanager.Config{HeartbeatInterval: 50 * time.Millisecond, Logger: log, CheckpointStorage: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(jm.ServerOptions()...)
	jm.Register(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	jmDone := make(chan error, 1)
	go func() { jmDone <- jm.Run(ctx) }()
	tmCtx, stopTMs := context.WithCancel(context.Background())
	var tmDone []chan error
	for i := range 2 {
		tm, err := taskmanager.New(taskmanager.Config{ID: fmt.Sprintf("tm-%d", i), JobManager: lis.Addr().String(), Slots: 4,
			Stdout: io.Discard, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- tm.Run(tmCtx) }()
		tmDone = append(tmDone, done)
		select {
		case <-tm.Registered():
		case <-time.After(waitFor):
			t.Fatal("a TaskManager did not register")
		}
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopTMs()
		for _, d := range tmDone {
			<-d
		}
		conn.Close()
		cancel()
		<-jmDone
		srv.Stop()
		<-served
	})
	return weirv1.NewJobManagerClient(conn)
}

// runQuery runs the nexmark job to its end with checkpoints every 100 ms
// and returns the committed output lines, sorted.
func runQuery(t *testing.T, c weirv1.JobManagerClient, parallelism int, params map[string]string) []string {
	t.Helper()
	dir := t.TempDir()
	params = maps.Clone(params)
	params["sink"], params["output"] = "files", dir
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := c.SubmitJob(ctx, &weirv1.SubmitJobRequest{JobName: Name, Parallelism: int32(parallelism), Params: params,
		Checkpointing: &weirv1.CheckpointConfig{IntervalMs: 100}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		st, err := c.GetJobStatus(ctx, &weirv1.GetJobStatusRequest{JobId: resp.JobId})
		if err != nil {
			t.Fatal(err)
		}
		if s := st.Summary.State; s == weirv1.JobState_JOB_STATE_FINISHED {
			break
		} else if s == weirv1.JobState_JOB_STATE_FAILED || s == weirv1.JobState_JOB_STATE_CANCELED {
			t.Fatalf("job %s: %s", s, st.Summary.Failure)
		}
		time.Sleep(50 * time.Millisecond)
	}
	lines, err := ReadOutput(dir)
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// TestQueriesMatchTheReference runs every query at parallelism 1 and 4 on
// a real (in-process) cluster and compares its committed output with the
// reference's on the same events.
func TestQueriesMatchTheReference(t *testing.T) {
	c := startCluster(t)
	const count = 60_000
	cfg := GenConfig{Seed: 3, EventRate: 1000} // 60 s of event time
	params := map[string]string{"count": fmt.Sprint(count), "event-rate": "1000", "seed": "3"}
	for _, q := range Queries {
		want := Reference(q, cfg, count)
		if len(want) == 0 {
			t.Fatalf("%s: the reference has no output", q)
		}
		t.Logf("%s: %d result lines", q, len(want))
		for _, p := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/p%d", q, p), func(t *testing.T) {
				params["query"] = q
				got := runQuery(t, c, p, params)
				if q == "q4" {
					var err error
					if got, err = Q4Final(got); err != nil {
						t.Fatal(err)
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("%d lines, want %d; first difference: %s", len(got), len(want), firstDiff(got, want))
				}
			})
		}
	}
}

func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("line %d: %s, want %s", i, got[i], want[i])
		}
	}
	return "one is a prefix of the other"
}

func TestParams(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{}, ""},
		{map[string]string{"query": "q5", "sink": "files", "output": t.TempDir()}, ""},
		{map[string]string{"query": "q9"}, "parameter query"},
		{map[string]string{"sink": "files"}, "parameter output"},
		{map[string]string{"sink": "kafka"}, "parameter sink"},
		{map[string]string{"count": "-1"}, "parameter count"},
		{map[string]string{"event-rate": "0"}, "parameter event-rate"},
	} {
		_, err := buildJob(tc.params)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.params, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: %v, want an error containing %q", tc.params, err, tc.want)
		}
	}
}

func buildJob(params map[string]string) (any, error) { return jobs.Build(Name, 2, params) }
