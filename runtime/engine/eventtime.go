package engine

// The task's event-time clock. A task's watermark is, with input channels,
// the minimum over the channels that are neither idle nor ended
// (InputWatermarks). With a timestamp assigner in the chain (or a
// watermarking source, which also says when it is idle) it is the
// assigner's, for the assigner and the operators after it; the operators
// before it keep the inputs' (Chain.AdvanceInputWatermark). When it
// advances, the chain fires its event-time timers (head first, so what a
// timer emits reaches the next operator before that one's timers fire),
// and then the watermark goes downstream behind every record emitted
// before it.

// advanceWatermark moves the task's watermark forward to wm, if that is
// forward.
func (t *Task) advanceWatermark(wm int64) {
	if wm <= t.wm {
		return
	}
	t.wm = wm
	t.publishedWM.Store(wm)
	t.chain.AdvanceWatermark(wm)
	if t.err != nil {
		return
	}
	t.setIdle(false)
	for _, w := range t.writers {
		w.Broadcast(BufferWatermark, wm)
	}
}

// setIdle tells the consumers whether this task's output is idle.
func (t *Task) setIdle(idle bool) {
	if t.idleOut == idle || t.wm == MaxWatermark {
		return // after the last watermark, idleness means nothing
	}
	t.idleOut = idle
	v := int64(0)
	if idle {
		v = 1
	}
	for _, w := range t.writers {
		w.Broadcast(BufferWatermarkStatus, v)
	}
}

// onInputWatermark handles a watermark or status event of channel ch.
func (t *Task) onInputWatermark(ch int, kind BufferKind, v int64) {
	t.inWM.Update(ch, kind, v)
	wm, active := t.inWM.Combined()
	if active && wm > t.publishedIn.Load() {
		t.publishedIn.Store(wm)
		if t.gen != nil {
			t.chain.AdvanceInputWatermark(wm)
		}
	}
	if t.gen != nil {
		// An assigner makes this task's watermarks, for itself and the
		// operators after it; only the end of the input gets through,
		// as in Flink.
		if kind == BufferWatermark && v == MaxWatermark {
			t.advanceWatermark(MaxWatermark)
		}
		return
	}
	if !active {
		t.setIdle(true)
		return
	}
	t.setIdle(false)
	t.advanceWatermark(wm)
}

// generateWatermark polls the chain's timestamp assigner after a batch:
// the watermark its records allow, and whether its input went idle.
func (t *Task) generateWatermark(now int64) {
	g := t.gen
	if d := t.genIdle; d != nil {
		if d.IsIdle() {
			t.setIdle(true)
			return
		}
		t.setIdle(false) // a record or watermark since: active again
	}
	if n := g.Records(); n != t.genSeen {
		t.genSeen, t.genAt = n, now
	} else if d := g.IdleTimeout(); d > 0 && !t.idleOut && now-t.genAt >= int64(d) {
		t.setIdle(true)
		return
	}
	if wm := g.Watermark(); wm > t.wm {
		t.advanceWatermark(wm)
	}
}

// idleDeadline is when an assigner without records would turn idle, for a
// sleeping task to wake up at; 0 if never.
func (t *Task) idleDeadline() int64 {
	if t.gen == nil || t.idleOut {
		return 0
	}
	d := t.gen.IdleTimeout()
	if d <= 0 {
		return 0
	}
	return t.genAt + int64(d)
}

// Watermark is the task's current event-time watermark (NoTimestamp before
// the first). It is safe to call while the task runs.
func (t *Task) Watermark() int64 { return t.publishedWM.Load() }

// InputWatermark is the lowest watermark of the task's active input
// channels (NoTimestamp before the first, and always for a source): the
// watermark of the operators a timestamp assigner in the chain does not
// reach. It is safe to call while the task runs.
func (t *Task) InputWatermark() int64 { return t.publishedIn.Load() }
