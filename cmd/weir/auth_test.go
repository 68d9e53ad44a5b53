package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/weirstream/weir/internal/cluster"
)

// TestAuthTokens runs a JobManager with --auth-tokens: a viewer token
// lists and reads status but may not cancel, an operator token submits and
// cancels, no token or an unknown one is refused; TaskManagers, which
// carry no token, register as before; every state-changing call leaves an
// audit line naming the caller in the JobManager's log, and no token is
// logged.
func TestAuthTokens(t *testing.T) {
	const viewer, operator = "viewer-3b9f1c2d8e7a6b5c", "operator-9a8b7c6d5e4f3a2b"
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	viewerFile := filepath.Join(dir, "viewer.token")
	for p, text := range map[string]string{
		tokens:     "# name role token\nci-bot viewer " + viewer + "\ndeployer operator " + operator + "\n",
		viewerFile: viewer + "\n",
	} {
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := startCluster(t, cluster.Options{TaskManagers: 1, Slots: 2, JobManagerArgs: []string{"--auth-tokens", tokens}})
	jm := []string{"--jobmanager", c.JobManager.Addr}
	asViewer := append([]string{"--token-file", viewerFile}, jm...)
	opEnv := []string{"WEIR_TOKEN=" + operator}
	work := t.TempDir()

	r := runWeirIn(t, work, nil, append([]string{"job", "list"}, jm...)...)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "Unauthenticated: this JobManager requires a token") {
		t.Errorf("job list without a token: exit %d: %s", r.ExitCode, r.Stderr)
	}
	r = runWeirIn(t, work, []string{"WEIR_TOKEN=not-a-token-of-this-cluster"}, append([]string{"job", "list"}, jm...)...)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "Unauthenticated: the bearer token is not known") {
		t.Errorf("job list with an unknown token: exit %d: %s", r.ExitCode, r.Stderr)
	}
	if r := runWeirIn(t, work, nil, append([]string{"job", "list"}, asViewer...)...); r.ExitCode != 0 {
		t.Errorf("job list as viewer: exit %d: %s", r.ExitCode, r.Stderr)
	}
	r = runWeirIn(t, work, nil, append([]string{"job", "submit", "fraud-detection"}, asViewer...)...)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, `PermissionDenied: token "ci-bot" has role viewer; submit needs operator`) {
		t.Errorf("submit as viewer: exit %d: %s", r.ExitCode, r.Stderr)
	}
	r = runWeirIn(t, work, opEnv, append([]string{"job", "submit", "fraud-detection"}, jm...)...)
	id := strings.TrimSpace(r.Stdout)
	if r.ExitCode != 0 || len(id) != 32 {
		t.Fatalf("submit as operator: exit %d: %q %s", r.ExitCode, r.Stdout, r.Stderr)
	}
	if r := runWeirIn(t, work, nil, append([]string{"job", "status", id}, asViewer...)...); r.ExitCode != 0 {
		t.Errorf("status as viewer: exit %d: %s", r.ExitCode, r.Stderr)
	}
	r = runWeirIn(t, work, nil, append([]string{"job", "cancel", id}, asViewer...)...)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, `PermissionDenied: token "ci-bot" has role viewer; cancel needs operator`) {
		t.Errorf("cancel as viewer: exit %d: %s", r.ExitCode, r.Stderr)
	}
	if r := runWeirIn(t, work, opEnv, append([]string{"job", "cancel", id}, jm...)...); r.ExitCode != 0 {
		t.Errorf("cancel as operator: exit %d: %s", r.ExitCode, r.Stderr)
	}
	// cluster status asks only GetClusterStatus, which TaskManagers use too.
	if r := runWeirIn(t, work, nil, append([]string{"cluster", "status"}, jm...)...); r.ExitCode != 0 {
		t.Errorf("cluster status without a token: exit %d: %s", r.ExitCode, r.Stderr)
	}

	log := c.JobManager.Stderr()
	for _, re := range []string{
		`level=INFO msg=audit .*audit=true caller="token \\"deployer\\"" role=operator method=submit job_id=` + id + ` result=ok`,
		`level=INFO msg=audit .*audit=true caller="token \\"deployer\\"" role=operator method=cancel job_id=` + id + ` result=ok`,
		`level=WARN msg="call refused" .*caller="token \\"ci-bot\\"" role=viewer method=cancel needs=operator`,
		`level=WARN msg="call refused" .*caller=unauthenticated method=list`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("the JobManager log lacks %s:\n%s", re, log)
		}
	}
	if strings.Contains(c.Logs(), viewer) || strings.Contains(c.Logs(), operator) {
		t.Errorf("a token was logged:\n%s", c.Logs())
	}
}
