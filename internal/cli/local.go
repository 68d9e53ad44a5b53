package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/internal/tlsconf"
	"github.com/weirstream/weir/jobmanager"
	"github.com/weirstream/weir/jobs"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/statebackend/pebblestate"
	"github.com/weirstream/weir/taskmanager"
)

func newLocalCmd() *cobra.Command {
	var (
		tms, slots, parallelism int
		job                     string
		paramList               []string
		jmf                     jobManagerFlags
		ckf                     checkpointFlags
		tf                      tlsFlags
		metricsListen           string
		webListen               string
		sbf                     stateBackendFlag
		stateDir                string
		stateMemory             bytesFlag
		tsf                     timerServiceFlag
		clf                     changelogFlags
	)
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run a job on an embedded cluster (a JobManager and TaskManagers in this process)",
		Long: "Run a job on an embedded cluster: one JobManager and --taskmanagers TaskManagers in this\n" +
			"process, talking gRPC over loopback exactly as separate processes do. Job output goes to\n" +
			"stdout, logs to stderr. Exits 0 when the job finishes, 1 when it fails; Ctrl-C cancels it.\n" +
			"A job that needs more slots than --taskmanagers × --slots is refused before anything starts.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tms < 1 || slots < 1 {
				return fmt.Errorf("--taskmanagers %d and --slots %d must be at least 1", tms, slots)
			}
			if jmf.authTokens != "" || len(jmf.authSubjects) > 0 {
				// Its own client would need a token; the embedded cluster
				// listens on loopback only.
				return errors.New("weir local runs without authentication: --auth-tokens and --auth-subject are for weir jobmanager")
			}
			if parallelism < 1 {
				return fmt.Errorf("--parallelism %d must be at least 1", parallelism)
			}
			params, err := parseParams(paramList)
			if err != nil {
				return err
			}
			req := &weirv1.SubmitJobRequest{JobName: job, Parallelism: int32(parallelism), Params: params}
			// The state backend first: it sets --incremental's default.
			if err := tsf.apply(req); err != nil {
				return err
			}
			if err := sbf.apply(req); err != nil {
				return err
			}
			if err := ckf.apply(req); err != nil {
				return err
			}
			// The embedded cluster's slots are all there is: a job that
			// cannot be placed at once never will be.
			g, err := jobs.Build(job, parallelism, params)
			if err != nil {
				return err
			}
			if need, have := g.SlotsNeeded(), tms*slots; need > have {
				return fmt.Errorf("job %s at --parallelism %d needs %d slots, but the local cluster has %d "+
					"(--taskmanagers %d × --slots %d): raise --slots or --taskmanagers, or lower --parallelism",
					job, parallelism, need, have, tms, slots)
			}
			if !cmd.Flags().Changed("checkpoint-storage") {
				// Checkpoints of a trial run are scratch: a fresh directory,
				// removed at exit. Savepoints are what a user keeps.
				dir, err := os.MkdirTemp("", "weir-local-checkpoints-")
				if err != nil {
					return fmt.Errorf("a directory for the checkpoints: %w", err)
				}
				defer os.RemoveAll(dir)
				jmf.checkpointStorage = dir
				if jmf.savepointDir == "" {
					jmf.savepointDir = jobmanager.DefaultSavepointDir()
				}
				slog.Info("checkpoints go to a temporary directory, removed at exit; savepoints are kept",
					"checkpoint_storage", dir, "savepoint_dir", jmf.savepointDir)
			}
			tc, err := tf.config()
			if err != nil {
				return err
			}
			changelog, err := clf.options()
			if err != nil {
				return err
			}
			return runLocal(cmd.Context(), localSpec{tms: tms, slots: slots, submit: req, jm: jmf, tls: tc, metrics: metricsListen, stateDir: stateDir, stateMemory: stateMemory.n,
				changelog: changelog, web: webListen, webDefault: !cmd.Flags().Changed("web-listen")})
		},
	}
	cmd.Flags().IntVar(&tms, "taskmanagers", 1, "number of TaskManagers")
	cmd.Flags().IntVar(&slots, "slots", 2, "slots per TaskManager")
	cmd.Flags().StringVar(&job, "job", "fraud-detection", "name of the job to run")
	cmd.Flags().IntVar(&parallelism, "parallelism", 1, "default parallelism of the job's operators")
	cmd.Flags().StringArrayVar(&paramList, "param", nil, "job parameter key=value (repeatable)")
	metricsFlag(cmd, &metricsListen)
	cmd.Flags().StringVar(&webListen, "web-listen", DefaultLocalWebListen,
		"`ADDR` serving the web dashboard over plain HTTP; empty (--web-listen '') serves none. When the default address is taken the run goes on without a dashboard, with a warning")
	jmf.register(cmd)
	ckf.register(cmd)
	sbf.register(cmd, "where the job's keyed state lives: memory (default), or pebble (an embedded LSM tree on local disk, for state larger than memory)")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", stateDirUsage)
	cmd.Flags().Var(&stateMemory, "state-memory", stateMemoryUsage)
	tsf.register(cmd, timerServiceUsage+" (default: store)")
	clf.register(cmd)
	tf.register(cmd.Flags())
	for _, hidden := range []string{"auth-tokens", "auth-subject"} {
		if err := cmd.Flags().MarkHidden(hidden); err != nil {
			panic(err)
		}
	}
	cmd.Flags().Lookup("slot-timeout").DefValue = "10s"
	jmf.slotTimeout = 10 * time.Second
	ckpt := cmd.Flags().Lookup("checkpoint-storage")
	ckpt.DefValue = ""
	ckpt.Usage = "where checkpoints go: s3://bucket/prefix, file:///dir or a directory (default: a temporary directory removed at exit)"
	cmd.Flags().Lookup("savepoint-dir").Usage = "where savepoints go when weir job savepoint or stop names no --target " +
		"(default: <checkpoint storage>/savepoints, or " + jobmanager.DefaultSavepointDir() + " without --checkpoint-storage)"
	return cmd
}

type localSpec struct {
	tms, slots int
	submit     *weirv1.SubmitJobRequest
	jm         jobManagerFlags
	// tls, when set, puts the in-process connections (all on 127.0.0.1)
	// under mutual TLS too, like a cluster's; nil keeps them plaintext.
	tls *tlsconf.Config
	// metrics is the address to serve the cluster's metrics at; empty
	// serves none.
	metrics string
	// web is the dashboard's address; empty serves none. webDefault says
	// it is the default, whose port being taken is only a warning.
	web        string
	webDefault bool
	// stateDir is the TaskManagers' StateDir.
	stateDir string
	// stateMemory is each slot's pebble memory budget; 0: a share of the
	// process's memory limit, divided between all TaskManagers' slots.
	stateMemory int64
	// changelog is the TaskManagers' Changelog.
	changelog *pebblestate.ChangelogOptions
}

// DefaultLocalWebListen is where weir local serves its dashboard unless
// told otherwise (Flink's web UI port).
const DefaultLocalWebListen = "127.0.0.1:8081"

func runLocal(ctx context.Context, s localSpec) error {
	// The TaskManagers stop before the JobManager, as in an orderly
	// shutdown of a real cluster: each tells the JobManager it leaves.
	jmCtx, stopJM := context.WithCancel(context.Background())
	defer stopJM()
	tmCtx, stopTMs := context.WithCancel(context.Background())
	defer stopTMs()
	cfg, err := s.jm.config()
	if err != nil {
		return err
	}
	cfg.TLS = s.tls
	// One /metrics for the whole embedded cluster: the JobManager's
	// series and every TaskManager's (told apart by task_manager).
	reg, err := serveMetrics(jmCtx, s.metrics)
	if err != nil {
		return err
	}
	jm, err := startJobManager(jmCtx, "127.0.0.1:0", cfg)
	if err != nil {
		return err
	}
	if err := registerMetrics(reg, jm.jm.Collector()); err != nil {
		stopJM()
		<-jm.done
		return err
	}
	if err := serveWeb(jmCtx, s.web, cfg, jm); err != nil {
		if !s.webDefault {
			stopJM()
			<-jm.done
			return err
		}
		slog.Warn("no web dashboard: its default address is taken; choose another with --web-listen", "err", err)
	}
	var tmDone []chan error
	var ready []<-chan struct{}
	if s.stateMemory == 0 { // the TaskManagers share this process's memory
		s.stateMemory = pebblestate.DefaultBudgetBytes(s.tms * s.slots)
	}
	for i := 0; i < s.tms; i++ {
		tm, err := taskmanager.New(taskmanager.Config{ID: fmt.Sprintf("tm-%d", i+1), JobManager: jm.addr,
			Slots: s.slots, Stdout: os.Stdout, Logger: slog.Default(), Storage: cfg.Storage, TLS: s.tls, StateDir: s.stateDir, StateMemory: s.stateMemory,
			Changelog: s.changelog})
		if err != nil {
			return err
		}
		if err := registerMetrics(reg, tm.Collector()); err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- tm.Run(tmCtx) }()
		tmDone = append(tmDone, done)
		ready = append(ready, tm.Registered())
	}
	defer func() {
		stopTMs()
		for _, d := range tmDone {
			<-d
		}
		stopJM()
		<-jm.done
	}()

	// Submit once every TaskManager has offered its slots, so the job is
	// spread over all of them.
	for _, r := range ready {
		select {
		case <-r:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(30 * time.Second):
			return errors.New("the embedded TaskManagers did not register within 30s")
		}
	}
	c, err := dial(ctx, &discoveryFlags{jobManagers: jm.addr, tls: tlsFlags{loaded: true, cfg: s.tls}})
	if err != nil {
		return err
	}
	defer c.Close()
	id, err := c.submit(ctx, s.submit)
	if err != nil {
		return err
	}
	slog.Info("job submitted", "job_id", id, "job", s.submit.JobName)
	st, err := c.waitTerminal(ctx, id, 100*time.Millisecond)
	if errors.Is(err, context.Canceled) {
		slog.Info("interrupted: canceling the job", "job_id", id)
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.cancel(cctx, id); err == nil {
			c.waitTerminal(cctx, id, 50*time.Millisecond)
		}
		return &exitError{code: 130, err: errors.New("interrupted; job canceled")}
	}
	if err != nil {
		return err
	}
	switch st.Summary.State {
	case weirv1.JobState_JOB_STATE_FINISHED:
		slog.Info("job finished", "job_id", id)
		return nil
	case weirv1.JobState_JOB_STATE_FAILED:
		return fmt.Errorf("job %s failed: %s", id, st.Summary.Failure)
	default:
		return fmt.Errorf("job %s ended %s", id, jobmanager.JobStateName(st.Summary.State))
	}
}
