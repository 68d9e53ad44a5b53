package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/jobmanager"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/statebackend/storage"
)

// checkpointFlags are a submission's checkpoint and restore settings.
type checkpointFlags struct {
	interval, timeout, minPause time.Duration
	retained                    int
	fromSavepoint               string
	allowNonRestored            bool
	incremental                 bool
	cmd                         *cobra.Command
}

func (f *checkpointFlags) register(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&f.interval, "checkpoint-interval", jobmanager.DefaultCheckpointInterval, "time between periodic checkpoints (0 disables them, and restarts)")
	cmd.Flags().DurationVar(&f.timeout, "checkpoint-timeout", jobmanager.DefaultCheckpointTimeout, "a checkpoint not complete after this long is aborted")
	cmd.Flags().DurationVar(&f.minPause, "checkpoint-min-pause", 0, "least time between the end of a checkpoint and the next")
	cmd.Flags().IntVar(&f.retained, "checkpoints-retained", jobmanager.DefaultRetainedCheckpoint, "completed checkpoints to keep")
	f.cmd = cmd
	cmd.Flags().BoolVar(&f.incremental, "incremental", false, "checkpoints store only the keyed state changed since the latest completed one, "+
		"referring to earlier shared files for the rest: the memory backend's changed entries, pebble's new SSTs "+
		"(savepoints stay full; default true with --state-backend pebble, else false)")
	cmd.Flags().StringVar(&f.fromSavepoint, "from-savepoint", "", "start from this savepoint (or retained checkpoint) directory")
	cmd.Flags().BoolVar(&f.allowNonRestored, "allow-non-restored-state", false, "start even if the savepoint has state for operators the job lacks")
}

// apply sets req's checkpoint and restore settings and makes the paths it
// carries (--from-savepoint, path parameters) absolute. Checkpoints are
// incremental by default when req names the pebble state backend (Flink's
// default for RocksDB too: uploading only new SSTs costs nothing on the
// write path); an explicit --incremental=false keeps them full.
func (f *checkpointFlags) apply(req *weirv1.SubmitJobRequest) error {
	if f.interval < 0 || f.timeout < 0 || f.minPause < 0 || f.retained < 1 {
		return fmt.Errorf("--checkpoint-interval, --checkpoint-timeout and --checkpoint-min-pause must not be negative, --checkpoints-retained at least 1")
	}
	req.Checkpointing = &weirv1.CheckpointConfig{IntervalMs: f.interval.Milliseconds(), TimeoutMs: f.timeout.Milliseconds(),
		MinPauseMs: f.minPause.Milliseconds(), Retained: int32(f.retained), Incremental: f.incremental}
	if f.cmd != nil && !f.cmd.Flags().Changed("incremental") && req.StateBackend == runtime.StateBackendPebble {
		req.Checkpointing.Incremental = true
	}
	from, err := absURL("--from-savepoint", f.fromSavepoint)
	if err != nil {
		return err
	}
	req.FromSavepoint = from
	req.AllowNonRestoredState = f.allowNonRestored
	return absPathParams(req.JobName, req.Params)
}

// storageFlags are the S3 settings of a process that reads or writes state.
type storageFlags struct {
	endpoint, accessKey, secretKey string
	createBucket                   bool
}

func (f *storageFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.endpoint, "s3-endpoint", "", "S3 endpoint URL, http:// or https:// (env WEIR_S3_ENDPOINT, else AWS_ENDPOINT_URL)")
	cmd.Flags().StringVar(&f.accessKey, "s3-access-key", "", "S3 access key (env WEIR_S3_ACCESS_KEY, else AWS_ACCESS_KEY_ID)")
	cmd.Flags().StringVar(&f.secretKey, "s3-secret-key", "", "S3 secret key (env WEIR_S3_SECRET_KEY, else AWS_SECRET_ACCESS_KEY)")
	cmd.Flags().BoolVar(&f.createBucket, "s3-create-bucket", false,
		"create a missing S3 bucket before the first checkpoint or savepoint is written or read there (for development stores such as an empty MinIO)")
}

func (f *storageFlags) options() storage.Options {
	return storage.Options{Endpoint: f.endpoint, AccessKey: f.accessKey, SecretKey: f.secretKey, CreateBucket: f.createBucket}.Merge(storage.OptionsFromEnv())
}

// savepointContext bounds a savepoint RPC: they wait for the checkpoint.
func savepointContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 15*time.Minute)
}

func newSavepointCmds(withClient func(func(*cobra.Command, *client, []string) error) func(*cobra.Command, []string) error) []*cobra.Command {
	var target string
	var savepointJSON bool
	savepoint := &cobra.Command{
		Use:   "savepoint ID",
		Short: "Take a savepoint of a running job; prints its path",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c *client, args []string) error {
			target, err := absURL("--target", target)
			if err != nil {
				return err
			}
			ctx, cancel := savepointContext(cmd.Context())
			defer cancel()
			resp, err := c.jm.TriggerSavepoint(ctx, &weirv1.TriggerSavepointRequest{JobId: args[0], Target: target})
			if err != nil {
				return c.explain(err)
			}
			if savepointJSON {
				return printJSON(cmd.OutOrStdout(), SavepointView{JobID: args[0], SavepointPath: resp.Path})
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.Path)
			return nil
		}),
	}
	jsonFlag(savepoint, &savepointJSON)
	savepoint.Flags().StringVar(&target, "target", "", "directory or URL to create the savepoint in (default: the JobManager's --savepoint-dir)")

	var stopTarget string
	var withSavepoint, drain, stopJSON bool
	var wait time.Duration
	stop := &cobra.Command{
		Use:   "stop ID --savepoint",
		Short: "Stop a job with a savepoint: sources stop right after it, the job finishes; prints the savepoint's path",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c *client, args []string) error {
			if !withSavepoint {
				return fmt.Errorf("stop takes a savepoint to resume from: pass --savepoint (or use `weir job cancel %s` to stop without one)", args[0])
			}
			target, err := absURL("--target", stopTarget)
			if err != nil {
				return err
			}
			ctx, cancel := savepointContext(cmd.Context())
			defer cancel()
			resp, err := c.jm.StopJob(ctx, &weirv1.StopJobRequest{JobId: args[0], Target: target, Drain: drain})
			if err != nil {
				return c.explain(err)
			}
			if wait > 0 {
				wctx, wcancel := context.WithTimeout(cmd.Context(), wait)
				defer wcancel()
				if st, err := c.waitTerminal(wctx, args[0], 50*time.Millisecond); err != nil {
					return fmt.Errorf("savepoint %s taken, but job %s is still %s after %v", resp.Path, args[0],
						jobmanager.JobStateName(st.GetSummary().GetState()), wait)
				}
			}
			if stopJSON {
				return printJSON(cmd.OutOrStdout(), SavepointView{JobID: args[0], SavepointPath: resp.Path})
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.Path)
			return nil
		}),
	}
	jsonFlag(stop, &stopJSON)
	stop.Flags().BoolVar(&withSavepoint, "savepoint", false, "take a savepoint before stopping (required)")
	stop.Flags().BoolVar(&drain, "drain", false, "fire every pending timer before the savepoint, for a job that will not be resumed")
	stop.Flags().StringVar(&stopTarget, "target", "", "directory or URL to create the savepoint in (default: the JobManager's --savepoint-dir)")
	stop.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for the job to finish after the savepoint (0: do not wait)")

	var parallelism int
	var rescaleWait time.Duration
	var rescaleJSON bool
	rescale := &cobra.Command{
		Use:   "rescale ID --parallelism N",
		Short: "Change a running job's parallelism: stop with a savepoint and restore from it, under the same job ID",
		Long: "Change a running job's parallelism: stop it with a savepoint and redeploy it from that savepoint\n" +
			"at --parallelism N (required), under the same job ID. Nothing stops unless the free slots and the\n" +
			"job's own can hold N. If N cannot be placed after the stop (a TaskManager left, another job took\n" +
			"the slots), the job goes back to its previous parallelism from the same savepoint and the command\n" +
			"fails. The savepoint's path is printed either way.",
		Args: cobra.ExactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c *client, args []string) error {
			if parallelism < 1 {
				return fmt.Errorf("--parallelism %d must be at least 1", parallelism)
			}
			ctx, cancel := savepointContext(cmd.Context())
			defer cancel()
			id := args[0]
			resp, err := c.jm.RescaleJob(ctx, &weirv1.RescaleJobRequest{JobId: id, Parallelism: int32(parallelism)})
			if err != nil {
				return c.explain(err)
			}
			w, sp := cmd.OutOrStdout(), resp.SavepointPath
			if rescaleWait <= 0 {
				if rescaleJSON {
					return printJSON(w, RescaleView{JobID: id, Parallelism: parallelism, SavepointPath: sp, Outcome: "REDEPLOYING"})
				}
				fmt.Fprintf(w, "job %s stopped with savepoint %s; redeploying at parallelism %d\n", id, sp, parallelism)
				return nil
			}
			st, err := c.waitRescaled(cmd.Context(), id, rescaleWait)
			switch {
			case err != nil && st == nil:
				return fmt.Errorf("job %s stopped with savepoint %s, then: %w", id, sp, err)
			case err != nil:
				return fmt.Errorf("job %s stopped with savepoint %s but is %s, not running again after %v", id, sp,
					stateText(st.GetSummary()), rescaleWait)
			}
			line, err := rescaleOutcome(id, parallelism, sp, st)
			if rescaleJSON {
				outcome := "RESCALED"
				if err != nil {
					outcome = "FELL_BACK"
				}
				if jerr := printJSON(w, RescaleView{JobID: id, Parallelism: parallelism, SavepointPath: sp,
					Outcome: outcome, RunningParallelism: int(st.GetSummary().GetParallelism())}); jerr != nil {
					return jerr
				}
			} else if line != "" {
				fmt.Fprintln(w, line)
			}
			return err
		}),
	}
	jsonFlag(rescale, &rescaleJSON)
	rescale.Flags().IntVar(&parallelism, "parallelism", 0, "the new parallelism (required; at most the job's maxParallelism)")
	// Required, so a forgotten --parallelism is named rather than read as 0.
	if err := rescale.MarkFlagRequired("parallelism"); err != nil {
		panic(err)
	}
	rescale.Flags().DurationVar(&rescaleWait, "wait", time.Minute, "how long to wait for the job to run again (0: do not wait)")

	var asJSON bool
	checkpoints := &cobra.Command{
		Use:   "checkpoints ID",
		Short: "List a job's retained completed checkpoints and savepoints",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c *client, args []string) error {
			rctx, cancel := rpcContext(cmd.Context())
			defer cancel()
			resp, err := c.jm.ListCheckpoints(rctx, &weirv1.ListCheckpointsRequest{JobId: args[0]})
			if err != nil {
				return c.explain(err)
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), checkpointListView(args[0], resp))
			}
			printCheckpoints(cmd.OutOrStdout(), resp)
			return nil
		}),
	}
	jsonFlag(checkpoints, &asJSON)

	var disposeJSON bool
	dispose := &cobra.Command{
		Use:   "dispose ID",
		Short: "Delete an ended job's retained checkpoints (<checkpoint storage>/<job-id>/); savepoints stay",
		Long: "Delete the retained checkpoints of a job that has ended (FINISHED, CANCELED or FAILED):\n" +
			"the directory <checkpoint storage>/<job-id>/. Savepoints are never deleted. Checkpoints of\n" +
			"ended jobs are kept until then, so a job can be resumed from one with --from-savepoint.",
		Args: cobra.ExactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c *client, args []string) error {
			ctx, cancel := savepointContext(cmd.Context())
			defer cancel()
			resp, err := c.jm.DisposeCheckpoints(ctx, &weirv1.DisposeCheckpointsRequest{JobId: args[0]})
			if err != nil {
				return c.explain(err)
			}
			if disposeJSON {
				return printJSON(cmd.OutOrStdout(), DisposeView{JobID: args[0], Path: resp.Path, CheckpointsDeleted: int(resp.Checkpoints)})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s: deleted %d retained checkpoint(s) with %s\n", args[0], resp.Checkpoints, resp.Path)
			return nil
		}),
	}
	jsonFlag(dispose, &disposeJSON)
	return []*cobra.Command{savepoint, stop, rescale, checkpoints, dispose}
}

// waitRescaled polls until a rescaled job has been placed again — at the
// new parallelism, or at its previous one after a fallback — and runs, or
// until it ends. A job running at the wrong parallelism is not mistaken for
// a finished rescale: the rescale's phase says which it is.
func (c *client) waitRescaled(ctx context.Context, id string, wait time.Duration) (*weirv1.JobStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return c.waitUntil(ctx, id, 50*time.Millisecond, func(st *weirv1.JobStatus) bool {
		s := st.Summary
		switch st.GetRescale().GetPhase() {
		case weirv1.RescalePhase_RESCALE_PHASE_STOPPING, weirv1.RescalePhase_RESCALE_PHASE_PLACING:
			return jobmanager.TerminalJob(s.State)
		}
		return jobmanager.TerminalJob(s.State) || s.State == weirv1.JobState_JOB_STATE_RUNNING
	})
}

// rescaleOutcome says how the rescale of job id to parallelism p went,
// from the status waitRescaled ended with: a line naming the parallelism
// the job runs at and the savepoint sp, and an error unless it runs at p.
func rescaleOutcome(id string, p int, sp string, st *weirv1.JobStatus) (string, error) {
	s, r := st.GetSummary(), st.GetRescale()
	switch {
	case jobmanager.TerminalJob(s.GetState()):
		return "", fmt.Errorf("job %s stopped with savepoint %s and then ended %s: %s", id, sp,
			jobmanager.JobStateName(s.GetState()), s.GetFailure())
	case r.GetPhase() == weirv1.RescalePhase_RESCALE_PHASE_DONE && int(s.GetParallelism()) == p:
		return fmt.Sprintf("job %s rescaled to parallelism %d from savepoint %s", id, p, sp), nil
	}
	return fmt.Sprintf("job %s runs at parallelism %d, not %d, from savepoint %s", id, s.GetParallelism(), p, sp),
		fmt.Errorf("rescale of job %s to parallelism %d not done: %s", id, p, r.GetReason())
}

func printCheckpoints(w io.Writer, resp *weirv1.ListCheckpointsResponse) {
	if len(resp.Checkpoints) == 0 {
		fmt.Fprintln(w, "no completed checkpoints")
	} else {
		fmt.Fprintf(w, "%-6s  %-10s  %-20s  %-10s  %-12s  %s\n", "ID", "TYPE", "TRIGGERED", "DURATION", "SIZE", "PATH")
		for _, c := range resp.Checkpoints {
			kind := "checkpoint"
			if c.Savepoint {
				kind = "savepoint"
			}
			fmt.Fprintf(w, "%-6d  %-10s  %-20s  %-10v  %-12s  %s\n", c.Id, kind, formatMs(c.TriggerTimeMs),
				time.Duration(c.DurationMs)*time.Millisecond, formatBytes(c.SizeBytes), c.Path)
		}
	}
	fmt.Fprintf(w, "failed checkpoints: %d\n", resp.Failed)
	if resp.DisposedTimeMs != 0 {
		fmt.Fprintf(w, "checkpoints disposed of: %s\n", formatMs(resp.DisposedTimeMs))
	}
	if r := resp.Restored; r != nil {
		fmt.Fprintf(w, "restored from: %d (%s)\n", r.Id, r.Path)
	}
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
