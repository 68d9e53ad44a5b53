package engine

import "math"

// NoTimestamp is the timestamp of a record that has none, and the
// watermark of an operator before its first watermark (Flink's
// Long.MIN_VALUE).
const NoTimestamp int64 = math.MinInt64

// MaxWatermark is the watermark of an input that has ended: every
// event-time timer fires and every window closes.
const MaxWatermark int64 = math.MaxInt64

// InputWatermarks combines the watermarks and idle status of a task's
// input channels into the task's watermark: the lowest over the channels
// that are neither idle nor without event time. A channel that ended keeps
// its last watermark: MaxWatermark if its input reached the end, the one
// before the stop if a savepoint stopped it (so the others cannot run
// ahead of it and fire windows early on partial data).
type InputWatermarks struct {
	wm   []int64
	idle []bool
	noWM []bool
}

// NewInputWatermarks tracks len(noWM) channels; noWM[i] marks a channel
// whose input has no event time, which never holds the watermark back.
func NewInputWatermarks(noWM []bool) *InputWatermarks {
	w := &InputWatermarks{wm: make([]int64, len(noWM)), idle: make([]bool, len(noWM)), noWM: noWM}
	for i := range w.wm {
		w.wm[i] = NoTimestamp
	}
	return w
}

// Update applies a BufferWatermark or BufferWatermarkStatus event of
// channel ch.
func (w *InputWatermarks) Update(ch int, kind BufferKind, v int64) {
	if kind == BufferWatermarkStatus {
		w.idle[ch] = v == 1
	} else if v > w.wm[ch] {
		w.wm[ch] = v
	}
}

// Combined returns the lowest watermark of the active channels, and
// whether any channel is active (if none is, the task's output is idle).
func (w *InputWatermarks) Combined() (wm int64, active bool) {
	wm = MaxWatermark
	for ch, v := range w.wm {
		if w.idle[ch] || w.noWM[ch] {
			continue
		}
		active = true
		wm = min(wm, v)
	}
	return wm, active
}
