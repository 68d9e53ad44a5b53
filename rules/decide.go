package rules

import (
	"cmp"
	"slices"
)

// Several rules may fire on one event (a blacklist that blocks, a validity
// rule that also blocks, a spike rule that asks for review). A rule with
// emit.priority takes part in the event's decision: of the alerts raised
// on the event (not those of a window closing or a match timing out) by
// rules with a priority, not shadow, the one of the lowest priority is the
// decision and the others are overruled by it. Ties go to the lower rule
// ID, then version, so the decision is a function of the alerts alone and
// a replay gives the same one.

// Decision is the outcome of the rules with a priority that fired on one
// event.
type Decision struct {
	Time      int64          `json:"time"`
	Source    string         `json:"source,omitempty"` // where the event was read
	Line      int64          `json:"line,omitempty"`
	Action    string         `json:"decision"`
	Rule      string         `json:"rule"`
	Version   int64          `json:"version"`
	Priority  int            `json:"priority"`
	Key       map[string]any `json:"key"`
	Overruled []Candidate    `json:"overruled,omitempty"`
}

// Candidate is an alert that took part in an event's decision.
type Candidate struct {
	Rule     string         `json:"rule"`
	Version  int64          `json:"version"`
	Action   string         `json:"action"`
	Priority int            `json:"priority"`
	Key      map[string]any `json:"key"`
}

// Candidates appends to dst the alerts of as (all raised on one event)
// that take part in the event's decision.
func Candidates(dst []Candidate, as []Alert) []Candidate {
	for i := range as {
		a := &as[i]
		if a.Priority == nil || a.Shadow || a.TimedOut || a.Window != nil {
			continue
		}
		dst = append(dst, Candidate{Rule: a.Rule, Version: a.Version, Action: a.Action, Priority: *a.Priority, Key: a.Key})
	}
	return dst
}

// Decide resolves the candidates of one event (at least one); it sorts
// cs.
func Decide(t int64, source string, line int64, cs []Candidate) Decision {
	slices.SortFunc(cs, func(a, b Candidate) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Version, b.Version))
	})
	w := cs[0]
	d := Decision{Time: t, Source: source, Line: line, Action: w.Action, Rule: w.Rule, Version: w.Version, Priority: w.Priority, Key: w.Key}
	if len(cs) > 1 {
		d.Overruled = slices.Clone(cs[1:])
	}
	return d
}
