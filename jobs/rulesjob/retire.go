package rulesjob

import (
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/runtime"
)

// Retired rule keys.
//
// A rule's state lives under the routed key of its rule key (its key
// fields and their values). When a change leaves a rule key with no rule
// (a rule's key fields changed, or the last rule of that key was deleted),
// no event is routed to it any more, so the state there would wait for
// the key's next timer, which for a 30-day profile is a month away, and
// for a sequence without `within` never comes. Instead, the router keeps
// routing a copy of each event to such a retired rule key, from the
// change's time for as long as the state of the rules that left it can
// live (rules.Rule.StateLifetime; for ever when that is not bounded): the
// evaluator, which has no rule for that key, removes the key's state at
// its first event after the change (or its first timer, if that comes
// first) and reports it. Which events are copied is decided by event time
// and the broadcast changes alone, so it is the same on every subtask and
// after a restore.

// retiredSigs is the router's broadcast state: per rule key left without
// a rule and the change's time (retiredKey), the event time until which
// events are still routed to it.
var retiredSigs = runtime.BroadcastStateDescriptor[string, int64]{Name: "retired-rule-keys", Key: runtime.StringCodec{}, Value: runtime.Int64Codec{}}

func retiredKey(from int64, sig string) string { return strconv.FormatInt(from, 10) + "\x00" + sig }

func parseRetiredKey(k string) (from int64, sig string) {
	f, sig, _ := strings.Cut(k, "\x00")
	from, _ = strconv.ParseInt(f, 10, 64)
	return from, sig
}

// fieldsOfSig are the key fields of a rule key's signature (keySig).
func fieldsOfSig(sig string) []string {
	if sig == "" {
		return nil
	}
	return strings.Split(sig, "\x1f")
}

// retire records the rule keys of prev that next (in force from from)
// has no rule of, with how long their rules' state may live.
func retire(retired runtime.BroadcastState[string, int64], prev, next *rules.Set, from int64) {
	keep := map[string]bool{}
	for _, r := range next.Rules {
		keep[keySig(r.Key)] = true
	}
	life := map[string]int64{}
	for _, r := range prev.Rules {
		sig := keySig(r.Key)
		if keep[sig] {
			continue
		}
		d, bounded := r.StateLifetime()
		if !bounded {
			d = math.MaxInt64
		}
		life[sig] = max(life[sig], d)
	}
	for sig, d := range life {
		if d == 0 {
			continue // stateless rules only
		}
		until := int64(math.MaxInt64)
		if d < math.MaxInt64-from {
			until = from + d + 1 // a timer at from-1+d may still fire
		}
		retired.Put(retiredKey(from, sig), until)
	}
}

// pruneRetired forgets the retired rule keys whose time is past the
// watermark wm: no event routed from now on needs them.
func pruneRetired(retired runtime.BroadcastState[string, int64], wm int64) {
	var old []string
	for k, until := range retired.All() {
		if until <= wm {
			old = append(old, k)
		}
	}
	for _, k := range old {
		retired.Remove(k)
	}
}

// retiredAt appends to dst the retired rule keys an event at t is copied
// to: retired at or before t, until after t, and not a rule key of the
// set in force at t (sigs).
func retiredAt(dst []sigFields, retired runtime.BroadcastState[string, int64], t int64, sigs []sigFields) []sigFields {
	n := len(dst)
	defer func() {
		slices.SortFunc(dst[n:], func(a, b sigFields) int { return strings.Compare(a.sig, b.sig) })
	}()
	for k, until := range retired.All() {
		from, sig := parseRetiredKey(k)
		if from > t || until <= t || hasSig(sigs, sig) || hasSig(dst, sig) {
			continue
		}
		dst = append(dst, sigFields{sig: sig, fields: fieldsOfSig(sig)})
	}
	return dst
}

func hasSig(sigs []sigFields, sig string) bool {
	for _, s := range sigs {
		if s.sig == sig {
			return true
		}
	}
	return false
}

// latestSet is the set of the latest change in sets, nil if none.
func latestSet(sets runtime.BroadcastState[int64, *rules.Set]) *rules.Set {
	best, set := int64(math.MinInt64), (*rules.Set)(nil)
	for from, s := range sets.All() {
		if set == nil || from > best {
			best, set = from, s
		}
	}
	return set
}
