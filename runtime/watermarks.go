package runtime

// The task's event-time clock. A task has one watermark for its whole
// chain: with input channels it is the minimum over the channels that are
// neither idle nor ended; with a timestamp assigner in the chain, it is
// the assigner's (or, for FromWatermarkingSource, the source's, which
// also says when it is idle). When it advances, the chain's keyed
// operators fire their event-time timers (head first, so what a timer
// emits reaches the next operator before that one's timers fire), and
// then the watermark goes downstream behind every record emitted before
// it.
type watermarks struct {
	ts, wm int64
	inWM   []int64
	inIdle []bool
	noWM   []bool // channels of inputs without event time
	gen    watermarkGenerator
	// genIdle is gen's own idleness, for a source that declares it
	// (FromWatermarkingSource); nil for an assigner.
	genIdle idleDeclarer
	genSeen int64
	genAt   int64 // Unix ns the generator last saw a record
	idleOut bool
	timers  []eventTimerOwner // head first
}

func (w *watermarks) init(channels int) {
	w.ts, w.wm = NoTimestamp, NoTimestamp
	w.inWM = make([]int64, channels)
	for i := range w.inWM {
		w.inWM[i] = NoTimestamp
	}
	w.inIdle = make([]bool, channels)
}

// advanceWatermark moves the task's watermark forward to wm, if that is
// forward.
func (t *Task) advanceWatermark(wm int64) {
	if wm <= t.wmk.wm {
		return
	}
	t.wmk.wm = wm
	t.publishedWM.Store(wm)
	for _, o := range t.wmk.timers {
		o.fireEventTimers(wm)
		if t.err != nil {
			return
		}
	}
	t.setIdle(false)
	for _, w := range t.writers {
		w.broadcast(BufferWatermark, wm)
	}
}

// setIdle tells the consumers whether this task's output is idle.
func (t *Task) setIdle(idle bool) {
	if t.wmk.idleOut == idle || t.wmk.wm == MaxWatermark {
		return // after the last watermark, idleness means nothing
	}
	t.wmk.idleOut = idle
	v := int64(0)
	if idle {
		v = 1
	}
	for _, w := range t.writers {
		w.broadcast(BufferWatermarkStatus, v)
	}
}

// onInputWatermark handles a watermark or status event of channel ch.
func (t *Task) onInputWatermark(ch int, kind BufferKind, v int64) {
	if t.wmk.gen != nil {
		// An assigner makes this task's watermarks; only the end of the
		// input gets through, as in Flink.
		if kind == BufferWatermark && v == MaxWatermark {
			t.advanceWatermark(MaxWatermark)
		}
		return
	}
	if kind == BufferWatermarkStatus {
		t.wmk.inIdle[ch] = v == 1
	} else if v > t.wmk.inWM[ch] {
		t.wmk.inWM[ch] = v
	}
	t.combineInputs()
}

// combineInputs recomputes the watermark from the input channels: the
// lowest of those that are not idle. A channel that ended keeps its last
// watermark: MaxWatermark if its input reached the end, the one before the
// stop if a savepoint stopped it (so the others cannot run ahead of it and
// fire windows early on partial data).
func (t *Task) combineInputs() {
	lo, active := MaxWatermark, false
	for ch, wm := range t.wmk.inWM {
		if t.wmk.inIdle[ch] || t.wmk.noWM[ch] {
			continue
		}
		active = true
		lo = min(lo, wm)
	}
	if !active {
		t.setIdle(true)
		return
	}
	t.setIdle(false)
	t.advanceWatermark(lo)
}

// idleDeclarer is a watermark generator that says itself whether its
// input is idle, instead of the task timing its records.
type idleDeclarer interface{ isIdle() bool }

// generateWatermark polls the chain's timestamp assigner after a batch:
// the watermark its records allow, and whether its input went idle.
func (t *Task) generateWatermark(now int64) {
	g := t.wmk.gen
	if d := t.wmk.genIdle; d != nil {
		if d.isIdle() {
			t.setIdle(true)
			return
		}
		t.setIdle(false) // a record or watermark since: active again
	}
	if n := g.records(); n != t.wmk.genSeen {
		t.wmk.genSeen, t.wmk.genAt = n, now
	} else if d := g.idleTimeout(); d > 0 && !t.wmk.idleOut && now-t.wmk.genAt >= int64(d) {
		t.setIdle(true)
		return
	}
	if wm := g.watermark(); wm > t.wmk.wm {
		t.advanceWatermark(wm)
	}
}

// idleDeadline is when an assigner without records would turn idle, for a
// sleeping source to wake up at; 0 if never.
func (t *Task) idleDeadline() int64 {
	if t.wmk.gen == nil || t.wmk.idleOut {
		return 0
	}
	d := t.wmk.gen.idleTimeout()
	if d <= 0 {
		return 0
	}
	return t.wmk.genAt + int64(d)
}

// Watermark is the task's current event-time watermark (NoTimestamp before
// the first). It is safe to call while the task runs.
func (t *Task) Watermark() int64 { return t.publishedWM.Load() }
