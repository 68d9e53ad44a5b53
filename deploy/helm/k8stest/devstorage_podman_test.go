//go:build k8s

package k8stest

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/etcdtest"
	"github.com/weirstream/weir/internal/miniotest"
	"github.com/weirstream/weir/internal/testenv"
)

// TestDevStoragePodsInContainers runs the JobManager and TaskManager pods
// that `helm template` renders with minio.enabled and etcd.enabled, as
// containers of the image, against a real MinIO and etcd standing in for
// the chart's (whose images cannot be pulled here) under their Service
// names. The MinIO has no bucket and the chart's own Secret holds its
// credentials: the fraud job's checkpoints must create the bucket and land
// in it, and a CLI that knows only etcd (no reachable --jobmanager) must
// find the leader the JobManager published there.
func TestDevStoragePodsInContainers(t *testing.T) {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatal("podman is not installed: make test-k8s installs it (apt-get install podman runc)")
	}
	loaded := podman(t, "load", "-i", imageTarball(t))
	m := regexp.MustCompile(`Loaded image(?:\(s\))?: (\S+)`).FindStringSubmatch(loaded)
	if m == nil {
		t.Fatalf("podman load printed no image name:\n%s", loaded)
	}
	ref := m[1]
	repo, tag, _ := strings.Cut(ref, ":")

	s3 := miniotest.Start(t)
	etcd := etcdtest.StartProcess(t)
	r := render(t, "--set", "image.repository="+repo, "--set-string", "image.tag="+tag,
		"--set", "minio.enabled=true,etcd.enabled=true,jobmanager.replicas=1,taskmanager.replicas=1",
		// The chart's MinIO would take its root user from this Secret; the
		// test's MinIO has its own, so the values name that one.
		"--set", "s3.accessKey="+s3.AccessKey+",s3.secretKey="+s3.SecretKey)
	if got := r.secrets["weir-s3"]; got["AWS_ACCESS_KEY_ID"] != s3.AccessKey {
		t.Fatalf("the chart's Secret weir-s3: %v", got)
	}
	jm, tm := r.workload(t, "StatefulSet/weir-jobmanager"), r.workload(t, "Deployment/weir-taskmanager")

	newPod := func(w *workload, name string) pod {
		p := pod{name: name, ports: map[int]int{}}
		free, err := testenv.FreePorts(len(w.Spec.Template.Spec.Containers[0].Ports))
		if err != nil {
			t.Fatal(err)
		}
		for k, cp := range w.Spec.Template.Spec.Containers[0].Ports {
			p.ports[cp.ContainerPort] = free[k]
		}
		return p
	}
	jmPod, tmPod := newPod(jm, "weir-jobmanager-0"), newPod(tm, "weir-taskmanager-0")
	etcdHost := strings.TrimPrefix(etcd.Endpoint, "http://")
	dns := []string{
		"http://weir-minio." + ns + ".svc:9000", s3.Endpoint,
		"weir-etcd-0.weir-etcd." + ns + ".svc:2379", etcdHost,
	}
	for cport, hport := range jmPod.ports {
		dns = append(dns, fmt.Sprintf("weir-jobmanager-0.weir-jobmanager-raft.%s.svc:%d", ns, cport), "127.0.0.1:"+strconv.Itoa(hport))
	}

	prefix := "weir-k8stest-dev-" + randHex(t)[:8]
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
	for _, c := range []struct {
		w *workload
		p pod
	}{{jm, jmPod}, {tm, tmPod}} {
		name := prefix + "-" + c.p.name
		names = append(names, name)
		podman(t, append([]string{"run", "-d", "--name", name}, podmanArgs(t, c.w, c.p, dns, r.secrets, r.configMaps)...)...)
	}

	// The CLI in the image with etcd only: the --jobmanager it is given is
	// a closed port.
	closed, err := testenv.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	dead := "127.0.0.1:" + strconv.Itoa(closed[0])
	weir := func(args ...string) ([]byte, error) {
		full := append([]string{"run", "--rm", "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
			"--network", "host", ref}, args...)
		return exec.Command("podman", append(full, "--jobmanager", dead, "--etcd", etcd.Endpoint)...).Output()
	}
	waitUntil(t, 2*time.Minute, "the leader, found through etcd, with one registered TaskManager", func() error {
		out, _ := weir("cluster", "status", "--json")
		var cs cli.ClusterStatusView
		if err := json.Unmarshal(out, &cs); err != nil {
			return fmt.Errorf("cluster status: %v: %s", err, out)
		}
		// A group of one has a generated ID; its address can only have
		// come from etcd.
		want := "127.0.0.1:" + strconv.Itoa(jmPod.ports[6123])
		if cs.LeaderID == "" || cs.LeaderAddress != want || !cs.LeaderReached || len(cs.TaskManagers) != 1 {
			return fmt.Errorf("cluster status: %s", out)
		}
		return nil
	})
	out, err := weir("job", "submit", "fraud-detection", "--checkpoint-interval", "500ms", "--param", "rate=100")
	if err != nil {
		t.Fatalf("submit through etcd: %v: %s", err, out)
	}
	id := strings.TrimSpace(string(out))
	var path string
	waitUntil(t, 2*time.Minute, "the fraud job to checkpoint into the bucket it creates", func() error {
		out, _ := weir("job", "status", id, "--json")
		var st cli.JobStatusView
		if err := json.Unmarshal(out, &st); err != nil {
			return fmt.Errorf("job status: %v: %s", err, out)
		}
		if st.State != "RUNNING" || st.Checkpointing.Latest == nil {
			return fmt.Errorf("job %s: %s, %d checkpoints", id, st.State, st.Checkpointing.Completed)
		}
		path = st.Checkpointing.Latest.Path
		return nil
	})
	if !strings.HasPrefix(path, "s3://weir/checkpoints/") {
		t.Fatalf("latest checkpoint at %s, want under s3://weir/checkpoints/", path)
	}
	mc, err := minio.New(strings.TrimPrefix(s3.Endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimPrefix(path, "s3://weir/") + "/_metadata"
	if _, err := mc.StatObject(context.Background(), "weir", key, minio.StatObjectOptions{}); err != nil {
		t.Errorf("checkpoint metadata %s is not in the bucket weir that Weir was to create: %v", key, err)
	}
	t.Logf("job %s found through etcd at %s; checkpoint %s in the created bucket", id, etcd.Endpoint, path)
}
