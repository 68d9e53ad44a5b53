package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
)

func TestMain(m *testing.M) {
	weir.Register(velocityJob)
	os.Exit(m.Run())
}

// run runs the job at parallelism 1, where it is one chained task, and
// returns what it printed.
func run(t *testing.T, params map[string]string) string {
	t.Helper()
	g, err := jobs.Build(JobName, 1, params)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestOnlyTheHotCardAlertsOnce(t *testing.T) {
	// 1000 payments: card 7 gets every 10th and ten of its own, 110 in
	// all; no other card gets more than 10.
	got := run(t, map[string]string{"count": "1000", "rate": "0", "window": "1h"})
	if want := "VelocityAlert{card=7, count=21}\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}

func TestTheTimerEndsTheWindow(t *testing.T) {
	// Card 7 pays every 100 ms and its count lasts 30 ms: it never gets
	// near the limit, unless the timer failed to clear the count.
	got := run(t, map[string]string{"count": "300", "rate": "100", "window": "30ms"})
	if got != "" {
		t.Errorf("output %q, want no alert", got)
	}
}

func TestBadParametersAreRefused(t *testing.T) {
	_, err := jobs.Build(JobName, 1, map[string]string{"limit": "0", "windw": "1s"})
	if err == nil || !strings.Contains(err.Error(), "limit") || !strings.Contains(err.Error(), "windw") {
		t.Errorf("error %v, want one naming limit and the unknown windw", err)
	}
}
