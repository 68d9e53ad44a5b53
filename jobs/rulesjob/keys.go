package rulesjob

import (
	"fmt"

	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/runtime"
)

// Keys in state per rule version.
//
// A key's rules.KeyStates holds one RuleState per rule with state for the
// key, stamped with the rule version that wrote it. The evaluator counts,
// per (rule, version), the keys whose stored KeyStates hold such a state:
// a running count, changed only when a key's stored value gains or loses a
// rule's state or moves it to another version (comparing the rule states
// of the old and new value, no map lookup when they are the same rules and
// versions, as on most events). The count is not in keyed state itself:
// when the evaluator opens it is recomputed from the stored values of
// every key (runtime.ForEachKey), which after a restore or a rescale are
// exactly the subtask's keys, so it is right after any failover.
//
// A version keeps the keys whose state it wrote until they next see an
// event or timer of a later version with the same state shape, which then
// takes the state over (and counts it), or until the state is dropped or
// removed. The counts go to etcd with the other counts (weir rules stats),
// to the gauge rule_state_keys per rule, and, as changes per stats
// interval, to the rule_stats stream (see stats.go).

// stateVersion names the rule version that wrote a rule state.
type stateVersion struct {
	rule    string
	version int64
}

// keyCount is a rule version's keys in state on this subtask.
type keyCount struct {
	rule    string
	version int64
	n       int64
	// delta is the change in the open stats interval, not sent yet;
	// listed says c is in keyCounts.changed.
	delta  int64
	listed bool
	stat   *atomicStat
	byRule *ruleKeys
}

// ruleKeys is a rule's keys in state over its versions, for its gauge.
type ruleKeys struct {
	n     int64
	gauge runtime.Gauge
}

// keyCounts is the evaluator's counts and the open interval of changes.
type keyCounts struct {
	counts  map[stateVersion]*keyCount
	rules   map[string]*ruleKeys
	changed []*keyCount // with a delta in the open interval
	open    bool
	start   int64
}

// noInterval marks a count change that is not a change of the rule_stats
// stream: the recount of restored state, which the stream counted before
// the checkpoint.
const noInterval = int64(-1 << 63)

// recountKeys sets the counts from the stored value of every key of this
// subtask's state.
func (e *evaluator) recountKeys(ctx *runtime.KeyedContext[string]) error {
	e.keys = keyCounts{counts: map[stateVersion]*keyCount{}, rules: map[string]*ruleKeys{}}
	err := runtime.ForEachKey(ctx, ruleStateName, func(string) error {
		ks, _ := e.states.Value()
		e.addKeys(ks, 1, noInterval)
		return nil
	})
	if err != nil {
		return fmt.Errorf("counting the keys in state per rule: %w", err)
	}
	return nil
}

// storeStates notes that a key's stored value changed from old to next at
// event time t (either may be nil).
func (e *evaluator) storeStates(old, next *rules.KeyStates, t int64) {
	if sameRuleStates(old, next) {
		return
	}
	e.addKeys(old, -1, t)
	e.addKeys(next, 1, t)
}

// sameRuleStates reports whether a and b hold the states of the same rule
// versions, in the same order (as Store writes them).
func sameRuleStates(a, b *rules.KeyStates) bool {
	if a == nil || b == nil {
		return a == b
	}
	if len(a.States) != len(b.States) {
		return false
	}
	for i := range a.States {
		if a.States[i].Version != b.States[i].Version || a.States[i].ID != b.States[i].ID {
			return false
		}
	}
	return true
}

// addKeys adds d to the count of every rule version with a state in ks.
func (e *evaluator) addKeys(ks *rules.KeyStates, d, t int64) {
	if ks == nil {
		return
	}
	for _, s := range ks.States {
		c := e.keyCount(rules.RuleOfStateID(s.ID), s.Version)
		c.n += d
		c.stat.keys.Add(d)
		c.byRule.n += d
		c.byRule.gauge.Set(float64(c.byRule.n))
		if t != noInterval {
			e.noteKeys(c, d, t)
		}
	}
}

func (e *evaluator) keyCount(rule string, version int64) *keyCount {
	sv := stateVersion{rule, version}
	if c, ok := e.keys.counts[sv]; ok {
		return c
	}
	r := e.keys.rules[rule]
	if r == nil {
		r = &ruleKeys{gauge: e.ctx.Metrics().With("rule", rule).Gauge("rule_state_keys",
			"keys whose state holds the rule's state (any version), in this subtask")}
		e.keys.rules[rule] = r
	}
	c := &keyCount{rule: rule, version: version, stat: e.statOf(rule, version), byRule: r}
	e.keys.counts[sv] = c
	return c
}

// noteKeys adds d, counted at event time t, to c's change in the open
// interval, sending the previous interval's changes first if t is in a
// later one.
func (e *evaluator) noteKeys(c *keyCount, d, t int64) {
	start := e.statsCfg.intervalStart(t)
	k := &e.keys
	if k.open && k.start != start {
		e.sendKeys()
	}
	if !k.open {
		k.open, k.start = true, start
		e.wakeAtEnd(t)
	}
	if !c.listed {
		c.listed = true
		k.changed = append(k.changed, c)
	}
	c.delta += d
}

// sendKeys sends the open interval's changes on as StatParts.
func (e *evaluator) sendKeys() {
	k := &e.keys
	if !k.open {
		return
	}
	k.open = false
	_ = runtime.AtTimestamp(e.ctx.RuntimeContext, k.start+e.statsCfg.Interval-1, func() error {
		for _, c := range k.changed {
			c.listed = false
			if c.delta != 0 {
				e.parts.Collect(StatPart{Rule: c.rule, Version: c.version, Start: k.start, Keys: c.delta})
				c.delta = 0
			}
		}
		return nil
	})
	clear(k.changed)
	k.changed = k.changed[:0]
}
