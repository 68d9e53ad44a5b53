package engine

import (
	"sync/atomic"
	"time"
)

// A task's I/O and time accounting, kept for metrics collectors that read
// it from other goroutines at scrape time. The task goroutine adds to
// plain fields or single atomics once per buffer or wait, never per record,
// and nothing here knows about any metrics library.
//
// Time is split as Flink splits it: idle is time spent waiting for input
// (a source: waiting for its next poll), backpressured is time an output
// channel's Send waited for credit, and busy is the rest of the task's life.

// TaskStats is a snapshot of a task's I/O and time counters.
type TaskStats struct {
	// BytesIn and BytesOut count the record bytes of the data buffers
	// the task consumed from its input gate and sent to its output
	// channels (framing included, events not).
	BytesIn, BytesOut int64
	// BuffersIn and BuffersOut count those data buffers.
	BuffersIn, BuffersOut int64
	// Busy, Idle and Backpressured split the time since the task started
	// (until it ended).
	Busy, Idle, Backpressured time.Duration
	// HasInput says the task has an input gate; InputQueued and
	// InputCapacity are its queue's use (when the gate reports it).
	HasInput                   bool
	InputQueued, InputCapacity int
	// HasOutput says the task sends to other tasks; OutputInUse and
	// OutputCapacity sum the credit in use over its output channels.
	HasOutput                   bool
	OutputInUse, OutputCapacity int
}

// ioCounters are the task's own counters; the task goroutine writes the
// plain ones and publish copies them into the atomics.
type ioCounters struct {
	bytesIn, bytesOut, buffersIn, buffersOut int64

	pubBytesIn, pubBytesOut, pubBuffersIn, pubBuffersOut atomic.Int64
	// idleNs is the idle time of waits that ended; idleSince (Unix ns)
	// is the start of a wait under way, 0 when there is none.
	idleNs, idleSince atomic.Int64
	// started and ended bound the task's life (Unix ns, 0 when not yet).
	started, ended atomic.Int64
	// busyMax is the largest busy time reported.
	busyMax atomic.Int64
}

func (c *ioCounters) publish() {
	c.pubBytesIn.Store(c.bytesIn)
	c.pubBytesOut.Store(c.bytesOut)
	c.pubBuffersIn.Store(c.buffersIn)
	c.pubBuffersOut.Store(c.buffersOut)
}

// idleFrom marks the start of a wait for input at now (Unix ns).
func (c *ioCounters) idleFrom(now int64) { c.idleSince.Store(now) }

// idleUntil ends the wait begun at since.
func (c *ioCounters) idleUntil(since, now int64) {
	c.idleSince.Store(0)
	if now > since {
		c.idleNs.Add(now - since)
	}
}

// Stats returns the task's I/O and time counters. It is safe to call while
// the task runs; before Run it reports zero time.
func (t *Task) Stats() TaskStats {
	c := &t.stats
	s := TaskStats{BytesIn: c.pubBytesIn.Load(), BytesOut: c.pubBytesOut.Load(),
		BuffersIn: c.pubBuffersIn.Load(), BuffersOut: c.pubBuffersOut.Load()}
	now := t.clock.Now()
	if end := c.ended.Load(); end != 0 {
		now = end
	}
	idle := c.idleNs.Load()
	if since := c.idleSince.Load(); since != 0 && now > since {
		idle += now - since
	}
	var bp int64
	for _, w := range t.writers {
		for _, ch := range w.Channels() {
			s.HasOutput = true
			if cs, ok := ch.(OutputChannelStats); ok {
				bp += cs.BackpressuredNanos()
				used, capacity := cs.Credits()
				s.OutputInUse += used
				s.OutputCapacity += capacity
			}
		}
	}
	if t.cfg.Input != nil {
		s.HasInput = true
		if gs, ok := t.cfg.Input.(InputGateStats); ok {
			s.InputQueued, s.InputCapacity = gs.Queued()
		}
	}
	var life int64
	if start := c.started.Load(); start != 0 && now > start {
		life = now - start
	}
	s.Idle, s.Backpressured = time.Duration(idle), time.Duration(bp)
	// The parts are read at slightly different moments, so busy could
	// step back by a few microseconds between two calls; a counter must
	// not (a scraper would take it for a restart).
	busy := max(life-idle-bp, 0)
	for {
		prev := c.busyMax.Load()
		if busy <= prev {
			busy = prev
			break
		}
		if c.busyMax.CompareAndSwap(prev, busy) {
			break
		}
	}
	s.Busy = time.Duration(busy)
	return s
}
