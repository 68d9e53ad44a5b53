package file

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
)

type lines []Line

func (l *lines) Collect(v Line) { *l = append(*l, v) }

func write(t *testing.T, path, content string) { writeFile(t, path, content) }

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// open makes subtask i of p of a source over path, restored from entries
// when they are not nil.
func open(t *testing.T, src *Source, i, p int, entries [][]byte) {
	t.Helper()
	ctx := runtime.NewRuntimeContext(runtime.ContextConfig{Subtask: i, Parallelism: p, Restored: entries != nil})
	if err := src.InitializeState(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if err := src.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
}

// drain polls a bounded source to its end.
func drain(t *testing.T, src *Source) []Line {
	t.Helper()
	var out lines
	for i := 0; ; i++ {
		if i > 1e6 {
			t.Fatal("the source never ends")
		}
		_, err := src.Poll(&out)
		if errors.Is(err, runtime.ErrEndOfInput) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// texts renders lines as "name:number:text".
func texts(ls []Line) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = fmt.Sprintf("%s:%d:%s", filepath.Base(l.Path), l.Number, l.Text)
	}
	return out
}

func TestSourceReadsADirectoryInNameOrder(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "b.csv"), "b1\nb2\n")
	write(t, filepath.Join(dir, "a.csv"), "a1\n")
	write(t, filepath.Join(dir, ".hidden"), "no\n")
	write(t, filepath.Join(dir, "_in-progress"), "no\n")
	write(t, filepath.Join(dir, "sub", "c.csv"), "no\n")
	if err := os.Symlink(filepath.Join(dir, "a.csv"), filepath.Join(dir, "link.csv")); err != nil {
		t.Fatal(err)
	}
	src := &Source{Path: dir}
	open(t, src, 0, 1, nil)
	got := texts(drain(t, src))
	want := []string{"a.csv:1:a1", "b.csv:1:b1", "b.csv:2:b2", "link.csv:1:a1"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestSourceOddInputs(t *testing.T) {
	long := strings.Repeat("x", 3*readBufferSize+17)
	for _, tc := range []struct {
		name, content string
		header        bool
		want          []string
		wantHeader    string
	}{
		{"empty", "", false, nil, ""},
		{"crlf", "a\r\nb\r\n", false, []string{"1:a", "2:b"}, ""},
		{"no trailing newline", "a\nb", false, []string{"1:a", "2:b"}, ""},
		{"blank lines skipped, still counted", "a\n\n\r\nb\n", false, []string{"1:a", "4:b"}, ""},
		{"byte order mark", "\xEF\xBB\xBFid,amount\n1,2\n", true, []string{"2:1,2"}, "id,amount"},
		{"header only", "id,amount\r\n", true, nil, ""},
		{"long line", "a\n" + long + "\nb\n", false, []string{"1:a", "2:" + long, "3:b"}, ""},
		{"long last line", long, false, []string{"1:" + long}, ""},
		{"lone carriage return kept inside", "a\rb\n", false, []string{"1:a\rb"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f.txt")
			write(t, path, tc.content)
			src := &Source{Path: path, Header: tc.header, BatchLines: 2}
			open(t, src, 0, 1, nil)
			out := drain(t, src)
			var got []string
			for _, l := range out {
				if l.Path != path {
					t.Errorf("line %d has path %q, want %q", l.Number, l.Path, path)
				}
				if l.Header != tc.wantHeader {
					t.Errorf("line %d has header %q, want %q", l.Number, l.Header, tc.wantHeader)
				}
				got = append(got, fmt.Sprintf("%d:%s", l.Number, l.Text))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %.80q, want %.80q", got, tc.want)
			}
		})
	}
}

// corpus writes files f00..f(n-1), file k holding k+1 lines.
func corpus(t *testing.T, n int) (string, []string) {
	dir := t.TempDir()
	var all []string
	for k := range n {
		name := fmt.Sprintf("f%02d.csv", k)
		var b strings.Builder
		b.WriteString("id,v\n")
		for j := range k + 1 {
			fmt.Fprintf(&b, "%d,%d\n", k, j)
			all = append(all, fmt.Sprintf("%s:%d:%d,%d", name, j+2, k, j))
		}
		write(t, filepath.Join(dir, name), b.String())
	}
	slices.Sort(all)
	return dir, all
}

func TestSourceSplitsFilesAcrossSubtasks(t *testing.T) {
	dir, want := corpus(t, 12)
	const p = 3
	var got []string
	for i := range p {
		src := &Source{Path: dir, Header: true}
		open(t, src, i, p, nil)
		out := drain(t, src)
		files := map[string]bool{}
		for _, l := range out {
			files[filepath.Base(l.Path)] = true
			if l.Header != "id,v" {
				t.Fatalf("line %v lacks the header", l)
			}
		}
		for f := range files {
			if owner(f, p) != i {
				t.Errorf("subtask %d read %s, owned by %d", i, f, owner(f, p))
			}
		}
		if len(files) == 0 {
			t.Errorf("subtask %d read no file of 12", i)
		}
		got = append(got, texts(out)...)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("the subtasks read %d lines, want each of %d once:\n%q", len(got), len(want), got)
	}
}

// TestSourceRestoreAtOtherParallelism reads part of the input at
// parallelism 2, snapshots, and restores the union of the entries at 3 and
// at 1: every line is emitted exactly once overall.
func TestSourceRestoreAtOtherParallelism(t *testing.T) {
	dir, want := corpus(t, 9)
	for _, newP := range []int{3, 1} {
		t.Run(fmt.Sprint(newP), func(t *testing.T) {
			var got []string
			var entries [][]byte
			for i := range 2 {
				src := &Source{Path: dir, Header: true, BatchLines: 2}
				open(t, src, i, 2, nil)
				var out lines
				for range 4 + 3*i { // stop mid-file, at different places
					if _, err := src.Poll(&out); err != nil {
						t.Fatal(err)
					}
				}
				got = append(got, texts(out)...)
				e, err := src.SnapshotState(1)
				if err != nil {
					t.Fatal(err)
				}
				entries = append(entries, e...)
			}
			if len(got) == 0 || len(got) >= len(want) {
				t.Fatalf("read %d of %d lines before the snapshot: the test needs a partial read", len(got), len(want))
			}
			for i := range newP {
				src := &Source{Path: dir, Header: true, BatchLines: 2}
				open(t, src, i, newP, entries)
				got = append(got, texts(drain(t, src))...)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("got %d lines, want each of %d once:\n%q", len(got), len(want), got)
			}
		})
	}
}

func TestSourceContinuousPicksUpNewFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "1.txt"), "one\n")
	src := &Source{Path: dir, Monitor: time.Millisecond}
	open(t, src, 0, 1, nil)
	var out lines
	pollUntil := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(out) < n {
			if time.Now().After(deadline) {
				t.Fatalf("have %q, waiting for %d lines", texts(out), n)
			}
			wait, err := src.Poll(&out)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(wait)
		}
	}
	pollUntil(1)
	// A writer creates the file under a hidden name and renames it.
	write(t, filepath.Join(dir, ".2.txt.tmp"), "two\n")
	for range 5 {
		wait, err := src.Poll(&out)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(wait)
	}
	if len(out) != 1 {
		t.Fatalf("read a hidden file: %q", texts(out))
	}
	if err := os.Rename(filepath.Join(dir, ".2.txt.tmp"), filepath.Join(dir, "2.txt")); err != nil {
		t.Fatal(err)
	}
	pollUntil(2)
	// Neither file is read again; the source keeps watching.
	for range 5 {
		wait, err := src.Poll(&out)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(wait)
	}
	if got, want := texts(out), []string{"1.txt:1:one", "2.txt:1:two"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	// A restored source remembers both files as done.
	entries, err := src.SnapshotState(1)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "3.txt"), "three\n")
	again := &Source{Path: dir, Monitor: time.Millisecond}
	open(t, again, 0, 1, entries)
	out = nil
	src = again
	pollUntil(1)
	if got := texts(out); !slices.Equal(got, []string{"3.txt:1:three"}) {
		t.Fatalf("restored source read %q", got)
	}
}

func TestSourceErrorsNameThePath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "data.csv")
	write(t, file, "x\n")
	for _, path := range []string{
		filepath.Join(dir, "missing.csv"),
		filepath.Join(dir, "missing-dir") + "/",
		filepath.Join(file, "under-a-file"),
	} {
		src := &Source{Path: path}
		ctx := runtime.NewRuntimeContext(runtime.ContextConfig{})
		err := src.Open(ctx)
		if err == nil || !strings.Contains(err.Error(), strings.TrimSuffix(path, "/")) || !errors.Is(err, runtime.ErrUnrecoverable) {
			t.Errorf("Open(%s) = %v, want an unrecoverable error naming the path", path, err)
		}
	}
	if os.Geteuid() != 0 { // root reads anything
		locked := filepath.Join(dir, "locked")
		write(t, filepath.Join(locked, "a.csv"), "x\n")
		os.Chmod(locked, 0)
		defer os.Chmod(locked, 0o755)
		err := (&Source{Path: locked}).Open(runtime.NewRuntimeContext(runtime.ContextConfig{}))
		if err == nil || !strings.Contains(err.Error(), locked) {
			t.Errorf("Open(unreadable dir) = %v, want an error naming it", err)
		}
	}
	// A file deleted after the listing fails the job when it is opened.
	write(t, filepath.Join(dir, "gone", "a.csv"), "x\n")
	src := &Source{Path: filepath.Join(dir, "gone")}
	open(t, src, 0, 1, nil)
	os.Remove(filepath.Join(dir, "gone", "a.csv"))
	_, err := src.Poll(&lines{})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "gone", "a.csv")) {
		t.Errorf("Poll of a vanished file = %v, want an error naming it", err)
	}
}

func TestCorruptStateIsRefused(t *testing.T) {
	good := appendEntry(nil, &position{name: "a", offset: 5, line: 1})
	for _, e := range [][]byte{nil, {9}, good[:len(good)-1], append(good[:len(good):len(good)], 0), appendEntry(nil, &position{name: ""})} {
		src := &Source{Path: t.TempDir()}
		if err := src.InitializeState(runtime.NewRuntimeContext(runtime.ContextConfig{}), [][]byte{e}); !errors.Is(err, runtime.ErrCorrupt) {
			t.Errorf("entry %x: %v, want ErrCorrupt", e, err)
		}
	}
}

func TestLineCodecRoundTrip(t *testing.T) {
	for _, l := range []Line{{}, {Path: "/d/a.csv", Number: 7, Header: "a,b", Text: "1,2"}, {Text: "\x00\xff"}} {
		b := LineCodec{}.Append(nil, l)
		got, err := LineCodec{}.Decode(b)
		if err != nil || got != l {
			t.Errorf("round trip of %+v = %+v, %v", l, got, err)
		}
		if _, err := (LineCodec{}).Decode(b[:len(b)-1]); err == nil && len(b) > 4 {
			t.Errorf("a truncated %+v decoded", l)
		}
	}
}
