package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every command that opens a connection takes the TLS flags: a flag-name
// contract tested from outside.
func TestTLSFlagsOnEveryConnectingCommand(t *testing.T) {
	root := newRoot()
	for _, path := range [][]string{{"jobmanager"}, {"taskmanager"}, {"local"}, {"job", "submit"}, {"job", "status"},
		{"job", "list"}, {"job", "cancel"}, {"job", "savepoint"}, {"cluster", "status"}} {
		cmd, _, err := root.Find(path)
		if err != nil {
			t.Fatalf("%v: %v", path, err)
		}
		for _, f := range []string{"tls-cert", "tls-key", "tls-ca"} {
			if cmd.Flags().Lookup(f) == nil {
				t.Errorf("weir %s has no --%s", strings.Join(path, " "), f)
			}
		}
	}
}

func TestTLSFlagsAllThreeOrNone(t *testing.T) {
	for _, args := range [][]string{
		{"job", "list", "--jobmanager", "127.0.0.1:1", "--tls-cert", "a.pem"},
		{"cluster", "status", "--jobmanager", "127.0.0.1:1", "--tls-cert", "a.pem", "--tls-key", "b.pem"},
		{"taskmanager", "--jobmanager", "127.0.0.1:1", "--tls-ca", "c.pem"},
		{"jobmanager", "--listen", "127.0.0.1:0", "--tls-ca", "c.pem"},
	} {
		_, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), "all three or none") {
			t.Errorf("weir %s: %v, want all three or none", strings.Join(args, " "), err)
		}
	}
}

func TestCertsGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out, err := run(t, "certs", "generate", "--out", dir, "--hosts", "a.example,10.0.0.7")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "node.pem", "node-key.pem", "client.pem", "client-key.pem"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, "-key.pem") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	for _, want := range []string{"a.example", "10.0.0.7", "--tls-cert " + filepath.Join(dir, "client.pem")} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The files work: the three load together.
	f := tlsFlags{cert: filepath.Join(dir, "node.pem"), key: filepath.Join(dir, "node-key.pem"), ca: filepath.Join(dir, "ca.pem")}
	if c, err := f.config(); err != nil || c == nil {
		t.Fatalf("loading the generated node files: %v", err)
	}
}
