package miniotest

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/statebackend/storage"
)

func TestStartServesS3(t *testing.T) {
	start := time.Now()
	s := Start(t)
	t.Logf("MinIO at %s ready in %v", s.Endpoint, time.Since(start).Round(time.Millisecond))
	if !strings.HasPrefix(s.Endpoint, "http://127.0.0.1:") {
		t.Errorf("Endpoint = %q, want http://127.0.0.1:port", s.Endpoint)
	}
	if fi, err := os.Stat(s.Dir); err != nil || !fi.IsDir() {
		t.Errorf("data dir %s: %v", s.Dir, err)
	}
	bucket := s.MakeBucket(t, "weir-test")
	if bucket != "s3://weir-test" {
		t.Errorf("MakeBucket = %q, want s3://weir-test", bucket)
	}
	st, err := storage.Open(storage.Join(bucket, "p"), s.Options())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(t.Context(), "x", []byte("hi")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if got, err := st.Get(t.Context(), "x"); err != nil || string(got) != "hi" {
		t.Fatalf("Get = %q, %v", got, err)
	}
}

func TestEnvReachesServer(t *testing.T) {
	s := Start(t)
	env := s.Env()
	want := []string{
		"AWS_ENDPOINT_URL=" + s.Endpoint,
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
	}
	if strings.Join(env, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Env() = %q, want %q", env, want)
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	if got := storage.OptionsFromEnv(); got != s.Options() {
		t.Errorf("OptionsFromEnv after Env() = %v, want %v", got, s.Options())
	}
}

// TestCleanupStopsServer checks that the server is gone once the test that
// started it has finished.
func TestCleanupStopsServer(t *testing.T) {
	var endpoint string
	t.Run("server", func(t *testing.T) {
		endpoint = Start(t).Endpoint
	})
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(endpoint, "http://"), time.Second)
	if err == nil {
		conn.Close()
		t.Fatalf("MinIO at %s still accepts connections after its test ended", endpoint)
	}
}

func TestStartTwice(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Endpoint == b.Endpoint || a.Dir == b.Dir {
		t.Fatalf("two servers share an endpoint or dir: %+v %+v", a, b)
	}
	for _, s := range []*Server{a, b} {
		resp, err := http.Get(s.Endpoint + "/minio/health/live")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
}

func TestBinary(t *testing.T) {
	// The default path, whatever WEIR_MINIO says in this environment.
	t.Setenv("WEIR_MINIO", "")
	p, err := Binary()
	if err != nil {
		if strings.Contains(err.Error(), filepath.Join(".tools", "minio")+": run `make tools`") {
			t.Skipf("no binary at the default path (tests use $WEIR_MINIO here): %v", err)
		}
		t.Fatalf("Binary: %v", err)
	}
	if !strings.HasSuffix(p, filepath.Join(".tools", "minio")) {
		t.Errorf("Binary() = %s, want <repo>/.tools/minio", p)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(p)), "go.mod")); err != nil {
		t.Errorf("Binary() = %s is not under the repo root: %v", p, err)
	}

	t.Setenv("WEIR_MINIO", p)
	if got, err := Binary(); err != nil || got != p {
		t.Errorf("Binary() with WEIR_MINIO=%s = %s, %v", p, got, err)
	}

	t.Setenv("WEIR_MINIO", "/nonexistent/minio")
	if _, err := Binary(); err == nil || !strings.Contains(err.Error(), "MinIO server not found at /nonexistent/minio") {
		t.Errorf("Binary() with a missing WEIR_MINIO = %v", err)
	}
}

func TestBinaryMissing(t *testing.T) {
	t.Setenv("WEIR_MINIO", "")
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(root, "pkg", "sub")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(sub)
	_, err := Binary()
	want := "MinIO server not found at " + filepath.Join(root, ".tools", "minio") + ": run `make tools`"
	if err == nil || err.Error() != want {
		t.Errorf("Binary() in a repo without .tools = %v, want %q", err, want)
	}
}
