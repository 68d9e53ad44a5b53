// Package cli is the weir command line: the JobManager, the TaskManager, an
// embedded local cluster, and the client that submits and manages jobs. It
// runs the jobs registered in the binary it is linked into (package weir
// exposes it to programs that register jobs of their own).
package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Main runs the command line with os.Args and exits the process with its
// status.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "weir:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	os.Exit(1)
}

func newRoot() *cobra.Command {
	var level, cpuProfile string
	var stopProfile func()
	root := &cobra.Command{
		Use:   "weir",
		Short: "Weir: a distributed stream processor for fraud and anomaly detection",
		Long: "Weir: a distributed stream processor for fraud and anomaly detection.\n\n" +
			"Every flag can also be set by an environment variable: WEIR_ and the flag's name in upper\n" +
			"case with underscores (--jobmanager: WEIR_JOBMANAGER, --checkpoint-storage:\n" +
			"WEIR_CHECKPOINT_STORAGE), except --etcd: WEIR_ETCD_ENDPOINTS. A flag on the command line\n" +
			"wins over the variable. The S3 flags fall back to AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and\n" +
			"AWS_SECRET_ACCESS_KEY after that.\n" +
			"--json output is described in docs/json.md.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd, os.LookupEnv); err != nil {
				return err
			}
			var l slog.Level
			if err := l.UnmarshalText([]byte(level)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("--cpu-profile: %w", err)
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("--cpu-profile: %w", err)
				}
				stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
			}
			return nil
		},
		PersistentPostRun: func(*cobra.Command, []string) {
			if stopProfile != nil {
				stopProfile()
			}
		},
	}
	root.PersistentFlags().StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&cpuProfile, "cpu-profile", "", "write a CPU profile of this process to the file")
	root.AddCommand(newJobManagerCmd(), newTaskManagerCmd(), newLocalCmd(), newJobCmd(), newClusterCmd(), newJobsCmd(), newVersionCmd(), newCertsCmd(), newApplyCmd(), newRulesCmd())
	annotateEnv(root)
	return root
}
