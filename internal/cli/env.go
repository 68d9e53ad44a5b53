package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Every flag of every command can be set by an environment variable: WEIR_
// and the flag's name in upper case with underscores, so --jobmanager is
// WEIR_JOBMANAGER and --checkpoint-storage WEIR_CHECKPOINT_STORAGE, unless
// the flag names another variable with setEnvName (--etcd:
// WEIR_ETCD_ENDPOINTS). The command line wins over the environment, the
// environment over the default. It is done once, for all commands, in the
// root's PersistentPreRunE, so a flag added anywhere gets its variable too.

const envPrefix = "WEIR_"

// envAnnotation is the flag annotation holding a variable name chosen by
// setEnvName.
const envAnnotation = "weir_env"

// envName is the environment variable of a flag named flag, by the rule.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// flagEnv is the environment variable of a flag: the one setEnvName gave
// it, else the rule's.
func flagEnv(f *pflag.Flag) string {
	if v := f.Annotations[envAnnotation]; len(v) == 1 {
		return v[0]
	}
	return envName(f.Name)
}

// setEnvName makes the flag of fs named flag read the variable env rather
// than the rule's. It panics on a flag fs lacks: a programming error.
func setEnvName(fs *pflag.FlagSet, flag, env string) {
	if err := fs.SetAnnotation(flag, envAnnotation, []string{env}); err != nil {
		panic(err)
	}
}

// applyEnv sets each of cmd's flags that the command line did not give
// from its environment variable, when that is set and not empty. A
// repeatable flag (--param) takes the variable as one value. A value the
// flag cannot parse is an error naming the variable.
func applyEnv(cmd *cobra.Command, lookup func(string) (string, bool)) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		name := flagEnv(f)
		v, ok := lookup(name)
		if !ok || v == "" {
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = fmt.Errorf("environment variable %s=%q is not a valid --%s (%s): %v", name, v, f.Name, f.Value.Type(), serr)
			return
		}
		// As if given: commands that ask whether a flag was set
		// (local's --checkpoint-storage) see it.
		f.Changed = true
	})
	return err
}

// annotateEnv adds "(env WEIR_...)" to the help of every flag in the
// command tree, unless the help names its variables already.
func annotateEnv(root *cobra.Command) {
	seen := map[*pflag.Flag]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.LocalNonPersistentFlags(), c.PersistentFlags(), c.Flags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if seen[f] || f.Name == "help" {
					return
				}
				seen[f] = true
				if !strings.Contains(f.Usage, "(env ") {
					f.Usage += " (env " + flagEnv(f) + ")"
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
