// Package testenv is what the helpers that start real servers for tests
// (MinIO, etcd) share: free ports on 127.0.0.1, and the tools `make`
// installs into the repository's .tools/ directory.
package testenv

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// FreePorts returns n distinct ports of 127.0.0.1 that were free a moment
// ago. All listeners stay open until every port is chosen, so they differ.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Tool returns the path of a tool `make` installs into <repo>/.tools/file,
// or the path in the environment variable env when it is set; what names
// it in errors ("MinIO server"). A missing tool is an error saying how to
// install it: tests fail rather than skip.
func Tool(file, what, env string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s not found at %s (from $%s): %w", what, p, env, err)
		}
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".tools", file)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s not found at %s: run `make tools`", what, p)
		}
		return "", fmt.Errorf("%s at %s: %w", what, p, err)
	}
	return p, nil
}

// RepoRoot walks up from the working directory (a package directory under
// go test) to the directory holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repo root: %w", err)
	}
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("find repo root: no go.mod above %s", dir)
		}
		d = parent
	}
}
