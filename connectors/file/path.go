package file

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/weirstream/weir/statebackend/storage"
)

// LocalPath turns a job's input parameter into the path Source reads: a
// path as it is, or a file:// URL's path. The source reads the
// TaskManagers' local file system, so any other URL is refused.
func LocalPath(in string) (string, error) {
	if in == "" {
		return "", errors.New("must not be empty: the file or directory to read")
	}
	if !storage.IsURL(in) {
		return in, nil
	}
	u, err := url.Parse(in)
	if err != nil || u.Scheme != "file" || u.Path == "" {
		return "", fmt.Errorf("%q: the input must be a local file or directory (or a file:// URL)", in)
	}
	return u.Path, nil
}
