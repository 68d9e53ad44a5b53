package engine

import (
	"sync"
	"time"
)

// Clock is a task's processing-time service: every reading of the wall
// clock a task makes (processing-time timers, flush deadlines, latency
// markers, idle time) and every wait for a deadline go through it, so the
// TaskManager decides what time is, and a test can move it by hand.
//
// Times are Unix nanoseconds rather than milliseconds: flush deadlines and
// idle time need the finer grain; processing-time timers use Now()/1e6.
type Clock interface {
	// Now is the current processing time (Unix ns).
	Now() int64
	// NewTimer returns a stopped timer on this clock. A task selects on
	// its channel together with its input, so it waits for whichever of
	// the deadline and an input comes first.
	NewTimer() Timer
}

// Timer fires once its deadline is reached, on the clock it came from.
type Timer interface {
	// C receives once the deadline set by Reset is reached.
	C() <-chan time.Time
	// Reset arms the timer for deadline (Unix ns), replacing an earlier
	// deadline; a deadline already reached fires at once.
	Reset(deadline int64)
	// Stop disarms the timer; nothing is received afterwards until the
	// next Reset.
	Stop()
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now in Unix ns.
func (SystemClock) Now() int64 { return time.Now().UnixNano() }

// NewTimer returns a stopped time.Timer.
func (SystemClock) NewTimer() Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return sysTimer{t}
}

type sysTimer struct{ t *time.Timer }

func (s sysTimer) C() <-chan time.Time { return s.t.C }

// Reset relies on Go 1.23's timers: a reset or stopped timer never
// delivers a stale value.
func (s sysTimer) Reset(deadline int64) { s.t.Reset(time.Duration(deadline - time.Now().UnixNano())) }
func (s sysTimer) Stop()                { s.t.Stop() }

// ManualClock is a clock that moves only when told to, for tests that fire
// processing-time timers without sleeping. It is safe for concurrent use:
// the test goroutine moves it while the task goroutine reads it.
type ManualClock struct {
	mu     sync.Mutex
	now    int64
	timers map[*manualTimer]struct{}
}

// NewManualClock returns a clock standing at start.
func NewManualClock(start time.Time) *ManualClock {
	return &ManualClock{now: start.UnixNano(), timers: map[*manualTimer]struct{}{}}
}

// Now returns the clock's time.
func (c *ManualClock) Now() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d and fires the timers due.
func (c *ManualClock) Advance(d time.Duration) { c.Set(time.Unix(0, c.Now()+int64(d))) }

// Set moves the clock to t (never backwards) and fires the timers due.
func (c *ManualClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = max(c.now, t.UnixNano())
	for m := range c.timers {
		if m.deadline <= c.now {
			c.fire(m)
		}
	}
}

// fire delivers m's tick and disarms it; c.mu is held.
func (c *ManualClock) fire(m *manualTimer) {
	delete(c.timers, m)
	select {
	case m.c <- time.Unix(0, c.now):
	default: // an earlier tick is still unread: one is enough
	}
}

// NewTimer returns a stopped timer on c.
func (c *ManualClock) NewTimer() Timer { return &manualTimer{clock: c, c: make(chan time.Time, 1)} }

type manualTimer struct {
	clock    *ManualClock
	c        chan time.Time
	deadline int64
}

func (m *manualTimer) C() <-chan time.Time { return m.c }

func (m *manualTimer) Reset(deadline int64) {
	c := m.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	m.drain()
	m.deadline = deadline
	if deadline <= c.now {
		c.fire(m)
		return
	}
	c.timers[m] = struct{}{}
}

func (m *manualTimer) Stop() {
	c := m.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.timers, m)
	m.drain()
}

// drain drops an unread tick, as a stopped or reset time.Timer does.
func (m *manualTimer) drain() {
	select {
	case <-m.c:
	default:
	}
}
