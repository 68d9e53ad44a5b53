package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/rules/store"
)

// liveFlags are the flags of the commands that change a running job's
// rules in etcd.
type liveFlags struct {
	disc      discoveryFlags
	job       string
	by        string
	at        string
	ifVersion int64
	asJSON    bool
}

func (f *liveFlags) register(cmd *cobra.Command, change bool) {
	f.disc.register(cmd, false, false)
	cmd.Flags().StringVar(&f.job, "job", "", "the ID of the rules job (required)")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	if change {
		cmd.Flags().StringVar(&f.by, "by", "", "who makes the change, kept in the history (default: user@host)")
		cmd.Flags().StringVar(&f.at, "at", "", "the event time from which the change applies: Unix ms or RFC 3339 (default: now; required with rules-clock=marks)")
		cmd.Flags().Int64Var(&f.ifVersion, "if-version", store.Any, "refuse the change unless the rule's current version is this one (0: the rule must not exist); default: the version read just before")
	}
}

// open connects to etcd and returns the job's store.
func (f *liveFlags) open(ctx context.Context) (*store.Store, func(), error) {
	if f.job == "" {
		return nil, nil, errors.New("--job ID is required: the rules job whose rules to read or change")
	}
	if strings.TrimSpace(f.disc.etcd) == "" {
		return nil, nil, errors.New("--etcd ENDPOINTS is required (or WEIR_ETCD_ENDPOINTS): live rules are kept in etcd")
	}
	cli, err := f.disc.dialEtcd(ctx)
	if err != nil {
		return nil, nil, err
	}
	return store.New(cli, f.disc.clusterID, f.job), func() { cli.Close() }, nil
}

// change is the store.Change of the flags.
func (f *liveFlags) change() (store.Change, error) {
	ch := store.Change{By: f.by, IfVersion: f.ifVersion, At: time.Now().UnixMilli()}
	if ch.By == "" {
		name := "unknown"
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		host, _ := os.Hostname()
		ch.By = name + "@" + host
	}
	if f.at != "" {
		at, err := parseEventTime(f.at)
		if err != nil {
			return ch, fmt.Errorf("--at: %w", err)
		}
		ch.At = at
	}
	return ch, nil
}

func parseEventTime(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither Unix milliseconds nor RFC 3339", s)
	}
	return t.UnixMilli(), nil
}

// RuleStatsView is the --json output of weir rules stats.
type RuleStatsView struct {
	Rules []store.RuleStat `json:"rules"`
}

// RulesView is the --json output of the weir rules commands that print
// entries (all but get, which prints one store.Entry).
type RulesView struct {
	Rules []store.Entry `json:"rules"`
}

func printEntries(w io.Writer, asJSON bool, es []store.Entry) error {
	if asJSON {
		if es == nil {
			es = []store.Entry{}
		}
		return printJSON(w, RulesView{Rules: es})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tVERSION\tSTATE\tAT\tBY\tWHEN")
	for _, e := range es {
		at := strconv.FormatInt(e.At, 10)
		if e.At < -1<<61 {
			at = "start" // the rules a job stored at start: before any event
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", e.ID, e.Version, e.State, at, e.By,
			time.UnixMilli(e.Time).UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

// conflictExit makes a CAS conflict exit 2, so scripts can retry.
func conflictExit(err error) error {
	if errors.Is(err, store.ErrConflict) {
		return &exitError{code: 2, err: err}
	}
	return err
}

func newRulesLiveCmds() []*cobra.Command {
	var cmds []*cobra.Command

	put := &liveFlags{}
	putCmd := &cobra.Command{
		Use:   "put FILE|DIR --job ID",
		Short: "Store rules as their next versions in a running rules job (compiled and tested first)",
		Long: "Check and compile the rules of FILE (or every .yaml/.yml file of DIR) together with the job's\n" +
			"other stored rules, run their inline tests, and store each as its next version: a refused\n" +
			"rule is reported with its line and reason and nothing is stored. A rule changed by someone\n" +
			"else since it was read is refused (exit 2); --if-version states the version you read.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			specs, err := rules.LoadPath(args[0])
			if err != nil {
				return fmt.Errorf("rules refused:\n%w", err)
			}
			ch, err := put.change()
			if err != nil {
				return err
			}
			s, done, err := put.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			es, err := s.Put(cmd.Context(), specs, ch)
			if err != nil {
				return conflictExit(err)
			}
			return printEntries(cmd.OutOrStdout(), put.asJSON, es)
		},
	}
	put.register(putCmd, true)
	cmds = append(cmds, putCmd)

	for _, st := range []struct{ name, state, short string }{
		{"pause", store.Paused, "Pause a rule: it is not evaluated, its alerts stop; its state is kept for a resume"},
		{"resume", store.Active, "Resume a paused or shadowed rule: its alerts go to the alerts output again"},
		{"shadow", store.Shadow, "Shadow a rule: it is evaluated and counted, its alerts go only to the shadow output"},
		{"delete", store.Deleted, "Delete a rule (its history stays; rollback brings it back)"},
	} {
		f := &liveFlags{}
		c := &cobra.Command{
			Use:   st.name + " RULE --job ID",
			Short: st.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				ch, err := f.change()
				if err != nil {
					return err
				}
				s, done, err := f.open(cmd.Context())
				if err != nil {
					return err
				}
				defer done()
				e, err := s.SetState(cmd.Context(), args[0], st.state, ch)
				if err != nil {
					return conflictExit(err)
				}
				return printEntries(cmd.OutOrStdout(), f.asJSON, []store.Entry{e})
			},
		}
		f.register(c, true)
		cmds = append(cmds, c)
	}

	rb := &liveFlags{}
	var to int64
	rbCmd := &cobra.Command{
		Use:   "rollback RULE --to VERSION --job ID",
		Short: "Store a rule's earlier version (its source and state) as its next version",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to < 1 {
				return errors.New("--to VERSION is required (see weir rules history)")
			}
			ch, err := rb.change()
			if err != nil {
				return err
			}
			s, done, err := rb.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			e, err := s.Rollback(cmd.Context(), args[0], to, ch)
			if err != nil {
				return conflictExit(err)
			}
			return printEntries(cmd.OutOrStdout(), rb.asJSON, []store.Entry{e})
		},
	}
	rb.register(rbCmd, true)
	rbCmd.Flags().Int64Var(&to, "to", 0, "the version to go back to")
	cmds = append(cmds, rbCmd)

	get := &liveFlags{}
	getCmd := &cobra.Command{
		Use:   "get RULE --job ID",
		Short: "Print a rule's current YAML with its version and state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, done, err := get.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			e, err := s.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if get.asJSON {
				return printJSON(cmd.OutOrStdout(), e)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "# %s\n%s", e.Describe(), e.Source)
			return err
		},
	}
	get.register(getCmd, false)
	cmds = append(cmds, getCmd)

	list := &liveFlags{}
	listCmd := &cobra.Command{
		Use:   "list --job ID",
		Short: "List a running job's stored rules: version, state, from when, by whom",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, done, err := list.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			es, _, err := s.List(cmd.Context())
			if err != nil {
				return err
			}
			return printEntries(cmd.OutOrStdout(), list.asJSON, es)
		},
	}
	list.register(listCmd, false)
	cmds = append(cmds, listCmd)

	hist := &liveFlags{}
	histCmd := &cobra.Command{
		Use:   "history RULE --job ID",
		Short: "Every version of a rule: state, from when, who and when",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, done, err := hist.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			es, err := s.History(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printEntries(cmd.OutOrStdout(), hist.asJSON, es)
		},
	}
	hist.register(histCmd, false)
	cmds = append(cmds, histCmd)

	stats := &liveFlags{}
	statsCmd := &cobra.Command{
		Use:   "stats --job ID",
		Short: "Each rule version's evaluations, alerts, errors, evaluation time and keys in state in a running rules job",
		Long: "Sum the counts the job's evaluator subtasks publish to etcd every few seconds (since each\n" +
			"subtask started: a restart starts them again), by rule and version. KEYS is the number of\n" +
			"keys whose state holds a state the version wrote, now (recounted from the restored state\n" +
			"after a restart).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, done, err := stats.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			st, err := s.Stats(cmd.Context())
			if err != nil {
				return err
			}
			if stats.asJSON {
				return printJSON(cmd.OutOrStdout(), RuleStatsView{Rules: st})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RULE\tVERSION\tEVALUATIONS\tALERTS\tERRORS\tHIT RATE\tEVAL µs/EVENT\tKEYS")
			for _, r := range st {
				rate, per := 0.0, 0.0
				if r.Evaluations > 0 {
					rate = float64(r.Alerts) / float64(r.Evaluations)
					per = float64(r.EvalNanos) / float64(r.Evaluations) / 1e3
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.2f%%\t%.2f\t%d\n", r.Rule, r.Version, r.Evaluations, r.Alerts, r.Errors, 100*rate, per, r.Keys)
			}
			return tw.Flush()
		},
	}
	stats.register(statsCmd, false)
	cmds = append(cmds, statsCmd)

	mark := &liveFlags{}
	markCmd := &cobra.Command{
		Use:   "mark --at TIME --job ID",
		Short: "rules-clock=marks: promise that no rule change will apply before event time TIME",
		Long: "With rules-clock=marks the job evaluates events only up to the mark: a change put with\n" +
			"--at T applies exactly from event time T on every subtask, provided T is after the mark.\n" +
			"The mark only moves forward.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if mark.at == "" {
				return errors.New("--at TIME is required")
			}
			at, err := parseEventTime(mark.at)
			if err != nil {
				return fmt.Errorf("--at: %w", err)
			}
			s, done, err := mark.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			return s.SetMark(cmd.Context(), at)
		},
	}
	mark.disc.register(markCmd, false, false)
	markCmd.Flags().StringVar(&mark.job, "job", "", "the ID of the rules job (required)")
	markCmd.Flags().StringVar(&mark.at, "at", "", "the event time: Unix ms or RFC 3339")
	cmds = append(cmds, markCmd)
	return cmds
}
