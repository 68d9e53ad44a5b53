package pebblestate

import (
	"fmt"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// NewLimitedFS wraps fs so that writes fail with ENOSPC once limit bytes
// have been written through it: a full disk, for tests of what a job does
// when its state no longer fits.
func NewLimitedFS(fs vfs.FS, limit int64) FS {
	return &limitedFS{FS: fs, left: func() *atomic.Int64 { var a atomic.Int64; a.Store(limit); return &a }()}
}

type limitedFS struct {
	vfs.FS
	left *atomic.Int64
}

func (fs *limitedFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if fs.left.Load() <= 0 {
		return nil, fmt.Errorf("create %s: %w", name, syscall.ENOSPC)
	}
	f, err := fs.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	return &limitedFile{File: f, left: fs.left}, nil
}

// Remove gives the file's bytes back.
func (fs *limitedFS) Remove(name string) error {
	fi, err := fs.FS.Stat(name)
	if err == nil {
		err = fs.FS.Remove(name)
	}
	if err == nil {
		fs.left.Add(fi.Size())
	}
	return err
}

func (fs *limitedFS) Unwrap() vfs.FS { return fs.FS }

type limitedFile struct {
	vfs.File
	left *atomic.Int64
}

func (f *limitedFile) Write(p []byte) (int, error) {
	if f.left.Add(-int64(len(p))) < 0 {
		return 0, fmt.Errorf("write: %w", syscall.ENOSPC)
	}
	return f.File.Write(p)
}
