// Package window adds Flink-style windows to keyed streams: tumbling,
// sliding and session windows in event or processing time, with
// incremental aggregation (an AggregateFunction's add / merge / result), a
// ProcessWindowFunction that sees a window's elements and metadata, or both
// (aggregate, then hand the single result to the process function).
//
// The package is built on runtime's public API: a window operator is a
// runtime.KeyedProcessFunction whose keyed state holds, per key, the
// accumulators of its panes or sessions (the accumulator of a process
// window is the list of its elements), and whose timers fire and purge
// windows. Window state and timers are therefore checkpointed and
// redistributed on rescale like any other keyed state.
//
// Semantics follow Flink's WindowOperator with its default time triggers:
//
//   - Windows are aligned to the epoch (plus an optional offset): a record
//     with timestamp ts falls in the tumbling window starting at
//     ts - (ts - offset) mod size. A window [start, end) has maxTimestamp
//     end-1; in event time it fires once the watermark reaches maxTimestamp,
//     in processing time once the wall clock does. Every result carries
//     the window's maxTimestamp as its event time.
//   - Allowed lateness keeps an event-time window's state until the
//     watermark passes maxTimestamp + lateness (its cleanup time). A record
//     for a window that has fired but is not yet cleaned up is added and
//     fires the window again at once with the updated result (a late
//     firing). A record all of whose windows are past their cleanup time
//     is late: it goes to the late-data side output if one is set, and is
//     dropped otherwise.
//   - Session windows start as [ts, ts+gap) and merge with every window
//     they overlap or touch; the accumulators are combined with the
//     aggregate's Merge and the timers move to the merged window. Which
//     windows a key has, and where each one's state lives, is kept in
//     keyed state too (Flink's MergingWindowSet).
//
// Tumbling and sliding windows are stored as panes (Flink SQL's window
// slicing): slices of the greatest common divisor of size and slide. An
// element is added to its one pane, however many windows hold it, and a
// window's result merges its panes when it fires; a pane is purged with
// the last window that holds it.
//
// Timers are per (key, time), so one timer may stand for several windows
// of a key: on a timer the operator fires the window of the key that ends
// then and purges what is due for cleanup then, looking both up by time.
//
// On the hot path of tumbling and sliding windows an element costs a pane
// computation, one state read and one state write. A new pane registers
// the timer of the earliest window holding it that has yet to fire, and
// each window that fires registers the next one's, so the timer service is
// touched per pane and window, and nothing is allocated per element.
// Timestamps beyond ±2^62 ms, where window arithmetic could overflow, are
// handled as late records.
//
// Watermarks are not restored: event time starts again from nothing. The
// operator therefore checkpoints the watermark it had reached (operator
// state), and until the watermark passes it again, every record registers
// its windows' timers, so a window that fired before the checkpoint fires
// again on the records it gets meanwhile, as in Flink.
package window
