// Package connectors holds Weir's sources and sinks. This first slice has
// the in-process ones: a rate-limited generator source and a print sink.
package connectors

import (
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
		g.start = now
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
