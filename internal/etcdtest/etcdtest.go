// Package etcdtest starts a real etcd server (the binary `make` builds into
// <repo>/.tools/etcd; $WEIR_ETCD overrides the path) on free 127.0.0.1
// ports with its data in a test temp dir, for the multi-process tests, and
// stops it when the test ends. A missing binary fails the test rather than
// skipping it.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Server is a running etcd.
type Server struct {
	// Endpoint is its client URL, http://127.0.0.1:port.
	Endpoint string
	cmd      *exec.Cmd
	exited   chan struct{}
}

// Start starts etcd and waits until it answers.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for attempt := 1; ; attempt++ {
		s, err := start(bin, dir)
		if err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		if attempt == 3 {
			t.Fatalf("starting etcd: %v", err)
		}
	}
}

func start(bin, dir string) (*Server, error) {
	client, err := freePort()
	if err != nil {
		return nil, err
	}
	peer, err := freePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	_ = os.RemoveAll(data)
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	s := &Server{Endpoint: "http://" + client, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, "--name", "test", "--data-dir", data,
		"--listen-client-urls", s.Endpoint, "--advertise-client-urls", s.Endpoint,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "test=http://"+peer, "--log-level", "error")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: time.Second})
	if err != nil {
		s.Stop()
		return nil, err
	}
	defer cli.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return s, nil
		}
		select {
		case <-s.exited:
			b, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
			return nil, fmt.Errorf("etcd exited: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("etcd at %s did not answer: %w", s.Endpoint, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills etcd and waits for it. It is idempotent.
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func binary() (string, error) {
	if p := os.Getenv("WEIR_ETCD"); p != "" {
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("etcdtest: no go.mod above the working directory")
		}
		dir = parent
	}
	p := filepath.Join(dir, ".tools", "etcd")
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("etcd not found at %s: run `make tools`", p)
	}
	return p, nil
}
