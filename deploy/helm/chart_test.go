package helm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// helmBin is .tools/helm (make installs it before `make test`) or $HELM.
func helmBin(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	h, err := filepath.Abs("../../.tools/helm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h); err != nil {
		t.Skipf("no helm at %s: run `make test` (or make %s) to install it", h, h)
	}
	return h
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	// No repositories, no cache or config of the user's.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func template(t *testing.T, values ...string) (string, error) {
	t.Helper()
	args := []string{"template", "weir", "weir", "--namespace", "streams"}
	for _, v := range values {
		args = append(args, "--values", filepath.Join("testdata", v))
	}
	return helm(t, args...)
}

func TestLintStrict(t *testing.T) {
	if out, err := helm(t, "lint", "--strict", "weir"); err != nil {
		t.Fatalf("helm lint --strict: %v\n%s", err, out)
	}
	for _, values := range []string{"inline-s3.yaml", "dev-storage.yaml"} {
		if out, err := helm(t, "lint", "--strict", "weir", "--values", "testdata/"+values); err != nil {
			t.Fatalf("helm lint --strict with %s: %v\n%s", values, err, out)
		}
	}
}

func TestDefaults(t *testing.T) {
	out, err := template(t)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	for _, want := range []string{
		"kind: StatefulSet",
		"podManagementPolicy: Parallel",
		"publishNotReadyAddresses: true",
		"- --peers=weir-jobmanager-0=weir-jobmanager-0.weir-jobmanager-raft.streams.svc:7000," +
			"weir-jobmanager-1=weir-jobmanager-1.weir-jobmanager-raft.streams.svc:7000," +
			"weir-jobmanager-2=weir-jobmanager-2.weir-jobmanager-raft.streams.svc:7000\n",
		"name: WEIR_ID\n              value: $(POD_NAME)",
		"value: $(POD_NAME).weir-jobmanager-raft.streams.svc:6123",
		"value: \"weir-jobmanager-0.weir-jobmanager-raft.streams.svc:6123," +
			"weir-jobmanager-1.weir-jobmanager-raft.streams.svc:6123,weir-jobmanager-2.weir-jobmanager-raft.streams.svc:6123\"",
		"kind: PodDisruptionBudget",
		"maxUnavailable: 1\n",
		"preferredDuringSchedulingIgnoredDuringExecution",
		"kind: Deployment",
		"- --slots=2",
		"path: /healthz",
		"path: /readyz",
		"name: WEIR_WEB_LISTEN\n              value: 0.0.0.0:8081",
		"name: web\n              containerPort: 8081",
		"readOnlyRootFilesystem: true",
		"allowPrivilegeEscalation: false",
		"runAsNonRoot: true",
		"name: weir-s3",
		"kind: ServiceAccount",
		"helm.sh/hook: test",
		`args: ["cluster", "status", "--jobmanager",`,
		"image: weir:devel",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("default manifests lack %q", want)
		}
	}
	for _, unwanted := range []string{"kind: NetworkPolicy", "kind: Secret", "/bin/sh"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("default manifests have %q", unwanted)
		}
	}
}

func TestWebDisabled(t *testing.T) {
	out, err := helm(t, "template", "weir", "weir", "--set", "web.enabled=false")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	if strings.Contains(out, "WEIR_WEB_LISTEN") || strings.Contains(out, "name: web\n") {
		t.Error("web.enabled=false still serves the dashboard")
	}
	if out, err := helm(t, "template", "weir", "weir", "--set", "web.port=0"); err == nil || !strings.Contains(out, "/web/port") {
		t.Errorf("web.port=0 was accepted: %v\n%s", err, out)
	}
}

func TestOneJobManagerInlineSecret(t *testing.T) {
	out, err := template(t, "inline-s3.yaml")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	for _, want := range []string{"kind: Secret", "AWS_ACCESS_KEY_ID: \"weiradmin\"", "name: weir-s3\n",
		"kind: NetworkPolicy", "requiredDuringSchedulingIgnoredDuringExecution", "value: \"http://minio.storage.svc:9000\""} {
		if !strings.Contains(out, want) {
			t.Errorf("manifests lack %q", want)
		}
	}
	for _, unwanted := range []string{"--peers", "WEIR_ID\n              value: $(POD_NAME)\n            - name: WEIR_ADVERTISE\n              value: $(POD_NAME).", "kind: PodDisruptionBudget"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("a single JobManager's manifests have %q", unwanted)
		}
	}
}

// TestStateValues: the TaskManagers' state settings become their flags,
// and the state volume is mounted where --state-dir points; by default
// jobs keep memory state and pebble would use an emptyDir.
func TestStateValues(t *testing.T) {
	out, err := template(t)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	for _, want := range []string{"- --state-backend=memory\n", "- --timer-service=store\n", "- --state-dir=/var/lib/weir/state\n",
		"- name: state\n              mountPath: /var/lib/weir/state\n", "- name: state\n          emptyDir: {}\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("default manifests lack %q", want)
		}
	}
	if strings.Contains(out, "--state-memory") {
		t.Error("default manifests set --state-memory; the TaskManagers should derive it from their memory limit")
	}
	out, err = template(t, "pebble-state.yaml")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	for _, want := range []string{"- --state-backend=pebble\n", "- --timer-service=heap\n", "- --state-dir=/state\n",
		"- --state-memory=\"512MiB\"\n", "- name: state\n              mountPath: /state\n",
		"- name: state\n          ephemeral:\n            volumeClaimTemplate:", "storageClassName: local-nvme"} {
		if !strings.Contains(out, want) {
			t.Errorf("manifests with pebble-state.yaml lack %q:\n%s", want, out)
		}
	}
	if out, err := helm(t, "lint", "--strict", "weir", "--values", "testdata/pebble-state.yaml"); err != nil {
		t.Fatalf("helm lint --strict with pebble-state.yaml: %v\n%s", err, out)
	}
}

// TestBadValues: each fails at install (helm template runs the same
// checks) with a message that names the value and says what is wrong.
func TestBadValues(t *testing.T) {
	for file, want := range map[string][]string{
		"even-jobmanagers.yaml":  {"jobmanager.replicas is 2: a raft group needs an odd number of JobManagers"},
		"zero-slots.yaml":        {"taskmanager", "slots", "minimum"},
		"no-s3-secret.yaml":      {"S3 credentials are missing: set s3.existingSecret"},
		"file-storage.yaml":      {"checkpoints", "storage", "s3://"},
		"bad-state-backend.yaml": {"/taskmanager/state/backend", "memory", "pebble"},
		"bad-state-memory.yaml":  {"/taskmanager/state/memory"},
	} {
		out, err := template(t, file)
		if err == nil {
			t.Errorf("%s: helm template succeeded, want it to fail", file)
			continue
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: the failure lacks %q:\n%s", file, w, out)
			}
		}
	}
}

// TestJobsHooks: the declared jobs become a hook ConfigMap that each hook
// phase reads, a pre-upgrade Job running `weir apply --phase prepare` and
// a post-install/post-upgrade Job running the apply phase, both grouped by
// the release name and pointed at every JobManager.
func TestJobsHooks(t *testing.T) {
	out, err := template(t, "jobs.yaml")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	for _, want := range []string{
		"kind: ConfigMap\nmetadata:\n  name: weir-jobs\n",
		"helm.sh/hook: post-install,pre-upgrade,post-upgrade\n    helm.sh/hook-weight: \"-10\"",
		"  jobs.yaml: |\n    jobs:\n    - checkpointInterval: 10s\n      job: fraud-detection\n      name: fraud\n      parallelism: 2\n      params:\n        rate: 100\n",
		"name: weir-jobs-prepare\n",
		"helm.sh/hook: pre-upgrade\n",
		"- --phase=prepare\n",
		"name: weir-jobs-apply\n",
		"helm.sh/hook: post-install,post-upgrade\n",
		"- --phase=apply\n",
		"- --group=weir\n",
		"- --file=/etc/weir/jobs.yaml\n",
		"helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded",
		"name: WEIR_JOBMANAGER\n              value: \"weir-jobmanager-0.weir-jobmanager-raft.streams.svc:6123,",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("manifests lack %q", want)
		}
	}
	if strings.Count(out, "kind: Job\n") != 2 {
		t.Errorf("want two hook Jobs:\n%s", out)
	}
	off, err := helm(t, "template", "weir", "weir", "--set", "jobsHooks.enabled=false")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(off, "weir-jobs") {
		t.Error("jobsHooks.enabled=false still renders the hooks")
	}
	for file, want := range map[string]string{
		"bad-job-name.yaml":          "/jobs/0/name",
		"bad-job-field.yaml":         "paralelism",
		"bad-job-state-backend.yaml": "/jobs/0/stateBackend",
	} {
		out, err := template(t, file)
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("%s: got %v, want a failure naming %q:\n%s", file, err, want, out)
		}
	}
}
