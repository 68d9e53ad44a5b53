//go:build k8s

package k8stest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	chart = "../weir"
	ns    = "streams"
)

// resources maps the kinds the chart renders to their REST collection
// (plural) and whether they live in a namespace. A kind missing here fails
// TestServerSideDryRun, so a new template cannot go unchecked.
var resources = map[string]struct {
	plural     string
	namespaced bool
}{
	"ServiceAccount":      {"serviceaccounts", true},
	"Secret":              {"secrets", true},
	"ConfigMap":           {"configmaps", true},
	"Service":             {"services", true},
	"Pod":                 {"pods", true},
	"StatefulSet":         {"statefulsets", true},
	"Deployment":          {"deployments", true},
	"Job":                 {"jobs", true},
	"PodDisruptionBudget": {"poddisruptionbudgets", true},
	"NetworkPolicy":       {"networkpolicies", true},
}

func collectionPath(apiVersion, kind, namespace string) (string, error) {
	r, ok := resources[kind]
	if !ok {
		return "", fmt.Errorf("kind %s is not in the test's resources table: add it", kind)
	}
	prefix := "/apis/" + apiVersion
	if apiVersion == "v1" {
		prefix = "/api/v1"
	}
	if r.namespaced {
		return prefix + "/namespaces/" + namespace + "/" + r.plural, nil
	}
	return prefix + "/" + r.plural, nil
}

// object is the part of any Kubernetes object the tests read.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"metadata"`
	Spec struct {
		Replicas int `json:"replicas"`
	} `json:"spec"`
	Status struct {
		Phase         string `json:"phase"`
		ReadyReplicas int    `json:"readyReplicas"`
		Replicas      int    `json:"replicas"`
	} `json:"status"`
}

type list struct {
	Items []object `json:"items"`
}

func (c *cluster) get(path string) (object, int, error) {
	var o object
	code, err := c.do("GET", path, nil, &o)
	return o, code, err
}

// prepareNamespace creates the namespace and the S3 Secret the chart's
// default values name (s3.existingSecret: weir-s3).
func (c *cluster) prepareNamespace(t *testing.T) {
	t.Helper()
	c.create(t, "/api/v1/namespaces", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}})
	c.create(t, "/api/v1/namespaces/"+ns+"/secrets", map[string]any{
		"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "weir-s3"},
		"stringData": map[string]any{"AWS_ACCESS_KEY_ID": "weiradmin", "AWS_SECRET_ACCESS_KEY": "weiradmin-secret"},
	})
	c.waitFor(t, "the namespace's default ServiceAccount", func() (bool, error) {
		code, err := c.do("GET", "/api/v1/namespaces/"+ns+"/serviceaccounts/default", nil, nil)
		return code == http.StatusOK, err
	})
}

// waitReplicas waits until the workload at path has want ready replicas.
func (c *cluster) waitReplicas(t *testing.T, path string, want int) {
	t.Helper()
	c.waitFor(t, fmt.Sprintf("%d ready replicas of %s", want, path), func() (bool, error) {
		o, _, err := c.get(path)
		if err != nil {
			return false, err
		}
		if o.Status.ReadyReplicas != want || o.Spec.Replicas != want {
			return false, fmt.Errorf("%s: %d of %d ready, spec %d", path, o.Status.ReadyReplicas, want, o.Spec.Replicas)
		}
		return true, nil
	})
}

// jobManagerClaims returns the JobManagers' PersistentVolumeClaims by name
// with their UIDs.
func (c *cluster) jobManagerClaims(t *testing.T) map[string]string {
	t.Helper()
	var l list
	if _, err := c.do("GET", "/api/v1/namespaces/"+ns+"/persistentvolumeclaims?labelSelector=app.kubernetes.io/component%3Djobmanager", nil, &l); err != nil {
		t.Fatal(err)
	}
	claims := map[string]string{}
	for _, o := range l.Items {
		claims[o.Metadata.Name] = o.Metadata.UID
	}
	return claims
}

// TestHelmOnKubernetes installs the chart on a real API server, checks
// that the controllers make the JobManagers' StatefulSet and the
// TaskManagers' Deployment reach their replica counts (on kwok's fake
// nodes, with the claims bound), that bad values fail with the chart's
// sentences, that an upgrade scales the TaskManagers, and that neither
// the upgrade nor the uninstall touches the raft volumes' claims.
func TestHelmOnKubernetes(t *testing.T) {
	c := startCluster(t, 3)
	c.prepareNamespace(t)
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpPods(t)
		}
	})

	t.Run("ServerSideDryRun", func(t *testing.T) { testServerSideDryRun(t, c) })

	for _, bad := range []struct {
		set, want string
	}{
		{"jobmanager.replicas=2", "jobmanager.replicas is 2: a raft group needs an odd number of JobManagers"},
		{"s3.existingSecret=", "S3 credentials are missing: set s3.existingSecret"},
		{"taskmanager.slots=0", "slots"},
	} {
		out, err := c.helm(t, "install", "weir-bad", chart, "-n", ns, "--set", bad.set)
		if err == nil {
			t.Errorf("helm install --set %s succeeded, want it refused", bad.set)
		} else if !strings.Contains(out, bad.want) {
			t.Errorf("helm install --set %s failed without %q:\n%s", bad.set, bad.want, out)
		}
	}

	// The post-install hook Job (weir apply) runs on a fake node, where
	// kwok makes it succeed: helm waits for it.
	out, err := c.helm(t, "install", "weir", chart, "-n", ns, "--values", "../testdata/jobs.yaml", "--timeout", "3m")
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Declared jobs (fraud, seq) are submitted by the hook Job\nweir-jobs-apply;") {
		t.Errorf("the install's notes do not name the declared jobs:\n%s", out)
	}
	c.hooksRan(t, map[string]int{"weir-jobs-apply": 1, "weir-jobs-prepare": 0})
	sts := "/apis/apps/v1/namespaces/" + ns + "/statefulsets/weir-jobmanager"
	deploy := "/apis/apps/v1/namespaces/" + ns + "/deployments/weir-taskmanager"
	c.waitReplicas(t, sts, 3)
	c.waitReplicas(t, deploy, 2)
	claims := c.jobManagerClaims(t)
	if len(claims) != 3 {
		t.Fatalf("JobManager claims: %v, want 3", claims)
	}
	c.waitFor(t, "the claims to be bound", func() (bool, error) {
		var l list
		_, err := c.do("GET", "/api/v1/namespaces/"+ns+"/persistentvolumeclaims", nil, &l)
		return err == nil && len(l.Items) == 3 && !slices.ContainsFunc(l.Items, func(o object) bool { return o.Status.Phase != "Bound" }), err
	})

	// The pre- and post-upgrade hooks run, with the new job list.
	if out, err := c.helm(t, "upgrade", "weir", chart, "-n", ns, "--values", "testdata/jobs-upgraded.yaml",
		"--set", "taskmanager.replicas=3", "--timeout", "3m"); err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	c.hooksRan(t, map[string]int{"weir-jobs-apply": 2, "weir-jobs-prepare": 1})
	if out, err := c.helm(t, "history", "weir", "-n", ns); err != nil || strings.Count(out, "deployed") != 1 || !strings.Contains(out, "superseded") {
		t.Errorf("helm history: %v\n%s", err, out)
	}
	c.waitReplicas(t, deploy, 3)
	c.waitReplicas(t, sts, 3)
	if got := c.jobManagerClaims(t); !mapsEqual(got, claims) {
		t.Errorf("claims after the upgrade %v, want the same as before %v", got, claims)
	}

	if out, err := c.helm(t, "uninstall", "weir", "-n", ns, "--wait", "--timeout", "3m"); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	c.waitFor(t, "the StatefulSet to be deleted", func() (bool, error) {
		_, code, err := c.get(sts)
		if code == http.StatusNotFound {
			return true, nil
		}
		return false, fmt.Errorf("GET %s: %d %v", sts, code, err)
	})
	if got := c.jobManagerClaims(t); !mapsEqual(got, claims) {
		t.Errorf("claims after the uninstall %v, want them kept: %v", got, claims)
	}

	t.Run("DevStorage", func(t *testing.T) { testDevStorage(t, c) })
}

// testDevStorage installs the chart with the development MinIO and etcd
// on, with no S3 Secret prepared (the chart makes it): a server-side dry
// run first, then the real install, whose four StatefulSets and claims
// must come up; an upgrade must keep the generated MinIO credentials,
// which MinIO keeps on its volume.
func testDevStorage(t *testing.T, c *cluster) {
	const dns, release = "dev", "weir-dev"
	c.create(t, "/api/v1/namespaces", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": dns}})
	c.waitFor(t, "the dev namespace's default ServiceAccount", func() (bool, error) {
		code, err := c.do("GET", "/api/v1/namespaces/"+dns+"/serviceaccounts/default", nil, nil)
		return code == http.StatusOK, err
	})
	// Volumes for the claims: the JobManager's raft log, etcd and MinIO
	// (there is no provisioner; the binder picks the smallest that fits).
	for name, size := range map[string]string{"dev-raft": "1Gi", "dev-etcd": "1Gi", "dev-minio": "10Gi"} {
		c.create(t, "/api/v1/persistentvolumes", map[string]any{
			"apiVersion": "v1", "kind": "PersistentVolume", "metadata": map[string]any{"name": name},
			"spec": map[string]any{"capacity": map[string]any{"storage": size}, "accessModes": []any{"ReadWriteOnce"},
				"persistentVolumeReclaimPolicy": "Retain", "hostPath": map[string]any{"path": filepath.Join(c.dir, "pv", name)}},
		})
	}
	values := []string{"--set", "minio.enabled=true,etcd.enabled=true,networkPolicy.enabled=true,jobmanager.replicas=1,taskmanager.replicas=1"}
	if out, err := c.helm(t, append([]string{"install", release, chart, "-n", dns, "--dry-run=server"}, values...)...); err != nil {
		t.Fatalf("helm install --dry-run=server with development storage: %v\n%s", err, out)
	}
	out, err := c.helm(t, append([]string{"install", release, chart, "-n", dns, "--timeout", "3m"}, values...)...)
	if err != nil {
		t.Fatalf("helm install with development storage: %v\n%s", err, out)
	}
	for _, want := range []string{"the MinIO at http://weir-dev-minio.dev.svc:9000", "publishes itself at http://weir-dev-etcd-0.weir-dev-etcd.dev.svc:2379"} {
		if !strings.Contains(out, want) {
			t.Errorf("the install's notes lack %q:\n%s", want, out)
		}
	}
	for name, n := range map[string]int{"weir-dev-minio": 1, "weir-dev-etcd": 1, "weir-dev-jobmanager": 1} {
		c.waitReplicas(t, "/apis/apps/v1/namespaces/"+dns+"/statefulsets/"+name, n)
	}
	c.waitReplicas(t, "/apis/apps/v1/namespaces/"+dns+"/deployments/weir-dev-taskmanager", 1)
	c.waitFor(t, "the dev claims to be bound", func() (bool, error) {
		var l list
		_, err := c.do("GET", "/api/v1/namespaces/"+dns+"/persistentvolumeclaims", nil, &l)
		return err == nil && len(l.Items) == 3 && !slices.ContainsFunc(l.Items, func(o object) bool { return o.Status.Phase != "Bound" }), err
	})

	secretPath := "/api/v1/namespaces/" + dns + "/secrets/weir-dev-s3"
	var before, after struct {
		Data map[string]string `json:"data"`
	}
	if _, err := c.do("GET", secretPath, nil, &before); err != nil || before.Data["AWS_SECRET_ACCESS_KEY"] == "" {
		t.Fatalf("the chart's S3 Secret: %v %v", err, before)
	}
	if out, err := c.helm(t, append(append([]string{"upgrade", release, chart, "-n", dns, "--timeout", "3m"}, values...), "--set", "taskmanager.replicas=2")...); err != nil {
		t.Fatalf("helm upgrade with development storage: %v\n%s", err, out)
	}
	if _, err := c.do("GET", secretPath, nil, &after); err != nil {
		t.Fatal(err)
	}
	if !mapsEqual(before.Data, after.Data) {
		t.Error("the upgrade changed the generated MinIO credentials")
	}
	c.waitReplicas(t, "/apis/apps/v1/namespaces/"+dns+"/deployments/weir-dev-taskmanager", 2)
}

// testServerSideDryRun sends every object the chart renders (hooks and
// the helm test pod included, with every optional template switched on)
// to the API server as a dry run with strict field validation, which
// rejects unknown or duplicated fields that helm lint lets through; then
// helm's own server-side dry run of an install.
func testServerSideDryRun(t *testing.T, c *cluster) {
	for i, values := range [][]string{
		{"--set", "networkPolicy.enabled=true", "--values", "../testdata/jobs.yaml"},
		{"--values", "../testdata/inline-s3.yaml"},
		{"--values", "../testdata/dev-storage.yaml"},
	} {
		// A namespace of its own: its ServiceAccounts are really created
		// first (strictly validated too), as a pod's admission looks its
		// account up; everything else is a dry run.
		dns := fmt.Sprintf("dry-run-%d", i)
		c.create(t, "/api/v1/namespaces", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": dns}})
		out, err := c.helm(t, append([]string{"template", "weir", chart, "-n", dns}, values...)...)
		if err != nil {
			t.Fatalf("helm template %v: %v\n%s", values, err, out)
		}
		kinds := map[string]int{}
		docs := strings.Split(out, "\n---")
		slices.SortStableFunc(docs, func(a, b string) int {
			return cmp.Compare(serviceAccountFirst(a), serviceAccountFirst(b))
		})
		for _, doc := range docs {
			j, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("a rendered document is not YAML: %v\n%s", err, doc)
			}
			var o object
			if err := yaml.Unmarshal(j, &o); err != nil || o.Kind == "" {
				continue // a document of comments only
			}
			if o.Kind == "ServiceMonitor" {
				// The Prometheus Operator's CRD is not installed here; the
				// chart's own tests check what it renders.
				kinds[o.Kind]++
				continue
			}
			path, err := collectionPath(o.APIVersion, o.Kind, dns)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			if err := yaml.Unmarshal(j, &body); err != nil {
				t.Fatal(err)
			}
			query := "?dryRun=All&fieldValidation=Strict"
			if o.Kind == "ServiceAccount" {
				query = "?fieldValidation=Strict"
			}
			_, err = c.do("POST", path+query, body, nil)
			// The ServiceAccount admission plugin reads a cache that may
			// not hold the account created a moment ago.
			for try := 0; err != nil && strings.Contains(err.Error(), "error looking up service account") && try < 50; try++ {
				time.Sleep(200 * time.Millisecond)
				_, err = c.do("POST", path+query, body, nil)
			}
			if err != nil {
				t.Errorf("%s %s %v: the API server rejects it: %v", o.Kind, o.Metadata.Name, values, err)
			}
			kinds[o.Kind]++
		}
		for _, k := range []string{"StatefulSet", "Deployment", "Service", "Pod", "ConfigMap", "Job"} {
			if kinds[k] == 0 {
				t.Errorf("helm template %v rendered no %s (kinds: %v)", values, k, kinds)
			}
		}
	}
	if out, err := c.helm(t, "install", "weir", chart, "-n", ns, "--dry-run=server"); err != nil {
		t.Errorf("helm install --dry-run=server: %v\n%s", err, out)
	}
}

// hooksRan checks that each jobs hook Job completed as often as want
// says (the Job controller's Completed events; kwok makes the pods
// succeed) and that the hooks' ConfigMap and Jobs are gone: helm deletes
// them (hook-delete-policy hook-succeeded) once every hook of the phase
// completed.
func (c *cluster) hooksRan(t *testing.T, want map[string]int) {
	t.Helper()
	for job, n := range want {
		// Events are recorded asynchronously, maybe just after helm saw
		// the Job complete.
		c.waitFor(t, fmt.Sprintf("hook Job %s to have completed %d times", job, n), func() (bool, error) {
			var events struct {
				Items []struct {
					Reason string `json:"reason"`
				} `json:"items"`
			}
			if _, err := c.do("GET", "/api/v1/namespaces/"+ns+"/events?fieldSelector=involvedObject.kind%3DJob,involvedObject.name%3D"+job, nil, &events); err != nil {
				return false, err
			}
			done := 0
			for _, e := range events.Items {
				if e.Reason == "Completed" {
					done++
				}
			}
			return done == n, fmt.Errorf("%d Completed events", done)
		})
	}
	for _, p := range []string{"/api/v1/namespaces/" + ns + "/configmaps/weir-jobs",
		"/apis/batch/v1/namespaces/" + ns + "/jobs/weir-jobs-apply", "/apis/batch/v1/namespaces/" + ns + "/jobs/weir-jobs-prepare"} {
		c.waitFor(t, p+" to be deleted (a hook that succeeded is)", func() (bool, error) {
			_, code, err := c.get(p)
			return code == http.StatusNotFound, err
		})
	}
}

// dumpPods logs the pods of the namespace, for a failed test.
func (c *cluster) dumpPods(t *testing.T) {
	var l struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				NodeName string `json:"nodeName"`
			} `json:"spec"`
			Status json.RawMessage `json:"status"`
		} `json:"items"`
	}
	if _, err := c.do("GET", "/api/v1/namespaces/"+ns+"/pods", nil, &l); err != nil {
		t.Logf("listing pods: %v", err)
		return
	}
	for _, p := range l.Items {
		t.Logf("pod %s on %q: %s", p.Metadata.Name, p.Spec.NodeName, p.Status)
	}
}

// serviceAccountFirst is 0 for a document holding a ServiceAccount, 1 for
// others: a sort key that puts ServiceAccounts first.
func serviceAccountFirst(doc string) int {
	if strings.Contains(doc, "\nkind: ServiceAccount\n") {
		return 0
	}
	return 1
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
