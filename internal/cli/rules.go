package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/rules"
)

func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Work with rule files: fraud and anomaly rules written as YAML (see README, Rules)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newRulesTestCmd(), newRulesBacktestCmd())
	cmd.AddCommand(newRulesLiveCmds()...)
	return cmd
}

func newRulesTestCmd() *cobra.Command {
	var events, timeField string
	var stats, decisions bool
	cmd := &cobra.Command{
		Use:   "test FILE|DIR --events FILE",
		Short: "Run rules on recorded JSON-lines events locally and print the alerts",
		Long: "Check and compile the rules of FILE (or of every .yaml/.yml file of DIR), run their inline\n" +
			"tests, then evaluate them on the events of --events (JSON lines, each with the time field\n" +
			"--time-field in Unix milliseconds or RFC 3339) in event-time order, as a job with a perfect\n" +
			"watermark would, and print the alerts as JSON lines on stdout. Every window still open at\n" +
			"the end of the input closes. Exits 1 if a rule is refused, an event line is bad, or a rule\n" +
			"fails on an event (each failure is printed on stderr; the other rules go on).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if events == "" {
				return errors.New("--events FILE is required: the JSON-lines events to run the rules on")
			}
			specs, err := rules.LoadPath(args[0])
			if err != nil {
				return fmt.Errorf("rules refused:\n%w", err)
			}
			set, err := rules.Compile(specs)
			if err != nil {
				return fmt.Errorf("rules refused:\n%w", err)
			}
			if len(set.Rules) == 0 {
				return fmt.Errorf("%s holds no rules", args[0])
			}
			f, err := os.Open(events)
			if err != nil {
				return fmt.Errorf("--events: %w", err)
			}
			defer f.Close()
			evs, err := rules.ReadEvents(f, events, timeField)
			if err != nil {
				return fmt.Errorf("bad events:\n%w", err)
			}
			alerts, eng, errs := rules.Run(set, evs)
			enc := json.NewEncoder(cmd.OutOrStdout())
			if decisions {
				for _, d := range eng.Decisions() {
					d.Source = events
					if err := enc.Encode(&d); err != nil {
						return err
					}
				}
			} else {
				for i := range alerts {
					if err := enc.Encode(&alerts[i]); err != nil {
						return err
					}
				}
			}
			stderr := cmd.ErrOrStderr()
			for _, err := range errs {
				var ee *rules.EventError
				if errors.As(err, &ee) {
					fmt.Fprintf(stderr, "%s:%d: %v\n", events, evs[ee.Index].Line, ee.Err)
					continue
				}
				fmt.Fprintln(stderr, err)
			}
			if stats {
				for _, s := range eng.Stats() {
					fmt.Fprintf(stderr, "rule %s version %d: %d evaluations, %d alerts, %d errors\n",
						s.Rule, s.Version, s.Evaluations, s.Alerts, s.Errors)
				}
			}
			if len(errs) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d evaluation errors (above); the alerts of the other events are printed", len(errs))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&events, "events", "", "JSON-lines file of events to run the rules on (required)")
	cmd.Flags().StringVar(&timeField, "time-field", rules.DefaultTimeField, "the event field holding the event time")
	cmd.Flags().BoolVar(&stats, "stats", false, "print each rule's evaluations, alerts and errors on stderr")
	cmd.Flags().BoolVar(&decisions, "decisions", false, "print, instead of the alerts, one decision per event on which rules with emit.priority fired (the lowest priority wins)")
	return cmd
}
