// Package rules is Weir's rule engine: fraud and anomaly rules written as
// YAML documents, checked and compiled once when they are accepted, and
// evaluated as a pure function of (event, state, params).
//
// The pipeline has three stages, each in its own file:
//
//   - spec.go and load.go read YAML documents into Specs. Every mapping is
//     checked against the fields the format knows, so a typo is refused
//     with its line instead of being silently ignored; fields of the draft
//     format that are not implemented yet are refused by name.
//   - compile.go turns a Spec into a Rule: every expression is compiled with
//     expr-lang against one typed environment (env.go), with now() disabled
//     and the AST size bounded; references to params (p.x), aggregates
//     (agg.x), profile fields (stats.x, hist.x, seen.x) and lists
//     (lists.x) are resolved at compile time, and the rule's inline tests
//     run before it is accepted.
//   - eval.go, window.go and baseline.go evaluate a compiled Rule on one
//     key's State. A Rule never reads the clock: time is the event's
//     timestamp, and windows close when the caller fires the event-time
//     timers the rule asked for (OnTimer). A keyed operator of the runtime
//     maps onto this directly (ProcessElement/OnTimer with event-time
//     timers), and engine.go is a local driver of the same calls that
//     `weir rules test` uses: events in event-time order, the watermark
//     one millisecond behind each event, and every timer fired at the end.
//
// A keyed operator that keeps rule state in its keyed state (the rules
// job) uses keystate.go instead of an Engine: a KeyGroup evaluates the
// rules of one rule key for one key at a time, from and to a KeyStates
// value that holds each rule's State encoded by statecodec.go (a
// deterministic binary form, so the value a snapshot holds is never
// changed by later events) under the rule's StateID, its ID and the
// fingerprint of its state shape.
//
// Thresholds live in params, which the compiled programs read at run time,
// so a change of a threshold does not change the rule's state shape, and
// a new version of a rule that keeps its shape keeps its state.
package rules
