// Package jobs is the registry of the jobs Weir ships. A job is a Go function
// that builds a dataflow from parameters; the JobManager calls it to learn the
// graph and every TaskManager calls it to instantiate its operators, so a
// builder MUST be deterministic for the same parameters.
package jobs

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/weirstream/weir/runtime"
)

// BuildFunc adds a job's operators to env, reading its parameters.
type BuildFunc func(env *runtime.Env, params *runtime.Params) error

var (
	mu       sync.RWMutex
	registry = map[string]BuildFunc{}
)

// Register makes a job available by name. It panics on a duplicate name,
// which is a programming error caught at start-up.
func Register(name string, build BuildFunc) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic("jobs: duplicate job " + name)
	}
	registry[name] = build
}

// Names lists the registered jobs, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ErrUnknownJob is wrapped by Build when no job has the name.
var ErrUnknownJob = errors.New("unknown job")

// Build runs the named job's builder and returns its graph.
func Build(name string, parallelism int, params map[string]string) (*runtime.JobGraph, error) {
	mu.RLock()
	build, ok := registry[name]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (known jobs: %v)", ErrUnknownJob, name, Names())
	}
	env, err := runtime.NewEnv(name, parallelism)
	if err != nil {
		return nil, err
	}
	p := runtime.NewParams(params)
	if err := build(env, p); err != nil {
		return nil, fmt.Errorf("job %s: %w", name, err)
	}
	if err := p.CheckUnused(); err != nil {
		return nil, fmt.Errorf("job %s: %w", name, err)
	}
	return env.Graph()
}
