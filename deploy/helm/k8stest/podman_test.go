//go:build k8s

package k8stest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"sigs.k8s.io/yaml"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/miniotest"
	"github.com/weirstream/weir/internal/testenv"
)

// The parts of a rendered workload the containers are made from.
type workload struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Replicas int `json:"replicas"`
		Template struct {
			Spec podSpec `json:"spec"`
		} `json:"template"`
		VolumeClaimTemplates []claimTemplate `json:"volumeClaimTemplates"`
	} `json:"spec"`
}

type podSpec struct {
	SecurityContext struct {
		RunAsUser  int `json:"runAsUser"`
		RunAsGroup int `json:"runAsGroup"`
	} `json:"securityContext"`
	Containers []container `json:"containers"`
	Volumes    []volume    `json:"volumes"`
}

type volume struct {
	Name      string    `json:"name"`
	EmptyDir  *struct{} `json:"emptyDir"`
	ConfigMap *struct {
		Name string `json:"name"`
	} `json:"configMap"`
}

// rendered is what `helm template` made of the chart: workloads (and hook
// Jobs) by kind/name, ConfigMaps' data by name.
type rendered struct {
	workloads  map[string]*workload
	configMaps map[string]map[string]string
	secrets    map[string]map[string]string // the stringData of the Secrets the chart makes
}

func render(t *testing.T, args ...string) rendered {
	t.Helper()
	out, err := exec.Command(tool(t, "helm"), append([]string{"template", "weir", chart, "-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	r := rendered{workloads: map[string]*workload{}, configMaps: map[string]map[string]string{}, secrets: map[string]map[string]string{}}
	for _, doc := range strings.Split(string(out), "\n---") {
		var w workload
		if err := yaml.Unmarshal([]byte(doc), &w); err != nil {
			t.Fatal(err)
		}
		var cm struct {
			Data map[string]string `json:"data"`
		}
		switch w.Kind {
		case "StatefulSet", "Deployment", "Job":
			r.workloads[w.Kind+"/"+w.Metadata.Name] = &w
		case "ConfigMap":
			if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
				t.Fatal(err)
			}
			r.configMaps[w.Metadata.Name] = cm.Data
		case "Secret":
			var sec struct {
				StringData map[string]string `json:"stringData"`
			}
			if err := yaml.Unmarshal([]byte(doc), &sec); err != nil {
				t.Fatal(err)
			}
			r.secrets[w.Metadata.Name] = sec.StringData
		}
	}
	return r
}

func (r rendered) workload(t *testing.T, key string) *workload {
	t.Helper()
	w := r.workloads[key]
	if w == nil {
		t.Fatalf("helm template rendered no %s", key)
	}
	return w
}

type claimTemplate struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

type container struct {
	Image   string   `json:"image"`
	Command []string `json:"command"`
	Args    []string `json:"args"`
	Env     []struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `json:"fieldPath"`
			} `json:"fieldRef"`
			SecretKeyRef *struct {
				Name string `json:"name"`
				Key  string `json:"key"`
			} `json:"secretKeyRef"`
		} `json:"valueFrom"`
	} `json:"env"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
	SecurityContext struct {
		ReadOnlyRootFilesystem   bool `json:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation bool `json:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `json:"drop"`
		} `json:"capabilities"`
	} `json:"securityContext"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
}

// pod is one replica of a workload as it will run on the host network:
// its name and a free host port for each of its container ports.
type pod struct {
	name  string
	ports map[int]int // container port -> host port
}

// podman runs the podman command, failing the test on error.
func podman(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("podman", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// imageTarball is $WEIR_IMAGE_TAR (make test-k8s sets it to the tarball
// `make image` wrote), else the newest bin/image/weir-*.tar.
func imageTarball(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WEIR_IMAGE_TAR"); p != "" {
		return p
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	matches, _ := filepath.Glob(filepath.Join(root, "bin", "image", "weir-*.tar"))
	if len(matches) == 0 {
		t.Fatal("no image tarball in bin/image: run `make image` (make test-k8s does)")
	}
	slices.SortFunc(matches, func(a, b string) int {
		sa, _ := os.Stat(a)
		sb, _ := os.Stat(b)
		return sb.ModTime().Compare(sa.ModTime())
	})
	return matches[0]
}

// TestChartPodsInContainers runs the JobManager StatefulSet's and the
// TaskManager Deployment's pods, as `helm template` renders them, as
// containers of the image on the host network, each with what Kubernetes
// would give it: its pod name, the S3 Secret's keys, its volumes (emptyDir,
// claim, ConfigMap), the pod's user and the container's security context;
// the Services' DNS names become the containers' 127.0.0.1 ports. Three
// JobManagers must elect a leader and two TaskManagers register. Then the
// chart's hook Jobs run the same way: the post-install hook submits the
// two declared jobs, and the fraud job checkpoints into the test's MinIO;
// for an upgrade that changes the fraud job, the pre-upgrade hook stops it
// with a savepoint and the post-upgrade hook resubmits it from there at
// its new parallelism on the pebble state backend, which checkpoints from
// the TaskManagers' state volume, leaving the other job alone.
func TestChartPodsInContainers(t *testing.T) {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatal("podman is not installed: make test-k8s installs it (apt-get install podman runc)")
	}
	loaded := podman(t, "load", "-i", imageTarball(t))
	m := regexp.MustCompile(`Loaded image(?:\(s\))?: (\S+)`).FindStringSubmatch(loaded)
	if m == nil {
		t.Fatalf("podman load printed no image name:\n%s", loaded)
	}
	ref := m[1] // localhost/weir:<version>
	repo, tag, _ := strings.Cut(ref, ":")

	s3 := miniotest.Start(t)
	s3.MakeBucket(t, "weir")
	secrets := map[string]map[string]string{"weir-s3": {"AWS_ACCESS_KEY_ID": s3.AccessKey, "AWS_SECRET_ACCESS_KEY": s3.SecretKey}}

	values := []string{"--set", "image.repository=" + repo, "--set-string", "image.tag=" + tag, "--set", "s3.endpoint=" + s3.Endpoint}
	install := render(t, append(values, "--values", "../testdata/jobs.yaml")...)
	jm, tm := install.workload(t, "StatefulSet/weir-jobmanager"), install.workload(t, "Deployment/weir-taskmanager")
	if jm.Spec.Replicas != 3 || tm.Spec.Replicas != 2 {
		t.Fatalf("want a 3-replica JobManager StatefulSet and a 2-replica TaskManager Deployment, got %d and %d", jm.Spec.Replicas, tm.Spec.Replicas)
	}

	pods := func(w *workload, name func(i int) string) []pod {
		var ps []pod
		for i := range w.Spec.Replicas {
			p := pod{name: name(i), ports: map[int]int{}}
			free, err := testenv.FreePorts(len(w.Spec.Template.Spec.Containers[0].Ports))
			if err != nil {
				t.Fatal(err)
			}
			for k, cp := range w.Spec.Template.Spec.Containers[0].Ports {
				p.ports[cp.ContainerPort] = free[k]
			}
			ps = append(ps, p)
		}
		return ps
	}
	jms := pods(jm, func(i int) string { return fmt.Sprintf("weir-jobmanager-%d", i) })
	tms := pods(tm, func(i int) string { return fmt.Sprintf("weir-taskmanager-%d", i) })
	// The Services' DNS names: each JobManager's stable name, at each port.
	var dns []string
	for _, p := range jms {
		for cport, hport := range p.ports {
			dns = append(dns, fmt.Sprintf("%s.weir-jobmanager-raft.%s.svc:%d", p.name, ns, cport), "127.0.0.1:"+strconv.Itoa(hport))
		}
	}
	var jmAddrs []string
	for _, p := range jms {
		jmAddrs = append(jmAddrs, "127.0.0.1:"+strconv.Itoa(p.ports[6123]))
	}

	prefix := "weir-k8stest-" + randHex(t)[:8]
	var names []string
	t.Cleanup(func() {
		for _, n := range names {
			if t.Failed() {
				logs, _ := exec.Command("podman", "logs", "--tail", "15", n).CombinedOutput()
				t.Logf("last lines of container %s:\n%s", n, logs)
			}
			exec.Command("podman", "rm", "-f", "-t", "2", n).Run()
		}
	})
	run := func(w *workload, p pod) {
		name := prefix + "-" + p.name
		names = append(names, name)
		args := podmanArgs(t, w, p, dns, secrets, install.configMaps)
		podman(t, append([]string{"run", "-d", "--name", name}, args...)...)
	}
	// hook runs a hook Job's pod to its end, as the Job controller would,
	// and returns its output; it must exit 0.
	hook := func(r rendered, name string) string {
		t.Helper()
		w := r.workload(t, "Job/"+name)
		cname := fmt.Sprintf("%s-%s-%d", prefix, name, len(names)) // a hook runs once per phase
		names = append(names, cname)
		args := podmanArgs(t, w, pod{name: name + "-pod"}, dns, secrets, r.configMaps)
		out, err := exec.Command("podman", append([]string{"run", "--name", cname}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("hook %s: %v\n%s", name, err, out)
		}
		return string(out)
	}
	for _, p := range jms {
		run(jm, p)
	}
	for _, p := range tms {
		run(tm, p)
	}

	// The image's own CLI, on the host network like the pods.
	weir := func(args ...string) ([]byte, error) {
		full := append([]string{"run", "--rm", "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
			"--network", "host", ref}, args...)
		return exec.Command("podman", append(full, "--jobmanager", strings.Join(jmAddrs, ","))...).Output()
	}
	var cs cli.ClusterStatusView
	waitUntil(t, 2*time.Minute, "a leader among three JobManagers and two registered TaskManagers", func() error {
		out, _ := weir("cluster", "status", "--json") // exits 1 while there is no leader
		cs = cli.ClusterStatusView{}
		if err := json.Unmarshal(out, &cs); err != nil {
			return fmt.Errorf("cluster status: %v: %s", err, out)
		}
		if cs.LeaderID == "" || !cs.LeaderReached || len(cs.Members) != 3 || len(cs.TaskManagers) != 2 {
			return fmt.Errorf("cluster status: %s", out)
		}
		return nil
	})
	t.Logf("leader %s of %d JobManagers; TaskManagers %s and %s", cs.LeaderID, len(cs.Members), cs.TaskManagers[0].ID, cs.TaskManagers[1].ID)
	if !strings.HasPrefix(cs.LeaderID, "weir-jobmanager-") {
		t.Errorf("leader ID %q is not a pod name", cs.LeaderID)
	}

	// The post-install hook submits the declared jobs.
	out := hook(install, "weir-jobs-apply")
	t.Logf("post-install hook:\n%s", out)
	fraud := regexp.MustCompile(`fraud: submitted job ([0-9a-f]{32}) with no earlier state, running`).FindStringSubmatch(out)
	if fraud == nil || !strings.Contains(out, "seq: submitted job ") {
		t.Fatalf("the post-install hook did not submit both declared jobs:\n%s", out)
	}
	status := func(id string) cli.JobStatusView {
		out, err := weir("job", "status", id, "--json")
		if err != nil {
			t.Fatalf("job status: %v %s", err, out)
		}
		var st cli.JobStatusView
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	var st cli.JobStatusView
	waitUntil(t, 2*time.Minute, "the fraud job to run and complete a checkpoint", func() error {
		st = status(fraud[1])
		if st.State != "RUNNING" || st.Checkpointing.Completed < 1 || st.Checkpointing.Latest == nil {
			return fmt.Errorf("job %s: %s, %d checkpoints", fraud[1], st.State, st.Checkpointing.Completed)
		}
		return nil
	})
	path := st.Checkpointing.Latest.Path
	if !strings.HasPrefix(path, "s3://weir/checkpoints/") {
		t.Fatalf("latest checkpoint at %s, want under s3://weir/checkpoints/", path)
	}
	mc, err := minio.New(strings.TrimPrefix(s3.Endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimPrefix(path, "s3://weir/") + "/_metadata"
	info, err := mc.StatObject(context.Background(), "weir", key, minio.StatObjectOptions{})
	if err != nil {
		t.Errorf("checkpoint metadata %s is not in MinIO: %v", key, err)
	} else {
		t.Logf("checkpoint %d of job %s: %s (%d bytes of metadata in MinIO)", st.Checkpointing.Latest.ID, fraud[1], path, info.Size)
	}
	for _, v := range st.Vertices {
		for _, s := range v.Subtasks {
			if !strings.HasPrefix(s.TaskManagerID, "weir-taskmanager-") {
				t.Errorf("subtask of %s on %q, want a TaskManager pod", v.Name, s.TaskManagerID)
			}
		}
	}

	// The chart's metrics port (metrics.enabled, the default), as rendered:
	// every JobManager reports its raft term, one leads and counts both
	// TaskManagers, and the TaskManagers count the fraud job's records.
	scrape := func(p pod) string {
		t.Helper()
		hport, ok := p.ports[9249]
		if !ok {
			t.Fatalf("pod %s has no container port 9249 (metrics)", p.name)
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", hport))
		if err != nil {
			t.Fatalf("scraping %s: %v", p.name, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("scraping %s: %s %v", p.name, resp.Status, err)
		}
		return string(body)
	}
	leaders := 0
	for _, p := range jms {
		body := scrape(p)
		if !strings.Contains(body, `weir_jobmanager_raft_term{member="`+p.name+`"}`) {
			t.Errorf("JobManager %s's metrics lack its raft term:\n%.2000s", p.name, body)
		}
		if strings.Contains(body, `weir_jobmanager_leader{member="`+p.name+`"} 1`) {
			leaders++
			if !strings.Contains(body, "weir_taskmanagers_registered 2\n") {
				t.Errorf("the leader %s does not count two TaskManagers:\n%.2000s", p.name, body)
			}
		}
	}
	if leaders != 1 {
		t.Errorf("%d JobManagers report leading, want 1", leaders)
	}
	recordsOut := regexp.MustCompile(`(?m)^weir_operator_records_out_total\{[^}]*job_id="` + fraud[1] + `"[^}]*\} ([0-9.e+]+)$`)
	var records float64
	for _, p := range tms {
		for _, m := range recordsOut.FindAllStringSubmatch(scrape(p), -1) {
			v, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			records += v
		}
	}
	if records <= 0 {
		t.Errorf("the TaskManagers' metrics count no records out of the running fraud job %s", fraud[1])
	}
	t.Logf("metrics: one leader of %d JobManagers; %.0f records out of the fraud job's operators", len(jms), records)

	// helm upgrade with the fraud job changed: the pre-upgrade hook stops it
	// with a savepoint, the post-upgrade hook resubmits it from there, at
	// the new parallelism; the seq job is left alone.
	upgrade := render(t, append(values, "--values", "testdata/jobs-upgraded.yaml")...)
	out = hook(upgrade, "weir-jobs-prepare")
	t.Logf("pre-upgrade hook:\n%s", out)
	sp := regexp.MustCompile(`fraud: spec changed, stopped job ` + fraud[1] + ` with savepoint (s3://\S+)`).FindStringSubmatch(out)
	if sp == nil || !strings.Contains(out, "seq: unchanged") {
		t.Fatalf("the pre-upgrade hook did not stop only the fraud job:\n%s", out)
	}
	out = hook(upgrade, "weir-jobs-apply")
	t.Logf("post-upgrade hook:\n%s", out)
	again := regexp.MustCompile(`fraud: submitted job ([0-9a-f]{32}) from ` + regexp.QuoteMeta(sp[1]) + `, running`).FindStringSubmatch(out)
	if again == nil || !strings.Contains(out, "seq: unchanged") {
		t.Fatalf("the post-upgrade hook did not resubmit the fraud job from its savepoint:\n%s", out)
	}
	if st := status(again[1]); st.Parallelism != 3 || st.Params["rate"] != "200" || st.Checkpointing.Restored == nil || st.Checkpointing.Restored.Path != sp[1] ||
		st.Checkpointing.StateBackend != "pebble" || !st.Checkpointing.Incremental {
		t.Errorf("upgraded fraud job: parallelism %d, rate %s, restored %v, state backend %q, incremental %v", st.Parallelism, st.Params["rate"],
			st.Checkpointing.Restored, st.Checkpointing.StateBackend, st.Checkpointing.Incremental)
	}
	// Its state is in pebble on the TaskManagers' state volume (the root
	// filesystem is read-only), checkpointed incrementally to MinIO.
	waitUntil(t, 2*time.Minute, "the upgraded fraud job to complete a checkpoint on pebble", func() error {
		st := status(again[1])
		if st.State != "RUNNING" || st.Checkpointing.Completed < 1 {
			return fmt.Errorf("job %s: %s, %d checkpoints, %d failed", again[1], st.State, st.Checkpointing.Completed, st.Checkpointing.Failed)
		}
		return nil
	})
}

// podmanArgs turns one replica of a rendered pod template into `podman
// run` arguments: the container's image and args (its entrypoint is the
// image's), its environment with fieldRef and secretKeyRef resolved and
// $(VAR) expanded as the kubelet does, the ports mapped to the pod's host
// ports and the Services' names to 127.0.0.1, the pod's user, the
// container's security context, emptyDirs as tmpfs and claims as
// directories of the test.
func podmanArgs(t *testing.T, w *workload, p pod, dns []string, secrets, configMaps map[string]map[string]string) []string {
	t.Helper()
	spec := w.Spec.Template.Spec
	c := spec.Containers[0]
	pairs := slices.Clone(dns)
	for cport, hport := range p.ports {
		pairs = append(pairs, "0.0.0.0:"+strconv.Itoa(cport), "0.0.0.0:"+strconv.Itoa(hport),
			"127.0.0.1:"+strconv.Itoa(cport), "127.0.0.1:"+strconv.Itoa(hport))
	}
	rewrite := strings.NewReplacer(pairs...)

	args := []string{"--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", "host",
		"--user", fmt.Sprintf("%d:%d", spec.SecurityContext.RunAsUser, spec.SecurityContext.RunAsGroup)}
	if c.SecurityContext.ReadOnlyRootFilesystem {
		args = append(args, "--read-only")
	}
	if !c.SecurityContext.AllowPrivilegeEscalation {
		args = append(args, "--security-opt", "no-new-privileges")
	}
	for _, cp := range c.SecurityContext.Capabilities.Drop {
		args = append(args, "--cap-drop", cp)
	}
	for _, vm := range c.VolumeMounts {
		switch {
		case slices.ContainsFunc(spec.Volumes, func(v volume) bool { return v.Name == vm.Name && v.ConfigMap != nil }):
			k := slices.IndexFunc(spec.Volumes, func(v volume) bool { return v.Name == vm.Name })
			data, ok := configMaps[spec.Volumes[k].ConfigMap.Name]
			if !ok {
				t.Fatalf("volume %s of %s: no ConfigMap %s rendered", vm.Name, w.Metadata.Name, spec.Volumes[k].ConfigMap.Name)
			}
			dir := t.TempDir()
			for name, content := range data {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			os.Chmod(dir, 0o755)
			args = append(args, "-v", dir+":"+vm.MountPath+":ro")
		case slices.ContainsFunc(spec.Volumes, func(v volume) bool { return v.Name == vm.Name && v.EmptyDir != nil }):
			args = append(args, "--tmpfs", vm.MountPath+":rw,mode=1777")
		case slices.ContainsFunc(w.Spec.VolumeClaimTemplates, func(v claimTemplate) bool { return v.Metadata.Name == vm.Name }):
			dir := filepath.Join(t.TempDir(), vm.Name)
			// The pod's user owns its volume, as fsGroup arranges in a cluster.
			if err := os.MkdirAll(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			args = append(args, "-v", dir+":"+vm.MountPath)
		default:
			t.Fatalf("volume mount %s of %s is not a ConfigMap, an emptyDir or a claim", vm.Name, w.Metadata.Name)
		}
	}
	env := map[string]string{}
	// $(VAR) names a variable defined earlier in the list; others stay.
	expand := func(s string) string {
		return varRef.ReplaceAllStringFunc(s, func(ref string) string {
			if x, ok := env[ref[2:len(ref)-1]]; ok {
				return x
			}
			return ref
		})
	}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom == nil:
			v = expand(v)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			v = p.name
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
			v = "127.0.0.1"
		case e.ValueFrom.SecretKeyRef != nil:
			s, ok := secrets[e.ValueFrom.SecretKeyRef.Name][e.ValueFrom.SecretKeyRef.Key]
			if !ok {
				t.Fatalf("env %s of %s: no secret %s key %s", e.Name, w.Metadata.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			}
			v = s
		default:
			t.Fatalf("env %s of %s: the test cannot resolve its valueFrom", e.Name, w.Metadata.Name)
		}
		env[e.Name] = v
		args = append(args, "-e", e.Name+"="+rewrite.Replace(v))
	}
	if len(c.Command) > 0 {
		args = append(args, "--entrypoint", c.Command[0])
	}
	args = append(args, c.Image)
	if len(c.Command) > 1 {
		args = append(args, c.Command[1:]...)
	}
	for _, a := range c.Args {
		args = append(args, rewrite.Replace(expand(a)))
	}
	return args
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// waitUntil polls check every second until it returns nil.
func waitUntil(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", within, what, err)
		}
		time.Sleep(time.Second)
	}
}
