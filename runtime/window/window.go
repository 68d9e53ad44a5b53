package window

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/weirstream/weir/runtime"
)

// Window is the half-open time interval [Start, End) in Unix milliseconds.
type Window struct {
	Start, End int64
}

// MaxTimestamp is the last millisecond in the window: the time it fires at.
func (w Window) MaxTimestamp() int64 { return w.End - 1 }

func (w Window) String() string { return fmt.Sprintf("[%d, %d)", w.Start, w.End) }

// intersects reports whether w and o overlap or touch; session windows
// that do are merged (Flink merges adjacent windows too).
func (w Window) intersects(o Window) bool { return w.Start <= o.End && w.End >= o.Start }

// cover is the smallest window holding both w and o.
func (w Window) cover(o Window) Window {
	return Window{Start: min(w.Start, o.Start), End: max(w.End, o.End)}
}

// Codec serialises windows for state snapshots (two varints).
type Codec struct{}

func (Codec) Append(dst []byte, w Window) []byte {
	dst = binary.AppendVarint(dst, w.Start)
	return binary.AppendVarint(dst, w.End)
}

func (Codec) Decode(src []byte) (Window, error) {
	r := runtime.NewReader(src)
	w := Window{Start: r.Varint(), End: r.Varint()}
	if err := r.Done(); err != nil {
		return Window{}, fmt.Errorf("window: %w", err)
	}
	return w, nil
}

// TimeDomain says which clock an assigner's windows follow.
type TimeDomain uint8

const (
	// EventTime windows follow record timestamps and fire on watermarks.
	EventTime TimeDomain = iota
	// ProcessingTime windows follow the wall clock of the operator.
	ProcessingTime
)

func (d TimeDomain) String() string {
	if d == ProcessingTime {
		return "processing time"
	}
	return "event time"
}

type kind uint8

const (
	tumbling kind = iota
	sliding
	session
)

// Assigner puts a record into windows by its timestamp: tumbling, sliding
// or session windows, in event time (the default) or processing time.
// Durations are truncated to milliseconds.
type Assigner struct {
	kind   kind
	size   int64 // tumbling and sliding: window length; session: gap
	slide  int64
	offset int64
	domain TimeDomain
	err    error
}

// Tumbling assigns each record to the one window of the given size that
// holds it: [k*size, (k+1)*size) shifted by the offset.
func Tumbling(size time.Duration) Assigner {
	a := Assigner{kind: tumbling, size: size.Milliseconds(), slide: size.Milliseconds()}
	if a.size <= 0 {
		a.err = fmt.Errorf("tumbling window size %v must be at least 1ms", size)
	}
	return a
}

// Sliding assigns each record to the size/slide windows of the given size
// that start every slide and hold it.
func Sliding(size, slide time.Duration) Assigner {
	a := Assigner{kind: sliding, size: size.Milliseconds(), slide: slide.Milliseconds()}
	switch {
	case a.size <= 0:
		a.err = fmt.Errorf("sliding window size %v must be at least 1ms", size)
	case a.slide <= 0:
		a.err = fmt.Errorf("sliding window slide %v must be at least 1ms", slide)
	case a.size/a.slide > 10000:
		// Every record is added to size/slide windows: beyond this the
		// operator does little else.
		a.err = fmt.Errorf("sliding window of size %v and slide %v would put each record in %d windows", size, slide, a.size/a.slide)
	}
	return a
}

// Session assigns each record to the window [ts, ts+gap); windows of a key
// that overlap or touch merge, so a session ends after gap without records.
func Session(gap time.Duration) Assigner {
	a := Assigner{kind: session, size: gap.Milliseconds()}
	if a.size <= 0 {
		a.err = fmt.Errorf("session gap %v must be at least 1ms", gap)
	}
	return a
}

// WithOffset shifts the alignment of tumbling and sliding windows, for
// example to days in a time zone other than UTC. Its magnitude must be
// below the slide (the size of tumbling windows).
func (a Assigner) WithOffset(offset time.Duration) Assigner {
	a.offset = offset.Milliseconds()
	if a.err == nil {
		switch {
		case a.kind == session:
			a.err = errors.New("session windows take no offset")
		case a.offset <= -a.slide || a.offset >= a.slide:
			a.err = fmt.Errorf("window offset %v must be shorter than the slide %v", offset, time.Duration(a.slide)*time.Millisecond)
		}
	}
	return a
}

// InProcessingTime makes the windows follow the operator's wall clock
// instead of record timestamps.
func (a Assigner) InProcessingTime() Assigner { a.domain = ProcessingTime; return a }

// Domain is the clock the windows follow.
func (a Assigner) Domain() TimeDomain { return a.domain }

// Err reports an invalid configuration; the window constructors fail the
// job graph with it.
func (a Assigner) Err() error {
	if a.err == nil && (a.size <= 0 || (a.kind != session && a.slide <= 0)) {
		return errors.New("window assigner not made by Tumbling, Sliding or Session")
	}
	return a.err
}

func (a Assigner) merging() bool { return a.kind == session }

func (a Assigner) String() string {
	var s string
	d := func(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
	switch a.kind {
	case tumbling:
		s = fmt.Sprintf("tumbling %v", d(a.size))
	case sliding:
		s = fmt.Sprintf("sliding %v every %v", d(a.size), d(a.slide))
	default:
		s = fmt.Sprintf("session gap %v", d(a.size))
	}
	if a.offset != 0 {
		s += fmt.Sprintf(" offset %v", d(a.offset))
	}
	return s + " in " + a.domain.String()
}

// windowStart is the start of the window of length size (shifted by
// offset) that holds ts; it rounds towards minus infinity, so negative
// timestamps align like positive ones.
func windowStart(ts, offset, size int64) int64 {
	r := (ts - offset) % size
	if r < 0 {
		r += size
	}
	return ts - r
}

// end is start+length, saturated so that windows near the end of time do
// not wrap around.
func end(start, length int64) int64 {
	if start > math.MaxInt64-length {
		return math.MaxInt64
	}
	return start + length
}

// Assign appends the windows holding ts to dst and returns it; callers
// pass a reused buffer so assignment does not allocate.
func (a Assigner) Assign(ts int64, dst []Window) []Window {
	switch a.kind {
	case tumbling:
		s := windowStart(ts, a.offset, a.size)
		return append(dst, Window{Start: s, End: end(s, a.size)})
	case sliding:
		last := windowStart(ts, a.offset, a.slide)
		for s := last; s > ts-a.size; s -= a.slide {
			dst = append(dst, Window{Start: s, End: end(s, a.size)})
		}
		return dst
	default:
		return append(dst, Window{Start: ts, End: end(ts, a.size)})
	}
}
