package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/weirstream/weir/internal/miniotest"
	"github.com/weirstream/weir/statebackend/storage"
)

// minioServer is a MinIO server the benchmark starts for its S3 sections
// (internal/miniotest needs a testing.TB, so this is its small non-test
// twin).
type minioServer struct {
	Endpoint  string // http://127.0.0.1:port
	AccessKey string
	SecretKey string
	dir       string
	cmd       *exec.Cmd
	exited    chan struct{}
}

const (
	minioUser     = "weiradmin"
	minioPassword = "weiradmin-secret"
)

// startMinIO runs `minio server` on free 127.0.0.1 ports with its data in a
// fresh temporary directory, waits until the object layer is up and
// creates bucket.
func startMinIO(bucket string) (*minioServer, error) {
	bin, err := miniotest.Binary()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken before MinIO binds it
		s, err := tryStartMinIO(bin)
		if err != nil {
			lastErr = err
			continue
		}
		if err := s.makeBucket(bucket); err != nil {
			s.Stop()
			return nil, err
		}
		return s, nil
	}
	return nil, lastErr
}

func tryStartMinIO(bin string) (*minioServer, error) {
	dir, err := os.MkdirTemp("", "weirbench-minio-")
	if err != nil {
		return nil, err
	}
	// Both listeners stay open until both ports are chosen, so they differ.
	var ports [2]int
	var lns []net.Listener
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			closeAll(lns)
			os.RemoveAll(dir)
			return nil, err
		}
		lns = append(lns, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	closeAll(lns)
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	s := &minioServer{Endpoint: "http://" + addr, AccessKey: minioUser, SecretKey: minioPassword, dir: dir,
		exited: make(chan struct{})}
	log, err := os.Create(filepath.Join(dir, "minio.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer log.Close()
	s.cmd = exec.Command(bin, "server", "--address", addr, "--console-address", "127.0.0.1:"+strconv.Itoa(ports[1]),
		filepath.Join(dir, "data"))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") {
			s.cmd.Env = append(s.cmd.Env, kv)
		}
	}
	s.cmd.Env = append(s.cmd.Env, "MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start MinIO %s: %w", bin, err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s.healthy(client) {
			return s, nil
		}
		select {
		case <-s.exited:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("MinIO on %s exited before it was ready", addr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("MinIO on %s not ready after 30s", addr)
		}
	}
}

// healthy reports whether the object layer answers: /minio/health/cluster
// is 200 only once it is up.
func (s *minioServer) healthy(client *http.Client) bool {
	resp, err := client.Get(s.Endpoint + "/minio/health/cluster")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && resp.Header.Get("X-Minio-Server-Status") == ""
}

func (s *minioServer) makeBucket(name string) error {
	client, err := minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		return fmt.Errorf("make bucket %q on %s: %w", name, s.Endpoint, err)
	}
	return nil
}

// Env is the S3 environment for weir processes.
func (s *minioServer) Env() []string {
	return []string{"AWS_ENDPOINT_URL=" + s.Endpoint, "AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey}
}

// Options reach the server through the storage package.
func (s *minioServer) Options() storage.Options {
	return storage.Options{Endpoint: s.Endpoint, AccessKey: s.AccessKey, SecretKey: s.SecretKey}
}

// Stop kills the server and removes its data.
func (s *minioServer) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		<-s.exited
	}
	os.RemoveAll(s.dir)
}

func closeAll(lns []net.Listener) {
	for _, l := range lns {
		l.Close()
	}
}
