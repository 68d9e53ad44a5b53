package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/internal/tlsconf"
)

// tlsDir runs `weir certs generate` into a new directory.
func tlsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	r := runWeir(t, "certs", "generate", "--out", dir, "--hosts", "weir.test", "--validity", "1h")
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, "--tls-cert "+filepath.Join(dir, "node.pem")) {
		t.Fatalf("weir certs generate: exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
	}
	return dir
}

func tlsFlags(dir, who string) []string {
	return []string{"--tls-cert", filepath.Join(dir, who+".pem"), "--tls-key", filepath.Join(dir, who+"-key.pem"),
		"--tls-ca", filepath.Join(dir, "ca.pem")}
}

// withoutTLS clears the WEIR_TLS_* variables a test set for the CLI.
var withoutTLS = []string{"WEIR_TLS_CERT=", "WEIR_TLS_KEY=", "WEIR_TLS_CA="}

// clientTLSEnv makes the CLI the helpers run use dir's client certificate.
func clientTLSEnv(t *testing.T, dir string) {
	t.Setenv("WEIR_TLS_CERT", filepath.Join(dir, "client.pem"))
	t.Setenv("WEIR_TLS_KEY", filepath.Join(dir, "client-key.pem"))
	t.Setenv("WEIR_TLS_CA", filepath.Join(dir, "ca.pem"))
}

// servedSerial is the serial of the certificate the server at addr
// presents to a new connection.
func servedSerial(t *testing.T, dir, addr string) string {
	t.Helper()
	c, err := tlsconf.Load(tlsconf.Files{Cert: filepath.Join(dir, "client.pem"), Key: filepath.Join(dir, "client-key.pem"),
		CA: filepath.Join(dir, "ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func pemSerial(t *testing.T, certPEM []byte) string {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.String()
}

// TestMutualTLSCluster runs a job across two TaskManagers with every
// connection under mutual TLS: it checkpoints; clients and TaskManagers
// without a certificate of the cluster's CA are refused; the node
// certificate is rotated on disk while the job runs.
func TestMutualTLSCluster(t *testing.T) {
	dir := tlsDir(t)
	clientTLSEnv(t, dir)
	// The CLI's certificate is an operator's; an auditor's certificate of the
	// same CA may only look.
	o := cluster.Options{TaskManagers: 2, Slots: 2, TLSArgs: tlsFlags(dir, "node"),
		JobManagerArgs: []string{"--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s",
			"--auth-subject", "operator:CN=weir client,O=weir", "--auth-subject", "viewer:CN=auditor,O=weir"}}
	c := startCluster(t, o)
	jm := []string{"--jobmanager", c.JobManagerAddrs}

	id := submit(t, c, "fraud-detection", "--parallelism", "2", "--checkpoint-interval", "300ms",
		"--param", "source=random", "--param", "rate=2000")
	st := waitCheckpoint(t, c, id, 0)
	det := st.Vertices[1]
	if det.Subtasks[0].TaskManagerID == det.Subtasks[1].TaskManagerID {
		t.Errorf("both detector subtasks on %s: the exchange between TaskManagers is not exercised", det.Subtasks[0].TaskManagerID)
	}

	// Clients without a certificate of the cluster's CA are refused.
	other := tlsDir(t)
	ca, err := tlsconf.LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	expCert, expKey, err := ca.Issue("expired", nil, now.Add(-2*time.Hour), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"expired.pem": expCert, "expired-key.pem": expKey} {
		if err := tlsconf.WriteFileAtomic(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	refused := map[string]struct {
		env, args []string
		hint      string
	}{
		"no certificate": {env: withoutTLS, hint: "--tls-cert"},
		"another CA's certificate": {args: []string{"--tls-cert", filepath.Join(other, "client.pem"),
			"--tls-key", filepath.Join(other, "client-key.pem"), "--tls-ca", filepath.Join(dir, "ca.pem")}},
		"an expired certificate": {args: tlsFlags(dir, "expired")},
		"a server of another CA": {args: tlsFlags(other, "client")},
	}
	for name, tc := range refused {
		r := runWeirIn(t, "", tc.env, append(append([]string{"job", "status", id}, jm...), tc.args...)...)
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, "cannot reach") || !strings.Contains(r.Stderr, tc.hint) {
			t.Errorf("a CLI with %s: exit %d, want refused (hint %q):\n%s%s", name, r.ExitCode, tc.hint, r.Stdout, r.Stderr)
		} else {
			t.Logf("a CLI with %s: %s", name, strings.TrimSpace(r.Stderr))
		}
	}

	// Roles by certificate subject: the auditor may look, not act.
	audCert, audKey, err := ca.Issue("auditor", nil, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"auditor.pem": audCert, "auditor-key.pem": audKey} {
		if err := tlsconf.WriteFileAtomic(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	auditor := append(tlsFlags(dir, "auditor"), jm...)
	if r := runWeirIn(t, "", nil, append([]string{"job", "status", id}, auditor...)...); r.ExitCode != 0 {
		t.Errorf("the auditor's status: exit %d: %s", r.ExitCode, r.Stderr)
	}
	r := runWeirIn(t, "", nil, append([]string{"job", "cancel", id}, auditor...)...)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, `PermissionDenied: certificate "CN=auditor,O=weir" has role viewer; cancel needs operator`) {
		t.Errorf("the auditor's cancel: exit %d: %s", r.ExitCode, r.Stderr)
	}

	// TaskManagers without a valid certificate cannot register.
	for name, args := range map[string][]string{
		"no certificate":           nil,
		"another CA's certificate": tlsFlags(other, "node"),
	} {
		tm, err := cluster.Start("taskmanager "+name, weirBin, withoutTLS, true, append([]string{"taskmanager",
			"--jobmanager", c.JobManagerAddrs, "--listen", "127.0.0.1:0", "--id", "tm-stranger"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		if err := tm.WaitRegistered(3 * time.Second); err == nil {
			t.Errorf("a TaskManager with %s registered", name)
		}
		tm.Kill()
	}
	if v := clusterStatus(t, jm...); len(v.TaskManagers) != 2 {
		t.Errorf("%d TaskManagers registered, want the cluster's 2: %+v", len(v.TaskManagers), v.TaskManagers)
	}

	// Rotate the node certificate on disk: a new leaf of the same CA.
	before := servedSerial(t, dir, c.JobManager.Addr)
	cert, key, err := ca.Issue("weir node", []string{"127.0.0.1", "localhost"}, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsconf.WriteFileAtomic(filepath.Join(dir, "node-key.pem"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tlsconf.WriteFileAtomic(filepath.Join(dir, "node.pem"), cert, 0o644); err != nil {
		t.Fatal(err)
	}
	want := pemSerial(t, cert)
	for _, p := range []*cluster.Process{c.JobManager, c.TaskManagers[0], c.TaskManagers[1]} {
		if got := servedSerial(t, dir, p.Addr); got != want {
			t.Errorf("%s serves certificate %s after the rotation, want the new %s (before: %s)", p.Name, got, want, before)
		}
	}
	// The job keeps running and checkpointing, and a TaskManager started
	// now joins with the new certificate.
	completed := jobStatus(t, c, id).Checkpointing.Completed
	waitCheckpoint(t, c, id, completed+2)
	if _, err := c.AddTaskManager(o, 2); err != nil {
		t.Fatal(err)
	}
	if now := jobStatus(t, c, id); now.State != "RUNNING" || now.Attempt != st.Attempt {
		t.Errorf("job %s attempt %d after the rotation, want RUNNING attempt %d (failure %q)", now.State, now.Attempt, st.Attempt, now.Failure)
	}
	runWeir(t, append([]string{"job", "cancel", id}, jm...)...)
}

// TestMutualTLSRaftGroup starts three JobManagers whose raft traffic is
// under mutual TLS: they elect a leader, which TaskManagers register with.
func TestMutualTLSRaftGroup(t *testing.T) {
	dir := tlsDir(t)
	clientTLSEnv(t, dir)
	c := startCluster(t, cluster.Options{JobManagers: 3, RaftDir: t.TempDir(), TaskManagers: 1, TLSArgs: tlsFlags(dir, "node")})
	deadline := time.Now().Add(30 * time.Second)
	for {
		v := clusterStatus(t, "--jobmanager", c.JobManagerAddrs)
		if v.LeaderReached && v.Reached == 3 && len(v.TaskManagers) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader reached with 3 members and the TaskManager: %+v", v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
