package cli

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/weirstream/weir/internal/auth"
	"github.com/weirstream/weir/internal/health"
	"github.com/weirstream/weir/internal/leader"
	"github.com/weirstream/weir/internal/metrics"
	"github.com/weirstream/weir/internal/web"
	"github.com/weirstream/weir/jobmanager"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/statebackend/storage"
	"github.com/weirstream/weir/taskmanager"
)

type jobManagerFlags struct {
	listen, advertise string
	heartbeatInterval time.Duration
	heartbeatTimeout  time.Duration
	slotTimeout       time.Duration
	checkpointStorage string
	savepointDir      string
	authTokens        string
	limits            jobmanager.Limits
	storage           storageFlags
	authSubjects      []string
}

func (f *jobManagerFlags) register(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&f.heartbeatInterval, "heartbeat-interval", time.Second, "how often TaskManagers heartbeat")
	cmd.Flags().DurationVar(&f.heartbeatTimeout, "heartbeat-timeout", 5*time.Second, "silence after which a TaskManager is lost")
	cmd.Flags().DurationVar(&f.slotTimeout, "slot-timeout", 30*time.Second, "how long a first submission waits for enough free slots before it fails (restarts and rescales wait until slots return)")
	cmd.Flags().StringVar(&f.checkpointStorage, "checkpoint-storage", jobmanager.DefaultCheckpointStorage(),
		"where checkpoints go: s3://bucket/prefix, file:///dir or a directory (a directory only works when all processes share it)")
	cmd.Flags().StringVar(&f.savepointDir, "savepoint-dir", "",
		"where savepoints go when weir job savepoint or stop names no --target (default: <checkpoint storage>/savepoints)")
	cmd.Flags().StringVar(&f.authTokens, "auth-tokens", "",
		"`FILE` of client tokens, one line \"name role token\" each (role viewer or operator); with it every client call needs a token, without it auth is off")
	cmd.Flags().StringArrayVar(&f.authSubjects, "auth-subject", nil,
		"`ROLE:SUBJECT` giving a verified client certificate's subject (as \"CN=weir client,O=weir\") a role, viewer or operator (repeatable; needs --tls-*); with it every client call needs a known certificate or a token")
	cmd.Flags().IntVar(&f.limits.MaxJobs, "max-jobs", jobmanager.DefaultMaxJobs, "jobs that may be running or waiting at once; a submission beyond is refused (ResourceExhausted)")
	cmd.Flags().IntVar(&f.limits.MaxParallelismPerJob, "max-parallelism-per-job", jobmanager.DefaultMaxParallelismPerJob,
		"subtasks a job may run, over all its vertices together; a larger submission or rescale is refused")
	cmd.Flags().IntVar(&f.limits.MaxParamBytes, "max-param-bytes", jobmanager.DefaultMaxParamBytes, "bytes a job's parameter names and values may take together")
	f.storage.register(cmd)
}

// config checks the flags and makes their directories absolute: the
// JobManager hands checkpoint and savepoint locations to TaskManagers,
// which may run in other working directories.
func (f *jobManagerFlags) config() (jobmanager.Config, error) {
	if f.checkpointStorage == "" {
		return jobmanager.Config{}, fmt.Errorf("--checkpoint-storage must not be empty")
	}
	ckpts, err := absURL("--checkpoint-storage", f.checkpointStorage)
	if err != nil {
		return jobmanager.Config{}, err
	}
	savepoints, err := absURL("--savepoint-dir", f.savepointDir)
	if err != nil {
		return jobmanager.Config{}, err
	}
	var tokens *auth.Tokens
	if f.authTokens != "" {
		if tokens, err = auth.LoadTokens(f.authTokens); err != nil {
			return jobmanager.Config{}, fmt.Errorf("--auth-tokens: %w", err)
		}
		tokens.OnReload = func(n int, err error) {
			if err != nil {
				slog.Warn("token file not reloaded; keeping the tokens read before", "err", err)
				return
			}
			slog.Info("token file reloaded", "tokens", n)
		}
	}
	var subjects map[string]auth.Role
	for _, rs := range f.authSubjects {
		r, subject, ok := strings.Cut(rs, ":")
		role, err := auth.ParseRole(r)
		if !ok || subject == "" || err != nil {
			return jobmanager.Config{}, fmt.Errorf("--auth-subject %q: want ROLE:SUBJECT, role viewer or operator", rs)
		}
		if subjects == nil {
			subjects = map[string]auth.Role{}
		}
		subjects[subject] = role
	}
	return jobmanager.Config{HeartbeatInterval: f.heartbeatInterval, HeartbeatTimeout: f.heartbeatTimeout,
		SlotRequestTimeout: f.slotTimeout, Logger: slog.Default(),
		CheckpointStorage: ckpts, SavepointDir: savepoints, Storage: f.storage.options(), Tokens: tokens,
		Subjects: subjects, Limits: f.limits}, nil
}

// runningJobManager is a JobManager serving gRPC on a listener.
type runningJobManager struct {
	addr string
	jm   *jobmanager.JobManager
	done chan error
}

func startJobManager(ctx context.Context, listen string, cfg jobmanager.Config) (*runningJobManager, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("jobmanager listen: %w", err)
	}
	if cfg.Advertise == "" {
		cfg.Advertise = ln.Addr().String()
	}
	jm, err := jobmanager.New(cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	srv := grpc.NewServer(jm.ServerOptions()...)
	jm.Register(srv)
	r := &runningJobManager{addr: ln.Addr().String(), jm: jm, done: make(chan error, 1)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	listed := make(chan struct{})
	if cfg.Etcd != nil {
		// Every member, leader or not, lists itself for callers that
		// know only etcd (weir cluster status); the leader publishes the
		// leader key itself while it leads. The key is revoked before
		// done, so before the caller closes the etcd client.
		go func() {
			defer close(listed)
			if err := leader.PublishMember(ctx, cfg.Etcd, cfg.ClusterID, jm.ID(), cfg.Advertise, leader.DefaultTTL); err != nil {
				slog.Warn("not listed in etcd", "err", err)
			}
		}()
	} else {
		close(listed)
	}
	go func() {
		err := jm.Run(ctx)
		srv.Stop()
		<-served
		<-listed
		r.done <- err
	}()
	savepoints := cfg.SavepointDir
	if savepoints == "" {
		savepoints = storage.Join(cfg.CheckpointStorage, "savepoints")
	}
	slog.Info("jobmanager started", "address", r.addr, "checkpoint_storage", cfg.CheckpointStorage, "savepoint_dir", savepoints,
		"auth", cfg.Tokens != nil)
	return r, nil
}

func newJobManagerCmd() *cobra.Command {
	var f jobManagerFlags
	var rf raftFlags
	var d discoveryFlags
	var healthListen, metricsListen, webListen string
	cmd := &cobra.Command{
		Use:   "jobmanager",
		Short: "Run the JobManager: schedules jobs onto TaskManagers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config()
			if err != nil {
				return err
			}
			if cfg.Raft, err = rf.config(); err != nil {
				return err
			}
			cfg.Advertise = f.advertise
			if cfg.TLS, err = d.tls.config(); err != nil {
				return err
			}
			// A JobManager told to publish itself in etcd does not start
			// without it: TaskManagers and clients may know no other way
			// to find it.
			if cfg.Etcd, err = d.dialEtcd(cmd.Context()); err != nil {
				return err
			}
			if cfg.Etcd != nil {
				defer cfg.Etcd.Close()
			}
			cfg.ClusterID = d.clusterID
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			reg, err := serveMetrics(ctx, metricsListen)
			if err != nil {
				return err
			}
			jm, err := startJobManager(ctx, f.listen, cfg)
			if err != nil {
				return err
			}
			if err := registerMetrics(reg, jm.jm.Collector()); err != nil {
				cancel()
				<-jm.done
				return err
			}
			if err := serveHealth(ctx, healthListen, jm.jm.Ready); err != nil {
				cancel()
				<-jm.done
				return err
			}
			if err := serveWeb(ctx, webListen, cfg, jm); err != nil {
				cancel()
				<-jm.done
				return err
			}
			return <-jm.done
		},
	}
	cmd.Flags().StringVar(&f.listen, "listen", "127.0.0.1:6123", "address of the JobManager's gRPC server")
	cmd.Flags().StringVar(&f.advertise, "advertise", "", "client address the CLI, the TaskManagers and the other JobManagers reach this one at (default: the listen address)")
	healthFlag(cmd, &healthListen, "once it knows the raft group's leader")
	metricsFlag(cmd, &metricsListen)
	cmd.Flags().StringVar(&webListen, "web-listen", "", "`ADDR` serving the web dashboard over plain HTTP, as host:port (default: no dashboard)")
	f.register(cmd)
	rf.register(cmd)
	d.register(cmd, false, false)
	return cmd
}

// raftFlags place a JobManager in its raft group.
type raftFlags struct {
	id, listen, dir, peers                          string
	heartbeatTimeout, electionTimeout, leaseTimeout time.Duration
	snapshotThreshold, trailingLogs                 uint64
	snapshotInterval                                time.Duration
}

func (f *raftFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.id, "id", "", "this JobManager's member ID among --peers (default without --peers: random)")
	fl.StringVar(&f.peers, "peers", "", "the raft group: id1=host:port,id2=host:port,... with every member's raft address, the same list on each member (default: a group of one)")
	fl.StringVar(&f.listen, "raft-listen", "", "address raft listens on (default: this member's address in --peers)")
	fl.StringVar(&f.dir, "raft-dir", "", "directory for the raft log, stable store and snapshots; restarting with it keeps every job (default: in memory)")
	fl.DurationVar(&f.heartbeatTimeout, "raft-heartbeat-timeout", jobmanager.DefaultRaftHeartbeatTimeout, "a follower that hears nothing from the leader this long starts an election")
	fl.DurationVar(&f.electionTimeout, "raft-election-timeout", jobmanager.DefaultRaftElectionTimeout, "how long a candidate waits for votes before it tries again")
	fl.DurationVar(&f.leaseTimeout, "raft-leader-lease-timeout", jobmanager.DefaultRaftLeaderLeaseTimeout, "a leader that cannot reach a quorum this long steps down")
	fl.Uint64Var(&f.snapshotThreshold, "raft-snapshot-threshold", jobmanager.DefaultRaftSnapshotThreshold, "log entries after which raft takes a snapshot and compacts its log")
	fl.Uint64Var(&f.trailingLogs, "raft-trailing-logs", jobmanager.DefaultRaftTrailingLogs, "log entries kept after a snapshot, for followers that fall a little behind")
	fl.DurationVar(&f.snapshotInterval, "raft-snapshot-interval", jobmanager.DefaultRaftSnapshotInterval, "how often raft checks whether to take a snapshot")
}

func (f *raftFlags) config() (jobmanager.RaftConfig, error) {
	peers, err := jobmanager.ParsePeers(f.peers)
	if err != nil {
		return jobmanager.RaftConfig{}, fmt.Errorf("--peers: %w", err)
	}
	dir := f.dir
	if dir != "" {
		if dir, err = filepath.Abs(dir); err != nil {
			return jobmanager.RaftConfig{}, fmt.Errorf("--raft-dir: %w", err)
		}
	}
	c := jobmanager.RaftConfig{ID: f.id, Listen: f.listen, Dir: dir, Peers: peers,
		SnapshotThreshold: f.snapshotThreshold, TrailingLogs: f.trailingLogs, SnapshotInterval: f.snapshotInterval}
	if len(peers) > 0 {
		// A group of one keeps its own fast timeouts.
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = f.heartbeatTimeout, f.electionTimeout, f.leaseTimeout
	}
	return c, nil
}

func newTaskManagerCmd() *cobra.Command {
	var cfg taskmanager.Config
	var sf storageFlags
	var d discoveryFlags
	var stateMemory bytesFlag
	var clf changelogFlags
	var healthListen, metricsListen string
	cmd := &cobra.Command{
		Use:   "taskmanager",
		Short: "Run a TaskManager: offers slots to the JobManager and runs subtasks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Slots < 1 {
				return fmt.Errorf("--slots %d must be at least 1", cfg.Slots)
			}
			cfg.Logger = slog.Default()
			cfg.Storage = sf.options()
			cfg.StateMemory = stateMemory.n
			var err error
			if cfg.Changelog, err = clf.options(); err != nil {
				return err
			}
			if cfg.TLS, err = d.tls.config(); err != nil {
				return err
			}
			finder, closeFinder, err := d.finder(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFinder()
			cfg.Finder = finder
			reg, err := serveMetrics(cmd.Context(), metricsListen)
			if err != nil {
				return err
			}
			tm, err := taskmanager.New(cfg)
			if err != nil {
				return err
			}
			if err := registerMetrics(reg, tm.Collector()); err != nil {
				return err
			}
			if err := serveHealth(cmd.Context(), healthListen, tm.Ready); err != nil {
				return err
			}
			return tm.Run(cmd.Context())
		},
	}
	d.register(cmd, false, true)
	cmd.Flags().StringVar(&cfg.Listen, "listen", "127.0.0.1:0", "address of the TaskManager's gRPC server (data exchange and deployments)")
	cmd.Flags().StringVar(&cfg.Advertise, "advertise", "", "address other processes reach this TaskManager at (default: the listen address)")
	cmd.Flags().IntVar(&cfg.Slots, "slots", 2, "number of task slots")
	cmd.Flags().StringVar(&cfg.ID, "id", "", "TaskManager ID (default: random)")
	cmd.Flags().StringVar(&cfg.StateBackend, "state-backend", runtime.StateBackendMemory,
		"state backend of jobs submitted without --state-backend: memory or pebble")
	cmd.Flags().StringVar(&cfg.StateDir, "state-dir", "", stateDirUsage)
	cmd.Flags().Var(&stateMemory, "state-memory", stateMemoryUsage)
	cmd.Flags().StringVar(&cfg.TimerService, "timer-service", runtime.TimerServiceStore, timerServiceUsage+", for jobs submitted without --timer-service")
	clf.register(cmd)
	healthFlag(cmd, &healthListen, "while registered with the JobManager leader")
	metricsFlag(cmd, &metricsListen)
	sf.register(cmd)
	return cmd
}

func healthFlag(cmd *cobra.Command, addr *string, ready string) {
	cmd.Flags().StringVar(addr, "health-listen", "",
		"`ADDR` serving plain-HTTP probes: GET /healthz is 200 while the process runs, /readyz 200 "+ready+
			" and 503 with the reason otherwise (default: no probe server)")
}

// serveHealth serves the probes on addr until ctx ends; an empty addr
// serves none.
func serveHealth(ctx context.Context, addr string, ready func() error) error {
	if addr == "" {
		return nil
	}
	s, err := health.Listen(ctx, addr, ready)
	if err != nil {
		return err
	}
	slog.Info("health probes served", "address", s.Addr())
	return nil
}

// metricsPprof is --metrics-pprof, of whichever server command runs.
var metricsPprof bool

func metricsFlag(cmd *cobra.Command, addr *string) {
	cmd.Flags().StringVar(addr, "metrics-listen", "",
		"`ADDR` serving Prometheus metrics over plain HTTP at GET /metrics, as host:port (default: no metrics server)")
	cmd.Flags().BoolVar(&metricsPprof, "metrics-pprof", false,
		"also serve the Go profiler at /debug/pprof/ on --metrics-listen (CPU and heap profiles of this process)")
}

// serveMetrics serves /metrics on addr until ctx ends and returns the
// registry to add collectors to; an empty addr serves nothing (nil).
// Listening comes first, so a port in use fails the start at once.
func serveMetrics(ctx context.Context, addr string) (*prometheus.Registry, error) {
	if addr == "" {
		return nil, nil
	}
	reg, err := metrics.NewRegistry()
	if err != nil {
		return nil, err
	}
	s, err := metrics.Listen(ctx, addr, reg, metrics.Options{Profiles: metricsPprof})
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	slog.Info("metrics served", "address", s.Addr(), "path", "/metrics", "pprof", metricsPprof)
	return reg, nil
}

// registerMetrics adds collectors to reg, if metrics are served.
func registerMetrics(reg *prometheus.Registry, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}

// serveWeb serves the dashboard on addr until ctx ends; an empty addr
// serves none. Its calls go through a Finder from this JobManager's own
// client address, so on a follower they reach the leader as the CLI's do.
func serveWeb(ctx context.Context, addr string, cfg jobmanager.Config, jm *runningJobManager) error {
	if addr == "" {
		return nil
	}
	advertise := cmp.Or(cfg.Advertise, jm.addr)
	f, err := leader.NewFinder([]string{advertise}, leader.WithTLS(cfg.TLS))
	if err != nil {
		return fmt.Errorf("--web-listen: %w", err)
	}
	s, err := web.Listen(ctx, addr, web.Config{JobManager: weirv1.NewJobManagerClient(f), Storage: cfg.Storage,
		Member: jm.jm.ID(), Logger: slog.Default()})
	if err != nil {
		f.Close()
		return err
	}
	go func() {
		<-s.Done()
		f.Close()
	}()
	slog.Info("web dashboard served", "address", s.Addr(), "url", "http://"+s.Addr()+"/")
	return nil
}
