// Command weir is Weir's one binary with the jobs Weir ships: the
// JobManager, the TaskManager, an embedded local cluster, and the client
// that submits and manages jobs. A program of your own that registers its
// jobs with package weir and calls weir.Main is the same binary with your
// jobs in it.
package main

import (
	"github.com/weirstream/weir"
	_ "github.com/weirstream/weir/jobs/anomaly" // the shipped jobs
	_ "github.com/weirstream/weir/jobs/fraud"
	_ "github.com/weirstream/weir/jobs/nexmark"
	_ "github.com/weirstream/weir/jobs/rulesjob"
	_ "github.com/weirstream/weir/jobs/seqcheck"
	_ "github.com/weirstream/weir/jobs/sequence"
	_ "github.com/weirstream/weir/jobs/statefill"
	_ "github.com/weirstream/weir/jobs/threshold"
)

func main() { weir.Main() }
