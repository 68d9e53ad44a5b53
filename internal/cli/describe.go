package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/jobs"
)

// The registered jobs are this binary's: every process of a cluster runs
// the same binary, so they are the cluster's too.

func newJobsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "List the jobs this binary can run, with a line on each",
		Long: "List the jobs registered in this binary, with a one-line description of each.\n" +
			"`weir job describe NAME` shows a job's parameters.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				return printJSON(cmd.OutOrStdout(), registeredJobsView())
			}
			printJobList(cmd.OutOrStdout())
			return nil
		},
	}
	jsonFlag(cmd, &asJSON)
	return cmd
}

func newDescribeCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a registered job's description and parameters (type, default, meaning)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := jobs.Lookup(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), registeredJobView(j))
			}
			printJobDescription(cmd.OutOrStdout(), j)
			return nil
		},
	}
	jsonFlag(cmd, &asJSON)
	return cmd
}

func printJobList(w io.Writer) {
	all := jobs.All()
	if len(all) == 0 {
		fmt.Fprintln(w, "no jobs are registered in this binary")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tDESCRIPTION")
	for _, j := range all {
		fmt.Fprintf(tw, "%s\t%s\n", j.Name, j.Description)
	}
	tw.Flush()
}

func printJobDescription(w io.Writer, j jobs.Job) {
	fmt.Fprintf(w, "%s: %s\n\n", j.Name, j.Description)
	if len(j.Params) == 0 {
		fmt.Fprintln(w, "No parameters.")
		return
	}
	fmt.Fprintln(w, "Parameters (--param NAME=VALUE):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tTYPE\tDEFAULT\tMEANING")
	for _, p := range j.Params {
		def := p.Default
		switch {
		case p.Required:
			def = "(required)"
		case def == "":
			def = "-"
		}
		if p.Secret {
			def += " (secret)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", p.Name, p.Type, def, p.Description)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nExample: weir job submit %s --parallelism 2", j.Name)
	for _, p := range j.Params {
		if p.Required {
			fmt.Fprintf(w, " --param %s=<%s>", p.Name, p.Type)
		}
	}
	fmt.Fprintln(w)
}
