package jobmanager

import (
	"fmt"
	"strings"
	"unicode"
)

// Resource limits of the client API, so one caller cannot exhaust the
// JobManager: how many jobs may be live, how many subtasks a job may
// deploy, how large its parameters may be. Each has a JobManager flag;
// the defaults are far above what a cluster of today runs.
const (
	// DefaultMaxJobs bounds the jobs not yet FINISHED, CANCELED or FAILED
	// (--max-jobs).
	DefaultMaxJobs = 1000
	// DefaultMaxParallelismPerJob bounds a job's total parallelism: the
	// subtasks of all its vertices together (--max-parallelism-per-job).
	DefaultMaxParallelismPerJob = 4096
	// DefaultMaxParamBytes bounds the bytes of a job's parameter names and
	// values together (--max-param-bytes).
	DefaultMaxParamBytes = 64 << 10
)

// Limits are the client API's resource limits; zero fields take the
// defaults.
type Limits struct {
	MaxJobs              int
	MaxParallelismPerJob int
	MaxParamBytes        int
}

func (l Limits) withDefaults() Limits {
	if l.MaxJobs <= 0 {
		l.MaxJobs = DefaultMaxJobs
	}
	if l.MaxParallelismPerJob <= 0 {
		l.MaxParallelismPerJob = DefaultMaxParallelismPerJob
	}
	if l.MaxParamBytes <= 0 {
		l.MaxParamBytes = DefaultMaxParamBytes
	}
	return l
}

// checkParams refuses parameters larger than MaxParamBytes.
func (l Limits) checkParams(params map[string]string) error {
	n := 0
	for k, v := range params {
		n += len(k) + len(v)
	}
	if n > l.MaxParamBytes {
		return errorf(ErrInvalidRequest, "the job's parameters are %d bytes, above the JobManager's --max-param-bytes %d", n, l.MaxParamBytes)
	}
	return nil
}

// Label limits: labels name things (`weir apply` stores a job's declared
// name and spec hash in them), so they are short and printable.
const (
	maxLabels        = 16
	maxLabelKeyBytes = 63
	maxLabelBytes    = 253
)

// checkLabels refuses more than maxLabels labels, empty or long keys,
// long values and control characters.
func (l Limits) checkLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return errorf(ErrInvalidRequest, "the job has %d labels, at most %d are allowed", len(labels), maxLabels)
	}
	for k, v := range labels {
		if k == "" || len(k) > maxLabelKeyBytes {
			return errorf(ErrInvalidRequest, "label key %q must be 1 to %d bytes", k, maxLabelKeyBytes)
		}
		if len(v) > maxLabelBytes {
			return errorf(ErrInvalidRequest, "label %s is %d bytes, at most %d are allowed", k, len(v), maxLabelBytes)
		}
		if strings.ContainsFunc(k+v, unicode.IsControl) {
			return errorf(ErrInvalidRequest, "label %q=%q holds a control character", k, v)
		}
	}
	return nil
}

// checkParallelism refuses a job whose vertices together run more
// subtasks than MaxParallelismPerJob; parallelism is the job's default
// parallelism, checked before the graph is built.
func (l Limits) checkParallelism(parallelism int, vertices []VertexSpec) error {
	total := 0
	for _, v := range vertices {
		total += v.Parallelism
	}
	if parallelism > l.MaxParallelismPerJob || total > l.MaxParallelismPerJob {
		return errorf(ErrInvalidRequest, "the job would run %s subtasks, above the JobManager's --max-parallelism-per-job %d",
			subtaskCount(parallelism, total), l.MaxParallelismPerJob)
	}
	return nil
}

func subtaskCount(parallelism, total int) string {
	if total == 0 {
		return fmt.Sprintf("at least %d", parallelism)
	}
	return fmt.Sprint(total)
}

// checkJobs refuses a new job when MaxJobs jobs are live.
func (l Limits) checkJobs(all []Job) error {
	live := 0
	for _, j := range all {
		if !TerminalJob(j.State) {
			live++
		}
	}
	if live >= l.MaxJobs {
		return errorf(ErrLimit, "%d jobs are running or waiting, the JobManager's --max-jobs %d: cancel one or raise the limit", live, l.MaxJobs)
	}
	return nil
}
