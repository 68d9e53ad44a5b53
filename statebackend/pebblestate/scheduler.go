package pebblestate

import (
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// gatedScheduler is Pebble's compaction scheduler for a store a native
// restore opens: it grants no compaction until opened, then as many as
// the database allows without permission, as Pebble's default scheduler
// does.
//
// Why: pebble.Open flushes, which schedules a compaction when the
// restored files leave L0 crowded (a materialization, or the files of a
// replay), and then waits for every running compaction before it scans
// for obsolete files. A restore then waited some 0.8 s at 1 M keys for a
// compaction the reopened store can as well run in the background. While
// closed, nothing compacts, so the scan is as safe as with the wait.
type gatedScheduler struct {
	mu sync.Mutex
	db pebble.DBForCompaction
	// closed: compactions wait for open.
	closed       bool
	unregistered bool
	running      int
	// granting: a grant loop is calling into the database (without mu,
	// since the database calls TrySchedule under its own lock).
	granting bool
	idle     *sync.Cond

	poke chan struct{}
	stop chan struct{}
	done chan struct{}
}

var _ pebble.CompactionScheduler = (*gatedScheduler)(nil)

func newGatedScheduler() *gatedScheduler {
	s := &gatedScheduler{closed: true, poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.idle = sync.NewCond(&s.mu)
	return s
}

// gateTick is how often the scheduler looks for a waiting compaction
// without being told: the database's hint (UpdateGetAllowedWithoutPermission)
// is one, not a promise.
const gateTick = 100 * time.Millisecond

func (s *gatedScheduler) Register(_ int, db pebble.DBForCompaction) {
	s.mu.Lock()
	s.db = db
	s.mu.Unlock()
	go s.loop()
}

func (s *gatedScheduler) loop() {
	defer close(s.done)
	t := time.NewTicker(gateTick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.poke:
		case <-s.stop:
			return
		}
		s.grant()
	}
}

func (s *gatedScheduler) Unregister() {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unregistered = true
	for s.granting {
		s.idle.Wait()
	}
}

// open lets compactions run.
func (s *gatedScheduler) open() {
	s.mu.Lock()
	s.closed = false
	s.mu.Unlock()
	s.nudge()
}

func (s *gatedScheduler) nudge() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// TrySchedule is called with the database's mutex held: it must not call
// back into the database but for GetAllowedWithoutPermission, which takes
// no lock.
func (s *gatedScheduler) TrySchedule() (bool, pebble.CompactionGrantHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.unregistered || s.running >= s.db.GetAllowedWithoutPermission() {
		return false, nil
	}
	s.running++
	return true, s
}

func (s *gatedScheduler) UpdateGetAllowedWithoutPermission() { s.nudge() }

// grant starts waiting compactions up to the allowed number.
func (s *gatedScheduler) grant() {
	s.mu.Lock()
	if s.closed || s.unregistered || s.granting || s.db == nil {
		s.mu.Unlock()
		return
	}
	s.granting = true
	for s.running < s.db.GetAllowedWithoutPermission() {
		s.mu.Unlock()
		ok := false
		if waiting, _ := s.db.GetWaitingCompaction(); waiting {
			// Counted before Schedule, whose compaction may finish
			// (Done) before it returns.
			s.mu.Lock()
			s.running++
			s.mu.Unlock()
			if ok = s.db.Schedule(s); !ok {
				s.mu.Lock()
				s.running--
				s.mu.Unlock()
			}
		}
		s.mu.Lock()
		if !ok {
			break
		}
	}
	s.granting = false
	s.idle.Broadcast()
	s.mu.Unlock()
}

// The grant handle: one for every compaction.

func (s *gatedScheduler) Started()                                          {}
func (s *gatedScheduler) MeasureCPU(pebble.CompactionGoroutineKind)         {}
func (s *gatedScheduler) CumulativeStats(pebble.CompactionGrantHandleStats) {}

func (s *gatedScheduler) Done() {
	s.mu.Lock()
	s.running--
	s.mu.Unlock()
	s.nudge()
}
