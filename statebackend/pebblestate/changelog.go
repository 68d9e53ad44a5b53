package pebblestate

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/batchrepr"

	"github.com/weirstream/weir/statebackend"
)

// Changelog checkpoints (Options.Changelog), as Flink's changelog state
// backend: every batch the store commits to Pebble after a
// materialization is also appended, in commit order, to a local
// changelog. A checkpoint is then the newest finished materialization (a
// Pebble checkpoint of the store, as a native checkpoint without a
// changelog takes every time) plus the changelog segments written since;
// its asynchronous part writes the frozen state back and cuts the open
// segment at the barrier, with no memtable flush and no Pebble
// checkpoint. Segments are immutable and their names are never reused
// within a store, so they are shared files (Shared) that later checkpoints
// refer to until a newer materialization makes them obsolete.
//
// A materialization is due once the changelog since the last one passes
// ChangelogOptions.Ratio of the store's size, or Interval passed; the
// barrier's epoch then takes it after cutting the checkpoint's segment,
// so the checkpoint does not wait for it, and the checkpoints after the
// epoch refer to it. The first checkpoint of a store materializes first
// (there is nothing to refer to yet).
//
// Restore (RestoreNative) opens the materialization as before, then
// replays the checkpoint's segments in order, keeping the writes of the
// key groups the new store owns. The replay is a bulk load: compactions
// off, a memtable as large as the segments, the writes applied sorted by
// key with overridden ones dropped, one flush; the store then reopens
// with its own options and compacts in the background.

// ChangelogFile lists, in a changelog checkpoint, its segments in replay
// order with their sizes (JSON).
const ChangelogFile = "WEIR-CHANGELOG"

// segmentSuffix ends a changelog segment's name: a name of digits and
// this suffix, which Pebble never uses, and the JobManager's shared-file
// collection recognises (statebackend.ParseSharedFileName).
const segmentSuffix = ".changelog"

// segmentMagic opens every segment file.
const segmentMagic = "WEIRCL01"

// Defaults of ChangelogOptions. With 1 % of 10 M keys written at random
// per checkpoint interval (BenchmarkChangelogCheckpoint10MKeys1PctChanged)
// a segment is about 1.6 % of a full checkpoint and 1 % of the store's
// files, and a materialization uploads about the whole store, since
// compactions have rewritten most of it by then: the mean upload is about
// (1 + 1/ratio) segments. At 0.5 that measured 4.5 % of full over whole
// cycles, too close to 5 %; 0.75 gives some 3.7 % and bounds a restore's
// replay to three quarters of the store's size.
const (
	DefaultMaterializeRatio    = 0.75
	DefaultMaterializeInterval = 10 * time.Minute
)

// ChangelogOptions configure changelog checkpoints.
type ChangelogOptions struct {
	// Ratio: a materialization is due once the changelog since the last
	// one is larger than Ratio times that one's size; 0 means
	// DefaultMaterializeRatio.
	Ratio float64
	// Interval: a materialization is due once this long passed since the
	// last one, whatever the changelog's size; 0 means
	// DefaultMaterializeInterval, negative never.
	Interval time.Duration
}

// segment is a cut segment: its file name and size.
type segment struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// materialization is a Pebble checkpoint of the store in a directory of
// its own (hard links), which checkpoints link their files from.
type materialization struct {
	dir   string
	files []string
	size  int64
	at    time.Time
}

// changelog is a store's changelog and materializations. Appends come
// from whichever goroutine commits to Pebble (the task, or a barrier's
// epoch, never both at once); the mutex keeps that honest.
type changelog struct {
	opts ChangelogOptions
	dir  string

	mu sync.Mutex
	// on: a materialization exists, so commits are logged.
	on  bool
	f   *os.File
	w   *bufio.Writer
	seq uint64
	// open is the open segment's name and size, if any.
	open segment
	// segs are the cut segments since the materialization.
	segs []segment
	// since is the bytes logged since the materialization.
	since int64
	mat   *materialization
	matN  int
	// materializations counts them (tests, benchmarks).
	materializations int
	// hdr is a record header's scratch space (a local one would escape
	// to the heap through the writer).
	hdr [8]byte
}

func newChangelog(storeDir string, o ChangelogOptions) *changelog {
	if o.Ratio <= 0 {
		o.Ratio = DefaultMaterializeRatio
	}
	if o.Interval == 0 {
		o.Interval = DefaultMaterializeInterval
	}
	return &changelog{opts: o, dir: storeDir + ".changelog"}
}

// append logs one committed batch's representation.
func (c *changelog) append(repr []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return nil
	}
	if c.f == nil {
		c.seq++
		c.open = segment{Name: fmt.Sprintf("%010d%s", c.seq, segmentSuffix)}
		f, err := os.OpenFile(filepath.Join(c.dir, c.open.Name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		c.f = f
		if c.w == nil {
			c.w = bufio.NewWriterSize(f, 256<<10)
		} else {
			c.w.Reset(f)
		}
		if _, err := c.w.WriteString(segmentMagic); err != nil {
			return err
		}
		c.open.Size = int64(len(segmentMagic))
	}
	h := c.hdr[:]
	binary.LittleEndian.PutUint32(h[:4], uint32(len(repr)))
	binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(repr, crcTable))
	if _, err := c.w.Write(h); err != nil {
		return err
	}
	if _, err := c.w.Write(repr); err != nil {
		return err
	}
	n := int64(len(h) + len(repr))
	c.open.Size += n
	c.since += n
	return nil
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// cut closes the open segment and returns the segments since the
// materialization, in order.
func (c *changelog) cut() ([]segment, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f != nil {
		err := c.w.Flush()
		if cerr := c.f.Close(); err == nil {
			err = cerr
		}
		c.f = nil
		if err != nil {
			return nil, fmt.Errorf("changelog segment %s: %w", c.open.Name, err)
		}
		c.segs = append(c.segs, c.open)
	}
	return append([]segment(nil), c.segs...), nil
}

// due reports whether a materialization is due.
func (c *changelog) due() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mat == nil {
		return true
	}
	if c.since == 0 {
		return false
	}
	return float64(c.since) > c.opts.Ratio*float64(c.mat.size) ||
		(c.opts.Interval > 0 && time.Since(c.mat.at) >= c.opts.Interval)
}

// materialize takes a Pebble checkpoint of the store into the changelog's
// directory and makes it the one checkpoints refer to; the segments
// before it and the previous materialization are deleted (the
// checkpoints that need them hold hard links). It runs on a barrier's
// epoch after the write-back, so nothing reaches Pebble meanwhile and the
// materialization is the state at the barrier.
func (s *Store) materialize() error {
	c := s.cl
	if _, err := c.cut(); err != nil {
		return err
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	if err := s.db.Flush(); err != nil {
		return fmt.Errorf("flushing the state store: %w", err)
	}
	c.matN++
	dir := filepath.Join(c.dir, fmt.Sprintf("mat-%d", c.matN))
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := s.db.Checkpoint(dir); err != nil {
		return fmt.Errorf("materializing the state store: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	m := &materialization{dir: dir, at: time.Now()}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("materialization of the state store: %s is not a regular file", e.Name())
		}
		m.files = append(m.files, e.Name())
		m.size += info.Size()
	}
	c.mu.Lock()
	old, obsolete := c.mat, c.segs
	c.mat, c.segs, c.since, c.on = m, nil, 0, true
	c.materializations++
	c.mu.Unlock()
	if old != nil {
		os.RemoveAll(old.dir)
	}
	for _, sg := range obsolete {
		os.Remove(filepath.Join(c.dir, sg.Name))
	}
	return nil
}

// changelogCheckpoint is a changelog checkpoint's asynchronous part after
// the write-back: it cuts the segment at the barrier and links the
// materialization's files and the segments into e.dir, then (the
// checkpoint's files are ready) materializes if one is due.
func (e *epoch) changelogCheckpoint() error {
	s := e.s
	c := s.cl
	if c.mat == nil {
		if err := s.materialize(); err != nil {
			return err
		}
	}
	segs, err := c.cut()
	if err != nil {
		return err
	}
	if e.files, err = e.link(c.mat, segs); err != nil {
		return err
	}
	e.markReady()
	if c.due() {
		// The checkpoint's files are handed out: a failure here fails
		// the store, not that checkpoint.
		if err := s.materialize(); err != nil {
			s.fail(fmt.Errorf("materializing the state store: %w", err))
		}
	}
	return nil
}

// link fills e.dir with hard links to the materialization's files and the
// segments, StatesFile and ChangelogFile, and lists its files.
func (e *epoch) link(m *materialization, segs []segment) ([]string, error) {
	// A directory left by an earlier attempt at this checkpoint (the ID
	// is reused only by a restarted task) is stale.
	if err := os.RemoveAll(e.dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	for _, f := range m.files {
		if f == StatesFile {
			continue
		}
		if err := os.Link(filepath.Join(m.dir, f), filepath.Join(e.dir, f)); err != nil {
			return nil, fmt.Errorf("linking the materialization: %w", err)
		}
		files = append(files, f)
	}
	for _, sg := range segs {
		if err := os.Link(filepath.Join(e.s.cl.dir, sg.Name), filepath.Join(e.dir, sg.Name)); err != nil {
			return nil, fmt.Errorf("linking a changelog segment: %w", err)
		}
		files = append(files, sg.Name)
	}
	if err := writeStates(filepath.Join(e.dir, StatesFile), e.states); err != nil {
		return nil, err
	}
	data, err := json.Marshal(segs)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(e.dir, ChangelogFile), data, 0o644); err != nil {
		return nil, err
	}
	files = append(files, StatesFile, ChangelogFile)
	sortStrings(files)
	return files, nil
}

// close closes the open segment and removes the changelog's directory.
func (c *changelog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
	os.RemoveAll(c.dir)
}

// isChangelogFile reports whether name is a changelog checkpoint's own
// (a segment or ChangelogFile), not the materialization's.
func isChangelogFile(name string) bool {
	return name == ChangelogFile || isSegment(name)
}

func isSegment(name string) bool {
	d, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || d == "" {
		return false
	}
	for _, r := range d {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// readSegments returns the segments a downloaded checkpoint lists, or nil
// for a checkpoint without a changelog.
func readSegments(dir string) ([]segment, error) {
	name := filepath.Join(dir, ChangelogFile)
	data, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		// Segments without their list cannot be replayed in order:
		// restoring the materialization alone would lose their writes.
		ents, rerr := os.ReadDir(dir)
		if rerr != nil {
			return nil, fmt.Errorf("native checkpoint: %w", rerr)
		}
		for _, e := range ents {
			if isSegment(e.Name()) {
				return nil, fmt.Errorf("native checkpoint in %s: changelog segment %s without %s: %w", dir, e.Name(), ChangelogFile, statebackend.ErrCorrupt)
			}
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("native checkpoint: %w", err)
	}
	segs := []segment{}
	if err := json.Unmarshal(data, &segs); err != nil {
		return nil, fmt.Errorf("native checkpoint %s: %w: %w", name, statebackend.ErrCorrupt, err)
	}
	for _, sg := range segs {
		if !isSegment(sg.Name) || sg.Size < int64(len(segmentMagic)) {
			return nil, fmt.Errorf("native checkpoint %s: segment %q of %d bytes: %w", name, sg.Name, sg.Size, statebackend.ErrCorrupt)
		}
	}
	return segs, nil
}

// replay applies the segments in dir, in order, to db, keeping the writes
// to key groups first to last (range deletes are clipped to them). A
// missing, short or corrupt segment is an error naming its file.
//
// The point writes are gathered in a coalescer of up to chunk bytes and
// applied sorted by key, each key's overridden writes dropped: a
// memtable takes sorted keys several times faster than the random ones
// of the log (its skiplist search starts where the last insert ended),
// and fewer of them. A range delete applies what was gathered before it.
func replay(db *pebble.DB, dir string, segs []segment, first, last int, chunk int) error {
	lo, hi := groupKey(first), groupKey(last+1)
	c := coalescer{db: db, limit: chunk}
	defer c.close()
	inRange := func(k []byte) bool {
		return bytes.Compare(k, lo) >= 0 && (hi == nil || bytes.Compare(k, hi) < 0)
	}
	for _, sg := range segs {
		name := filepath.Join(dir, sg.Name)
		err := readSegment(name, sg.Size, func(repr []byte) error {
			if _, ok := batchrepr.ReadHeader(repr); !ok {
				return fmt.Errorf("short batch: %w", statebackend.ErrCorrupt)
			}
			r := batchrepr.Read(repr)
			for {
				kind, k, v, ok, err := r.Next()
				if err != nil {
					return fmt.Errorf("%w: %w", statebackend.ErrCorrupt, err)
				}
				if !ok {
					break
				}
				switch kind {
				case pebble.InternalKeyKindSet, pebble.InternalKeyKindMerge:
					if inRange(k) {
						err = c.add(kind, k, v)
					}
				case pebble.InternalKeyKindDelete:
					if inRange(k) {
						err = c.add(kind, k, nil)
					}
				case pebble.InternalKeyKindRangeDelete:
					start, end := k, v
					if bytes.Compare(start, lo) < 0 {
						start = lo
					}
					if hi != nil && bytes.Compare(end, hi) > 0 {
						end = hi
					}
					if bytes.Compare(start, end) < 0 {
						err = c.deleteRange(start, end)
					}
				case pebble.InternalKeyKindLogData:
				default:
					return fmt.Errorf("write of kind %v: %w", kind, statebackend.ErrCorrupt)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("pebblestate: changelog segment %s: %w", name, err)
		}
	}
	return c.apply()
}

// replayBatchBytes is the size at which a replay commits its batch:
// well under Pebble's large-batch threshold (half a memtable, counted
// with some 40 bytes of skiplist per entry), above which each batch would
// be a memtable of its own, flushed to L0 alone.
const replayBatchBytes = 256 << 10

// coalescer gathers a replay's point writes and applies them to a
// database sorted by key, in batches.
type coalescer struct {
	db    *pebble.DB
	limit int
	// arena holds the writes' keys and values, recs where they are, in
	// log order.
	arena []byte
	recs  []replayRec
	b     *pebble.Batch
}

type replayRec struct {
	off, klen, vlen uint32
	kind            pebble.InternalKeyKind
}

func (c *coalescer) key(r *replayRec) []byte {
	return c.arena[r.off : r.off+r.klen]
}

func (c *coalescer) add(kind pebble.InternalKeyKind, k, v []byte) error {
	if len(c.arena)+len(k)+len(v) > c.limit || len(c.arena) > math.MaxUint32-len(k)-len(v) {
		if err := c.apply(); err != nil {
			return err
		}
	}
	c.recs = append(c.recs, replayRec{off: uint32(len(c.arena)), klen: uint32(len(k)), vlen: uint32(len(v)), kind: kind})
	c.arena = append(append(c.arena, k...), v...)
	return nil
}

// deleteRange applies the writes gathered so far, which the range delete
// must follow, then the range delete.
func (c *coalescer) deleteRange(start, end []byte) error {
	if err := c.apply(); err != nil {
		return err
	}
	if err := c.batch().DeleteRange(start, end, nil); err != nil {
		return err
	}
	return c.commit()
}

func (c *coalescer) batch() *pebble.Batch {
	if c.b == nil {
		c.b = c.db.NewBatch()
	}
	return c.b
}

// apply writes the gathered writes sorted by key (stable: a key's writes
// keep their order), from each key's last set or delete on, since that
// one overrides every earlier write of the key; merges after it stay.
func (c *coalescer) apply() error {
	recs := c.recs
	slices.SortFunc(recs, func(a, b replayRec) int {
		if r := bytes.Compare(c.key(&a), c.key(&b)); r != 0 {
			return r
		}
		return cmp.Compare(a.off, b.off)
	})
	b := c.batch()
	for i := 0; i < len(recs); {
		k := c.key(&recs[i])
		j, from := i+1, i
		for j < len(recs) && bytes.Equal(c.key(&recs[j]), k) {
			j++
		}
		for x := j - 1; x > i; x-- {
			if recs[x].kind != pebble.InternalKeyKindMerge {
				from = x
				break
			}
		}
		for _, r := range recs[from:j] {
			v := c.arena[r.off+r.klen : r.off+r.klen+r.vlen]
			var err error
			switch r.kind {
			case pebble.InternalKeyKindSet:
				err = b.Set(k, v, nil)
			case pebble.InternalKeyKindDelete:
				err = b.Delete(k, nil)
			default:
				err = b.Merge(k, v, nil)
			}
			if err != nil {
				return err
			}
		}
		if b.Len() >= replayBatchBytes {
			if err := c.commit(); err != nil {
				return err
			}
		}
		i = j
	}
	c.arena, c.recs = c.arena[:0], c.recs[:0]
	return c.commit()
}

// commit commits the batch straight to the database, not through
// Store.commit: a restore comes before the store's first
// materialization, so nothing is logged.
func (c *coalescer) commit() error {
	if c.b == nil || c.b.Empty() {
		return nil
	}
	if err := c.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("state store write: %w", err)
	}
	c.b.Reset()
	return nil
}

func (c *coalescer) close() {
	if c.b != nil {
		c.b.Close()
	}
}

// readSegment hands fn each record of segment file name, which must be
// size bytes long.
func readSegment(name string, size int64, fn func(repr []byte) error) error {
	f, err := os.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("missing: %w", err)
		}
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if info.Size() != size {
		return fmt.Errorf("%d bytes, the checkpoint lists %d: %w", info.Size(), size, statebackend.ErrCorrupt)
	}
	r := bufio.NewReaderSize(f, 256<<10)
	magic := make([]byte, len(segmentMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != segmentMagic {
		return fmt.Errorf("not a changelog segment: %w", statebackend.ErrCorrupt)
	}
	off := int64(len(segmentMagic))
	var h [8]byte
	var buf []byte
	for off < size {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return fmt.Errorf("record at offset %d: truncated: %w", off, statebackend.ErrCorrupt)
		}
		n := int64(binary.LittleEndian.Uint32(h[:4]))
		if n > size-off-8 {
			return fmt.Errorf("record at offset %d: length %d past the end: %w", off, n, statebackend.ErrCorrupt)
		}
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("record at offset %d: truncated: %w", off, statebackend.ErrCorrupt)
		}
		if crc32.Checksum(buf, crcTable) != binary.LittleEndian.Uint32(h[4:]) {
			return fmt.Errorf("record at offset %d: checksum mismatch: %w", off, statebackend.ErrCorrupt)
		}
		if err := fn(buf); err != nil {
			return fmt.Errorf("record at offset %d: %w", off, err)
		}
		off += 8 + n
	}
	return nil
}
