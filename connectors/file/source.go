// Package file reads records from files: a source of lines over a file or a
// directory, parsers for CSV with a header and for JSON lines, and the
// dead-letter record that rows which do not parse become.
//
// # The source
//
// Source reads a path: one file, or every file directly in a directory,
// in name order. Names starting with "." or "_" are skipped, as Flink's
// file source does, so a writer can create a file under such a name and
// rename it when it is complete. Bounded, the source reads the files
// present when it starts and finishes; continuous (Monitor > 0), it lists
// the directory again every Monitor and reads each new file once.
//
// Each file belongs to exactly one source subtask: the one a stable hash of
// its name picks among the current parallelism. A subtask's operator state
// is one entry per file it owns (name, byte offset, line number, done), so
// a restore resumes every file exactly after the last line emitted before
// the checkpoint, and a subtask restored at another parallelism takes the
// entries of the files it now owns from the union of all entries. A hash
// needs no coordination: every subtask, listing the directory at its own
// moment, agrees on who reads a file. The file is the unit of parallelism,
// as in Flink for formats it cannot split: one large file is read by one
// subtask, so give a parallel job several files. Finished files stay in
// the state (one small entry each) so that a continuous source never reads
// them again.
//
// A line is emitted without its terminator ("\n" or "\r\n"); a last line
// without one is still a line, a UTF-8 byte order mark at the start of a
// file is dropped, and empty lines carry no record and are skipped (they
// are still counted, so Line.Number is the line a text editor shows).
// Lines of any length are read whole.
//
// A path that does not exist or cannot be listed is a failure of the job
// naming the path, not an empty input: restarting would not make it
// appear, so the error wraps runtime.ErrUnrecoverable.
//
// # Parsing and dead letters
//
// CSV and JSON turn a Line into a typed record or an error whose text is
// the reason; Parse wraps either in an operator that emits the records and
// sends every line that does not parse, with its file, line number and
// reason, to a side output of DeadLetter records. Bad input therefore
// never fails the job and is never dropped unseen.
package file

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/weirstream/weir/runtime"
)

// Line is one line of an input file.
type Line struct {
	// Path is the file: the source's Path, joined with the file's name
	// when Path is a directory.
	Path string
	// Number is the line's 1-based number in the file.
	Number int64
	// Header is the file's first line when Source.Header is set (every
	// line of a file shares one string), else empty.
	Header string
	// Text is the line without its terminator.
	Text string
}

// LineCodec serialises lines for the exchange.
type LineCodec struct{}

func (LineCodec) Append(dst []byte, l Line) []byte {
	dst = appendString(dst, l.Path)
	dst = binary.AppendVarint(dst, l.Number)
	dst = appendString(dst, l.Header)
	return appendString(dst, l.Text)
}

func (LineCodec) Decode(src []byte) (Line, error) {
	r := runtime.NewReader(src)
	l := Line{Path: string(r.Bytes()), Number: r.Varint(), Header: string(r.Bytes()), Text: string(r.Bytes())}
	if err := r.Done(); err != nil {
		return Line{}, fmt.Errorf("line: %w", err)
	}
	return l, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendVarint(dst, int64(len(s)))
	return append(dst, s...)
}

// DefaultBatchLines bounds the lines one Poll emits when Source.BatchLines
// is 0, so the task regains control often for barriers and timers.
const DefaultBatchLines = 512

// batchBytes also ends a Poll's batch, so a batch of long lines stays small.
const batchBytes = 1 << 20

// readBufferSize is the read buffer per open file; longer lines are
// assembled from several reads.
const readBufferSize = 64 << 10

// entryVersion is the first byte of every state entry, so the format can
// evolve.
const entryVersion = 1

// Source reads the lines of the files at Path. It implements
// runtime.SourceFunction[Line] and runtime.CheckpointedFunction.
type Source struct {
	// Path is a file or a directory (its files, not its subdirectories).
	Path string
	// Header says the first line of each file is a header: it is not
	// emitted, every other line of the file carries it in Line.Header.
	Header bool
	// Monitor > 0 makes the source continuous: it lists Path again every
	// Monitor and reads new files, never finishing. 0 reads the files
	// present at the start and finishes.
	Monitor time.Duration
	// BatchLines bounds the lines one Poll emits (DefaultBatchLines if 0).
	BatchLines int

	subtask, parallelism int
	isDir                bool
	// files holds every file this subtask owns and has seen, by name
	// (relative to Path); queue the ones not yet done, in name order.
	files    map[string]*position
	queue    []*position
	cur      *openFile
	reader   *bufio.Reader
	lastScan time.Time

	// The lines of the batch being read, copied into one buffer that
	// becomes one string, so a batch costs one allocation, not one per line.
	batch   []byte
	pending []pendingLine
	long    []byte // a line longer than the read buffer, being assembled
}

// position is how far a file has been read.
type position struct {
	name   string
	path   string
	offset int64 // bytes consumed, including a byte order mark
	line   int64 // lines consumed
	header string
	done   bool
}

type openFile struct {
	pos *position
	f   *os.File
	r   *bufio.Reader
}

type pendingLine struct {
	pos    *position
	number int64
	start  int
	end    int
}

var (
	_ runtime.SourceFunction[Line] = (*Source)(nil)
	_ runtime.CheckpointedFunction = (*Source)(nil)
)

// owner is the subtask that reads the file name at parallelism p: a stable
// hash, the same in every process and after every restart.
func owner(name string, p int) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32() % uint32(p))
}

// InitializeState takes the positions of the files this subtask owns.
func (s *Source) InitializeState(ctx *runtime.RuntimeContext, entries [][]byte) error {
	s.subtask, s.parallelism = ctx.SubtaskIndex(), max(ctx.Parallelism(), 1)
	s.files = make(map[string]*position)
	for i, e := range entries {
		p, err := decodeEntry(e)
		if err != nil {
			return fmt.Errorf("file source %s: restored entry %d: %w", s.Path, i, err)
		}
		if owner(p.name, s.parallelism) == s.subtask {
			s.files[p.name] = p
		}
	}
	return nil
}

// Open checks the path and lists the files to read. A path that is
// missing or cannot be read fails the job, naming it.
func (s *Source) Open(ctx *runtime.RuntimeContext) error {
	if s.files == nil { // not restored through InitializeState
		s.subtask, s.parallelism = ctx.SubtaskIndex(), max(ctx.Parallelism(), 1)
		s.files = make(map[string]*position)
	}
	if s.Path == "" {
		return fmt.Errorf("file source: no path given: %w", runtime.ErrUnrecoverable)
	}
	if s.Monitor < 0 || s.BatchLines < 0 {
		return fmt.Errorf("file source %s: Monitor %v and BatchLines %d must not be negative: %w", s.Path, s.Monitor, s.BatchLines, runtime.ErrUnrecoverable)
	}
	fi, err := os.Stat(s.Path)
	if err != nil {
		return fmt.Errorf("%w: %w", inputError(s.Path, err), runtime.ErrUnrecoverable)
	}
	s.isDir = fi.IsDir()
	if s.isDir {
		// The files' paths are relative to the directory, as positions
		// are stored by name.
		for _, p := range s.files {
			p.path = filepath.Join(s.Path, p.name)
		}
	} else {
		for _, p := range s.files {
			p.path = s.Path
		}
	}
	if err := s.scan(); err != nil {
		return fmt.Errorf("%w: %w", err, runtime.ErrUnrecoverable)
	}
	return nil
}

// inputError says what is wrong with the input path, naming it once.
func inputError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is named below, with no "stat" or "open"
	}
	return fmt.Errorf("file source: input %s: %w", path, err)
}

// scan lists Path and queues the new files this subtask owns. It runs
// only between files (at Open, and when the queue is empty), so the file
// being read always stays first in the queue.
func (s *Source) scan() error {
	s.lastScan = time.Now()
	var names []string
	if s.isDir {
		entries, err := os.ReadDir(s.Path)
		if err != nil {
			return inputError(s.Path, err)
		}
		for _, e := range entries {
			name := e.Name()
			if hidden(name) || !regular(s.Path, e) {
				continue
			}
			names = append(names, name)
		}
	} else {
		names = []string{filepath.Base(s.Path)}
	}
	for _, name := range names {
		if _, seen := s.files[name]; seen || owner(name, s.parallelism) != s.subtask {
			continue
		}
		p := &position{name: name, path: s.Path}
		if s.isDir {
			p.path = filepath.Join(s.Path, name)
		}
		s.files[name] = p
	}
	s.queue = s.queue[:0]
	for _, p := range s.files {
		if !p.done {
			s.queue = append(s.queue, p)
		}
	}
	sort.Slice(s.queue, func(a, b int) bool { return s.queue[a].name < s.queue[b].name })
	return nil
}

// hidden reports names Flink's file source skips too: files being written
// are commonly named so until they are complete.
func hidden(name string) bool { return strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") }

// regular reports whether a directory entry is a regular file, following
// symbolic links.
func regular(dir string, e fs.DirEntry) bool {
	if e.Type().IsRegular() {
		return true
	}
	if e.Type()&fs.ModeSymlink == 0 {
		return false
	}
	fi, err := os.Stat(filepath.Join(dir, e.Name()))
	return err == nil && fi.Mode().IsRegular()
}

// Poll emits up to BatchLines lines of the current file, opening the next
// one when it is done.
func (s *Source) Poll(out runtime.Collector[Line]) (time.Duration, error) {
	if s.cur == nil {
		if len(s.queue) == 0 {
			if s.Monitor == 0 {
				return 0, runtime.ErrEndOfInput
			}
			if wait := s.Monitor - time.Since(s.lastScan); wait > 0 {
				return wait, nil
			}
			if err := s.scan(); err != nil {
				return 0, err
			}
			if len(s.queue) == 0 {
				return s.Monitor, nil
			}
		}
		if err := s.open(s.queue[0]); err != nil {
			return 0, err
		}
	}
	err := s.readBatch()
	s.emit(out)
	if err != nil {
		return 0, err
	}
	return 0, nil
}

// open opens a file at its position.
func (s *Source) open(p *position) error {
	f, err := os.Open(p.path)
	if err != nil {
		return fmt.Errorf("file source: %w", err)
	}
	if p.offset > 0 {
		if _, err := f.Seek(p.offset, io.SeekStart); err != nil {
			f.Close()
			return fmt.Errorf("file source: %s: resuming at byte %d: %w", p.path, p.offset, err)
		}
	}
	if s.reader == nil {
		s.reader = bufio.NewReaderSize(f, readBufferSize)
	} else {
		s.reader.Reset(f) // one buffer for all files: many small files are common
	}
	s.cur = &openFile{pos: p, f: f, r: s.reader}
	if p.offset == 0 {
		if b, err := s.cur.r.Peek(3); err == nil && bytes.Equal(b, []byte{0xEF, 0xBB, 0xBF}) {
			s.cur.r.Discard(3)
			p.offset = 3
		}
	}
	return nil
}

// readBatch reads lines of the current file into the batch, closing the
// file at its end.
func (s *Source) readBatch() error {
	limit := s.BatchLines
	if limit == 0 {
		limit = DefaultBatchLines
	}
	c := s.cur
	p := c.pos
	for len(s.pending) < limit && len(s.batch) < batchBytes {
		line, n, err := s.readLine(c.r)
		if n > 0 {
			p.offset += int64(n)
			p.line++
			line = bytes.TrimSuffix(line, []byte{'\n'})
			line = bytes.TrimSuffix(line, []byte{'\r'})
			switch {
			case s.Header && p.line == 1:
				p.header = string(line)
			case len(line) > 0:
				start := len(s.batch)
				s.batch = append(s.batch, line...)
				s.pending = append(s.pending, pendingLine{pos: p, number: p.line, start: start, end: len(s.batch)})
			}
		}
		if err == io.EOF {
			p.done = true
			s.closeCurrent()
			s.queue = s.queue[1:]
			return nil
		}
		if err != nil {
			return fmt.Errorf("file source: reading %s at line %d: %w", p.path, p.line+1, err)
		}
	}
	return nil
}

// readLine returns the next line with its "\n" (none at the end of the
// file) and its length in bytes; io.EOF once the file is exhausted. The
// line is valid until the next read.
func (s *Source) readLine(r *bufio.Reader) ([]byte, int, error) {
	line, err := r.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, len(line), err
	}
	s.long = append(s.long[:0], line...)
	for err == bufio.ErrBufferFull {
		line, err = r.ReadSlice('\n')
		s.long = append(s.long, line...)
	}
	if cap(s.long) > 4*readBufferSize && len(s.long) < readBufferSize {
		s.long = nil // do not keep a huge buffer for one odd line
	}
	return s.long, len(s.long), err
}

// emit hands the batch's lines to out, all sharing one string.
func (s *Source) emit(out runtime.Collector[Line]) {
	if len(s.pending) == 0 {
		return
	}
	text := string(s.batch)
	for _, l := range s.pending {
		out.Collect(Line{Path: l.pos.path, Number: l.number, Header: l.pos.header, Text: text[l.start:l.end]})
	}
	s.batch = s.batch[:0]
	clear(s.pending) // drop the position pointers
	s.pending = s.pending[:0]
}

func (s *Source) closeCurrent() {
	if s.cur != nil {
		s.cur.f.Close()
		s.cur = nil
	}
}

// Close closes the open file.
func (s *Source) Close() error {
	s.closeCurrent()
	return nil
}

// SnapshotState records the position of every file this subtask owns,
// including finished ones, so they are not read again.
func (s *Source) SnapshotState(int64) ([][]byte, error) {
	entries := make([][]byte, 0, len(s.files))
	for _, p := range s.files {
		entries = append(entries, appendEntry(nil, p))
	}
	return entries, nil
}

func appendEntry(dst []byte, p *position) []byte {
	dst = append(dst, entryVersion)
	dst = appendString(dst, p.name)
	dst = binary.AppendVarint(dst, p.offset)
	dst = binary.AppendVarint(dst, p.line)
	dst = appendString(dst, p.header)
	done := int64(0)
	if p.done {
		done = 1
	}
	return binary.AppendVarint(dst, done)
}

func decodeEntry(e []byte) (*position, error) {
	if len(e) == 0 || e[0] != entryVersion {
		return nil, fmt.Errorf("unknown file position format: %w", runtime.ErrCorrupt)
	}
	r := runtime.NewReader(e[1:])
	p := &position{name: string(r.Bytes()), offset: r.Varint(), line: r.Varint(), header: string(r.Bytes())}
	done := r.Varint()
	if err := r.Done(); err != nil {
		return nil, fmt.Errorf("file position: %w", err)
	}
	if p.name == "" || p.offset < 0 || p.line < 0 || done < 0 || done > 1 {
		return nil, fmt.Errorf("file position %q at byte %d, line %d: %w", p.name, p.offset, p.line, runtime.ErrCorrupt)
	}
	p.done = done == 1
	return p, nil
}
