package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/miniotest"
	"github.com/weirstream/weir/statebackend/storage"
)

// backend gives each conformance case a fresh, empty root URL.
type backend struct {
	root func(t *testing.T) string
	opts storage.Options
}

// conformance is what every Storage must do the same way; each case runs
// against a directory and against MinIO.
var conformance = []struct {
	name string
	run  func(t *testing.T, b backend, root string)
}{
	{"PutGet", testPutGet},
	{"PutFileGetFile", testPutFileGetFile},
	{"Overwrite", testOverwrite},
	{"GetRange", testGetRange},
	{"Size", testSize},
	{"List", testList},
	{"Delete", testDelete},
	{"DeleteAll", testDeleteAll},
	{"DeleteAllRoot", testDeleteAllRoot},
	{"Rename", testRename},
	{"GetMissing", testGetMissing},
	{"ConcurrentPuts", testConcurrentPuts},
	{"InvalidNames", testInvalidNames},
	{"URL", testURL},
}

func runConformance(t *testing.T, b backend) {
	for _, c := range conformance {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, b, b.root(t))
		})
	}
}

func TestDirConformance(t *testing.T) {
	runConformance(t, backend{root: func(t *testing.T) string { return t.TempDir() }})
}

func TestS3Conformance(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.MakeBucket(t, "conformance")
	// Under a prefix, as checkpoints are stored.
	t.Run("prefix", func(t *testing.T) {
		runConformance(t, backend{
			root: func(t *testing.T) string { return storage.Join(bucket, "weir", t.Name()) },
			opts: srv.Options(),
		})
	})
	// At the root of a bucket, which has no prefix to strip.
	t.Run("bucket", func(t *testing.T) {
		n := 0
		runConformance(t, backend{
			root: func(t *testing.T) string {
				n++
				return srv.MakeBucket(t, fmt.Sprintf("root-%d", n))
			},
			opts: srv.Options(),
		})
	})
}

func open(t *testing.T, b backend, rawURL string) storage.Storage {
	t.Helper()
	s, err := storage.Open(rawURL, b.opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", rawURL, err)
	}
	return s
}

func put(t *testing.T, s storage.Storage, name string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), name, data); err != nil {
		t.Fatalf("Put(%q): %v", name, err)
	}
}

func get(t *testing.T, s storage.Storage, name string) []byte {
	t.Helper()
	data, err := s.Get(t.Context(), name)
	if err != nil {
		t.Fatalf("Get(%q): %v", name, err)
	}
	return data
}

func list(t *testing.T, s storage.Storage, prefix string) []storage.Object {
	t.Helper()
	objs, err := s.List(t.Context(), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return objs
}

func names(objs []storage.Object) []string {
	out := []string{}
	for _, o := range objs {
		out = append(out, o.Name)
	}
	return out
}

func wantNotExist(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("%s: got %v, want an error wrapping ErrNotExist", what, err)
	}
}

// pattern returns n bytes that differ at every offset mod 251, so a
// misplaced range shows.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func testPutGet(t *testing.T, b backend, root string) {
	s := open(t, b, root)
	cases := map[string][]byte{
		"a":                     []byte("hello"),
		"empty":                 {},
		"chk-1/op-2/kg-0-127":   pattern(70_000),
		"deep/er/than/that/bin": {0, 1, 2, 255, 0},
	}
	for name, data := range cases {
		put(t, s, name, data)
	}
	for name, data := range cases {
		if got := get(t, s, name); !bytes.Equal(got, data) {
			t.Errorf("Get(%q) = %d bytes, want the %d put", name, len(got), len(data))
		}
	}
}

func testOverwrite(t *testing.T, b backend, root string) {
	s := open(t, b, root)
	for _, v := range []string{"one", "a longer second value", "3"} {
		put(t, s, "x/_metadata", []byte(v))
		if got := get(t, s, "x/_metadata"); string(got) != v {
			t.Fatalf("after Put(%q), Get = %q", v, got)
		}
	}
	if objs := list(t, s, ""); len(objs) != 1 || objs[0].Size != 1 {
		t.Fatalf("List after overwrites = %+v, want one object of 1 byte", objs)
	}
}

func testGetRange(t *testing.T, b backend, root string) {
	s := open(t, b, root)
	data := pattern(1000)
	put(t, s, "state", data)
	for _, r := range []struct{ off, n int64 }{
		{0, 1}, {0, 1000}, {10, 20}, {251, 251}, {999, 1}, {500, 0}, {1000, 0},
	} {
		got, err := s.GetRange(t.Context(), "state", r.off, r.n)
		if err != nil {
			t.Fatalf("GetRange(%d, %d): %v", r.off, r.n, err)
		}
		if want := data[r.off : r.off+r.n]; !bytes.Equal(got, want) {
			t.Errorf("GetRange(%d, %d) = %v..., want %v...", r.off, r.n, head(got), head(want))
		}
	}
	for _, r := range []struct{ off, n int64 }{{990, 20}, {1000, 1}, {2000, 5}, {1001, 0}} {
		got, err := s.GetRange(t.Context(), "state", r.off, r.n)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("GetRange(%d, %d) past the end of 1000 bytes = %d bytes, %v; want an error wrapping io.ErrUnexpectedEOF",
				r.off, r.n, len(got), err)
		}
	}
	for _, r := range []struct{ off, n int64 }{{-1, 5}, {0, -1}} {
		if _, err := s.GetRange(t.Context(), "state", r.off, r.n); err == nil {
			t.Errorf("GetRange(%d, %d) succeeded, want an error", r.off, r.n)
		}
	}
	_, err := s.GetRange(t.Context(), "missing", 0, 1)
	wantNotExist(t, "GetRange(missing)", err)
}

func head(b []byte) []byte { return b[:min(len(b), 8)] }

func testSize(t *testing.T, b backend, root string) {
	s := open(t, b, root)
	for name, n := range map[string]int{"empty": 0, "one": 1, "dir/big": 300_000} {
		put(t, s, name, pattern(n))
		got, err := s.Size(t.Context(), name)
		if err != nil || got != int64(n) {
			t.Errorf("Size(%q) = %d, %v; want %d", name, got, err, n)
		}
	}
	_, err := s.Size(t.Context(), "missing")
	wantNotExist(t, "Size(missing)", err)
	// A "directory" is not an object.
	_, err = s.Size(t.Context(), "dir")
	wantNotExist(t, "Size(dir)", err)
}

func testList(t *testing.T, b backend, root string) {
	s := open(t, b, root)
	all := []string{"a-c", "a/b", "chk-1/_metadata", "chk-1/op/kg-0", "chk-10/_metadata", "chk-2/_metadata", "top"}
	for i, name := range []string{"top", "chk-2/_metadata", "chk-1/op/kg-0", "a/b", "chk-10/_metadata", "a-c", "chk-1/_metadata"} {
		put(t, s, name, pattern(i))
	}
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"", all},
		{"chk-1/", []string{"chk-1/_metadata", "chk-1/op/kg-0"}},
		{"chk-1", []string{"chk-1/_metadata", "chk-1/op/kg-0", "chk-10/_metadata"}},
		{"chk-", []string{"chk-1/_metadata", "chk-1/op/kg-0", "chk-10/_metadata", "chk-2/_metadata"}},
		{"chk-1/op/", []string{"chk-1/op/kg-0"}},
		{"a", []string{"a-c", "a/b"}}, // byte order: '-' < '/'
		{"top", []string{"top"}},
		{"nothing/", []string{}},
		{"nothing", []string{}},
		{"top/", []string{}}, // under a file
	} {
		if got := names(list(t, s, c.prefix)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("List(%q) = %q, want %q", c.prefix, got, c.want)
		}
	}
	for _, o := range list(t, s, "chk-1/op/") {
		if o.Size != 2 {
			t.Errorf("List size of %s = %d, want 2", o.Name, o.Size)
		}
	}
}

func testDelete(t *testing.T, b backend, root string) {
	s := open(t, b, root)
	for _, name := range []string{"missing", "no/such/dir/x"} {
		if err := s.Delete(t.Context(), name); err != nil {
			t.Errorf("Delete(%q) of a missing object: %v", name, err)
		}
	}
	put(t, s, "d/x", []byte("x"))
	put(t, s, "d/y", []byte("y"))
	if err := s.Delete(t.Context(), "d/x"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := s.Get(t.Context(), "d/x")
	wantNotExist(t, "Get after Delete", err)
	if got := names(list(t, s, "")); !reflect.DeepEqual(got, []string{"d/y"}) {
		t.Errorf("List after Delete = %q, want [d/y]", got)
	}
	// A "directory" is not an object: deleting its name removes nothing.
	if err := s.Delete(t.Context(), "d"); err != nil {
		t.Errorf("Delete of a directory name: %v", err)
	}
	if got := names(list(t, s, "")); !reflect.DeepEqual(got, []string{"d/y"}) {
		t.Errorf("List after Delete(d) = %q, want [d/y]", got)
	}
}

func testDeleteAll(t *testing.T, b backend, root string) {
	s := open(t, b, root)
	for _, name := range []string{"chk-1/_metadata", "chk-1/op/kg-0", "chk-1/op/kg-1", "chk-10/_metadata", "shared/x"} {
		put(t, s, name, []byte(name))
	}
	if err := s.DeleteAll(t.Context(), "chk-1"); err != nil {
		t.Fatalf("DeleteAll(chk-1): %v", err)
	}
	// chk-10 shares the string prefix but is another directory.
	if got := names(list(t, s, "")); !reflect.DeepEqual(got, []string{"chk-10/_metadata", "shared/x"}) {
		t.Fatalf("after DeleteAll(chk-1), List = %q", got)
	}
	if err := s.DeleteAll(t.Context(), "chk-10/"); err != nil {
		t.Fatalf("DeleteAll(chk-10/): %v", err)
	}
	for _, p := range []string{"chk-1", "nothing/here/", "nothing"} {
		if err := s.DeleteAll(t.Context(), p); err != nil {
			t.Errorf("DeleteAll(%q) with nothing there: %v", p, err)
		}
	}
	if got := names(list(t, s, "")); !reflect.DeepEqual(got, []string{"shared/x"}) {
		t.Fatalf("after DeleteAll(chk-10/), List = %q", got)
	}
	// A Put under a deleted directory recreates it.
	put(t, s, "chk-1/_metadata", []byte("again"))
	if got := get(t, s, "chk-1/_metadata"); string(got) != "again" {
		t.Errorf("Get after re-Put = %q", got)
	}
}

// testDeleteAllRoot checks that DeleteAll("") empties exactly its own root,
// not a sibling whose root shares the string prefix.
func testDeleteAllRoot(t *testing.T, b backend, root string) {
	s := open(t, b, storage.Join(root, "job"))
	sibling := open(t, b, storage.Join(root, "job2"))
	put(t, s, "chk-1/_metadata", []byte("m"))
	put(t, s, "x", []byte("x"))
	put(t, sibling, "keep", []byte("k"))
	if err := s.DeleteAll(t.Context(), ""); err != nil {
		t.Fatalf("DeleteAll(\"\"): %v", err)
	}
	if got := list(t, s, ""); len(got) != 0 {
		t.Errorf("after DeleteAll(\"\"), List = %q", names(got))
	}
	if got := names(list(t, sibling, "")); !reflect.DeepEqual(got, []string{"keep"}) {
		t.Errorf("sibling store after DeleteAll(\"\") = %q, want [keep]", got)
	}
	put(t, s, "y", []byte("y"))
	if got := get(t, s, "y"); string(got) != "y" {
		t.Errorf("Get after DeleteAll(\"\") and Put = %q", got)
	}
}

func testRename(t *testing.T, b backend, root string) {
	s := open(t, b, root)
	put(t, s, "staging/part-0", []byte("records"))
	if err := s.Rename(t.Context(), "staging/part-0", "out/2024/part-0"); err != nil {
		t.Fatalf("Rename: %v", err)
	}
	if got := get(t, s, "out/2024/part-0"); string(got) != "records" {
		t.Errorf("Get(renamed) = %q", got)
	}
	_, err := s.Get(t.Context(), "staging/part-0")
	wantNotExist(t, "Get(rename source)", err)

	// Onto an existing object: replaces it.
	put(t, s, "staging/part-1", []byte("new"))
	put(t, s, "out/part-1", []byte("old"))
	if err := s.Rename(t.Context(), "staging/part-1", "out/part-1"); err != nil {
		t.Fatalf("Rename onto an existing object: %v", err)
	}
	if got := get(t, s, "out/part-1"); string(got) != "new" {
		t.Errorf("Get after Rename onto an existing object = %q, want new", got)
	}

	// Onto itself: a no-op that keeps the object.
	if err := s.Rename(t.Context(), "out/part-1", "out/part-1"); err != nil {
		t.Fatalf("Rename onto itself: %v", err)
	}
	if got := get(t, s, "out/part-1"); string(got) != "new" {
		t.Errorf("Get after Rename onto itself = %q, want new", got)
	}

	err = s.Rename(t.Context(), "staging/part-0", "out/again")
	wantNotExist(t, "Rename of a missing source", err)
	err = s.Rename(t.Context(), "out", "elsewhere") // a "directory" is not an object
	wantNotExist(t, "Rename of a directory", err)
	if got := names(list(t, s, "")); !reflect.DeepEqual(got, []string{"out/2024/part-0", "out/part-1"}) {
		t.Errorf("List after renames = %q", got)
	}
}

func testGetMissing(t *testing.T, b backend, root string) {
	s := open(t, b, root)
	put(t, s, "file", []byte("f"))
	for _, name := range []string{"missing", "no/such/dir/x", "file/under-a-file"} {
		_, err := s.Get(t.Context(), name)
		wantNotExist(t, "Get("+name+")", err)
		// The error names the whole location, not just the relative name.
		if want := strings.TrimPrefix(storage.Join(s.URL(), name), "file://"); !strings.Contains(err.Error(), want) {
			t.Errorf("Get(%q) error %q does not name %s", name, err, want)
		}
	}
}

// testConcurrentPuts writes distinct and shared names from many goroutines
// while readers check that no read ever sees a partial object.
func testConcurrentPuts(t *testing.T, b backend, root string) {
	s := open(t, b, root)
	const writers, rounds = 8, 4
	values := make([][]byte, writers)
	for i := range values {
		values[i] = bytes.Repeat([]byte{byte('a' + i)}, 64<<10+i)
	}
	put(t, s, "shared", values[0])
	ctx := t.Context()
	var wg sync.WaitGroup
	errc := make(chan error, 2*writers*rounds+writers)
	done := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				if err := s.Put(ctx, fmt.Sprintf("w%d/r%d", w, r), values[w]); err != nil {
					errc <- err
				}
				if err := s.Put(ctx, "shared", values[w]); err != nil {
					errc <- err
				}
			}
		})
	}
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				got, err := s.Get(ctx, "shared")
				if err != nil {
					errc <- fmt.Errorf("Get(shared) during Puts: %w", err)
					return
				}
				if !validValue(got, values) {
					errc <- fmt.Errorf("Get(shared) during Puts saw %d bytes that no Put wrote", len(got))
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	objs := list(t, s, "")
	if len(objs) != writers*rounds+1 {
		t.Errorf("List after concurrent Puts: %d objects, want %d", len(objs), writers*rounds+1)
	}
	for _, o := range objs {
		if !validValue(get(t, s, o.Name), values) {
			t.Errorf("%s holds bytes no Put wrote", o.Name)
		}
	}
}

func validValue(got []byte, values [][]byte) bool {
	for _, v := range values {
		if bytes.Equal(got, v) {
			return true
		}
	}
	return false
}

func testInvalidNames(t *testing.T, b backend, root string) {
	s := open(t, b, root)
	for _, name := range []string{"", "/abs", "../escape", "a/../../b", "a//b", "a/./b", "dir/", ".tmp-x", "d/.tmp-y"} {
		if err := s.Put(t.Context(), name, []byte("x")); err == nil {
			t.Errorf("Put(%q) succeeded, want an error", name)
		}
		if _, err := s.Get(t.Context(), name); err == nil || errors.Is(err, storage.ErrNotExist) {
			t.Errorf("Get(%q) = %v, want an invalid-name error", name, err)
		}
	}
	for _, prefix := range []string{"/abs", "../", "a//b"} {
		if _, err := s.List(t.Context(), prefix); err == nil {
			t.Errorf("List(%q) succeeded, want an error", prefix)
		}
		if err := s.DeleteAll(t.Context(), prefix); err == nil {
			t.Errorf("DeleteAll(%q) succeeded, want an error", prefix)
		}
	}
	if got := list(t, s, ""); len(got) != 0 {
		t.Errorf("invalid names created objects: %q", names(got))
	}
}

// testURL checks that URL reopens the same store.
func testURL(t *testing.T, b backend, root string) {
	s := open(t, b, root)
	put(t, s, "x", []byte("via URL"))
	u := s.URL()
	if !strings.HasPrefix(u, "file:///") && !strings.HasPrefix(u, "s3://") {
		t.Fatalf("URL() = %q, want file:/// or s3://", u)
	}
	if got := get(t, open(t, b, u), "x"); string(got) != "via URL" {
		t.Errorf("Open(URL()).Get = %q", got)
	}
	if got := get(t, open(t, b, storage.Join(u, "")), "x"); string(got) != "via URL" {
		t.Errorf("Open(Join(URL())).Get = %q", got)
	}
}

func TestDirPutLeavesNoTempFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		put(t, s, fmt.Sprintf("d/f%d", i%3), pattern(i*100))
	}
	err = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temp file left behind: %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "d", "f0"))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("object file mode = %v, %v; want 0644", fi.Mode(), err)
	}
}

// dirsUnder lists the directories below root, relative to it.
func dirsUnder(t *testing.T, root string) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() && p != root {
			rel, _ := filepath.Rel(root, p)
			dirs = append(dirs, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// TestDirRemovesEmptiedDirectories: deleting or moving objects leaves no
// empty directory between them and the root, as S3 leaves no prefix; the
// root stays.
func TestDirRemovesEmptiedDirectories(t *testing.T) {
	root := filepath.Join(t.TempDir(), "checkpoints")
	s, err := storage.Open(root, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"job/chk-1/_metadata", "job/chk-1/op/0.state", "job/chk-1/op/1.state",
		"job/chk-2/_metadata", "staging/a/part-0", "other/x"} {
		put(t, s, n, []byte(n))
	}
	if err := s.DeleteAll(t.Context(), "job/chk-1/"); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename(t.Context(), "staging/a/part-0", "out/part-0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(t.Context(), "other/x"); err != nil {
		t.Fatal(err)
	}
	if got, want := dirsUnder(t, root), []string{"job", "job/chk-2", "out"}; !reflect.DeepEqual(got, want) {
		t.Errorf("directories %q, want %q", got, want)
	}
	// The last checkpoint goes, and with it the job's directory.
	if err := s.Delete(t.Context(), "job/chk-2/_metadata"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAll(t.Context(), "out/"); err != nil {
		t.Fatal(err)
	}
	if got := dirsUnder(t, root); len(got) != 0 {
		t.Errorf("directories %q left, want none", got)
	}
	if _, err := os.Stat(root); err != nil {
		t.Errorf("the root is gone: %v", err)
	}
}

// TestDirPutRacesPrune: Puts into a directory that Deletes keep emptying
// (and so removing) all succeed.
func TestDirPutRacesPrune(t *testing.T) {
	s, err := storage.Open(t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				name := fmt.Sprintf("d/e/w%d-%d", w, i)
				if err := s.Put(context.Background(), name, []byte("x")); err != nil {
					t.Errorf("Put: %v", err)
					return
				}
				if err := s.Rename(context.Background(), name, name+"-moved"); err != nil {
					t.Errorf("Rename: %v", err)
					return
				}
				if err := s.Delete(context.Background(), name+"-moved"); err != nil {
					t.Errorf("Delete: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestDirGetMissingNamesPath(t *testing.T) {
	dir := t.TempDir()
	s, err := storage.Open("file://"+dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(t.Context(), "chk-3/_metadata")
	wantNotExist(t, "Get", err)
	if want := filepath.Join(dir, "chk-3", "_metadata"); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %s", err, want)
	}
}

func TestDirListSkipsTempFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "a/x", []byte("x"))
	// What a Put interrupted by a crash leaves behind.
	if err := os.WriteFile(filepath.Join(dir, "a", ".tmp-123"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := names(list(t, s, "")); !reflect.DeepEqual(got, []string{"a/x"}) {
		t.Errorf("List = %q, want [a/x]", got)
	}
}

func TestS3WrongCredentials(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.MakeBucket(t, "creds")
	const badSecret = "not-the-secret-0123456789"
	for _, c := range []struct {
		name string
		opts storage.Options
	}{
		{"wrong secret", storage.Options{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: badSecret}},
		{"unknown key", storage.Options{Endpoint: srv.Endpoint, AccessKey: "nobody", SecretKey: badSecret}},
		{"wrong secret with region", storage.Options{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: badSecret, Region: "us-east-1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := storage.Open(storage.Join(bucket, "job"), c.opts)
			if err != nil {
				t.Fatal(err)
			}
			errs := map[string]error{}
			errs["Put"] = s.Put(t.Context(), "x", []byte("x"))
			_, errs["Get"] = s.Get(t.Context(), "x")
			_, errs["GetRange"] = s.GetRange(t.Context(), "x", 0, 1)
			_, errs["Size"] = s.Size(t.Context(), "x")
			_, errs["List"] = s.List(t.Context(), "")
			errs["Delete"] = s.Delete(t.Context(), "x")
			errs["DeleteAll"] = s.DeleteAll(t.Context(), "")
			errs["Rename"] = s.Rename(t.Context(), "x", "y")
			for op, err := range errs {
				if err == nil {
					t.Errorf("%s with %s succeeded", op, c.name)
					continue
				}
				msg := err.Error()
				for _, want := range []string{"credentials were refused", bucket + "/job", "--s3-access-key/--s3-secret-key", "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s error %q does not contain %q", op, msg, want)
					}
				}
				if strings.Contains(msg, badSecret) || strings.Contains(msg, srv.SecretKey) {
					t.Errorf("%s error %q contains the secret key", op, msg)
				}
			}
		})
	}
}

func TestS3MissingBucket(t *testing.T) {
	srv := miniotest.Start(t)
	s, err := storage.Open("s3://no-such-bucket/job", srv.Options())
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(t.Context(), "x")
	wantNotExist(t, "Get in a missing bucket", err)
	if !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist (create it, or for a development store run with --s3-create-bucket)`) {
		t.Errorf("error %q does not name the missing bucket", err)
	}
	if err := s.Put(t.Context(), "x", []byte("x")); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Put in a missing bucket = %v, want ErrNotExist", err)
	}
	if _, err := s.List(t.Context(), ""); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("List in a missing bucket = %v, want ErrNotExist", err)
	}
}

// TestS3CreateBucket: with Options.CreateBucket a storage in a missing
// bucket creates it before its first request, so a fresh store reads as
// empty and takes writes; goroutines racing to create it all succeed; and
// refused credentials still fail with the usual sentence.
func TestS3CreateBucket(t *testing.T) {
	srv := miniotest.Start(t)
	opts := srv.Options()
	opts.CreateBucket = true

	s, err := storage.Open("s3://made-on-demand/checkpoints", opts)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := s.List(t.Context(), "")
	if err != nil || len(objs) != 0 {
		t.Fatalf("List of a created bucket = %v, %v; want no objects and no error", objs, err)
	}
	if err := s.Put(t.Context(), "job/chk-1/_metadata", []byte("meta")); err != nil {
		t.Fatal(err)
	}
	// The bucket is real: a storage without the option sees the object.
	plain, err := storage.Open("s3://made-on-demand/checkpoints", srv.Options())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := plain.Get(t.Context(), "job/chk-1/_metadata"); err != nil || string(got) != "meta" {
		t.Errorf("Get through a storage without CreateBucket = %q, %v; want meta", got, err)
	}

	// Many first requests at once, each from its own Open: every one
	// either creates the bucket or finds it made by another.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := storage.Open("s3://raced-bucket", opts)
			if err == nil {
				err = st.Put(t.Context(), fmt.Sprintf("o%d", i), []byte{byte(i)})
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("racing Put %d: %v", i, err)
		}
	}
	raced, _ := storage.Open("s3://raced-bucket", srv.Options())
	if objs, err := raced.List(t.Context(), ""); err != nil || len(objs) != len(errs) {
		t.Errorf("raced bucket holds %v (%v), want %d objects", objs, err, len(errs))
	}

	bad := opts
	bad.SecretKey = "not-the-secret-0123456789"
	s, err = storage.Open("s3://never-made", bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "x", []byte("x")); err == nil || !strings.Contains(err.Error(), "credentials were refused") {
		t.Errorf("Put with a wrong secret and CreateBucket = %v, want the credentials refused", err)
	}
	missing, _ := storage.Open("s3://never-made", srv.Options())
	if _, err := missing.List(t.Context(), ""); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("the refused Put made the bucket never-made: List = %v, want ErrNotExist", err)
	}
}

// closedPort returns a 127.0.0.1 port nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestS3Unreachable(t *testing.T) {
	endpoint := "http://" + closedPort(t)
	for _, region := range []string{"", "us-east-1"} {
		t.Run("region="+region, func(t *testing.T) {
			opts := storage.Options{Endpoint: endpoint, AccessKey: "k", SecretKey: "unreachable-secret", Region: region}
			// Open does no I/O, so it succeeds even though nothing listens.
			s, err := storage.Open("s3://bucket/job", opts)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			ops := map[string]func(ctx context.Context) error{
				"Put":  func(ctx context.Context) error { return s.Put(ctx, "x", []byte("x")) },
				"Get":  func(ctx context.Context) error { _, err := s.Get(ctx, "x"); return err },
				"List": func(ctx context.Context) error { _, err := s.List(ctx, ""); return err },
			}
			for op, f := range ops {
				start := time.Now()
				err := f(t.Context())
				took := time.Since(start)
				if err == nil {
					t.Fatalf("%s against a closed port succeeded", op)
				}
				if took > 5*time.Second {
					t.Errorf("%s took %v to fail, want a few seconds at most", op, took)
				}
				msg := err.Error()
				if want := "S3 endpoint " + endpoint + " unreachable"; !strings.Contains(msg, want) {
					t.Errorf("%s error %q does not contain %q", op, msg, want)
				}
				if strings.Contains(msg, opts.SecretKey) {
					t.Errorf("%s error %q contains the secret key", op, msg)
				}
				t.Logf("%s failed in %v: %v", op, took.Round(time.Millisecond), err)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in, url string
	}{
		{"file:///tmp/weir", "file:///tmp/weir"},
		{"file:///tmp/weir/", "file:///tmp/weir"},
		{"file://localhost/tmp/weir", "file:///tmp/weir"},
		{"file:///tmp/a%20b", "file:///tmp/a%20b"},
		{"/tmp/weir/../weir2", "file:///tmp/weir2"},
		{"/tmp/100%", "file:///tmp/100%25"},
		{"rel/dir", "file://" + filepath.ToSlash(filepath.Join(cwd, "rel/dir"))},
		{"s3://bucket", "s3://bucket"},
		{"s3://bucket/", "s3://bucket"},
		{"s3://bucket/job/", "s3://bucket/job"},
		{"s3://bucket/a/b/c", "s3://bucket/a/b/c"},
		{"S3://bucket/a", "s3://bucket/a"},
	} {
		s, err := storage.Open(c.in, storage.Options{})
		if err != nil {
			t.Errorf("Open(%q): %v", c.in, err)
			continue
		}
		if got := s.URL(); got != c.url {
			t.Errorf("Open(%q).URL() = %q, want %q", c.in, got, c.url)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	for _, c := range []struct {
		in   string
		opts storage.Options
		want string // in the error
	}{
		{"", storage.Options{}, "empty storage URL"},
		{"gs://bucket/x", storage.Options{}, `unsupported scheme "gs"`},
		{"hdfs:///x", storage.Options{}, `unsupported scheme "hdfs"`},
		{"s3://", storage.Options{}, "no bucket"},
		{"s3:///prefix", storage.Options{}, "no bucket"},
		{"s3://Bad_Bucket!", storage.Options{}, "s3://Bad_Bucket!"},
		{"s3://b", storage.Options{}, "s3://b"}, // too short for a bucket name
		{"s3://bucket?region=x", storage.Options{}, "query"},
		{"s3://bucket/a/../b", storage.Options{}, `".." path element`},
		{"s3://bucket/a//b", storage.Options{}, "empty path element"},
		{"s3://key:topsecret@bucket/x", storage.Options{}, "must not contain credentials"},
		{"file://host/x", storage.Options{}, "names a host"},
		{"file://relative", storage.Options{}, "names a host"},
		{"file:///x?y", storage.Options{}, "query"},
		{"file://%zz/x", storage.Options{}, "malformed file URL"},
		{"s3://bucket", storage.Options{Endpoint: "127.0.0.1:9000"}, "must start with http:// or https://"},
		{"s3://bucket", storage.Options{Endpoint: "ftp://host"}, "must start with http:// or https://"},
		{"s3://bucket", storage.Options{Endpoint: "http://"}, "has no host"},
		{"s3://bucket", storage.Options{Endpoint: "http://host:9000/minio"}, "without a path"},
		{"s3://bucket", storage.Options{Endpoint: "http://user:topsecret@host:9000"}, "must not contain credentials"},
		{"s3://bucket", storage.Options{Endpoint: "http://ho st:9000"}, "malformed S3 endpoint"},
	} {
		_, err := storage.Open(c.in, c.opts)
		if err == nil {
			t.Errorf("Open(%q, endpoint %q) succeeded, want an error containing %q", c.in, c.opts.Endpoint, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q, endpoint %q) = %q, want it to contain %q", c.in, c.opts.Endpoint, err, c.want)
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("Open(%q) error %q shows a secret", c.in, err)
		}
	}
}

func TestOpenEndpoints(t *testing.T) {
	for _, ep := range []string{"", "http://127.0.0.1:9000", "http://127.0.0.1:9000/", "https://minio.example.com", "https://[::1]:9000"} {
		if _, err := storage.Open("s3://bucket/p", storage.Options{Endpoint: ep, AccessKey: "a", SecretKey: "b"}); err != nil {
			t.Errorf("Open with endpoint %q: %v", ep, err)
		}
	}
}

func TestJoin(t *testing.T) {
	for _, c := range []struct {
		base string
		elem []string
		want string
	}{
		{"s3://b/p", []string{"job", "chk-3"}, "s3://b/p/job/chk-3"},
		{"s3://b", []string{"job"}, "s3://b/job"},
		{"s3://b/", []string{"job/", "/chk-3"}, "s3://b/job/chk-3"},
		{"s3://b/p", []string{"a/b", "", "c"}, "s3://b/p/a/b/c"},
		{"s3://b/p", nil, "s3://b/p"},
		{"file:///tmp/w", []string{"job", "chk-1"}, "file:///tmp/w/job/chk-1"},
		{"file:///", []string{"x"}, "file:///x"},
		{"/tmp/w", []string{"job"}, "/tmp/w/job"},
		{"/", []string{"x"}, "/x"},
		{"rel/dir", []string{"x", "y"}, "rel/dir/x/y"},
		{"", []string{"x", "y"}, "x/y"},
	} {
		if got := storage.Join(c.base, c.elem...); got != c.want {
			t.Errorf("Join(%q, %q) = %q, want %q", c.base, c.elem, got, c.want)
		}
	}
}

func TestOptionsFromEnvAndMerge(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL", "http://env:9000")
	t.Setenv("AWS_ACCESS_KEY_ID", "env-key")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
	t.Setenv("AWS_REGION", "eu-west-1")
	env := storage.OptionsFromEnv()
	if want := (storage.Options{Endpoint: "http://env:9000", AccessKey: "env-key", SecretKey: "env-secret", Region: "eu-west-1"}); env != want {
		t.Fatalf("OptionsFromEnv = %v, want %v", env, want)
	}
	flags := storage.Options{AccessKey: "flag-key", SecretKey: "flag-secret"}
	want := storage.Options{Endpoint: "http://env:9000", AccessKey: "flag-key", SecretKey: "flag-secret", Region: "eu-west-1"}
	if got := flags.Merge(env); got != want {
		t.Errorf("flags.Merge(env) = %v, want %v", got, want)
	}
	if got := (storage.Options{}).Merge(env); got != env {
		t.Errorf("empty.Merge(env) = %v, want %v", got, env)
	}
	// CreateBucket has no variable of its own: either side turns it on.
	if got := (storage.Options{CreateBucket: true}).Merge(env); !got.CreateBucket {
		t.Error("Merge dropped the flags' CreateBucket")
	}
	if got := flags.Merge(storage.Options{CreateBucket: true}); !got.CreateBucket {
		t.Error("Merge dropped the defaults' CreateBucket")
	}
}

func TestOptionsHideSecret(t *testing.T) {
	const secret = "super-secret-value"
	o := storage.Options{Endpoint: "http://h:9000", AccessKey: "key", SecretKey: secret}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("open", "opts", o)
	for _, out := range []string{
		o.String(),
		fmt.Sprint(o), fmt.Sprintf("%v", o), fmt.Sprintf("%+v", o), fmt.Sprintf("%#v", o), fmt.Sprintf("%s", o),
		fmt.Sprintf("%v", &o),
		logged.String(),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("output shows the secret: %s", out)
		}
		if !strings.Contains(out, "key") || !strings.Contains(out, "h:9000") {
			t.Errorf("output lost the non-secret fields: %s", out)
		}
	}
}

// testPutFileGetFile streams a local file of more than one GetFile chunk
// up and down again; a missing object is an error wrapping ErrNotExist
// that leaves no local file behind.
func testPutFileGetFile(t *testing.T, b backend, root string) {
	s := open(t, b, root)
	dir := t.TempDir()
	data := make([]byte, 9<<20+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := storage.PutFile(t.Context(), s, "a/big", src)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("PutFile: %d bytes, %v", n, err)
	}
	dst := filepath.Join(dir, "dst")
	if err := storage.GetFile(t.Context(), s, "a/big", n, dst); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetFile: %d bytes (%v), want the %d put", len(got), err, len(data))
	}
	missing := filepath.Join(dir, "missing")
	if err := storage.GetFile(t.Context(), s, "a/none", 10, missing); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("GetFile of a missing object: %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a failed GetFile left %s", missing)
	}
}
