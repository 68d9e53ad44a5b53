package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// tmpPrefix starts the names of the temporary files Put writes before
// renaming them into place; List skips them.
const tmpPrefix = ".tmp-"

// dirStorage stores objects as files under a local directory.
type dirStorage struct {
	root string // absolute, cleaned
}

func newDir(root string) *dirStorage { return &dirStorage{root: filepath.Clean(root)} }

func (d *dirStorage) URL() string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(d.root)}).String()
}

func (d *dirStorage) String() string { return d.URL() }

func (d *dirStorage) path(name string) string {
	return filepath.Join(d.root, filepath.FromSlash(name))
}

// notExist maps the errors a missing object produces on a directory: the
// file is missing, a parent is a file (ENOTDIR), or the name is a directory,
// which is not an object (as on S3, where "a" does not exist just because
// "a/b" does).
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR)
}

func (d *dirStorage) Put(ctx context.Context, name string, data []byte) error {
	return d.putReader(ctx, name, bytes.NewReader(data), int64(len(data)))
}

// putReader is Put streaming the object's bytes from r (see PutFile).
func (d *dirStorage) putReader(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := d.path(name)
	dir := filepath.Dir(p)
	// Same directory, so the rename is atomic and never crosses filesystems.
	var f *os.File
	for try := 0; ; try++ {
		err := mkdirAll(dir)
		if err == nil {
			f, err = os.CreateTemp(dir, tmpPrefix+"*")
		}
		if err == nil {
			break
		}
		// A Delete elsewhere may have pruned the directory after
		// mkdirAll: make it again.
		if !errors.Is(err, fs.ErrNotExist) || try == maxDirRetries {
			return fmt.Errorf("put %s: %w", p, err)
		}
	}
	tmp := f.Name()
	err := writeSynced(f, r, size)
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("put %s: %w", p, err)
	}
	return nil
}

// writeSynced writes and fsyncs data before the rename: otherwise a crash
// could leave the new name pointing at an empty file, which breaks the
// "old, none or all" promise. The directory is not fsynced; losing the
// rename itself leaves the old object or none, which the promise allows.
func writeSynced(f *os.File, r io.Reader, size int64) error {
	n, err := io.Copy(f, r)
	if err == nil && n != size {
		err = fmt.Errorf("wrote %d bytes, want %d (the source changed?)", n, size)
	}
	if err == nil {
		err = f.Chmod(0o644) // CreateTemp makes 0600 files
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (d *dirStorage) Get(ctx context.Context, name string) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := d.path(name)
	data, err := os.ReadFile(p)
	if err != nil {
		if notExist(err) {
			return nil, fmt.Errorf("get %s: %w", p, ErrNotExist)
		}
		return nil, fmt.Errorf("get %s: %w", p, err)
	}
	return data, nil
}

func (d *dirStorage) GetRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := checkRange(off, n); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := d.path(name)
	f, err := os.Open(p)
	if err != nil {
		if notExist(err) {
			return nil, fmt.Errorf("get %s: %w", p, ErrNotExist)
		}
		return nil, fmt.Errorf("get %s: %w", p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", p, err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("get %s: %w", p, ErrNotExist)
	}
	if off+n > fi.Size() {
		return nil, shortRead(p, off, n, fi.Size())
	}
	buf := make([]byte, n)
	got, err := f.ReadAt(buf, off)
	if err != nil && !(errors.Is(err, io.EOF) && int64(got) == n) {
		if errors.Is(err, io.EOF) { // truncated since Stat
			return nil, shortRead(p, off, n, off+int64(got))
		}
		return nil, fmt.Errorf("get %s: %w", p, err)
	}
	return buf, nil
}

func (d *dirStorage) Size(ctx context.Context, name string) (int64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	p := d.path(name)
	fi, err := os.Stat(p)
	if err == nil && fi.IsDir() {
		err = syscall.EISDIR
	}
	if err != nil {
		if notExist(err) {
			return 0, fmt.Errorf("size %s: %w", p, ErrNotExist)
		}
		return 0, fmt.Errorf("size %s: %w", p, err)
	}
	return fi.Size(), nil
}

func (d *dirStorage) List(ctx context.Context, prefix string) ([]Object, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	// Walk only the deepest directory the prefix names completely: "a/b"
	// walks a/ (matching a/b, a/bc, a/b/c), "a/b/" walks a/b/.
	start := d.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = d.path(prefix[:i])
	}
	var objs []Object
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			// A missing start means nothing is there; files removed
			// while walking are simply not listed.
			if notExist(err) {
				return nil
			}
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), tmpPrefix) {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if !strings.HasPrefix(name, prefix) {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			if notExist(err) {
				return nil
			}
			return err
		}
		objs = append(objs, Object{Name: name, Size: fi.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", filepath.Join(d.root, filepath.FromSlash(prefix)), err)
	}
	// WalkDir orders by element ("a/b" before "a-c"); callers want plain
	// byte order of whole names, as S3 lists them.
	sort.Slice(objs, func(i, j int) bool { return objs[i].Name < objs[j].Name })
	return objs, nil
}

func (d *dirStorage) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := d.path(name)
	// A directory is not an object: leave it and its objects alone, as S3
	// does when asked to delete "a" while "a/b" exists.
	if fi, err := os.Lstat(p); err != nil || fi.IsDir() {
		if err == nil || notExist(err) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	d.prune(filepath.Dir(p))
	return nil
}

func (d *dirStorage) DeleteAll(ctx context.Context, prefix string) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix != "" {
		p := d.path(prefix)
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("delete all %s: %w", p, err)
		}
		d.prune(filepath.Dir(p))
		return nil
	}
	// The whole store: empty the root but keep it, since the caller may
	// own it (a mount point, a directory it created with other modes).
	entries, err := os.ReadDir(d.root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("delete all %s: %w", d.root, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(d.root, e.Name())); err != nil {
			return fmt.Errorf("delete all %s: %w", d.root, err)
		}
	}
	return nil
}

func (d *dirStorage) Rename(ctx context.Context, from, to string) error {
	if err := checkName(from); err != nil {
		return err
	}
	if err := checkName(to); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	src, dst := d.path(from), d.path(to)
	// Only objects move: a directory is not one (it could not be renamed
	// the same way on S3).
	if fi, err := os.Lstat(src); err != nil || fi.IsDir() {
		if err == nil || notExist(err) {
			return fmt.Errorf("rename %s to %s: %w", src, dst, ErrNotExist)
		}
		return fmt.Errorf("rename %s: %w", src, err)
	}
	for try := 0; ; try++ {
		if err := mkdirAll(filepath.Dir(dst)); err != nil {
			return fmt.Errorf("rename %s to %s: %w", src, dst, err)
		}
		err := os.Rename(src, dst)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rename %s to %s: %w", src, dst, err)
		}
		if _, serr := os.Lstat(src); serr != nil || try == maxDirRetries { // removed since Lstat
			return fmt.Errorf("rename %s to %s: %w", src, dst, ErrNotExist)
		}
		// The source is there, so a Delete elsewhere pruned the target's
		// directory after MkdirAll: make it again.
	}
	d.prune(filepath.Dir(src))
	return nil
}

// maxDirRetries bounds how often Put and Rename make a directory again
// that a concurrent prune removed.
const maxDirRetries = 10

// mkdirAll is os.MkdirAll, tried again when a concurrent prune removes a
// parent it has just made.
func mkdirAll(dir string) error {
	for try := 0; ; try++ {
		err := os.MkdirAll(dir, 0o755)
		// EEXIST: a parent was made and pruned again between MkdirAll's
		// mkdir and its check.
		raced := errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist)
		if err == nil || !raced || try == maxDirRetries {
			return err
		}
	}
}

// prune removes dir and then its parents, up to but not including the
// root, while they are empty. Deleting or moving an object thus leaves no
// empty directory behind (no empty chk-N/ of a retired checkpoint, no
// empty job directory): a directory store shows a "directory" only while
// it holds objects, as S3 shows a prefix. The root stays: its owner made
// it. A directory a concurrent Put or Rename has just made may be pruned
// before they write into it; they make it again.
func (d *dirStorage) prune(dir string) {
	for dir != d.root && strings.HasPrefix(dir, d.root+string(filepath.Separator)) {
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return // not empty (or not ours to remove)
		}
		dir = filepath.Dir(dir)
	}
}

// parseFileURL returns the absolute directory a file:// URL names.
func parseFileURL(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("storage: malformed file URL %q: %w", rawURL, err)
	}
	if u.User != nil || (u.Host != "" && u.Host != "localhost") {
		// "file://out" is most often meant as a relative directory.
		return "", fmt.Errorf("storage: file URL %q names a host (a file URL cannot be relative); "+
			"want file:///abs/dir, or a plain path", redactURL(rawURL))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("storage: file URL %q has a query or fragment; want file:///abs/dir", rawURL)
	}
	if !strings.HasPrefix(u.Path, "/") {
		return "", fmt.Errorf("storage: file URL %q is not absolute; want file:///abs/dir", rawURL)
	}
	return filepath.FromSlash(path.Clean(u.Path)), nil
}
