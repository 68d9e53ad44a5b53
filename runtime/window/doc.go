// Package window adds Flink-style windows to keyed streams: tumbling,
// sliding and session windows in event or processing time, with
// incremental aggregation (an AggregateFunction's add / merge / result), a
// ProcessWindowFunction that sees a window's elements and metadata, or both
// (aggregate, then hand the single result to the process function).
//
// The package is built on runtime's public API only: a window operator is a
// runtime.KeyedProcessFunction whose keyed state holds, per key, a map from
// window to accumulator (the accumulator of a process window is the list of
// its elements), and whose timers fire and purge windows. Window state and
// timers are therefore checkpointed and redistributed on rescale like any
// other keyed state.
//
// Semantics follow Flink's WindowOperator with its default time triggers:
//
//   - Windows are aligned to the epoch (plus an optional offset): a record
//     with timestamp ts falls in the tumbling window starting at
//     ts - (ts - offset) mod size. A window [start, end) has maxTimestamp
//     end-1; in event time it fires once the watermark reaches maxTimestamp,
//     in processing time once the wall clock does.
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
// Timers are per (key, time), so one timer may stand for several windows
// of a key: on a timer the operator fires every window of the key whose
// maxTimestamp is that time and purges every window whose cleanup time is.
//
// On the hot path of incremental aggregation an element costs a window
// computation, one state read and one state write; timers are registered
// only when a window first gets state, so the steady state allocates
// nothing per element.
package window
