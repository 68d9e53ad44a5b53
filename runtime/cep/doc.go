// Package cep detects event patterns on keyed streams with the semantics of
// Apache Flink's CEP library.
//
// A pattern sequence is built with Begin and the contiguity methods (Next,
// FollowedBy, FollowedByAny, NotNext, NotFollowedBy), refined per step with
// conditions (Where, Or, Until and their iterative *Ctx forms, which see
// the events a partial match has accepted so far) and quantifiers (Times,
// TimesRange, TimesOrMore, OneOrMore, Optional, Greedy, Consecutive,
// AllowCombinations), bounded in time with Within, and given an after-match
// skip strategy at Begin.
//
// Compile turns the sequence into a non-deterministic automaton built the
// way Flink's NFACompiler builds it (take, ignore and proceed edges; ignore
// twins of optional and looping states; stop states for NOT steps; a
// pending state for a trailing NotFollowedBy), so the same inputs give the
// same matches. Patterns that could never match are rejected there.
//
// The automaton is pure: NFA.Process and NFA.Advance take a per-key State
// and return a new one (never modifying their input, so a State kept in
// keyed state can be snapshotted while matching continues). A State holds
// the partial matches as runs pointing into immutable chains of accepted
// events; branches that share a prefix share its chain, which is what
// Flink's shared buffer does with reference counts. StateCodec writes
// each shared event once.
//
// Detect wires the automaton into a keyed stream: in event time it buffers
// events in keyed state until the watermark passes them and feeds them in
// timestamp order; in processing time it matches events as they arrive.
package cep
