// Package etcdtest starts a real etcd server for tests, so discovery is
// tested against etcd's leases and watches rather than a mock. Start embeds
// one in the test process (go.etcd.io/etcd/server/v3/embed); StartProcess
// runs the etcd binary that `make` builds into <repo>/.tools/etcd
// ($WEIR_ETCD overrides the path), for tests whose processes share it. Each
// server listens on free 127.0.0.1 ports with its data in a test temp dir,
// and stops when the test ends.
package etcdtest

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/weirstream/weir/internal/testenv"
)

const (
	readyTimeout = 30 * time.Second
	// A free port found by listen-and-close can be taken by someone else
	// before etcd binds it; a fresh pair of ports fixes that.
	startAttempts = 3
)

// Server is a running etcd server of one member.
type Server struct {
	// Endpoint is the client URL, http://127.0.0.1:port.
	Endpoint string
	stopOnce sync.Once
	stop     func()
	// relaunch starts a stopped process server again (nil when embedded).
	relaunch func() (*Server, error)
}

// Stop stops the server; a test that wants etcd gone calls it. It is
// idempotent, and runs anyway when the test ends.
func (s *Server) Stop() { s.stopOnce.Do(s.stop) }

// Restart starts a server of StartProcess again after Stop, on the same
// ports with the same data, as an etcd that was down and came back; it is
// stopped when the test ends.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.relaunch == nil {
		t.Fatal("etcdtest: only a server of StartProcess restarts")
	}
	s.Stop()
	n, err := s.relaunch()
	if err != nil {
		t.Fatalf("etcdtest: restart: %v", err)
	}
	s.stopOnce, s.stop = sync.Once{}, n.stop
	t.Cleanup(s.Stop)
}

// Client returns a client of the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Start embeds an etcd server in the test process.
func Start(t testing.TB) *Server {
	t.Helper()
	var err error
	for range startAttempts {
		var s *Server
		if s, err = startEmbedded(t.TempDir()); err == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("etcdtest: %v", err)
	return nil
}

func startEmbedded(dir string) (*Server, error) {
	ports, err := testenv.FreePorts(2)
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	cfg.Dir = dir
	// Its logs would bury the test's; the client's errors say enough.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[0])}
	client := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[1])}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd failed: %w", err)
	case <-time.After(readyTimeout):
		e.Close()
		return nil, fmt.Errorf("embedded etcd not ready after %v", readyTimeout)
	}
	return &Server{Endpoint: client.String(), stop: e.Close}, nil
}

// StartProcess runs the etcd binary as a process of its own.
func StartProcess(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	for range startAttempts {
		var s *Server
		if s, err = startProcess(bin, t.TempDir(), &logs); err == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("etcdtest: %v\netcd log:\n%s", err, logs.String())
	return nil
}

func startProcess(bin, dir string, logs *bytes.Buffer) (*Server, error) {
	ports, err := testenv.FreePorts(2)
	if err != nil {
		return nil, err
	}
	return launch(bin, dir, ports, logs)
}

func launch(bin, dir string, ports []int, logs *bytes.Buffer) (*Server, error) {
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	client := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	logs.Reset()
	cmd := exec.Command(bin, "--name", "etcdtest", "--data-dir", filepath.Join(dir, "data"), "--log-level", "error",
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "etcdtest="+peer,
		"--listen-client-urls", client, "--advertise-client-urls", client)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start etcd %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	kill := func() { cmd.Process.Kill(); <-exited }
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		kill()
		return nil, err
	}
	defer cli.Close()
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "ready")
		cancel()
		if err == nil {
			return &Server{Endpoint: client, stop: kill, relaunch: func() (*Server, error) { return launch(bin, dir, ports, logs) }}, nil
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("etcd on %s exited before it was ready", client)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			kill()
			return nil, fmt.Errorf("etcd on %s not ready after %v: %v", client, readyTimeout, err)
		}
	}
}

// Binary returns the etcd binary's path: $WEIR_ETCD if set, else <repo
// root>/.tools/etcd (the repo root found by walking up from the working
// dir to go.mod). It fails if the file is not there.
func Binary() (string, error) { return testenv.Tool("etcd", "etcd", "WEIR_ETCD") }
