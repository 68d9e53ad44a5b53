// Package jobs is the registry of the jobs a weir binary can run. A job is a
// Go function that builds a dataflow from parameters; the JobManager calls
// it to learn the graph and every TaskManager calls it to instantiate its
// operators, so a builder MUST be deterministic for the same parameters, and
// every process of a cluster MUST run a binary with the same jobs
// registered.
//
// A job declares its parameters (name, type, default, meaning): `weir job
// describe` prints them, and a builder that reads a parameter it did not
// declare fails, so the description cannot drift from the code.
package jobs

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"sync"

	"github.com/weirstream/weir/runtime"
)

// BuildFunc adds a job's operators to env, reading its parameters.
type BuildFunc func(env *runtime.Env, params *runtime.Params) error

// ParamType is the type of a job parameter, as `weir job describe` shows it.
type ParamType string

// The parameter types, matching runtime.Params' getters.
const (
	String   ParamType = "string"
	Int      ParamType = "int"
	Float    ParamType = "float"
	Duration ParamType = "duration"
	Bool     ParamType = "bool"
	// Path is a directory or a storage URL (s3://bucket/prefix,
	// file:///abs/dir), read with Params.String. The CLI makes a
	// relative directory absolute before it submits the job, since the
	// TaskManagers that use it run elsewhere.
	Path ParamType = "path"
)

// Param documents one parameter of a job.
type Param struct {
	Name string
	Type ParamType
	// Default is the value used when the parameter is not given, as text;
	// empty for a required parameter or one whose default depends on
	// others (say so in Description).
	Default     string
	Description string
	Required    bool
	// Secret marks a credential (a password, a token, a webhook URL): its
	// value reaches the builder, but `weir job status`, the logs and the
	// parameter errors show it as Redacted.
	Secret bool
}

// Redacted is what a secret parameter's value shows as.
const Redacted = "***"

// Redact returns a copy of params with the values of the named job's
// secret parameters replaced by Redacted. The parameters of an unknown job
// are copied as they are.
func Redact(name string, params map[string]string) map[string]string {
	if params == nil {
		return nil
	}
	out := make(map[string]string, len(params))
	for k, v := range params {
		out[k] = v
	}
	j, err := Lookup(name)
	if err != nil {
		return out
	}
	for _, p := range j.Params {
		if _, ok := out[p.Name]; ok && p.Secret {
			out[p.Name] = Redacted
		}
	}
	return out
}

// Job is a registered job.
type Job struct {
	// Name is what `weir job submit NAME` takes: lower case, digits and
	// dashes.
	Name string
	// Description is one line saying what the job does.
	Description string
	// Params are the parameters Build reads, in the order to show them.
	Params []Param
	Build  BuildFunc
}

var (
	mu       sync.RWMutex
	registry = map[string]Job{}
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
)

// Register makes a job available by name. It panics on a duplicate or
// malformed registration, a programming error caught at start-up.
func Register(j Job) {
	if err := j.validate(); err != nil {
		panic("jobs: " + err.Error())
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[j.Name]; dup {
		panic("jobs: duplicate job " + j.Name)
	}
	j.Params = append([]Param(nil), j.Params...)
	registry[j.Name] = j
}

func (j Job) validate() error {
	if !nameRE.MatchString(j.Name) {
		return fmt.Errorf("job name %q: use lower case letters, digits and dashes", j.Name)
	}
	if j.Build == nil {
		return fmt.Errorf("job %s has no Build function", j.Name)
	}
	if j.Description == "" {
		return fmt.Errorf("job %s has no description", j.Name)
	}
	seen := map[string]bool{}
	for _, p := range j.Params {
		switch p.Type {
		case String, Int, Float, Duration, Bool, Path:
		default:
			return fmt.Errorf("job %s: parameter %q has type %q (want string, int, float, duration, bool or path)", j.Name, p.Name, p.Type)
		}
		if p.Name == "" || seen[p.Name] {
			return fmt.Errorf("job %s: parameter name %q is empty or repeated", j.Name, p.Name)
		}
		seen[p.Name] = true
	}
	return nil
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

// All returns the registered jobs sorted by name.
func All() []Job {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]Job, 0, len(registry))
	for _, j := range registry {
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// ErrUnknownJob is wrapped by Lookup and Build when no job has the name.
var ErrUnknownJob = errors.New("unknown job")

// Lookup returns the named job.
func Lookup(name string) (Job, error) {
	mu.RLock()
	j, ok := registry[name]
	mu.RUnlock()
	if !ok {
		return Job{}, fmt.Errorf("%w %q (known jobs: %v)", ErrUnknownJob, name, Names())
	}
	return j, nil
}

// Build runs the named job's builder and returns its graph, with the
// default maxParallelism for parallelism unless the builder fixes one.
func Build(name string, parallelism int, params map[string]string) (*runtime.JobGraph, error) {
	return BuildFixed(name, parallelism, 0, params)
}

// BuildFixed is Build for a job whose key groups are already fixed: a
// running, rescaled or restored job keeps the maxParallelism it started
// with (when maxParallelism > 0), since its keyed state is partitioned by
// it. A builder that pins another value fails.
func BuildFixed(name string, parallelism, maxParallelism int, params map[string]string) (*runtime.JobGraph, error) {
	j, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	env, err := runtime.NewEnv(name, parallelism)
	if err != nil {
		return nil, err
	}
	declared := make([]string, len(j.Params))
	var secret []string
	for k, p := range j.Params {
		declared[k] = p.Name
		if p.Secret {
			secret = append(secret, p.Name)
		}
	}
	for _, d := range j.Params {
		if _, given := params[d.Name]; d.Required && !given {
			return nil, fmt.Errorf("job %s: parameter %s is required (%s)", name, d.Name, d.Description)
		}
	}
	p := runtime.NewDeclaredParams(params, declared)
	p.SetSecret(secret...)
	if err := j.Build(env, p); err != nil {
		return nil, fmt.Errorf("job %s: %w", name, err)
	}
	if maxParallelism > 0 {
		if pinned := env.MaxParallelism(); pinned != 0 && pinned != maxParallelism {
			return nil, fmt.Errorf("job %s sets maxParallelism %d, but its state is partitioned into %d key groups: "+
				"maxParallelism cannot change over a job's lifetime", name, pinned, maxParallelism)
		}
		env.SetMaxParallelism(maxParallelism)
	}
	if err := p.CheckUnused(); err != nil {
		return nil, fmt.Errorf("job %s: %w", name, err)
	}
	return env.Graph()
}
