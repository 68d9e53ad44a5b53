package pebblestate

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// pendBytes bounds the writes held back from Pebble while a barrier's
// asynchronous part runs (see epoch): past it the task waits for that part
// to end. At some 100 bytes per write (an indexed batch's entry, key and
// value) that is a few hundred thousand writes, more than a state-heavy
// job makes at a million events per second while a write-back runs.
const pendBytes = 32 << 20

// epoch is a barrier's asynchronous part, and the state the task goroutine
// keeps meanwhile.
//
// At a barrier (Store.Snapshot, Store.Checkpoint) the synchronous part
// only freezes what Pebble lacks: each value table's write-back cache
// with dirty entries becomes its frozen map, replaced by an empty one, and
// the timers' pending writes become the epoch's. That is a few pointer
// swaps per table whatever the state's size. A goroutine then writes the
// frozen entries and timers to Pebble, and takes what the barrier asked
// for: a Pebble snapshot, or for a native checkpoint a memtable flush and
// a Pebble checkpoint (hard links), or with a changelog the cut of the
// changelog's segment, followed now and then by a materialization (see
// changelog.go).
//
// Until then nothing the task writes may reach Pebble, or the snapshot or
// checkpoint would hold it. So every store write goes to pend, an indexed
// batch that reads see through to Pebble; a value table reads its cache,
// then its frozen map, then pend and Pebble; and a value table's cache
// that fills up writes back into pend and keeps only the keys whose
// frozen entries they shadow. Once the goroutine is done the task commits
// pend at its next store access (settle), and the epoch ends.
//
// The task waits for the goroutine (settle) only when a bound is reached:
// pend past pendBytes; a value cache that holds half its capacity in keys
// shadowing frozen ones; a timer queue's refill, which waits for the
// frozen timers only (they are written first); AppendKeys, a restore, and
// the next barrier, which so waits for the previous one's write-back and
// Pebble snapshot or checkpoint (not for its upload). Memory is then at
// most the frozen caches (one cache's bound each), the fresh caches and
// pendBytes.
type epoch struct {
	s *Store
	// dir is where a native checkpoint goes; "" takes a Pebble snapshot.
	dir    string
	states []stateRecord
	tables []flusher
	timers *timerBuffer
	// timerMax is the store's timerMax before the frozen timers.
	timerMax int64
	// timersIn is closed once the frozen timers are in Pebble.
	timersIn chan struct{}
	// ready is closed once files (or err) are set: before done when a
	// changelog checkpoint goes on to materialize.
	ready   chan struct{}
	readied bool
	done    chan struct{}
	// hold is the store's holdWriteBack at the barrier (tests).
	hold     func()
	finished atomic.Bool

	// Set before done is closed: the Pebble snapshot, or the native
	// checkpoint's files, or the error that failed the barrier.
	ps    *pebble.Snapshot
	files []string
	err   error
}

// freeze is the synchronous part of a barrier (what names it in errors):
// it ends the previous epoch, takes a reference on the store for the
// barrier's snapshot or checkpoint, freezes the pending writes and starts
// the goroutine that writes them back. dir is as epoch.dir.
func (s *Store) freeze(what, dir string) (*epoch, error) {
	s.settle()
	if err := s.Err(); err != nil {
		return nil, err
	}
	if !s.acquire() {
		return nil, fmt.Errorf("pebblestate: %s of a closed store", what)
	}
	e := &epoch{s: s, dir: dir, timerMax: s.timerMax, timersIn: make(chan struct{}), ready: make(chan struct{}),
		done: make(chan struct{}), hold: s.holdWriteBack}
	if dir != "" {
		e.states = stateRecords(s.states)
	}
	for _, f := range s.flushers {
		if f.freeze() {
			e.tables = append(e.tables, f)
		}
	}
	e.timers, s.tb = s.tb, s.spareTB
	s.tbGen++
	if s.tb == nil {
		s.tb = newTimerBuffer(s.timerLimit)
	}
	s.spareTB = nil
	// The timers written from now on are tested against the frozen ones
	// too: one of them deleted later must reach Pebble as a delete.
	s.timerMax = max(s.timerMax, e.timers.maxSet)
	s.ep = e
	s.pend = s.db.NewIndexedBatch()
	go e.run()
	return e, nil
}

// run writes the frozen entries to Pebble and takes the snapshot or
// checkpoint.
func (e *epoch) run() {
	defer func() {
		e.markReady()
		e.finished.Store(true)
		close(e.done)
	}()
	s := e.s
	err := s.Err()
	if err == nil {
		_, err = e.timers.apply(s, nil, e.timerMax)
	}
	close(e.timersIn)
	if e.hold != nil {
		e.hold()
	}
	for _, t := range e.tables {
		if err != nil {
			break
		}
		err = t.writeFrozen()
	}
	if err == nil {
		err = s.Err() // a write-back in the task failed before this one
	}
	if err != nil {
		// The state at the barrier did not reach Pebble: the store is
		// lost, not only this barrier.
		err = fmt.Errorf("writing back the state at the barrier: %w", err)
		s.fail(err)
		e.err = fmt.Errorf("pebblestate: %w", err)
		return
	}
	if e.dir == "" {
		e.ps = s.db.NewSnapshot()
		return
	}
	if s.cl != nil {
		err = e.changelogCheckpoint()
	} else {
		e.files, err = e.checkpoint()
	}
	if err != nil {
		os.RemoveAll(e.dir)
		e.err = fmt.Errorf("pebblestate: %w", err)
	}
}

// markReady closes ready, once; only the epoch's goroutine calls it.
func (e *epoch) markReady() {
	if !e.readied {
		e.readied = true
		close(e.ready)
	}
}

// checkpoint flushes the memtable, so that every write so far is in an
// SST, and has Pebble link the live files into e.dir, with StatesFile.
func (e *epoch) checkpoint() ([]string, error) {
	s := e.s
	if err := s.db.Flush(); err != nil {
		return nil, fmt.Errorf("flushing the state store: %w", err)
	}
	// A directory left by an earlier attempt at this checkpoint (the ID
	// is reused only by a restarted task) is stale.
	if err := os.RemoveAll(e.dir); err != nil {
		return nil, err
	}
	if err := s.db.Checkpoint(e.dir); err != nil {
		return nil, fmt.Errorf("checkpoint of the state store: %w", err)
	}
	if err := writeStates(filepath.Join(e.dir, StatesFile), e.states); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(e.dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, f := range ents {
		if !f.Type().IsRegular() {
			return nil, fmt.Errorf("checkpoint of the state store: %s is not a regular file", f.Name())
		}
		files = append(files, f.Name())
	}
	return files, nil
}

// waitReady blocks until the checkpoint's files are listed, or ctx ends.
func (e *epoch) waitReady(ctx context.Context) error {
	select {
	case <-e.ready:
		return e.err
	case <-ctx.Done():
		return fmt.Errorf("pebblestate: waiting for the barrier's write-back: %w", ctx.Err())
	}
}

// wait blocks until the epoch's goroutine is done, or ctx ends.
func (e *epoch) wait(ctx context.Context) error {
	select {
	case <-e.done:
		return e.err
	case <-ctx.Done():
		return fmt.Errorf("pebblestate: waiting for the barrier's write-back: %w", ctx.Err())
	}
}

// settle ends the current epoch, if any, once its goroutine is done
// (waiting for it): the held-back writes go to Pebble and the frozen
// caches are dropped.
func (s *Store) settle() {
	e := s.ep
	if e == nil {
		return
	}
	start := time.Now()
	if !e.finished.Load() {
		s.settles.waited++
		if s.onWait != nil {
			s.onWait()
		}
	}
	<-e.done
	defer func() {
		d := time.Since(start)
		s.settles.n++
		s.settles.max = max(s.settles.max, d)
	}()
	s.ep = nil
	for _, t := range e.tables {
		t.thaw()
	}
	p := s.pend
	s.pend = nil
	if !p.Empty() && !s.failed() {
		if err := s.commit(p); err != nil {
			s.fail(fmt.Errorf("state store write: %w", err))
		}
	}
	if s.iters > 0 {
		// An iterator may still read the batch (a map's All, whose
		// caller wrote meanwhile): it is closed after the last one.
		s.retired = append(s.retired, p)
	} else {
		p.Close()
	}
	// A small buffer is kept for the next barrier; a large one goes, so
	// that the store holds one buffer's share between barriers.
	if e.timers.bytes() <= spareTimerBytes {
		e.timers.reset()
		s.spareTB = e.timers
	}
	e.timers = nil
}

// spareTimerBytes bounds the frozen timer buffer kept for reuse.
const spareTimerBytes = 4 << 20

// settleStats count the task's settles: how many ended an epoch, how many
// of those waited for its goroutine, and the longest (wait and commit of
// the held-back writes).
type settleStats struct {
	n, waited int
	max       time.Duration
}

// poll ends the current epoch if its goroutine is done; it never waits.
func (s *Store) poll() {
	if s.ep != nil && s.ep.finished.Load() {
		s.settle()
	}
}

// reader is what the task reads the store through: during an epoch the
// held-back writes over Pebble, else Pebble.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

func (s *Store) reader() reader {
	if s.pend != nil {
		return s.pend
	}
	return s.db
}

// newIter opens an iterator over the store as the task sees it; close it
// with closeIter.
func (s *Store) newIter(o *pebble.IterOptions) (*pebble.Iterator, error) {
	it, err := s.reader().NewIter(o)
	if err == nil {
		s.iters++
	}
	return it, err
}

func (s *Store) closeIter(it *pebble.Iterator) {
	if err := it.Close(); err != nil {
		s.fail(fmt.Errorf("state store read: %w", err))
	}
	if s.iters--; s.iters == 0 {
		for i, p := range s.retired {
			p.Close()
			s.retired[i] = nil
		}
		s.retired = s.retired[:0]
	}
}

// checkPend ends the epoch, waiting for it, once pend has grown past its
// bound.
func (s *Store) checkPend() {
	if s.pend != nil && s.pend.Len() >= pendBytes {
		s.settle()
	}
}

// stateRecords lists the states for StatesFile, by id.
func stateRecords(states map[string]*stateInfo) []stateRecord {
	recs := make([]stateRecord, 0, len(states))
	for n, st := range states {
		recs = append(recs, stateRecord{Name: n, ID: st.id, Kind: uint8(st.kind)})
	}
	slices.SortFunc(recs, func(a, b stateRecord) int { return int(a.ID) - int(b.ID) })
	return recs
}
