package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/leader"
	"github.com/weirstream/weir/jobmanager"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
)

// client talks to the JobManager leader: its calls go through a Finder,
// which finds the leader among the --jobmanager addresses (and in etcd) and
// follows followers' redirects.
type client struct {
	addrs string // --jobmanager, for messages
	jm    weirv1.JobManagerClient
	close func()
}

func dial(ctx context.Context, d *discoveryFlags) (*client, error) {
	f, closeFinder, err := d.finder(ctx)
	if err != nil {
		return nil, err
	}
	return &client{addrs: strings.Join(d.addrs(), ","), jm: weirv1.NewJobManagerClient(f), close: closeFinder}, nil
}

func (c *client) Close() { c.close() }

// explain turns a gRPC error into the message a user needs. The Finder's
// own errors (no leader, no member reachable) say it already.
func (c *client) explain(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if _, redirected := leader.Redirect(err); redirected {
		return fmt.Errorf("the JobManagers at %s keep sending calls elsewhere (leadership is changing?): %s", c.addrs, st.Message())
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("cannot reach the JobManager leader (--jobmanager %s): %s", c.addrs, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("the JobManager leader (--jobmanager %s) did not answer in time", c.addrs)
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
	return errors.New(st.Message())
}

func rpcContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 10*time.Second)
}

// parseParams turns repeated --param key=value flags into a map.
func parseParams(list []string) (map[string]string, error) {
	params := map[string]string{}
	for _, p := range list {
		k, v, err := runtime.ParseParam(p)
		if err != nil {
			return nil, err
		}
		params[k] = v
	}
	return params, nil
}

// parseLabels turns repeated --label key=value flags into a map.
func parseLabels(list []string) (map[string]string, error) {
	labels := map[string]string{}
	for _, l := range list {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--label %q: want key=value", l)
		}
		labels[k] = v
	}
	return labels, nil
}

func (c *client) submit(ctx context.Context, req *weirv1.SubmitJobRequest) (string, error) {
	rctx, cancel := rpcContext(ctx)
	defer cancel()
	resp, err := c.jm.SubmitJob(rctx, req)
	if err != nil {
		return "", c.explain(err)
	}
	return resp.JobId, nil
}

func (c *client) status(ctx context.Context, id string) (*weirv1.JobStatus, error) {
	rctx, cancel := rpcContext(ctx)
	defer cancel()
	st, err := c.jm.GetJobStatus(rctx, &weirv1.GetJobStatusRequest{JobId: id})
	if err != nil {
		return nil, c.explain(err)
	}
	return st, nil
}

// waitTerminal polls a job until it reaches a terminal state.
func (c *client) waitTerminal(ctx context.Context, id string, every time.Duration) (*weirv1.JobStatus, error) {
	return c.waitUntil(ctx, id, every, func(st *weirv1.JobStatus) bool { return jobmanager.TerminalJob(st.Summary.State) })
}

// waitUntil polls a job until done says so; on ctx's end it returns the
// last status seen with ctx's error.
func (c *client) waitUntil(ctx context.Context, id string, every time.Duration, done func(*weirv1.JobStatus) bool) (*weirv1.JobStatus, error) {
	for {
		st, err := c.status(ctx, id)
		if err != nil {
			return nil, err
		}
		if done(st) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(every):
		}
	}
}

func (c *client) cancel(ctx context.Context, id string) (weirv1.JobState, error) {
	rctx, cancel := rpcContext(ctx)
	defer cancel()
	resp, err := c.jm.CancelJob(rctx, &weirv1.CancelJobRequest{JobId: id})
	if err != nil {
		return 0, c.explain(err)
	}
	return resp.State, nil
}

func newJobCmd() *cobra.Command {
	var d discoveryFlags
	cmd := &cobra.Command{Use: "job", Short: "Submit, inspect, savepoint, stop, rescale and cancel jobs"}
	d.register(cmd, true, true)
	d.registerToken(cmd)
	withClient := func(run func(cmd *cobra.Command, c *client, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			c, err := dial(cmd.Context(), &d)
			if err != nil {
				return err
			}
			defer c.Close()
			return run(cmd, c, args)
		}
	}

	var parallelism int
	var paramList, labelList []string
	var ckf checkpointFlags
	var sbf stateBackendFlag
	var tsf timerServiceFlag
	var submitJSON bool
	submit := &cobra.Command{
		Use:   "submit NAME",
		Short: "Submit a job; prints its ID",
		Long: "Submit a registered job; prints its ID alone, for scripts.\n\n" +
			"`weir jobs` lists the jobs this binary has; `weir job describe NAME` shows a job's\n" +
			"parameters (type, default, meaning), which --param NAME=VALUE sets.",
		Args: cobra.MaximumNArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c *client, args []string) error {
			if len(args) == 0 {
				w := cmd.ErrOrStderr()
				fmt.Fprintln(w, "weir job submit needs the name of a job. The jobs of this binary:")
				fmt.Fprintln(w)
				printJobList(w)
				fmt.Fprintln(w)
				fmt.Fprintln(w, "`weir job describe NAME` shows a job's parameters.")
				return &exitError{code: 2, err: errors.New("no job name given")}
			}
			if parallelism < 1 {
				return fmt.Errorf("--parallelism %d must be at least 1", parallelism)
			}
			params, err := parseParams(paramList)
			if err != nil {
				return err
			}
			labels, err := parseLabels(labelList)
			if err != nil {
				return err
			}
			req := &weirv1.SubmitJobRequest{JobName: args[0], Parallelism: int32(parallelism), Params: params, Labels: labels}
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
			id, err := c.submit(cmd.Context(), req)
			if err != nil {
				return err
			}
			if submitJSON {
				return printJSON(cmd.OutOrStdout(), SubmitView{JobID: id})
			}
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		}),
	}
	jsonFlag(submit, &submitJSON)
	submit.Flags().IntVar(&parallelism, "parallelism", 1, "default parallelism of the job's operators")
	submit.Flags().StringArrayVar(&paramList, "param", nil, "job parameter key=value (repeatable)")
	submit.Flags().StringArrayVar(&labelList, "label", nil, "label key=value stored with the job and shown by list and status (repeatable)")
	ckf.register(submit)
	sbf.register(submit, jobStateBackendUsage)
	tsf.register(submit, jobTimerServiceUsage)

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List jobs",
		Args:  cobra.NoArgs,
		RunE: withClient(func(cmd *cobra.Command, c *client, _ []string) error {
			rctx, cancel := rpcContext(cmd.Context())
			defer cancel()
			resp, err := c.jm.ListJobs(rctx, &weirv1.ListJobsRequest{})
			if err != nil {
				return c.explain(err)
			}
			w := cmd.OutOrStdout()
			if listJSON {
				return printJSON(w, jobListView(resp))
			}
			if len(resp.Jobs) == 0 {
				fmt.Fprintln(w, "no jobs")
				return nil
			}
			width := 10
			for _, j := range resp.Jobs {
				width = max(width, len(stateText(j)))
			}
			fmt.Fprintf(w, "%-32s  %-*s  %-20s  %s\n", "JOB ID", width, "STATE", "SUBMITTED", "NAME")
			for _, j := range resp.Jobs {
				fmt.Fprintf(w, "%-32s  %-*s  %-20s  %s\n", j.JobId, width, stateText(j), formatMs(j.SubmitTimeMs), j.JobName)
			}
			return nil
		}),
	}
	jsonFlag(list, &listJSON)

	var asJSON bool
	statusCmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show a job's state, subtasks and per-operator record counts",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c *client, args []string) error {
			st, err := c.status(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), jobStatusView(st))
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		}),
	}
	jsonFlag(statusCmd, &asJSON)

	var wait time.Duration
	var cancelJSON bool
	cancelCmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a job and wait until it is canceled",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c *client, args []string) error {
			state, err := c.cancel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !jobmanager.TerminalJob(state) && wait > 0 {
				ctx, cancel := context.WithTimeout(cmd.Context(), wait)
				defer cancel()
				st, err := c.waitTerminal(ctx, args[0], 100*time.Millisecond)
				if err != nil {
					return fmt.Errorf("job %s is still %s after %v: %w", args[0], jobmanager.JobStateName(st.GetSummary().GetState()), wait, err)
				}
				state = st.Summary.State
			}
			if cancelJSON {
				return printJSON(cmd.OutOrStdout(), CancelView{JobID: args[0], State: jobmanager.JobStateName(state)})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "job %s %s\n", args[0], strings.ToLower(jobmanager.JobStateName(state)))
			return nil
		}),
	}
	cancelCmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for the job to be canceled (0: do not wait)")
	jsonFlag(cancelCmd, &cancelJSON)

	cmd.AddCommand(submit, newDescribeCmd(), list, statusCmd, cancelCmd)
	cmd.AddCommand(newSavepointCmds(withClient)...)
	return cmd
}

// jsonFlag adds --json to a command that prints a result.
func jsonFlag(cmd *cobra.Command, asJSON *bool) {
	cmd.Flags().BoolVar(asJSON, "json", false, "print the result as JSON (shapes: docs/json.md)")
}

func formatMs(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05Z")
}

// formatWatermark shows an event-time watermark to the millisecond.
func formatWatermark(ms int64) string {
	if ms == runtime.MaxWatermark {
		return "end of input"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

// stateText is a job's state as the CLI shows it: a job waiting for slots
// is CREATED to the state machine but says what it waits for.
func stateText(s *weirv1.JobSummary) string {
	if w := s.GetSlotWait(); w != nil {
		return fmt.Sprintf("WAITING FOR SLOTS (needs %d, %d free)", w.SlotsNeeded, w.SlotsFree)
	}
	return jobmanager.JobStateName(s.GetState())
}

func rescalePhaseText(p weirv1.RescalePhase) string {
	switch p {
	case weirv1.RescalePhase_RESCALE_PHASE_STOPPING:
		return "stopping with a savepoint"
	case weirv1.RescalePhase_RESCALE_PHASE_PLACING:
		return "waiting for slots at the new parallelism"
	case weirv1.RescalePhase_RESCALE_PHASE_DONE:
		return "done"
	case weirv1.RescalePhase_RESCALE_PHASE_FELL_BACK:
		return "fell back to the previous parallelism"
	case weirv1.RescalePhase_RESCALE_PHASE_ABANDONED:
		return "abandoned"
	}
	return strings.ToLower(p.String())
}

func printStatus(w io.Writer, st *weirv1.JobStatus) {
	s := st.Summary
	fmt.Fprintf(w, "Job %s (%s): %s\n", s.JobId, s.JobName, stateText(s))
	if sw := s.SlotWait; sw != nil {
		until := "until enough slots return (a restarted or rescaled job has no slot timeout)"
		if sw.DeadlineMs > 0 {
			until = "until " + formatMs(sw.DeadlineMs) + ", then it fails (--slot-timeout)"
		}
		fmt.Fprintf(w, "  state %s, waiting for slots since %s %s\n", jobmanager.JobStateName(s.State), formatMs(sw.SinceMs), until)
	}
	fmt.Fprintf(w, "  submitted %s  started %s  ended %s\n", formatMs(s.SubmitTimeMs), formatMs(s.StartTimeMs), formatMs(s.EndTimeMs))
	fmt.Fprintf(w, "  parallelism %d  maxParallelism %d\n", s.Parallelism, st.MaxParallelism)
	if len(st.Params) > 0 {
		keys := make([]string, 0, len(st.Params))
		for k := range st.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + st.Params[k]
		}
		fmt.Fprintf(w, "  params %s\n", strings.Join(parts, " "))
	}
	if len(s.Labels) > 0 {
		parts := make([]string, 0, len(s.Labels))
		for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
			parts = append(parts, k+"="+s.Labels[k])
		}
		fmt.Fprintf(w, "  labels %s\n", strings.Join(parts, " "))
	}
	if s.Failure != "" {
		fmt.Fprintf(w, "  failure: %s\n", s.Failure)
	}
	for _, n := range st.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if c := st.Checkpointing; c != nil {
		every := "off"
		if c.IntervalMs > 0 {
			every = "every " + (time.Duration(c.IntervalMs) * time.Millisecond).String()
		}
		switch {
		case c.Incremental && st.StateBackend == runtime.StateBackendPebble:
			every += " (incremental: pebble native)"
		case c.Incremental:
			every += " (incremental)"
		}
		fmt.Fprintf(w, "  checkpoints %s  completed %d  failed %d  restarts %d  attempt %d\n",
			every, st.CompletedCheckpoints, st.FailedCheckpoints, s.Restarts, st.Attempt)
	}
	if r := st.Rescale; r != nil {
		fmt.Fprintf(w, "  rescale %d -> %d: %s", r.FromParallelism, r.ToParallelism, rescalePhaseText(r.Phase))
		if r.SavepointPath != "" {
			fmt.Fprintf(w, "  savepoint %s", r.SavepointPath)
		}
		if r.Reason != "" {
			fmt.Fprintf(w, "  (%s)", r.Reason)
		}
		fmt.Fprintln(w)
	}
	if r := st.Restored; r != nil {
		fmt.Fprintf(w, "  restored from checkpoint %d (%s)\n", r.Id, r.Path)
	}
	if l := st.LatestCheckpoint; l != nil {
		fmt.Fprintf(w, "  latest checkpoint %d  %s  took %v  %s\n", l.Id, formatMs(l.TriggerTimeMs),
			time.Duration(l.DurationMs)*time.Millisecond, formatBytes(l.SizeBytes))
	}
	if l := st.Latency; l != nil && l.Count > 0 {
		fmt.Fprintf(w, "  latency (source to sink): p50 %v  p99 %v  max %v  (%d markers)\n",
			time.Duration(l.P50Ns), time.Duration(l.P99Ns), time.Duration(l.MaxNs), l.Count)
	}
	for _, v := range st.Vertices {
		in := ""
		if v.InputPartitioning != "" {
			in = ", input " + v.InputPartitioning
		}
		wm := ""
		if v.Watermark != nil {
			wm = "  watermark " + formatWatermark(v.GetWatermark())
		}
		fmt.Fprintf(w, "\n  [%d] %s  (parallelism %d%s)%s\n", v.Id, v.Name, v.Parallelism, in, wm)
		for _, o := range v.Operators {
			fmt.Fprintf(w, "      operator %-20s uid %-20s records in %-12d out %d", o.Name, o.Uid, o.RecordsIn, o.RecordsOut)
			if o.Watermark != nil {
				fmt.Fprintf(w, "  watermark %s", formatWatermark(o.GetWatermark()))
			}
			fmt.Fprintln(w)
		}
		for _, t := range v.Subtasks {
			where := "not placed"
			if t.TaskManagerId != "" {
				where = fmt.Sprintf("on %s (%s) slot %d", t.TaskManagerId, t.TaskManagerAddress, t.Slot)
			}
			fmt.Fprintf(w, "      subtask %d/%d  %-9s %s  attempt %d", t.Index+1, v.Parallelism, jobmanager.TaskStateName(t.State), where, t.Attempt)
			if t.Watermark != nil {
				fmt.Fprintf(w, "  watermark %s", formatWatermark(t.GetWatermark()))
			}
			if t.Failure != "" {
				fmt.Fprintf(w, "  failure: %s", t.Failure)
			}
			fmt.Fprintln(w)
		}
	}
}
