//go:build k8s

package k8stest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/etcdtest"
	"github.com/weirstream/weir/internal/testenv"
)

// cluster is a Kubernetes control plane of real components on 127.0.0.1,
// with fake nodes from kwok, reached with an admin token.
type cluster struct {
	dir        string
	server     string // https://127.0.0.1:port
	token      string
	kubeconfig string
	client     *http.Client
}

// tool is a binary the Makefile installs into .tools; missing, it fails
// the test (make test-k8s installs every one first).
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := testenv.Tool(name, name, "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startProcess runs bin with its output in <dir>/<name>.log and stops it
// when the test ends; a failed test shows the log's tail.
func startProcess(t *testing.T, dir, name, bin string, args ...string) (exited <-chan struct{}) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", logPath, tail(logPath, 15))
		}
	})
	return done
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// startCluster starts etcd, kube-apiserver (with a CA, a serving
// certificate and a service-account key generated here, and a static admin
// token), kube-controller-manager, kube-scheduler and kwok, and registers
// nodes fake nodes and PersistentVolumes for the JobManagers' claims
// (there is no storage provisioner). Everything stops when the test ends.
func startCluster(t *testing.T, nodes int) *cluster {
	t.Helper()
	apiserver, controllerManager := tool(t, "kube-apiserver"), tool(t, "kube-controller-manager")
	scheduler, kwok := tool(t, "kube-scheduler"), tool(t, "kwok")
	etcd := etcdtest.StartProcess(t)

	dir := t.TempDir()
	ports, err := testenv.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{dir: dir, server: fmt.Sprintf("https://127.0.0.1:%d", ports[0]), token: "weir-admin-" + randHex(t)}
	caPEM := writePKI(t, dir)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	write(t, filepath.Join(dir, "tokens.csv"), c.token+",weir-admin,weir-admin,\"system:masters\"\n")
	c.kubeconfig = filepath.Join(dir, "kubeconfig")
	kc := map[string]any{
		"apiVersion": "v1", "kind": "Config", "current-context": "test",
		"clusters": []any{map[string]any{"name": "test", "cluster": map[string]any{
			"server": c.server, "certificate-authority": filepath.Join(dir, "ca.crt")}}},
		"users":    []any{map[string]any{"name": "admin", "user": map[string]any{"token": c.token}}},
		"contexts": []any{map[string]any{"name": "test", "context": map[string]any{"cluster": "test", "user": "admin"}}},
	}
	b, _ := json.Marshal(kc) // JSON is YAML
	write(t, c.kubeconfig, string(b))

	apiExited := startProcess(t, dir, "kube-apiserver", apiserver,
		"--etcd-servers="+etcd.Endpoint,
		// No Service endpoints for the API server itself: it advertises a
		// loopback address, which the endpoint reconciler refuses.
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
		"--secure-port="+strconv.Itoa(ports[0]),
		"--tls-cert-file="+filepath.Join(dir, "apiserver.crt"), "--tls-private-key-file="+filepath.Join(dir, "apiserver.key"),
		"--client-ca-file="+filepath.Join(dir, "ca.crt"),
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"), "--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		// This plugin taints a new node not-ready until the node lifecycle
		// controller sees its kubelet; there is none, and that controller
		// is off (below).
		"--disable-admission-plugins=TaintNodesByCondition",
		"--profiling=false")
	c.waitReady(t, apiExited)

	kubeconfigs := []string{"--kubeconfig=" + c.kubeconfig, "--authentication-kubeconfig=" + c.kubeconfig,
		"--authorization-kubeconfig=" + c.kubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1", "--profiling=false"}
	// Without kubelets, the node lifecycle controller would find the fake
	// nodes' leases stale and mark their pods not ready.
	startProcess(t, dir, "kube-controller-manager", controllerManager, append(kubeconfigs,
		"--secure-port="+strconv.Itoa(ports[1]), "--controllers=*,-node-lifecycle-controller",
		"--service-account-private-key-file="+filepath.Join(dir, "sa.key"), "--root-ca-file="+filepath.Join(dir, "ca.crt"),
		"--use-service-account-credentials=false")...)
	startProcess(t, dir, "kube-scheduler", scheduler, append(kubeconfigs, "--secure-port="+strconv.Itoa(ports[2]))...)
	stages, err := filepath.Abs("testdata/kwok-stages.yaml")
	if err != nil {
		t.Fatal(err)
	}
	startProcess(t, dir, "kwok", kwok, "--kubeconfig="+c.kubeconfig, "--config="+stages, "--manage-all-nodes=true",
		"--server-address=127.0.0.1:"+strconv.Itoa(ports[3]), "--node-lease-duration-seconds=0")

	for i := range nodes {
		name := fmt.Sprintf("kwok-node-%d", i)
		res := map[string]any{"cpu": "16", "memory": "64Gi", "pods": "110"}
		c.create(t, "/api/v1/nodes", map[string]any{
			"apiVersion": "v1", "kind": "Node",
			"metadata": map[string]any{"name": name, "annotations": map[string]any{"kwok.x-k8s.io/node": "fake"},
				"labels": map[string]any{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"}},
			"status": map[string]any{"capacity": res, "allocatable": res},
		})
		c.create(t, "/api/v1/persistentvolumes", map[string]any{
			"apiVersion": "v1", "kind": "PersistentVolume",
			"metadata": map[string]any{"name": fmt.Sprintf("raft-%d", i)},
			"spec": map[string]any{"capacity": map[string]any{"storage": "1Gi"}, "accessModes": []any{"ReadWriteOnce"},
				"persistentVolumeReclaimPolicy": "Retain", "hostPath": map[string]any{"path": filepath.Join(dir, "pv", strconv.Itoa(i))}},
		})
	}
	// Pods can only be scheduled once the namespace's default ServiceAccount
	// exists, which the controller-manager creates.
	c.waitFor(t, "the default ServiceAccount", func() (bool, error) {
		code, err := c.do("GET", "/api/v1/namespaces/default/serviceaccounts/default", nil, nil)
		return code == http.StatusOK, err
	})
	return c
}

// waitReady polls /readyz until the API server serves.
func (c *cluster) waitReady(t *testing.T, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, err := c.do("GET", "/readyz", nil, nil)
		if err == nil && code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 2m: %d %v", code, err)
		}
		select {
		case <-exited:
			t.Fatal("kube-apiserver exited")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// do sends a request with the admin token; body is marshaled to JSON, a
// 2xx answer unmarshaled into out. It returns the status code; an error
// only when the server could not be asked or answered garbage.
func (c *cluster) do(method, path string, body, out any) (int, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.server+path, r)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, &apiError{code: resp.StatusCode, body: string(b)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

type apiError struct {
	code int
	body string
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.body) }

func (c *cluster) create(t *testing.T, path string, obj any) {
	t.Helper()
	if _, err := c.do("POST", path, obj, nil); err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
}

// waitFor polls cond every 200ms for up to 3 minutes.
func (c *cluster) waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
}

// helm runs .tools/helm against the cluster, with no repositories and no
// user configuration.
func (c *cluster) helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool(t, "helm"), append(args, "--kubeconfig", c.kubeconfig)...)
	home := filepath.Join(c.dir, "helm")
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func randHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// writePKI writes ca.crt, apiserver.crt/.key (for 127.0.0.1, localhost and
// the in-cluster names) and the service-account signing key sa.key into
// dir, and returns the CA certificate.
func writePKI(t *testing.T, dir string) []byte {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weir-test-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKeyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	write(t, filepath.Join(dir, "ca.crt"), string(caPEM))
	write(t, filepath.Join(dir, "apiserver.crt"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER})))
	write(t, filepath.Join(dir, "apiserver.key"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: srvKeyDER})))
	write(t, filepath.Join(dir, "sa.key"), string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)})))
	return caPEM
}
