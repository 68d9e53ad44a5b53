// Package cli is the weir command line: the JobManager, the TaskManager, an
// embedded local cluster, and the client that submits and manages jobs. It
// runs the jobs registered in the binary it is linked into (package weir
// exposes it to programs that register jobs of their own).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	var level, logFormat, cpuProfile string
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
			h, err := logHandler(os.Stderr, logFormat, level)
			if err != nil {
				return err
			}
			slog.SetDefault(slog.New(h))
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
	root.PersistentFlags().StringVar(&logFormat, "log-format", "text", "log line format: text (key=value) or json (one object per line)")
	root.PersistentFlags().StringVar(&cpuProfile, "cpu-profile", "", "write a CPU profile of this process to the file")
	root.AddCommand(newJobManagerCmd(), newTaskManagerCmd(), newLocalCmd(), newJobCmd(), newClusterCmd(), newJobsCmd(), newVersionCmd(), newCertsCmd(), newApplyCmd(), newRulesCmd())
	annotateEnv(root)
	return root
}

// logHandler is the handler of every process's logs: the --log-format
// (text or json) at the --log-level, written to w.
func logHandler(w io.Writer, format, level string) (slog.Handler, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
