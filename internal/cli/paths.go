package cli

import (
	"fmt"
	"path/filepath"

	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/statebackend/storage"
)

// absURL makes a plain relative directory absolute against this process's
// working directory. The paths a command sends travel to the JobManager
// and on to TaskManagers, processes with working directories of their own,
// so a relative path would name a different place in each. URLs
// (s3://bucket/prefix, file:///abs/dir) pass unchanged once they parse; a
// relative file:// URL is malformed and an error. what names the flag or
// parameter for the error.
func absURL(what, raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	if _, err := storage.Open(raw, storage.Options{}); err != nil { // no I/O
		return "", fmt.Errorf("%s %q: %w", what, raw, err)
	}
	if storage.IsURL(raw) {
		return raw, nil
	}
	abs, err := filepath.Abs(raw)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", what, raw, err)
	}
	return abs, nil
}

// absPathParams makes the job's path-typed parameters absolute (see
// absURL). Unknown jobs and parameters are left to the JobManager to
// report.
func absPathParams(job string, params map[string]string) error {
	j, err := jobs.Lookup(job)
	if err != nil {
		return nil
	}
	for _, p := range j.Params {
		v, ok := params[p.Name]
		if !ok || p.Type != jobs.Path {
			continue
		}
		if params[p.Name], err = absURL("--param "+p.Name, v); err != nil {
			return err
		}
	}
	return nil
}
