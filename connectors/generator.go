// Package connectors holds Weir's sources and sinks. This first slice has
// the in-process ones: a rate-limited generator source and a print sink.
package connectors

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/weirstream/weir/runtime"
)

// Generator is a source that emits next(0), next(1), ... at a fixed rate.
// Record i is due at (i+1)/Rate seconds after the first poll, so a rate of
// 10 emits its first record after 100 ms, like Flink's walkthrough source.
type Generator[T any] struct {
	// Rate is records per second; 0 emits as fast as downstream accepts.
	Rate float64
	// Count is the number of records before the source finishes; 0 never.
	Count int64
	// Next builds record i; now is the poll's wall-clock time, read once
	// per batch so generating stays cheap.
	Next func(i int64, now time.Time) T

	emitted int64
	start   time.Time
	subtask int
}

// InitializeState restores the position: the generator's state is how
// many records its subtask emitted. Each subtask takes back its own
// position; after a rescale, new subtasks start at 0 and the positions of
// removed ones are dropped (their records were a function of the index,
// so nothing is replayed twice).
func (g *Generator[T]) InitializeState(ctx *runtime.RuntimeContext, entries [][]byte) error {
	g.subtask = ctx.SubtaskIndex()
	for _, e := range entries {
		r := runtime.NewReader(e)
		subtask, emitted := r.Varint(), r.Varint()
		if err := r.Done(); err != nil || emitted < 0 {
			return fmt.Errorf("generator: restored position %x: %w", e, runtime.ErrCorrupt)
		}
		if int(subtask) == g.subtask {
			g.emitted = emitted
		}
	}
	return nil
}

// SnapshotState records the position.
func (g *Generator[T]) SnapshotState(int64) ([][]byte, error) {
	e := binary.AppendVarint(nil, int64(g.subtask))
	return [][]byte{binary.AppendVarint(e, g.emitted)}, nil
}

// generatorBatch bounds how many records one Poll emits, so the task gets
// back control often enough for timers, flushes and cancellation.
const generatorBatch = 512

// Poll implements runtime.SourceFunction.
func (g *Generator[T]) Poll(out runtime.Collector[T]) (time.Duration, error) {
	if g.Count > 0 && g.emitted >= g.Count {
		return 0, runtime.ErrEndOfInput
	}
	now := time.Now()
	if g.start.IsZero() {
		// A restored generator goes on at its rate from its position.
		g.start = now
		if g.Rate > 0 {
			g.start = now.Add(-time.Duration(float64(g.emitted) / g.Rate * float64(time.Second)))
		}
	}
	n := int64(generatorBatch)
	if g.Rate > 0 {
		due := int64(now.Sub(g.start).Seconds() * g.Rate)
		if due <= g.emitted {
			next := g.start.Add(time.Duration(float64(g.emitted+1) / g.Rate * float64(time.Second)))
			return max(next.Sub(now), time.Microsecond), nil
		}
		n = min(n, due-g.emitted)
	}
	if g.Count > 0 {
		n = min(n, g.Count-g.emitted)
	}
	for end := g.emitted + n; g.emitted < end; g.emitted++ {
		out.Collect(g.Next(g.emitted, now))
	}
	return 0, nil
}

// ValidateRate checks a rate parameter.
func ValidateRate(rate float64) error {
	if rate < 0 {
		return fmt.Errorf("rate %g must be 0 (unlimited) or positive", rate)
	}
	return nil
}
