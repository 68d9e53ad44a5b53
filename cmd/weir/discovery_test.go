package main

import (
	"strings"
	"testing"
)

func TestJobsAndTheirParametersAreDiscoverable(t *testing.T) {
	r := runWeir(t, "jobs")
	for _, want := range []string{"fraud-detection", "sequence-check", "Flink's fraud walkthrough"} {
		if r.ExitCode != 0 || !strings.Contains(r.Stdout, want) {
			t.Errorf("weir jobs: exit %d, lacks %q:\n%s", r.ExitCode, want, r.Stdout)
		}
	}
	r = runWeir(t, "job", "describe", "sequence-check")
	for _, want := range []string{"keys", "int", "100", "output", "(required)", "rate", "float"} {
		if r.ExitCode != 0 || !strings.Contains(r.Stdout, want) {
			t.Errorf("describe: exit %d, lacks %q:\n%s", r.ExitCode, want, r.Stdout)
		}
	}
	r = runWeir(t, "job", "describe", "no-such-job")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "fraud-detection") {
		t.Errorf("describe of an unknown job: exit %d, stderr %q; want the known jobs", r.ExitCode, r.Stderr)
	}
	// submit without a name lists the jobs instead of failing tersely; it
	// needs no JobManager for that.
	r = runWeir(t, "job", "submit", "--jobmanager", "127.0.0.1:1")
	if r.ExitCode != 2 || !strings.Contains(r.Stderr, "sequence-check") || !strings.Contains(r.Stderr, "describe") {
		t.Errorf("submit without a name: exit %d, stderr %q", r.ExitCode, r.Stderr)
	}
	r = runWeir(t, "job", "submit", "--help")
	if !strings.Contains(r.Stdout, "weir job describe NAME") || !strings.Contains(r.Stdout, "weir jobs") {
		t.Errorf("submit --help does not point to describe and jobs:\n%s", r.Stdout)
	}
}
