package cep

import (
	"errors"
	"fmt"
	"time"
)

// ErrMalformedPattern is wrapped by every error Compile returns for a
// pattern that is inconsistent or could never match.
var ErrMalformedPattern = errors.New("malformed pattern")

// Context is what an iterative condition sees besides the event: the events
// the partial match under evaluation has accepted so far.
type Context[T any] interface {
	// Events returns the events accepted so far for the named pattern, in
	// the order they were accepted. The event being evaluated is not
	// among them. Do not modify the slice.
	Events(name string) []T
	// Timestamp is the timestamp of the event being evaluated.
	Timestamp() int64
}

// cond is a compiled condition; nil means "always true".
type cond[T any] func(e T, ctx *condCtx[T]) bool

// contiguity says how a pattern relates to the one before it (Flink's
// consuming strategy).
type contiguity uint8

const (
	strict       contiguity = iota // Next: no event in between
	skipTillNext                   // FollowedBy: skip non-matching events
	skipTillAny                    // FollowedByAny: also skip matching ones
	notNext                        // NotNext
	notFollow                      // NotFollowedBy
)

// quantifier kinds.
type quantKind uint8

const (
	single quantKind = iota
	looping
	times
)

// Pattern is one step of a pattern sequence. Methods that refine a step
// (Where, Times, Optional, ...) return the same step; Next, FollowedBy,
// FollowedByAny, NotNext and NotFollowedBy append a new step and return it.
// Misuse is recorded and reported by Compile, which is where Flink throws.
// A Pattern is not safe for concurrent modification; compiled NFAs are
// immutable and may be shared.
type Pattern[T any] struct {
	name     string
	prev     *Pattern[T]
	contig   contiguity
	inner    contiguity // between the events of a looping/times step
	cond     cond[T]
	until    cond[T]
	kind     quantKind
	from, to int // times bounds (to = from for an exact count); loop minimum
	optional bool
	greedy   bool
	window   time.Duration
	skip     SkipStrategy // kept on the first step
	err      error
}

// Begin starts a pattern sequence whose first step is called name. The
// optional skip strategy (default NoSkip) decides which overlapping matches
// survive a match.
func Begin[T any](name string, skip ...SkipStrategy) *Pattern[T] {
	p := &Pattern[T]{name: name, contig: skipTillNext, inner: skipTillNext}
	if len(skip) > 1 {
		p.fail("Begin takes at most one skip strategy")
	}
	if len(skip) == 1 {
		p.skip = skip[0]
	}
	return p
}

func (p *Pattern[T]) fail(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%w: pattern %q: %s", ErrMalformedPattern, p.name, fmt.Sprintf(format, args...))
	}
}

func (p *Pattern[T]) next(name string, c contiguity) *Pattern[T] {
	if (c == notNext || c == notFollow) && p.optional {
		p.fail("a NOT pattern cannot follow an optional pattern")
	}
	return &Pattern[T]{name: name, prev: p, contig: c, inner: skipTillNext}
}

// Next appends a step whose event must directly follow the previous
// step's event (strict contiguity).
func (p *Pattern[T]) Next(name string) *Pattern[T] { return p.next(name, strict) }

// FollowedBy appends a step that skips non-matching events until the next
// matching one (relaxed contiguity).
func (p *Pattern[T]) FollowedBy(name string) *Pattern[T] { return p.next(name, skipTillNext) }

// FollowedByAny appends a step that may also skip matching events, so that
// every later matching event starts an alternative match (non-deterministic
// relaxed contiguity).
func (p *Pattern[T]) FollowedByAny(name string) *Pattern[T] { return p.next(name, skipTillAny) }

// NotNext appends a negative step: a partial match is discarded if the
// event directly after the previous step's event matches it.
func (p *Pattern[T]) NotNext(name string) *Pattern[T] { return p.next(name, notNext) }

// NotFollowedBy appends a negative step: a partial match is discarded if
// any event matching it occurs before the next step matches. As the last
// step it needs Within: the match is then emitted when the window closes
// without such an event.
func (p *Pattern[T]) NotFollowedBy(name string) *Pattern[T] { return p.next(name, notFollow) }

func and[T any](a, b cond[T]) cond[T] {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return func(e T, ctx *condCtx[T]) bool { return a(e, ctx) && b(e, ctx) }
}

func or[T any](a, b cond[T]) cond[T] {
	if a == nil || b == nil {
		return nil // true OR x
	}
	return func(e T, ctx *condCtx[T]) bool { return a(e, ctx) || b(e, ctx) }
}

func not[T any](a cond[T]) cond[T] {
	if a == nil {
		return func(T, *condCtx[T]) bool { return false }
	}
	return func(e T, ctx *condCtx[T]) bool { return !a(e, ctx) }
}

func simple[T any](f func(T) bool) cond[T] {
	return func(e T, _ *condCtx[T]) bool { return f(e) }
}

func iterative[T any](f func(T, Context[T]) bool) cond[T] {
	return func(e T, ctx *condCtx[T]) bool { return f(e, ctx) }
}

// Where adds a condition the step's events must meet; several Where calls
// are ANDed.
func (p *Pattern[T]) Where(f func(e T) bool) *Pattern[T] {
	p.cond = and(p.cond, simple(f))
	return p
}

// WhereCtx adds an iterative condition, which also sees the events the
// partial match has accepted so far.
func (p *Pattern[T]) WhereCtx(f func(e T, ctx Context[T]) bool) *Pattern[T] {
	p.cond = and(p.cond, iterative(f))
	return p
}

func (p *Pattern[T]) or(c cond[T]) *Pattern[T] {
	if p.cond == nil {
		p.cond = c
	} else {
		p.cond = or(p.cond, c)
	}
	return p
}

// Or adds an alternative condition: an event matches if it meets the
// conditions so far or this one.
func (p *Pattern[T]) Or(f func(e T) bool) *Pattern[T] { return p.or(simple(f)) }

// OrCtx is Or with an iterative condition.
func (p *Pattern[T]) OrCtx(f func(e T, ctx Context[T]) bool) *Pattern[T] { return p.or(iterative(f)) }

func (p *Pattern[T]) setUntil(c cond[T]) *Pattern[T] {
	switch {
	case p.kind != looping:
		p.fail("Until applies only to looping patterns (OneOrMore, TimesOrMore)")
	case p.until != nil:
		p.fail("only one Until condition can be applied")
	default:
		p.until = c
	}
	return p
}

// Until stops a looping step: once an event meets f, the loop accepts no
// more events (and f's event is not accepted into it).
func (p *Pattern[T]) Until(f func(e T) bool) *Pattern[T] { return p.setUntil(simple(f)) }

// UntilCtx is Until with an iterative condition.
func (p *Pattern[T]) UntilCtx(f func(e T, ctx Context[T]) bool) *Pattern[T] {
	return p.setUntil(iterative(f))
}

func (p *Pattern[T]) quantify(k quantKind, from, to int, what string) *Pattern[T] {
	switch {
	case p.contig == notNext || p.contig == notFollow:
		p.fail("%s does not apply to a NOT pattern", what)
	case p.kind != single:
		p.fail("a quantifier is already applied (%s)", what)
	default:
		p.kind, p.from, p.to = k, from, to
	}
	return p
}

// OneOrMore makes the step accept one or more events (b+). By default the
// events of the loop have relaxed contiguity (see Consecutive and
// AllowCombinations).
func (p *Pattern[T]) OneOrMore() *Pattern[T] { return p.quantify(looping, 1, 1, "OneOrMore") }

// TimesOrMore makes the step accept n or more events.
func (p *Pattern[T]) TimesOrMore(n int) *Pattern[T] {
	if n < 1 {
		p.fail("TimesOrMore(%d): the count must be at least 1", n)
		return p
	}
	return p.quantify(looping, n, n, "TimesOrMore")
}

// Times makes the step accept exactly n events.
func (p *Pattern[T]) Times(n int) *Pattern[T] {
	if n < 1 {
		p.fail("Times(%d): the count must be at least 1", n)
		return p
	}
	return p.quantify(times, n, n, "Times")
}

// TimesRange makes the step accept from..to events (from 0 means the step
// is also optional).
func (p *Pattern[T]) TimesRange(from, to int) *Pattern[T] {
	if from < 0 || to < 1 || to < from {
		p.fail("TimesRange(%d, %d): want 0 <= from <= to, to >= 1", from, to)
		return p
	}
	if from == 0 {
		p.Optional()
		from = 1
	}
	return p.quantify(times, from, to, "TimesRange")
}

// Optional makes the step optional: matches may skip it.
func (p *Pattern[T]) Optional() *Pattern[T] {
	switch {
	case p.contig == notNext || p.contig == notFollow:
		p.fail("a NOT pattern cannot be optional")
	case p.optional:
		p.fail("Optional is already applied")
	case p.prev != nil && p.prev.greedy:
		p.fail("an optional pattern cannot follow a greedy one")
	default:
		p.optional = true
	}
	return p
}

// Greedy makes a looping or times step accept as many events as it can:
// while the loop can take an event, the next step does not see it.
func (p *Pattern[T]) Greedy() *Pattern[T] {
	switch {
	case p.contig == notNext || p.contig == notFollow:
		p.fail("a NOT pattern cannot be greedy")
	case p.kind == single:
		p.fail("Greedy applies only to looping or times patterns; apply the quantifier first")
	case p.inner == skipTillAny:
		p.fail("Greedy cannot be combined with AllowCombinations")
	case p.greedy:
		p.fail("Greedy is already applied")
	default:
		p.greedy = true
	}
	return p
}

func (p *Pattern[T]) innerContiguity(c contiguity, what string) *Pattern[T] {
	switch {
	case p.kind == single:
		p.fail("%s applies only to looping or times patterns; apply the quantifier first", what)
	case p.inner != skipTillNext:
		p.fail("%s: the inner contiguity is already set", what)
	case c == skipTillAny && p.greedy:
		p.fail("Greedy cannot be combined with AllowCombinations")
	default:
		p.inner = c
	}
	return p
}

// Consecutive makes the events of a looping or times step strictly
// contiguous: a non-matching event in between ends the loop.
func (p *Pattern[T]) Consecutive() *Pattern[T] { return p.innerContiguity(strict, "Consecutive") }

// AllowCombinations gives the events of a looping or times step
// non-deterministic relaxed contiguity: every combination of matching
// events is a candidate.
func (p *Pattern[T]) AllowCombinations() *Pattern[T] {
	return p.innerContiguity(skipTillAny, "AllowCombinations")
}

// Within bounds the time between a match's first event and its last: a
// partial match older than d is discarded (and reported as timed out). If
// several steps set a window, the smallest applies.
func (p *Pattern[T]) Within(d time.Duration) *Pattern[T] {
	if d <= 0 {
		p.fail("Within(%v): the window must be positive", d)
		return p
	}
	p.window = d
	return p
}

// Name is the step's name.
func (p *Pattern[T]) Name() string { return p.name }

// skipKind is the kind of after-match skip strategy.
type skipKind uint8

const (
	noSkip skipKind = iota
	skipToNext
	skipPastLast
	skipToFirst
	skipToLast
)

// SkipStrategy decides, after a match, which other partial and completed
// matches are discarded (Flink's AfterMatchSkipStrategy).
type SkipStrategy struct {
	kind        skipKind
	name        string
	errorOnMiss bool
}

// NoSkip emits every match.
func NoSkip() SkipStrategy { return SkipStrategy{} }

// SkipToNext discards the partial matches that started with the same event
// as the emitted match.
func SkipToNext() SkipStrategy { return SkipStrategy{kind: skipToNext} }

// SkipPastLastEvent discards the partial matches that started at or before
// the last event of the emitted match.
func SkipPastLastEvent() SkipStrategy { return SkipStrategy{kind: skipPastLast} }

// SkipToFirst discards the partial matches that started before the first
// event of step name in the emitted match.
func SkipToFirst(name string) SkipStrategy { return SkipStrategy{kind: skipToFirst, name: name} }

// SkipToLast discards the partial matches that started before the last
// event of step name in the emitted match.
func SkipToLast(name string) SkipStrategy { return SkipStrategy{kind: skipToLast, name: name} }

// ErrorOnMiss makes SkipToFirst/SkipToLast fail processing when a match has
// no event for the named step (by default nothing is skipped then).
func (s SkipStrategy) ErrorOnMiss() SkipStrategy { s.errorOnMiss = true; return s }

func (s SkipStrategy) String() string {
	switch s.kind {
	case skipToNext:
		return "SKIP_TO_NEXT"
	case skipPastLast:
		return "SKIP_PAST_LAST_EVENT"
	case skipToFirst:
		return "SKIP_TO_FIRST[" + s.name + "]"
	case skipToLast:
		return "SKIP_TO_LAST[" + s.name + "]"
	}
	return "NO_SKIP"
}
