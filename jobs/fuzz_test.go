package jobs_test

import (
	"strings"
	"testing"

	"github.com/weirstream/weir/jobs"
	_ "github.com/weirstream/weir/jobs/fraud"
	_ "github.com/weirstream/weir/jobs/seqcheck"
	_ "github.com/weirstream/weir/jobs/sequence"
	_ "github.com/weirstream/weir/jobs/threshold"
	"github.com/weirstream/weir/runtime"
)

// FuzzBuild builds the shipped jobs from arbitrary parameters (lines of
// key=value) and parallelism, as a SubmitJob request carries them: a bad
// request must be an error, never a panic.
func FuzzBuild(f *testing.F) {
	f.Add("fraud-detection", "source=random\naccounts=10\nrate=0", 2)
	f.Add("fraud-detection", "timeout=-1s\nsmall=NaN\nlarge=1e400", 1)
	f.Add("sequence-check", "output=/tmp/x\nkeys=4194305\ncount=-3", 4)
	f.Add("sequence-check", "output=s3://b/p\nappend=maybe\nrate=-1", 0)
	f.Add("sequence", "users=0\nspacing=0s\nwindow=-1s", 2)
	f.Add("threshold-alerts", "input=/nonexistent\noutput=/tmp/x\nthreshold=NaN\nmonitor=-1s", 2)
	f.Add("threshold-alerts", "input=s3://b/in\noutput=s3://b/out", 1)
	f.Add("no-such-job", "", 1)
	f.Fuzz(func(t *testing.T, name, text string, parallelism int) {
		params := map[string]string{}
		for _, line := range strings.Split(text, "\n") {
			if k, v, err := runtime.ParseParam(line); err == nil {
				params[k] = v
			}
		}
		// The JobManager bounds parallelism before it builds.
		parallelism = max(-1, min(parallelism, 64))
		_, _ = jobs.Build(name, parallelism, params)
	})
}
