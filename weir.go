// Package weir turns a Go program into a weir binary with jobs of its own.
//
// A job is a function that builds a dataflow with package runtime (sources,
// keyed process functions with state and timers, sinks from package
// connectors). Register it with a name, a one-line description and its
// parameters, then call Main: the program is the whole weir command line
// (jobmanager, taskmanager, local, job ..., jobs) with your jobs in it.
//
//	func main() {
//		weir.Register(weir.Job{
//			Name:        "big-spenders",
//			Description: "alerts when an account spends more than `limit` in a day",
//			Params:      []weir.Param{{Name: "limit", Type: weir.Float, Default: "1000", Description: "daily limit"}},
//			Build:       build,
//		})
//		weir.Main()
//	}
//
// Every process of a cluster (JobManagers and TaskManagers) runs the same
// binary, because each of them calls a job's Build: the JobManager to learn
// its graph, each TaskManager to create the subtasks it runs. A TaskManager
// whose binary lacks a job, or builds it differently, refuses to deploy its
// tasks and the job fails with a message saying so.
package weir

import (
	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/jobs"
)

// Job describes a job: its name, a one-line description, its parameters and
// the function that builds its dataflow.
type Job = jobs.Job

// Param documents one parameter of a job. A job's Build may read only the
// parameters it declares.
type Param = jobs.Param

// BuildFunc builds a job's dataflow from its parameters. It MUST be
// deterministic: the same parameters give the same graph on every process.
type BuildFunc = jobs.BuildFunc

// The parameter types `weir job describe` shows.
const (
	String   = jobs.String
	Int      = jobs.Int
	Float    = jobs.Float
	Duration = jobs.Duration
	Bool     = jobs.Bool
	Path     = jobs.Path
)

// Register adds a job to this binary. Call it before Main, typically from
// main or an init function. It panics on a duplicate name or a malformed
// registration.
func Register(j Job) { jobs.Register(j) }

// Main runs the weir command line with the process's arguments and exits
// with its status.
func Main() { cli.Main() }
