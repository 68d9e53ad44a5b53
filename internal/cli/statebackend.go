package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/statebackend/pebblestate"
)

// stateBackendFlag is a job's --state-backend (weir job submit, weir local).
type stateBackendFlag struct{ kind string }

func (f *stateBackendFlag) register(cmd *cobra.Command, usage string) {
	cmd.Flags().StringVar(&f.kind, "state-backend", "", usage)
}

// apply checks the flag and sets the request's state backend.
func (f *stateBackendFlag) apply(req *weirv1.SubmitJobRequest) error {
	if f.kind == "" {
		return nil
	}
	kind, err := runtime.ParseStateBackend(f.kind)
	if err != nil {
		return err
	}
	req.StateBackend = kind
	return nil
}

// timerServiceFlag is a job's --timer-service (weir job submit, weir local).
type timerServiceFlag struct{ name string }

func (f *timerServiceFlag) register(cmd *cobra.Command, usage string) {
	cmd.Flags().StringVar(&f.name, "timer-service", "", usage)
}

// apply checks the flag and sets the request's timer service.
func (f *timerServiceFlag) apply(req *weirv1.SubmitJobRequest) error {
	if f.name == "" {
		return nil
	}
	name, err := runtime.ParseTimerService(f.name)
	if err != nil {
		return err
	}
	req.TimerService = name
	return nil
}

const (
	timerServiceUsage = "where keyed operators on pebble keep their timers: store (in the pebble store, bounded by disk, " +
		"behind an in-memory tier within --state-memory) or heap (in memory: no store write per timer, but every timer in memory)"
	jobTimerServiceUsage = timerServiceUsage + " (default: each TaskManager's --timer-service)"
	jobStateBackendUsage = "where the job's keyed state lives: memory, or pebble (an embedded LSM tree on each " +
		"TaskManager's disk, for state larger than memory) (default: each TaskManager's --state-backend)"
	stateDirUsage = "`DIR` under which the pebble state backend gives each keyed subtask a directory, removed " +
		"when the task ends (default: a directory under the system's temporary directory)"
)

// bytesFlag is a size flag such as --state-memory 512MiB; 0 when unset.
type bytesFlag struct{ n int64 }

func (f *bytesFlag) String() string {
	if f.n == 0 {
		return ""
	}
	return pebblestate.FormatBytes(f.n)
}

func (f *bytesFlag) Set(s string) error {
	n, err := pebblestate.ParseBytes(s)
	if err != nil {
		return err
	}
	if n < pebblestate.MinBudget {
		return fmt.Errorf("%s is below the minimum of %s", pebblestate.FormatBytes(n), pebblestate.FormatBytes(pebblestate.MinBudget))
	}
	f.n = n
	return nil
}

func (f *bytesFlag) Type() string { return "size" }

// stateMemoryUsage describes --state-memory (weir taskmanager, weir local).
const stateMemoryUsage = "`SIZE` of memory per slot for the pebble state backend (e.g. 512MiB, 2GiB), split between " +
	"a quarter each: its block cache (shared by the slot's stores), the timers' in-memory tier, the value write-back caches and the memtables " +
	"(default: a quarter of the smaller of GOMEMLIMIT and the container's memory limit, divided between the slots; 64MiB per slot without either)"

// changelogFlags are --state-changelog, --materialize-ratio and
// --materialize-interval (weir taskmanager, weir local).
type changelogFlags struct {
	on       bool
	ratio    float64
	interval time.Duration
}

func (f *changelogFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.on, "state-changelog", true,
		"incremental checkpoints of pebble jobs are changelog checkpoints: the state's latest materialization "+
			"(a Pebble checkpoint) plus a log of the writes since, so that a checkpoint uploads about what changed; "+
			"false uploads every new SST of a Pebble checkpoint instead")
	cmd.Flags().Float64Var(&f.ratio, "materialize-ratio", pebblestate.DefaultMaterializeRatio,
		"with --state-changelog, materialize a store once its changelog since the last materialization is larger "+
			"than this fraction of the store (more: fewer, larger uploads and a longer replay on restore)")
	cmd.Flags().DurationVar(&f.interval, "materialize-interval", pebblestate.DefaultMaterializeInterval,
		"with --state-changelog, materialize a store at the first checkpoint this long after the last "+
			"materialization, whatever its changelog's size (0: only by --materialize-ratio)")
}

// options are the changelog's options; nil with --state-changelog=false.
func (f *changelogFlags) options() (*pebblestate.ChangelogOptions, error) {
	if !f.on {
		return nil, nil
	}
	if f.ratio <= 0 {
		return nil, fmt.Errorf("--materialize-ratio %v must be above 0", f.ratio)
	}
	if f.interval < 0 {
		return nil, fmt.Errorf("--materialize-interval %v must not be negative", f.interval)
	}
	o := &pebblestate.ChangelogOptions{Ratio: f.ratio, Interval: f.interval}
	if f.interval == 0 {
		o.Interval = -1 // pebblestate's "never"
	}
	return o, nil
}
