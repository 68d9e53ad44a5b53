// Package miniotest starts a real MinIO server for tests, so S3 code is
// tested against S3 semantics rather than a mock. Each Start runs its own
// server on free 127.0.0.1 ports with data in a test temp dir, and stops it
// when the test ends.
//
// The server binary is pinned and installed by `make tools` into
// <repo>/.tools/minio; $WEIR_MINIO overrides the path. A missing binary
// fails the test rather than skipping it, so CI cannot silently lose the
// S3 coverage.
package miniotest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/weirstream/weir/internal/testenv"
	"github.com/weirstream/weir/statebackend/storage"
)

// The root credentials of every test server. They are not secret, but the
// storage package treats SecretKey as one, which tests check.
const (
	rootUser     = "weiradmin"
	rootPassword = "weiradmin-secret"
)

const (
	healthPoll    = 50 * time.Millisecond
	healthTimeout = 30 * time.Second
	// A free port found by listen-and-close can be taken by someone else
	// before MinIO binds it; a fresh pair of ports fixes that.
	startAttempts = 3
)

// Server is a running MinIO server.
type Server struct {
	Endpoint  string // http://127.0.0.1:port
	AccessKey string
	SecretKey string
	Dir       string // data directory
}

// Start starts MinIO on 127.0.0.1 with free ports and a t.TempDir() data dir, waits until
// /minio/health/live answers (and the cluster check says the object layer is up), and stops
// it (kill + wait) in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	s := &Server{AccessKey: rootUser, SecretKey: rootPassword, Dir: filepath.Join(base, "data")}
	logPath := filepath.Join(base, "minio.log")
	for attempt := 1; ; attempt++ {
		cmd, exited, err := s.start(bin, logPath)
		if err == nil {
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-exited
				if t.Failed() {
					t.Logf("MinIO log (%s), last lines:\n%s", logPath, tail(logPath, 20))
				}
			})
			return s
		}
		if attempt == startAttempts {
			t.Fatalf("miniotest: %v\nMinIO log (%s), last lines:\n%s", err, logPath, tail(logPath, 20))
		}
	}
}

// start runs the server once and waits for it to be live. On success the
// returned channel is closed when the process has exited and been reaped.
func (s *Server) start(bin, logPath string) (*exec.Cmd, <-chan struct{}, error) {
	ports, err := testenv.FreePorts(2)
	if err != nil {
		return nil, nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	s.Endpoint = "http://" + addr
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin, "server",
		"--address", addr,
		"--console-address", "127.0.0.1:"+strconv.Itoa(ports[1]),
		s.Dir)
	cmd.Env = append(withoutMinIOEnv(os.Environ()),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off", // no console UI to serve
		"MINIO_UPDATE=off",  // never look for updates from tests
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start MinIO %s: %w", bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(healthTimeout)
	for {
		if s.ready(client) {
			return cmd, exited, nil
		}
		select {
		case <-exited:
			return nil, nil, fmt.Errorf("MinIO on %s exited before it was live: %v", addr, waitErr)
		case <-time.After(healthPoll):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return nil, nil, fmt.Errorf("MinIO on %s not live after %v", addr, healthTimeout)
		}
	}
}

// ready reports whether the server answers S3 requests. /minio/health/live
// answers 200 as soon as HTTP is up, before the object layer is (requests
// then fail with "Server not initialized yet"), so readiness also needs
// /minio/health/cluster, which waits for the object layer, bucket metadata
// and IAM.
func (s *Server) ready(client *http.Client) bool {
	for _, p := range []string{"/minio/health/live", "/minio/health/cluster"} {
		resp, err := client.Get(s.Endpoint + p)
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Minio-Server-Status") != "" {
			return false
		}
	}
	return true
}

// withoutMinIOEnv drops the caller's MINIO_* settings, which would
// otherwise reconfigure the test server.
func withoutMinIOEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "MINIO_") {
			out = append(out, kv)
		}
	}
	return out
}

// tail returns the last n lines of the file at p, or why it cannot.
func tail(p string, n int) string {
	data, err := os.ReadFile(p)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// Binary returns the MinIO binary's path: $WEIR_MINIO if set, else <repo root>/.tools/minio (repo root found by
// walking up from the working dir to go.mod). It fails if the file is not there.
func Binary() (string, error) { return testenv.Tool("minio", "MinIO server", "WEIR_MINIO") }

// MakeBucket creates a bucket (through minio-go) and returns "s3://<bucket>".
func (s *Server) MakeBucket(t testing.TB, name string) string {
	t.Helper()
	client, err := minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatalf("miniotest: client for %s: %v", s.Endpoint, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("miniotest: make bucket %q on %s: %v", name, s.Endpoint, err)
	}
	return "s3://" + name
}

// Options returns the storage.Options to reach the server.
func (s *Server) Options() storage.Options {
	return storage.Options{Endpoint: s.Endpoint, AccessKey: s.AccessKey, SecretKey: s.SecretKey}
}

// Env returns AWS_ENDPOINT_URL=..., AWS_ACCESS_KEY_ID=..., AWS_SECRET_ACCESS_KEY=... for child processes.
func (s *Server) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL=" + s.Endpoint,
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
	}
}
