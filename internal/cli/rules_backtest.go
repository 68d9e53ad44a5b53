package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/statebackend/storage"
)

// The rules job as backtest uses it: its name, the directories of its
// outputs, and a line of its rule_stats stream (jobs/rulesjob.RuleStat;
// not imported, so that a binary built on this package does not get the
// rules job and its Kafka client with it; TestRulesBacktest checks both
// agree).
const (
	rulesJobName = "rules"
	alertsDir    = "alerts"
	ruleStatsDir = "rule-stats"
)

type ruleStatLine struct {
	Rule        string `json:"rule"`
	Version     int64  `json:"version"`
	Evaluations int64  `json:"evaluations"`
	Hits        int64  `json:"hits"`
	Errors      int64  `json:"errors"`
}

// BacktestRule is one rule version's line of `weir rules backtest`.
type BacktestRule struct {
	Rule        string  `json:"rule"`
	Version     int64   `json:"version"`
	State       string  `json:"state"`
	Evaluations int64   `json:"evaluations"`
	Hits        int64   `json:"hits"`
	Errors      int64   `json:"errors"`
	HitRate     float64 `json:"hitRate"`
}

// BacktestView is `weir rules backtest --json`.
type BacktestView struct {
	JobID  string         `json:"jobId"`
	Output string         `json:"output"`
	Rules  []BacktestRule `json:"rules"`
}

func newRulesBacktestCmd() *cobra.Command {
	var d discoveryFlags
	var input, format, schema, timeField, output string
	var paramList []string
	var parallelism int
	var timeout time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "backtest FILE|DIR --input PATH",
		Short: "Run rules over a bounded input on the cluster and print each rule's hits",
		Long: "Check and compile the rules of FILE (or of every .yaml/.yml file of DIR) with their inline\n" +
			"tests, then submit a `rules` job running them over --input (a file or directory the\n" +
			"TaskManagers can read), wait for it to finish, and print each rule version's evaluations,\n" +
			"hits and errors, summed from the job's rule_stats stream. A refused rule is reported with\n" +
			"its file, line and reason and nothing is submitted; a job that fails (an input that cannot\n" +
			"be read, say) is reported with its failure. The job's alerts stay under --output/alerts/.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if input == "" {
				return errors.New("--input PATH is required: the bounded input to run the rules over")
			}
			if parallelism < 1 {
				return fmt.Errorf("--parallelism %d must be at least 1", parallelism)
			}
			specs, err := rules.LoadPath(args[0])
			if err != nil {
				return fmt.Errorf("rules refused (nothing submitted):\n%w", err)
			}
			set, err := rules.Compile(specs)
			if err != nil {
				return fmt.Errorf("rules refused (nothing submitted):\n%w", err)
			}
			if len(set.Rules) == 0 {
				return fmt.Errorf("%s holds no rules", args[0])
			}
			params, err := parseParams(paramList)
			if err != nil {
				return err
			}
			for k := range params {
				if slices.Contains([]string{"rules", "input", "output", "source", "monitor", "etcd"}, k) {
					return fmt.Errorf("--param %s: backtest sets it itself", k)
				}
			}
			if output == "" {
				if output, err = os.MkdirTemp("", "weir-backtest-"); err != nil {
					return err
				}
			}
			params["source"], params["rules"], params["input"], params["output"] = "files", args[0], input, output
			params["format"], params["time-field"] = format, timeField
			if schema != "" {
				params["schema"] = schema
			}
			// The JobManager and TaskManagers have working directories of
			// their own (the job may not be registered in this binary, so
			// absPathParams would not know these are paths).
			for _, k := range []string{"rules", "input", "output"} {
				if params[k], err = absURL(k, params[k]); err != nil {
					return err
				}
			}
			c, err := dial(cmd.Context(), &d)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			id, err := c.submit(ctx, &weirv1.SubmitJobRequest{JobName: rulesJobName, Parallelism: int32(parallelism), Params: params,
				Labels:        map[string]string{"weir.backtest": "true"},
				Checkpointing: &weirv1.CheckpointConfig{IntervalMs: 1000}})
			if err != nil {
				return fmt.Errorf("submitting the backtest: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "backtest job %s running; alerts under %s\n", id, storage.Join(params["output"], alertsDir))
			st, err := c.waitTerminal(ctx, id, 200*time.Millisecond)
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					cctx, ccancel := rpcContext(context.Background())
					_, _ = c.cancel(cctx, id)
					ccancel()
					return fmt.Errorf("the backtest job %s did not finish within --timeout %v; canceled it", id, timeout)
				}
				return err
			}
			if s := st.Summary.State; s != weirv1.JobState_JOB_STATE_FINISHED {
				return fmt.Errorf("the backtest job %s ended %s: %s", id, stateText(st.Summary), st.Summary.Failure)
			}
			view := BacktestView{JobID: id, Output: params["output"]}
			if view.Rules, err = readBacktestStats(ctx, params["output"], set); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), view)
			}
			printBacktest(cmd.OutOrStdout(), view.Rules)
			return nil
		},
	}
	d.register(cmd, false, true)
	d.registerToken(cmd)
	jsonFlag(cmd, &asJSON)
	cmd.Flags().StringVar(&input, "input", "", "a JSON-lines or CSV file, or a directory of them, readable by the TaskManagers (required)")
	cmd.Flags().StringVar(&format, "format", "json", "json or csv (csv needs --schema)")
	cmd.Flags().StringVar(&schema, "schema", "", "the events' declared fields, name:type,... (the rules job's schema parameter)")
	cmd.Flags().StringVar(&timeField, "time-field", rules.DefaultTimeField, "the event field holding the event time")
	cmd.Flags().StringVar(&output, "output", "", "directory or s3:// URL for the job's outputs, readable by this command too (default: a new temporary directory)")
	cmd.Flags().IntVar(&parallelism, "parallelism", 1, "the job's parallelism")
	cmd.Flags().StringArrayVar(&paramList, "param", nil, "another rules job parameter key=value, e.g. out-of-orderness=10s (repeatable)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "cancel the job and fail if it has not finished by then")
	return cmd
}

// readBacktestStats sums the committed rule_stats lines under output per
// rule version; every rule of set has a line, those that evaluated nothing
// (paused, or no event had their key) with zeros.
func readBacktestStats(ctx context.Context, output string, set *rules.Set) ([]BacktestRule, error) {
	dir := storage.Join(output, ruleStatsDir)
	if !storage.IsURL(dir) {
		dir = filepath.Clean(dir)
	}
	st, err := storage.Open(dir, storage.OptionsFromEnv())
	if err != nil {
		return nil, fmt.Errorf("rule stats %s: %w", dir, err)
	}
	objs, err := st.List(ctx, "part-")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("rule stats %s: %w", dir, err)
	}
	type rv struct {
		rule    string
		version int64
	}
	sums := map[rv]*BacktestRule{}
	var order []rv
	for _, r := range set.Rules {
		k := rv{r.ID, r.Version}
		sums[k] = &BacktestRule{Rule: r.ID, Version: r.Version, State: r.State}
		order = append(order, k)
	}
	for _, o := range objs {
		if strings.Contains(o.Name, "/") {
			continue
		}
		data, err := st.Get(ctx, o.Name)
		if err != nil {
			return nil, fmt.Errorf("rule stats %s: %w", o.Name, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var s ruleStatLine
			if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
				return nil, fmt.Errorf("rule stats %s: %w", o.Name, err)
			}
			k := rv{s.Rule, s.Version}
			b := sums[k]
			if b == nil {
				b = &BacktestRule{Rule: s.Rule, Version: s.Version}
				sums[k] = b
				order = append(order, k)
			}
			b.Evaluations += s.Evaluations
			b.Hits += s.Hits
			b.Errors += s.Errors
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("rule stats %s: %w", o.Name, err)
		}
	}
	out := make([]BacktestRule, 0, len(order))
	for _, k := range order {
		b := *sums[k]
		if b.Evaluations > 0 {
			b.HitRate = float64(b.Hits) / float64(b.Evaluations)
		}
		out = append(out, b)
	}
	return out, nil
}

func printBacktest(w io.Writer, rs []BacktestRule) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tVERSION\tSTATE\tEVALUATIONS\tHITS\tERRORS\tHIT RATE")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%.2f%%\n", r.Rule, r.Version, r.State, r.Evaluations, r.Hits, r.Errors, 100*r.HitRate)
	}
	tw.Flush()
}
