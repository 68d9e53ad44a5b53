package cli

import (
	"github.com/spf13/cobra"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
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

const (
	jobStateBackendUsage = "where the job's keyed state lives: memory, or pebble (an embedded LSM tree on each " +
		"TaskManager's disk, for state larger than memory) (default: each TaskManager's --state-backend)"
	stateDirUsage = "`DIR` under which the pebble state backend gives each keyed subtask a directory, removed " +
		"when the task ends (default: a directory under the system's temporary directory)"
)
