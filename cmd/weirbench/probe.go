package main

import (
	"sync"
	"time"

	"github.com/weirstream/weir/internal/cluster"
)

// outputProbe watches the fraud job's alerts, which its print sink writes
// to the TaskManagers' stdout as they happen (flushed per line): it samples
// the length of each TaskManager's stdout every couple of milliseconds. An
// alert is printed while the detector processes a record, so the first
// growth after a restart dates the first record the new attempt processed,
// to within the sampling interval, the delay of the stdout pipe into the
// harness, and the wait for a record that alerts (the failover and rescale
// runs use small=50, so about 3 % of records alert: at 40,000 records/s
// that is about a millisecond).
type outputProbe struct {
	tms      []*cluster.Process
	interval time.Duration
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once

	mu      sync.Mutex
	samples [][]probeSample // per TaskManager, only when the length changed (and the first)
}

type probeSample struct {
	t time.Time
	n int
}

func startProbe(tms []*cluster.Process, interval time.Duration) *outputProbe {
	p := &outputProbe{tms: tms, interval: interval, stop: make(chan struct{}), done: make(chan struct{}),
		samples: make([][]probeSample, len(tms))}
	go p.run()
	return p
}

func (p *outputProbe) run() {
	defer close(p.done)
	last := make([]int, len(p.tms))
	for i := range last {
		last[i] = -1
	}
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		for i, tm := range p.tms {
			now := time.Now()
			n := len(tm.Stdout())
			if n != last[i] {
				p.mu.Lock()
				p.samples[i] = append(p.samples[i], probeSample{t: now, n: n})
				p.mu.Unlock()
				last[i] = n
			}
		}
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

// Stop ends the sampling; it may be called more than once.
func (p *outputProbe) Stop() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
}

// firstGrowthAfter returns when TaskManager i's output first grew after
// time after: the first sample later than after that is longer than the
// last sample at or before after. The sample is taken at most one interval
// after the growth.
func (p *outputProbe) firstGrowthAfter(i int, after time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	base := -1
	for _, s := range p.samples[i] {
		if !s.t.After(after) {
			base = s.n
			continue
		}
		if base >= 0 && s.n > base {
			return s.t, true
		}
		if base < 0 {
			base = s.n // no sample before after: the first one is the base
		}
	}
	return time.Time{}, false
}

// lastGrowthBefore returns the time of the last sample before time before
// that saw TaskManager i's output grow: output was last written between the
// previous sample and then.
func (p *outputProbe) lastGrowthBefore(i int, before time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var t time.Time
	ok := false
	for k, s := range p.samples[i] {
		if !s.t.Before(before) {
			break
		}
		if k > 0 {
			t, ok = s.t, true
		}
	}
	return t, ok
}
