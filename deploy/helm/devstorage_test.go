package helm

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// manifest is one rendered object, decoded as JSON would be.
type manifest = map[string]any

// manifests splits helm template output into its objects, by kind/name.
func manifests(t *testing.T, out string) map[string]manifest {
	t.Helper()
	objs := map[string]manifest{}
	for _, doc := range strings.Split(out, "\n---") {
		var m manifest
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("a rendered document is not YAML: %v\n%s", err, doc)
		}
		if m == nil || m["kind"] == nil {
			continue // comments only
		}
		objs[fmt.Sprintf("%s/%s", m["kind"], at(m, "metadata", "name"))] = m
	}
	return objs
}

// at walks maps by key and lists by int index; nil when a step is missing.
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// container is the first container of a workload (or pod) object.
func container(m manifest) map[string]any {
	if c, ok := at(m, "spec", "template", "spec", "containers", 0).(map[string]any); ok {
		return c
	}
	c, _ := at(m, "spec", "containers", 0).(map[string]any)
	return c
}

// env maps a container's variables to their value, or to
// "secret:NAME/KEY" for a secretKeyRef.
func env(c map[string]any) map[string]string {
	vars := map[string]string{}
	list, _ := c["env"].([]any)
	for _, e := range list {
		name, _ := at(e, "name").(string)
		if v, ok := at(e, "value").(string); ok {
			vars[name] = v
		} else if s, ok := at(e, "valueFrom", "secretKeyRef", "name").(string); ok {
			vars[name] = fmt.Sprintf("secret:%s/%s", s, at(e, "valueFrom", "secretKeyRef", "key"))
		}
	}
	return vars
}

func args(c map[string]any) []string {
	var out []string
	list, _ := c["args"].([]any)
	for _, a := range list {
		out = append(out, fmt.Sprint(a))
	}
	return out
}

func mustGet(t *testing.T, objs map[string]manifest, key string) manifest {
	t.Helper()
	m, ok := objs[key]
	if !ok {
		keys := make([]string, 0, len(objs))
		for k := range objs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		t.Fatalf("no %s rendered; have %v", key, keys)
	}
	return m
}

// TestDevStorage: with minio.enabled and etcd.enabled the chart runs both
// as StatefulSets of its own, points every Weir process at them (S3
// endpoint, bucket creation, --etcd) and makes the credentials Secret
// MinIO and Weir share, ignoring s3.existingSecret.
func TestDevStorage(t *testing.T) {
	out, err := template(t, "dev-storage.yaml")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objs := manifests(t, out)

	minio := mustGet(t, objs, "StatefulSet/weir-minio")
	mustGet(t, objs, "Service/weir-minio")
	mc := container(minio)
	if img := mc["image"]; img != "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z" {
		t.Errorf("MinIO image %v, want the pinned release", img)
	}
	if got := at(minio, "spec", "replicas"); got != float64(1) {
		t.Errorf("MinIO replicas %v, want 1", got)
	}
	me := env(mc)
	if me["MINIO_ROOT_USER"] != "secret:weir-s3/AWS_ACCESS_KEY_ID" || me["MINIO_ROOT_PASSWORD"] != "secret:weir-s3/AWS_SECRET_ACCESS_KEY" {
		t.Errorf("MinIO's root user does not come from the chart's Secret: %v", me)
	}
	if got := at(minio, "spec", "volumeClaimTemplates", 0, "spec", "resources", "requests", "storage"); got != "10Gi" {
		t.Errorf("MinIO claim size %v, want 10Gi", got)
	}
	for _, o := range []manifest{minio} {
		if at(o, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true ||
			at(container(o), "securityContext", "readOnlyRootFilesystem") != true {
			t.Errorf("%s lacks the chart's security contexts", at(o, "metadata", "name"))
		}
	}

	secret := mustGet(t, objs, "Secret/weir-s3")
	user, _ := at(secret, "stringData", "AWS_ACCESS_KEY_ID").(string)
	pass, _ := at(secret, "stringData", "AWS_SECRET_ACCESS_KEY").(string)
	if user != "weir" || len(pass) != 32 {
		t.Errorf("generated credentials %q/%d characters, want weir and 32 random characters", user, len(pass))
	}

	etcd := mustGet(t, objs, "StatefulSet/weir-etcd")
	if got := at(etcd, "spec", "replicas"); got != float64(3) {
		t.Errorf("etcd replicas %v, want 3", got)
	}
	if at(mustGet(t, objs, "Service/weir-etcd"), "spec", "clusterIP") != "None" {
		t.Error("etcd's Service is not headless")
	}
	ec := container(etcd)
	if img, _ := ec["image"].(string); !strings.HasPrefix(img, "quay.io/coreos/etcd:v3.6.") {
		t.Errorf("etcd image %q, want a pinned 3.6", img)
	}
	if want := "--initial-cluster=weir-etcd-0=http://weir-etcd-0.weir-etcd.streams.svc:2380," +
		"weir-etcd-1=http://weir-etcd-1.weir-etcd.streams.svc:2380,weir-etcd-2=http://weir-etcd-2.weir-etcd.streams.svc:2380"; !slices.Contains(args(ec), want) {
		t.Errorf("etcd args %v lack %s", args(ec), want)
	}

	const etcdEndpoints = "http://weir-etcd-0.weir-etcd.streams.svc:2379,http://weir-etcd-1.weir-etcd.streams.svc:2379,http://weir-etcd-2.weir-etcd.streams.svc:2379"
	for _, key := range []string{"StatefulSet/weir-jobmanager", "Deployment/weir-taskmanager"} {
		e := env(container(mustGet(t, objs, key)))
		for name, want := range map[string]string{
			"WEIR_S3_ENDPOINT":      "http://weir-minio.streams.svc:9000",
			"WEIR_S3_CREATE_BUCKET": "true",
			"WEIR_S3_ACCESS_KEY":    "secret:weir-s3/AWS_ACCESS_KEY_ID",
			"WEIR_S3_SECRET_KEY":    "secret:weir-s3/AWS_SECRET_ACCESS_KEY",
			"WEIR_ETCD_ENDPOINTS":   etcdEndpoints,
		} {
			if e[name] != want {
				t.Errorf("%s: %s = %q, want %q", key, name, e[name], want)
			}
		}
	}
	if e := env(container(mustGet(t, objs, "StatefulSet/weir-jobmanager"))); e["WEIR_CHECKPOINT_STORAGE"] != "s3://weir/checkpoints" {
		t.Errorf("checkpoint storage %q", e["WEIR_CHECKPOINT_STORAGE"])
	}
	// The CLI of the hooks and of helm test finds the leader through etcd.
	for _, key := range []string{"Job/weir-jobs-apply", "Job/weir-jobs-prepare"} {
		if e := env(container(mustGet(t, objs, key))); e["WEIR_ETCD_ENDPOINTS"] != etcdEndpoints {
			t.Errorf("%s: WEIR_ETCD_ENDPOINTS = %q", key, e["WEIR_ETCD_ENDPOINTS"])
		}
	}
	testArgs := args(container(mustGet(t, objs, "Pod/weir-test-cluster-status")))
	if i := slices.Index(testArgs, "--etcd"); i < 0 || i+1 >= len(testArgs) || testArgs[i+1] != etcdEndpoints {
		t.Errorf("helm test pod args %v, want --etcd %s", testArgs, etcdEndpoints)
	}

	// Only Weir's pods reach the development stores.
	for _, c := range []struct {
		name  string
		ports []float64
	}{{"weir-minio", []float64{9000}}, {"weir-etcd", []float64{2379, 2380}}} {
		np := mustGet(t, objs, "NetworkPolicy/"+c.name)
		if got := at(np, "spec", "ingress", 0, "from", 0, "podSelector", "matchLabels", "app.kubernetes.io/instance"); got != "weir" {
			t.Errorf("NetworkPolicy %s admits %v, want the release's pods", c.name, got)
		}
		for i, p := range c.ports {
			if got := at(np, "spec", "ingress", 0, "ports", i, "port"); got != p {
				t.Errorf("NetworkPolicy %s port %d = %v, want %v", c.name, i, got, p)
			}
		}
	}
}

// TestDevStorageEmptyDir: persistence.enabled false gives MinIO and etcd
// an emptyDir instead of a claim, and one etcd member by default.
func TestDevStorageEmptyDir(t *testing.T) {
	out, err := helm(t, "template", "weir", "weir", "--namespace", "streams", "--set",
		"minio.enabled=true,etcd.enabled=true,minio.persistence.enabled=false,etcd.persistence.enabled=false")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objs := manifests(t, out)
	for _, key := range []string{"StatefulSet/weir-minio", "StatefulSet/weir-etcd"} {
		o := mustGet(t, objs, key)
		if at(o, "spec", "volumeClaimTemplates") != nil {
			t.Errorf("%s has a claim with persistence off", key)
		}
		vols, _ := at(o, "spec", "template", "spec", "volumes").([]any)
		if !slices.ContainsFunc(vols, func(v any) bool { return at(v, "name") == "data" && at(v, "emptyDir") != nil }) {
			t.Errorf("%s: no emptyDir named data in %v", key, vols)
		}
	}
	if got := at(objs["StatefulSet/weir-etcd"], "spec", "replicas"); got != float64(1) {
		t.Errorf("etcd replicas %v, want 1 by default", got)
	}
	if e := env(container(objs["StatefulSet/weir-jobmanager"])); e["WEIR_ETCD_ENDPOINTS"] != "http://weir-etcd-0.weir-etcd.streams.svc:2379" {
		t.Errorf("WEIR_ETCD_ENDPOINTS = %q, want the one member", e["WEIR_ETCD_ENDPOINTS"])
	}
}

// TestDevStorageOffByDefault: the defaults run neither store nor create
// buckets, and keep the existing Secret and endpoint of the values.
func TestDevStorageOffByDefault(t *testing.T) {
	out, err := template(t, "inline-s3.yaml")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objs := manifests(t, out)
	for key := range objs {
		if strings.Contains(key, "minio") || strings.Contains(key, "etcd") {
			t.Errorf("%s rendered with minio and etcd off", key)
		}
	}
	for _, unwanted := range []string{"WEIR_S3_CREATE_BUCKET", "WEIR_ETCD_ENDPOINTS", "--etcd"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("manifests have %q with minio and etcd off", unwanted)
		}
	}
	if e := env(container(objs["Deployment/weir-taskmanager"])); e["WEIR_S3_ENDPOINT"] != "http://minio.storage.svc:9000" {
		t.Errorf("WEIR_S3_ENDPOINT = %q, want s3.endpoint", e["WEIR_S3_ENDPOINT"])
	}
}

// TestDevStorageBadValues: each fails with a sentence naming the value.
func TestDevStorageBadValues(t *testing.T) {
	for file, want := range map[string]string{
		"even-etcd.yaml":                      "etcd.replicas is 2: etcd needs an odd number of members",
		"minio-and-endpoint.yaml":             `minio.enabled is true and s3.endpoint is "http://minio.storage.svc:9000": the in-cluster MinIO is the endpoint`,
		"bad-minio-field.yaml":                "additional properties 'persistance' not allowed",
		"servicemonitor-without-metrics.yaml": "metrics.serviceMonitor.enabled needs metrics.enabled: true",
	} {
		out, err := template(t, file)
		if err == nil {
			t.Errorf("%s: helm template succeeded, want it to fail", file)
		} else if !strings.Contains(out, want) {
			t.Errorf("%s: the failure lacks %q:\n%s", file, want, out)
		}
	}
}

// TestMetrics: metrics.enabled (the default) gives every JobManager and
// TaskManager --metrics-listen, a port named metrics, the prometheus.io
// annotations and the port in the NetworkPolicy; off, none of them.
func TestMetrics(t *testing.T) {
	for _, on := range []bool{true, false} {
		out, err := helm(t, "template", "weir", "weir", "--namespace", "streams",
			"--set", fmt.Sprintf("metrics.enabled=%t,networkPolicy.enabled=true,podAnnotations.team=fraud", on))
		if err != nil {
			t.Fatalf("helm template: %v\n%s", err, out)
		}
		objs := manifests(t, out)
		for _, key := range []string{"StatefulSet/weir-jobmanager", "Deployment/weir-taskmanager"} {
			o := mustGet(t, objs, key)
			c := container(o)
			ports, _ := c["ports"].([]any)
			hasPort := slices.ContainsFunc(ports, func(p any) bool {
				return at(p, "name") == "metrics" && at(p, "containerPort") == float64(9249)
			})
			hasArg := slices.Contains(args(c), "--metrics-listen=0.0.0.0:9249")
			ann, _ := at(o, "spec", "template", "metadata", "annotations").(map[string]any)
			hasAnn := ann["prometheus.io/scrape"] == "true" && ann["prometheus.io/port"] == "9249" && ann["prometheus.io/path"] == "/metrics"
			if hasPort != on || hasArg != on || hasAnn != on {
				t.Errorf("metrics.enabled=%t: %s has port %t, --metrics-listen %t, annotations %t (%v)", on, key, hasPort, hasArg, hasAnn, ann)
			}
			if ann["team"] != "fraud" {
				t.Errorf("metrics.enabled=%t: %s lost podAnnotations: %v", on, key, ann)
			}
			np := mustGet(t, objs, "NetworkPolicy/"+strings.Split(key, "/")[1])
			if got := strings.Contains(fmt.Sprint(at(np, "spec", "ingress")), "port:9249"); got != on {
				t.Errorf("metrics.enabled=%t: NetworkPolicy of %s admits 9249: %t", on, key, got)
			}
		}
		if _, ok := objs["ServiceMonitor/weir"]; ok {
			t.Error("a ServiceMonitor rendered by default")
		}
	}
}

// TestServiceMonitor: the ServiceMonitor scrapes a headless Service over
// the pods serving metrics, with the labels the values add.
func TestServiceMonitor(t *testing.T) {
	out, err := template(t, "dev-storage.yaml")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objs := manifests(t, out)
	sm := mustGet(t, objs, "ServiceMonitor/weir")
	if at(sm, "apiVersion") != "monitoring.coreos.com/v1" || at(sm, "metadata", "labels", "release") != "prometheus" ||
		at(sm, "spec", "endpoints", 0, "port") != "metrics" || at(sm, "spec", "endpoints", 0, "path") != "/metrics" ||
		at(sm, "spec", "selector", "matchLabels", "app.kubernetes.io/component") != "metrics" {
		t.Errorf("ServiceMonitor: %v", sm)
	}
	svc := mustGet(t, objs, "Service/weir-metrics")
	if at(svc, "spec", "clusterIP") != "None" || at(svc, "spec", "selector", "weir.dev/metrics") != "true" ||
		at(svc, "spec", "ports", 0, "targetPort") != "metrics" || at(svc, "metadata", "labels", "app.kubernetes.io/component") != "metrics" {
		t.Errorf("metrics Service: %v", svc)
	}
	// The Service selects exactly the JobManagers and TaskManagers.
	for key, o := range objs {
		labels, _ := at(o, "spec", "template", "metadata", "labels").(map[string]any)
		want := key == "StatefulSet/weir-jobmanager" || key == "Deployment/weir-taskmanager"
		if labels != nil && (labels["weir.dev/metrics"] == "true") != want {
			t.Errorf("%s: weir.dev/metrics label %v, want it %t", key, labels["weir.dev/metrics"], want)
		}
	}
}

// TestPortClash: a metrics port equal to another port of the same process
// fails at install, naming both values; with metrics off it is unused.
func TestPortClash(t *testing.T) {
	out, err := template(t, "metrics-port-clash.yaml")
	if want := "jobmanager.ports.health and metrics.port are both 8080"; err == nil || !strings.Contains(out, want) {
		t.Errorf("metrics.port 8080: got %v, want a failure with %q:\n%s", err, want, out)
	}
	if out, err := helm(t, "template", "weir", "weir", "--values", "testdata/metrics-port-clash.yaml", "--set", "metrics.enabled=false"); err != nil {
		t.Errorf("metrics.port 8080 with metrics off: %v\n%s", err, out)
	}
}
