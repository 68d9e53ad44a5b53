package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/weirstream/weir/jobmanager"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
)

// Declarative jobs: `weir apply` makes the jobs running on a cluster match
// a file, the way the chart's hooks keep them matching the Helm values. A
// declared job is found again by labels stored with it: its group (one per
// file, e.g. the Helm release), its declared name, and a hash of its spec.
// A job whose spec changed is stopped with a savepoint and submitted again
// from it, so its state survives; an unchanged one is left alone. The
// work splits in two phases so Helm can stop the old version before the
// upgrade (prepare) and start the new one after it (apply); apply alone
// does both.
const (
	labelGroup = "weir.dev/apply-group"
	labelName  = "weir.dev/apply-name"
	labelHash  = "weir.dev/spec-hash"
)

// JobSpec is one declared job of a jobs file.
type JobSpec struct {
	// Name identifies the job across upgrades: lowercase letters, digits
	// and '-'.
	Name string `json:"name"`
	// Job is the registered job to run (`weir jobs` lists them).
	Job         string         `json:"job"`
	Parallelism int            `json:"parallelism,omitempty"`
	Params      map[string]any `json:"params,omitempty"`
	// CheckpointInterval is a Go duration ("10s"); "" means the default,
	// "0s" disables periodic checkpoints.
	CheckpointInterval    string `json:"checkpointInterval,omitempty"`
	AllowNonRestoredState bool   `json:"allowNonRestoredState,omitempty"`
	// Incremental makes the job's checkpoints incremental (--incremental);
	// unset, they are incremental on the pebble state backend only, as
	// with weir job submit.
	Incremental *bool `json:"incremental,omitempty"`
	// StateBackend is where the job's keyed state lives (--state-backend):
	// memory or pebble; "" means each TaskManager's default.
	StateBackend string `json:"stateBackend,omitempty"`
	// TimerService is where keyed operators on pebble keep their timers
	// (--timer-service): store or heap; "" means each TaskManager's default.
	TimerService string `json:"timerService,omitempty"`
}

// JobsFile is the file `weir apply --file` reads (YAML or JSON).
type JobsFile struct {
	Jobs []JobSpec `json:"jobs"`
}

// declared is a validated JobSpec: its params as strings, its settings
// resolved and the hash of it all.
type declared struct {
	name, job   string
	parallelism int
	params      map[string]string
	intervalMs  int64
	allowNonRes bool
	incremental bool
	backend     string // "" or a runtime.StateBackend* kind
	timers      string // "" or a runtime.TimerService* name
	hash        string
}

var applyName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// parseJobsFile reads and validates a jobs file.
func parseJobsFile(data []byte) ([]declared, error) {
	var f JobsFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("jobs file: %w", err)
	}
	seen := map[string]bool{}
	out := make([]declared, 0, len(f.Jobs))
	for i, s := range f.Jobs {
		where := fmt.Sprintf("jobs[%d] (%s)", i, s.Name)
		if !applyName.MatchString(s.Name) {
			return nil, fmt.Errorf("%s: name %q must be 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit", where, s.Name)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("%s: the name %s is declared twice", where, s.Name)
		}
		seen[s.Name] = true
		if s.Job == "" {
			return nil, fmt.Errorf("%s: job is empty: name a registered job (`weir jobs` lists them)", where)
		}
		d := declared{name: s.Name, job: s.Job, parallelism: s.Parallelism, params: map[string]string{},
			intervalMs: jobmanager.DefaultCheckpointInterval.Milliseconds(), allowNonRes: s.AllowNonRestoredState}
		if s.StateBackend != "" {
			kind, err := runtime.ParseStateBackend(s.StateBackend)
			if err != nil {
				return nil, fmt.Errorf("%s: stateBackend: %w", where, err)
			}
			d.backend = kind
		}
		if s.TimerService != "" {
			name, err := runtime.ParseTimerService(s.TimerService)
			if err != nil {
				return nil, fmt.Errorf("%s: timerService: %w", where, err)
			}
			d.timers = name
		}
		d.incremental = d.backend == runtime.StateBackendPebble
		if s.Incremental != nil {
			d.incremental = *s.Incremental
		}
		if d.parallelism == 0 {
			d.parallelism = 1
		}
		if d.parallelism < 0 {
			return nil, fmt.Errorf("%s: parallelism %d must be at least 1", where, s.Parallelism)
		}
		if s.CheckpointInterval != "" {
			iv, err := time.ParseDuration(s.CheckpointInterval)
			if err != nil || iv < 0 {
				return nil, fmt.Errorf("%s: checkpointInterval %q is not a duration such as 10s (0s disables checkpoints)", where, s.CheckpointInterval)
			}
			d.intervalMs = iv.Milliseconds()
		}
		for k, v := range s.Params {
			switch v := v.(type) {
			case string:
				d.params[k] = v
			case float64:
				d.params[k] = strconv.FormatFloat(v, 'f', -1, 64)
			case bool:
				d.params[k] = strconv.FormatBool(v)
			default:
				return nil, fmt.Errorf("%s: param %s must be a string, number or boolean, not %T", where, k, v)
			}
		}
		d.hash = specHash(d)
		out = append(out, d)
	}
	return out, nil
}

// specHash is a short hash of everything that makes a running job differ
// from the spec: a change to any of it restarts the job from a savepoint.
func specHash(d declared) string {
	b, _ := json.Marshal(struct {
		Job         string            `json:"job"`
		Parallelism int               `json:"parallelism"`
		Params      map[string]string `json:"params"` // marshaled with sorted keys
		IntervalMs  int64             `json:"interval_ms"`
		AllowNonRes bool              `json:"allow_non_restored"`
		// omitempty keeps the hashes of specs written before the fields.
		Incremental bool   `json:"incremental,omitempty"`
		Backend     string `json:"state_backend,omitempty"`
		Timers      string `json:"timer_service,omitempty"`
	}{d.job, d.parallelism, d.params, d.intervalMs, d.allowNonRes, d.incremental, d.backend, d.timers})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// applyAction is what one step of a plan does.
type applyAction int

const (
	actUnchanged applyAction = iota // running with the declared spec
	actStop                         // stop with a savepoint (changed, or no longer declared)
	actSubmit                       // submit from the newest state of earlier runs
)

type applyStep struct {
	name   string
	action applyAction
	// job is the running job (actUnchanged, actStop).
	job *weirv1.JobSummary
	// spec is the declared job (actUnchanged, actSubmit); nil for a job
	// no longer declared.
	spec *declared
	// earlier are the ended runs of the name, newest first (actSubmit).
	earlier []*weirv1.JobSummary
	reason  string
}

// planApply decides the steps of a phase from the declared jobs and the
// cluster's jobs (only those of group count). Prepare stops what changed
// or is no longer declared; apply does that too, then submits every
// declared job not running with its spec. Running the same phase again on
// the result plans only unchanged steps.
func planApply(specs []declared, jobs []*weirv1.JobSummary, group string, prepare bool) []applyStep {
	running := map[string]*weirv1.JobSummary{}
	ended := map[string][]*weirv1.JobSummary{}
	for _, j := range jobs {
		l := j.GetLabels()
		if l[labelGroup] != group || l[labelName] == "" {
			continue
		}
		n := l[labelName]
		if jobmanager.TerminalJob(j.GetState()) {
			ended[n] = append(ended[n], j)
		} else if r := running[n]; r == nil || j.GetSubmitTimeMs() > r.GetSubmitTimeMs() {
			running[n] = j
		}
	}
	for _, e := range ended {
		slices.SortFunc(e, func(a, b *weirv1.JobSummary) int { return int(b.GetSubmitTimeMs() - a.GetSubmitTimeMs()) })
	}
	var steps []applyStep
	for i := range specs {
		s := &specs[i]
		r := running[s.name]
		switch {
		case r != nil && r.GetLabels()[labelHash] == s.hash:
			steps = append(steps, applyStep{name: s.name, action: actUnchanged, job: r, spec: s})
			continue
		case r != nil:
			steps = append(steps, applyStep{name: s.name, action: actStop, job: r, spec: s, reason: "spec changed"})
		}
		if !prepare {
			steps = append(steps, applyStep{name: s.name, action: actSubmit, spec: s, earlier: ended[s.name]})
		}
	}
	for _, n := range slices.Sorted(maps.Keys(running)) {
		if !slices.ContainsFunc(specs, func(d declared) bool { return d.name == n }) {
			steps = append(steps, applyStep{name: n, action: actStop, job: running[n], reason: "no longer declared"})
		}
	}
	return steps
}

// applyClient is what applying needs of the JobManager.
type applyClient interface {
	listJobs(ctx context.Context) ([]*weirv1.JobSummary, error)
	stopWithSavepoint(ctx context.Context, id string) (string, error)
	latestState(ctx context.Context, id string) (string, error)
	submit(ctx context.Context, req *weirv1.SubmitJobRequest) (string, error)
	waitRunning(ctx context.Context, id string) error
}

// runApply carries out a plan, printing a line per step. A stopped job's
// savepoint is what its resubmission starts from; a job not running before
// starts from the newest savepoint or retained checkpoint of its earlier
// runs, or fresh if there is none.
func runApply(ctx context.Context, c applyClient, specs []declared, group string, prepare bool, w io.Writer) error {
	jobs, err := c.listJobs(ctx)
	if err != nil {
		return err
	}
	savepoints := map[string]string{}
	for _, st := range planApply(specs, jobs, group, prepare) {
		switch st.action {
		case actUnchanged:
			fmt.Fprintf(w, "%s: unchanged, job %s is %s\n", st.name, st.job.GetJobId(), jobmanager.JobStateName(st.job.GetState()))
		case actStop:
			sp, err := c.stopWithSavepoint(ctx, st.job.GetJobId())
			if err != nil {
				return fmt.Errorf("%s: stopping job %s with a savepoint (%s): %w", st.name, st.job.GetJobId(), st.reason, err)
			}
			savepoints[st.name] = sp
			fmt.Fprintf(w, "%s: %s, stopped job %s with savepoint %s\n", st.name, st.reason, st.job.GetJobId(), sp)
		case actSubmit:
			from, whence := savepoints[st.name], ""
			for _, e := range st.earlier {
				if from != "" {
					break
				}
				if from, err = c.latestState(ctx, e.GetJobId()); err != nil {
					return fmt.Errorf("%s: finding the state of its earlier job %s: %w", st.name, e.GetJobId(), err)
				}
			}
			if from != "" {
				whence = " from " + from
			}
			s := st.spec
			req := &weirv1.SubmitJobRequest{JobName: s.job, Parallelism: int32(s.parallelism), Params: maps.Clone(s.params),
				Checkpointing:         &weirv1.CheckpointConfig{IntervalMs: s.intervalMs, Incremental: s.incremental},
				FromSavepoint:         from,
				AllowNonRestoredState: s.allowNonRes,
				StateBackend:          s.backend,
				TimerService:          s.timers,
				Labels:                map[string]string{labelGroup: group, labelName: s.name, labelHash: s.hash}}
			if err := absPathParams(req.JobName, req.Params); err != nil {
				return fmt.Errorf("%s: %w", st.name, err)
			}
			id, err := c.submit(ctx, req)
			if err != nil {
				return fmt.Errorf("%s: submitting %s%s: %w", st.name, s.job, whence, err)
			}
			if err := c.waitRunning(ctx, id); err != nil {
				return fmt.Errorf("%s: job %s%s: %w", st.name, id, whence, err)
			}
			if from == "" {
				whence = " with no earlier state"
			}
			fmt.Fprintf(w, "%s: submitted job %s%s, running\n", st.name, id, whence)
		}
	}
	return nil
}

// clusterApply is an applyClient over a JobManager client.
type clusterApply struct {
	c    *client
	wait time.Duration
}

// listJobs retries until --wait ends: right after `helm install` the
// JobManagers may not have elected a leader yet.
func (a clusterApply) listJobs(ctx context.Context) ([]*weirv1.JobSummary, error) {
	deadline := time.Now().Add(a.wait)
	for {
		rctx, cancel := rpcContext(ctx)
		resp, err := a.c.jm.ListJobs(rctx, &weirv1.ListJobsRequest{})
		cancel()
		if err == nil {
			return resp.Jobs, nil
		}
		if time.Now().After(deadline) {
			return nil, a.c.explain(err)
		}
		slog.Info("waiting for the JobManager leader", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (a clusterApply) stopWithSavepoint(ctx context.Context, id string) (string, error) {
	sctx, cancel := savepointContext(ctx)
	defer cancel()
	resp, err := a.c.jm.StopJob(sctx, &weirv1.StopJobRequest{JobId: id})
	if err != nil {
		return "", a.c.explain(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, a.wait)
	defer wcancel()
	st, err := a.c.waitTerminal(wctx, id, 100*time.Millisecond)
	if err != nil {
		return "", fmt.Errorf("savepoint %s taken, but the job is still %s after %v: %w", resp.Path,
			jobmanager.JobStateName(st.GetSummary().GetState()), a.wait, err)
	}
	return resp.Path, nil
}

func (a clusterApply) latestState(ctx context.Context, id string) (string, error) {
	rctx, cancel := rpcContext(ctx)
	defer cancel()
	resp, err := a.c.jm.ListCheckpoints(rctx, &weirv1.ListCheckpointsRequest{JobId: id})
	if err != nil {
		return "", a.c.explain(err)
	}
	if n := len(resp.Checkpoints); n > 0 {
		return resp.Checkpoints[n-1].Path, nil // oldest first
	}
	return "", nil
}

func (a clusterApply) submit(ctx context.Context, req *weirv1.SubmitJobRequest) (string, error) {
	return a.c.submit(ctx, req)
}

// waitRunning waits until every subtask of the job runs; a job that ends
// or fails to be placed first is an error.
func (a clusterApply) waitRunning(ctx context.Context, id string) error {
	wctx, cancel := context.WithTimeout(ctx, a.wait)
	defer cancel()
	st, err := a.c.waitUntil(wctx, id, 100*time.Millisecond, func(st *weirv1.JobStatus) bool {
		return st.Summary.State == weirv1.JobState_JOB_STATE_RUNNING || jobmanager.TerminalJob(st.Summary.State)
	})
	switch {
	case err != nil && st == nil:
		return err
	case err != nil:
		return fmt.Errorf("still %s after %v", stateText(st.GetSummary()), a.wait)
	case st.Summary.State != weirv1.JobState_JOB_STATE_RUNNING:
		return fmt.Errorf("%s: %s", jobmanager.JobStateName(st.Summary.State), st.Summary.Failure)
	}
	return nil
}

func newApplyCmd() *cobra.Command {
	var d discoveryFlags
	var file, phase, group string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "apply --file JOBS.yaml",
		Short: "Make the cluster's jobs match a file: submit new ones, upgrade changed ones through a savepoint",
		Long: "Make the jobs running on the cluster match a jobs file (YAML or JSON):\n\n" +
			"  jobs:\n" +
			"    - name: fraud                # stable name, kept across upgrades\n" +
			"      job: fraud-detection       # a registered job (`weir jobs`)\n" +
			"      parallelism: 2\n" +
			"      checkpointInterval: 10s\n" +
			"      params: {rate: 100}\n\n" +
			"Each declared job is stored with labels naming its --group, its name and a hash of its spec.\n" +
			"A job running with the same spec is left alone. One whose spec changed is stopped with a\n" +
			"savepoint and submitted again from it; one not running starts from the newest savepoint or\n" +
			"retained checkpoint of its earlier runs, if any; a running job of the group that the file no\n" +
			"longer declares is stopped with a savepoint. --phase prepare only stops (Helm's pre-upgrade\n" +
			"hook); --phase apply stops and submits (post-install and post-upgrade). Running it again\n" +
			"changes nothing.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("--file is required: the jobs file to apply")
			}
			if phase != "prepare" && phase != "apply" {
				return fmt.Errorf("--phase %q: want prepare or apply", phase)
			}
			if group == "" {
				return errors.New("--group must not be empty")
			}
			var data []byte
			var err error
			if file == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return fmt.Errorf("--file: %w", err)
			}
			specs, err := parseJobsFile(bytes.TrimSpace(data))
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			c, err := dial(cmd.Context(), &d)
			if err != nil {
				return err
			}
			defer c.Close()
			return runApply(cmd.Context(), clusterApply{c: c, wait: wait}, specs, group, phase == "prepare", cmd.OutOrStdout())
		},
	}
	d.register(cmd, false, true)
	d.registerToken(cmd)
	cmd.Flags().StringVarP(&file, "file", "f", "", "the jobs file, YAML or JSON (- reads standard input)")
	cmd.Flags().StringVar(&phase, "phase", "apply", "prepare: only stop changed jobs with a savepoint; apply: stop them and submit")
	cmd.Flags().StringVar(&group, "group", "default", "the set of jobs the file declares (the chart uses the release name); jobs of other groups are left alone")
	cmd.Flags().DurationVar(&wait, "wait", 2*time.Minute, "how long to wait for a stopped job to finish and a submitted one to run")
	return cmd
}
