package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cluster"
)

// probe polls url until it answers want (or 30 s pass) and returns the
// body.
func probe(t *testing.T, url string, want int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return string(b)
			}
			err = &probeError{resp.StatusCode, string(b)}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v after 30s, want %d", url, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type probeError struct {
	code int
	body string
}

func (e *probeError) Error() string {
	return http.StatusText(e.code) + ": " + strings.TrimSpace(e.body)
}

// TestHealthProbes: a TaskManager with no JobManager is live but not
// ready; in a cluster the JobManager is ready once it knows the leader and
// the TaskManager once registered. The JobManager's address comes from
// the environment (WEIR_HEALTH_LISTEN), as in the Helm chart.
func TestHealthProbes(t *testing.T) {
	lonely := deadAddr(t)
	tm, err := cluster.Start("lonely-taskmanager", weirBin, nil, true,
		"taskmanager", "--jobmanager", deadAddr(t), "--listen", "127.0.0.1:0", "--health-listen", lonely)
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Stop()
	probe(t, "http://"+lonely+"/healthz", 200)
	if body := probe(t, "http://"+lonely+"/readyz", 503); !strings.Contains(body, "not registered") {
		t.Errorf("unregistered TaskManager /readyz said %q", body)
	}

	jmHealth, tmHealth := deadAddr(t), deadAddr(t)
	startCluster(t, cluster.Options{TaskManagers: 1, Slots: 1,
		Env:             []string{"WEIR_HEALTH_LISTEN=" + jmHealth},
		TaskManagerArgs: func(int) []string { return []string{"--health-listen", tmHealth} }})
	probe(t, "http://"+jmHealth+"/healthz", 200)
	probe(t, "http://"+jmHealth+"/readyz", 200)
	if body := probe(t, "http://"+tmHealth+"/readyz", 200); body != "ready\n" {
		t.Errorf("registered TaskManager /readyz said %q", body)
	}
}
