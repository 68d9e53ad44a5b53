package rules

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// keyedRun drives KeyGroups as a keyed operator does: every key's states
// are stored encoded between calls (through KeyStatesCodec, so each call
// starts from bytes), a key is called at each time one of its events or
// timers is due, and the rule set may change at event times.
type keyedRun struct {
	t       *testing.T
	set     *Set
	groups  map[string]*KeyGroup // by key signature
	store   map[string][]byte    // by routed key
	wakes   map[string]map[int64]bool
	alerts  []Alert
	dropped []Dropped
	errs    []error
	onStore func([]byte) // hears every stored key state
	// byPointer keeps the stored values themselves, as the memory
	// backend does (so the groups' caches of decoded keys are used).
	byPointer bool
	values    map[string]*KeyStates
}

func newKeyedRun(t *testing.T, set *Set) *keyedRun {
	k := &keyedRun{t: t, store: map[string][]byte{}, wakes: map[string]map[int64]bool{}, values: map[string]*KeyStates{}}
	k.setRules(set)
	return k
}

func (k *keyedRun) setRules(set *Set) {
	k.set, k.groups = set, map[string]*KeyGroup{}
	by := map[string][]*Rule{}
	for _, r := range set.Rules {
		// Paused rules are in their group, as in the job: they keep
		// their state.
		sig := strings.Join(r.Key, "\x1f")
		by[sig] = append(by[sig], r)
	}
	for sig, rs := range by {
		k.groups[sig] = NewKeyGroup(rs)
	}
}

// call runs the key rk's events evs at time t.
func (k *keyedRun) call(rk string, t int64, evs []*Event) {
	k.t.Helper()
	sig, _, _ := strings.Cut(rk, "\x00")
	delete(k.wakes[rk], t)
	var ks *KeyStates
	if k.byPointer {
		ks = k.values[rk]
	} else if b, ok := k.store[rk]; ok {
		var err error
		if ks, err = (KeyStatesCodec{}).Decode(b); err != nil {
			k.t.Fatal(err)
		}
		if again := (KeyStatesCodec{}).Append(nil, ks); !bytes.Equal(again, b) {
			k.t.Fatalf("key states re-encode differently:\n%x\n%x", b, again)
		}
	}
	g := k.groups[sig]
	if g == nil {
		if ks != nil {
			for _, s := range ks.States {
				k.dropped = append(k.dropped, Dropped{ID: s.ID, Version: s.Version})
			}
		}
		delete(k.store, rk)
		delete(k.values, rk)
		return
	}
	g.Wake = func(w int64) {
		if k.wakes[rk] == nil {
			k.wakes[rk] = map[int64]bool{}
		}
		k.wakes[rk][w] = true
	}
	k.dropped = g.Load(ks, k.dropped)
	var err error
	if k.alerts, err = g.Fire(t-1, k.alerts); err != nil {
		k.errs = append(k.errs, err)
	}
	for _, ev := range evs {
		if k.alerts, err = g.Process(ev, k.alerts); err != nil {
			k.errs = append(k.errs, err)
		}
	}
	if k.alerts, err = g.Fire(t, k.alerts); err != nil {
		k.errs = append(k.errs, err)
	}
	if !g.Changed() {
		return
	}
	out, err := g.Store()
	if err != nil {
		k.t.Fatal(err)
	}
	if out == nil {
		delete(k.store, rk)
		delete(k.values, rk)
		return
	}
	if k.byPointer {
		k.values[rk] = out
	}
	k.store[rk] = KeyStatesCodec{}.Append(nil, out)
	if k.onStore != nil {
		k.onStore(k.store[rk])
	}
}

// fireUntil calls every key with a timer at or before wm, in time order.
func (k *keyedRun) fireUntil(wm int64) {
	for {
		best, bk := int64(math.MaxInt64), ""
		for rk, ts := range k.wakes {
			for t := range ts {
				if t <= wm && (t < best || t == best && rk < bk) {
					best, bk = t, rk
				}
			}
		}
		if bk == "" {
			return
		}
		k.call(bk, best, nil)
	}
}

// run feeds events (in event-time order, equal times in input order);
// before the first event at or after change.at, the set becomes change.set.
func (k *keyedRun) run(events []Event, changes ...keyedChange) {
	order := make([]int, len(events))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(events[a].TS, events[b].TS) })
	for i := 0; i < len(order); {
		t := events[order[i]].TS
		k.fireUntil(t - 1)
		for len(changes) > 0 && changes[0].at <= t {
			k.setRules(changes[0].set)
			changes = changes[1:]
		}
		var keys []string
		byKey := map[string][]*Event{}
		for ; i < len(order) && events[order[i]].TS == t; i++ {
			ev := &events[order[i]]
			for _, sig := range slices.Sorted(mapsKeys(k.groups)) {
				kb, _ := appendKey(nil, ev, k.groups[sig].rules[0].Key)
				rk := sig + "\x00" + string(kb)
				if byKey[rk] == nil {
					keys = append(keys, rk)
				}
				byKey[rk] = append(byKey[rk], ev)
			}
		}
		for _, rk := range keys {
			k.call(rk, t, byKey[rk])
		}
	}
	k.fireUntil(math.MaxInt64)
}

type keyedChange struct {
	at  int64
	set *Set
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func sortedJSON(t *testing.T, as []Alert) []string {
	t.Helper()
	var out []string
	for _, a := range as {
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

// Every shipped example, run key by key with every key's state encoded
// and decoded between calls, gives exactly the alerts of the local engine
// (which keeps its states in memory).
func TestKeyedRunEqualsEngine(t *testing.T) {
	dirs, err := filepath.Glob("examples/*")
	if err != nil || len(dirs) < 7 {
		t.Fatalf("examples: %v %v", dirs, err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			specs, err := LoadPath(dir)
			if err != nil {
				t.Fatal(err)
			}
			set, err := Compile(specs)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(filepath.Join(dir, "events.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			events, err := ReadEvents(f, "events.jsonl", DefaultTimeField)
			if err != nil {
				t.Fatal(err)
			}
			want, _, _ := Run(set, events)
			for _, byPointer := range []bool{false, true} {
				k := newKeyedRun(t, set)
				k.byPointer = byPointer
				k.run(events)
				if g, w := sortedJSON(t, k.alerts), sortedJSON(t, want); !slices.Equal(g, w) || len(w) == 0 {
					t.Errorf("keyed run (values kept: %v) alerts:\n%s\nengine:\n%s", byPointer, strings.Join(g, "\n"), strings.Join(w, "\n"))
				}
				if len(k.store) != 0 {
					t.Errorf("%d keys still hold state after every timer fired", len(k.store))
				}
			}
		})
	}
}

// stateDocs have a rule of every state body, with events that leave
// state behind between calls: the keyed run must equal the engine's.
var stateDocs = []struct{ name, doc, events string }{
	{"lookback, every function",
		"id: a\nkind: aggregate\nkey: [u]\nwindow: {type: lookback, size: 10s}\n" +
			"aggregates: {n: {fn: count}, s: {fn: sum, of: e.x}, avg: {fn: avg, of: e.x}, lo: {fn: min, of: e.x}, hi: {fn: max, of: e.x}, d: {fn: countDistinct, of: e.c}, big: {fn: count, where: 'e.x >= 5'}}\n" +
			"derived: {spread: 'agg.hi - agg.lo'}\ncondition: 'agg.n >= 2'\n",
		lines(`{"ts":0,"u":"a","x":5.5,"c":"p"}`, `{"ts":1000,"u":"a","x":0.1,"c":"q"}`, `{"ts":2000,"u":"a","x":9,"c":"p"}`,
			`{"ts":2000,"u":"b","x":0.2,"c":7}`, `{"ts":10000,"u":"a","x":0.3,"c":"r"}`, `{"ts":10500,"u":"b","x":3,"c":true}`, `{"ts":20000,"u":"a","x":4,"c":"r"}`)},
	{"lookback with resetOnFire",
		"id: a\nkind: aggregate\nwindow: {type: lookback, size: 1h}\naggregates: {n: {fn: count}}\nresetOnFire: true\ncondition: 'agg.n >= 2'\n",
		lines(`{"ts":1}`, `{"ts":2}`, `{"ts":3}`, `{"ts":4}`, `{"ts":5}`)},
	{"tumbling and sliding windows with distinct values",
		"id: t\nkind: aggregate\nkey: [u]\nwindow: {type: tumbling, size: 10s, offset: 2s}\naggregates: {s: {fn: sum, of: e.x}, d: {fn: countDistinct, of: e.c}}\ncondition: 'agg.s > 10'\n---\n" +
			"id: s\nkind: aggregate\nkey: [u]\nwindow: {type: sliding, size: 10s, slide: 5s}\naggregates: {n: {fn: count}, lo: {fn: min, of: e.x}}\ncondition: 'agg.n >= 1'\n",
		lines(`{"ts":2000,"u":"a","x":6,"c":"p"}`, `{"ts":11999,"u":"a","x":6,"c":1}`, `{"ts":12000,"u":"a","x":20,"c":false}`, `{"ts":12500,"u":"b","x":11,"c":"p"}`)},
	{"session windows",
		"id: s\nkind: aggregate\nkey: [u]\nwindow: {type: session, gap: 5s}\naggregates: {n: {fn: count}, hi: {fn: max, of: e.x}, d: {fn: countDistinct, of: e.x}}\ncondition: 'agg.n >= 2'\n",
		lines(`{"ts":0,"u":"a","x":1}`, `{"ts":4000,"u":"a","x":3}`, `{"ts":8999,"u":"a","x":2}`, `{"ts":14000,"u":"a","x":9}`, `{"ts":20000,"u":"a","x":9}`)},
	{"baseline stats, last values, seen values and the previous event",
		"id: b\nkind: baseline\nkey: [u]\nparams: {gap: 10m}\nprofile: {horizon: 1m, stats: [x], lastN: {city: 2}, seen: [dev]}\n" +
			"condition: 'stats.x.count >= 2 && (len(hist.city) < 2 || e.city != hist.city[0] || !(e.dev in seen.dev) || e.ts - prev.ts <= p.gap)'\n" +
			"emit: {fields: {n: stats.x.count, mean: stats.x.mean, sd: stats.x.stddev, lo: stats.x.min, hi: stats.x.max, prev: prev.city}}\n",
		lines(`{"ts":0,"u":"a","x":2,"city":"Oslo","dev":"d1","tags":["x",{"y":null}]}`, `{"ts":1000,"u":"a","x":4,"city":"Oslo","dev":"d1"}`,
			`{"ts":2000,"u":"a","x":100,"city":"Lima","dev":"d2"}`, `{"ts":60500,"u":"a","x":1,"city":"Rome","dev":"d2"}`, `{"ts":200000,"u":"a","x":1,"city":"Rome","dev":"d3"}`)},
	{"global statistics beside a profile with its own horizon",
		"id: g\nkind: baseline\nkey: []\nprofile: {horizon: 10s, stats: [x]}\nglobal: {horizon: 1m, stats: [x, y]}\n" +
			"condition: 'global.x.count >= 2 && e.x > 2 * global.x.mean'\n" +
			"emit: {fields: {n: global.x.count, mean: global.x.mean, recent: stats.x.count, ylo: global.y.min, yhi: global.y.max}}\n",
		lines(`{"ts":0,"u":"a","x":1,"y":5}`, `{"ts":1000,"u":"b","x":2,"y":-1}`, `{"ts":2000,"u":"c","x":9,"y":3}`,
			`{"ts":30000,"u":"a","x":30,"y":0}`, `{"ts":61500,"u":"b","x":40,"y":2}`, `{"ts":200000,"u":"c","x":1,"y":1}`)},
	{"sequences with a window, a negation and iterative conditions",
		"id: q\nkind: sequence\nkey: [u]\npattern:\n  within: {size: 10s}\n  steps:\n" +
			"    - {name: a, where: 'e.type == \"A\"', oneOrMore: true}\n    - {name: noC, after: notFollowedBy, where: 'e.type == \"C\"'}\n" +
			"    - {name: b, after: followedBy, where: 'e.type == \"B\" && e.x > m.a[0].x'}\n",
		lines(`{"ts":0,"u":"u1","type":"A","x":1}`, `{"ts":1000,"u":"u1","type":"A","x":2}`, `{"ts":2000,"u":"u2","type":"A","x":1}`,
			`{"ts":3000,"u":"u2","type":"C","x":1}`, `{"ts":4000,"u":"u1","type":"B","x":5}`, `{"ts":5000,"u":"u2","type":"B","x":5}`,
			`{"ts":9000,"u":"u1","type":"A","x":1}`, `{"ts":30000,"u":"u1","type":"B","x":9}`)},
	{"sequence timeouts of a looping step",
		"id: o\nkind: sequence\nkey: [u]\npattern:\n  within: {size: 10s}\n  steps:\n" +
			"    - {name: a, where: 'e.type == \"A\"', oneOrMore: true}\n    - {name: b, after: followedBy, where: 'e.type == \"B\"'}\n" +
			"  onTimeout: {action: review, fields: {n: len(m.a)}}\n",
		lines(`{"ts":0,"u":"x","type":"A"}`, `{"ts":1000,"u":"x","type":"A"}`, `{"ts":2000,"u":"x","type":"C"}`,
			`{"ts":3000,"u":"y","type":"A"}`, `{"ts":4000,"u":"y","type":"B"}`, `{"ts":30000,"u":"x","type":"A"}`)},
	{"filter with dedupe beside a stateless filter",
		"id: f\nkind: filter\nkey: [u]\ncondition: 'true'\nemit: {dedupe: {for: 10s}}\n---\nid: g\nkind: filter\nkey: [u]\ncondition: 'e.x > 1'\n",
		lines(`{"ts":0,"u":"a","x":2}`, `{"ts":5000,"u":"a","x":0}`, `{"ts":6000,"u":"b","x":3}`, `{"ts":10000,"u":"a","x":1}`)},
}

func TestKeyedRunEqualsEngineEveryKind(t *testing.T) {
	for _, c := range stateDocs {
		t.Run(c.name, func(t *testing.T) {
			set, err := compileDoc(c.doc)
			if err != nil {
				t.Fatal(err)
			}
			events, err := ReadEvents(strings.NewReader(c.events), "events", DefaultTimeField)
			if err != nil {
				t.Fatal(err)
			}
			want, _, errs := Run(set, events)
			if len(errs) > 0 || len(want) == 0 {
				t.Fatalf("engine: %d alerts, errors %v", len(want), errs)
			}
			for _, byPointer := range []bool{false, true} {
				k := newKeyedRun(t, set)
				k.byPointer = byPointer
				k.run(events)
				if g, w := sortedJSON(t, k.alerts), sortedJSON(t, want); !slices.Equal(g, w) {
					t.Errorf("keyed run (values kept: %v) alerts:\n%s\nengine:\n%s", byPointer, strings.Join(g, "\n"), strings.Join(w, "\n"))
				}
				if len(k.errs) > 0 {
					t.Errorf("keyed run errors: %v", k.errs)
				}
			}
		})
	}
}

// The state shape ignores what a rule reads its state with (params, the
// condition, when, derived values, emit) and follows what it fills its
// state with.
func TestStateShape(t *testing.T) {
	const base = "id: r\nkind: aggregate\nkey: [u]\nparams: {limit: 10}\nwindow: {type: tumbling, size: 10s}\n" +
		"aggregates: {s: {fn: sum, of: e.x, where: 'e.ok'}}\ncondition: 'agg.s > p.limit'\n"
	shape := func(doc string) string {
		t.Helper()
		set, err := compileDoc(doc)
		if err != nil {
			t.Fatal(err)
		}
		return set.Rules[0].StateShape()
	}
	b := shape(base)
	for _, same := range []string{
		strings.Replace(base, "limit: 10", "limit: 20", 1),
		strings.Replace(base, "agg.s > p.limit", "agg.s >= p.limit * 2", 1),
		base + "when: 'e.kind == \"pay\"'\nemit: {action: block, dedupe: {for: 1m}}\nversion: 7\nstate: shadow\n",
		base + "derived: {d: 'agg.s * 2'}\n",
	} {
		if s := shape(same); s != b {
			t.Errorf("shape changed by:\n%s", same)
		}
	}
	for _, other := range []string{
		strings.Replace(base, "size: 10s", "size: 20s", 1),
		strings.Replace(base, "type: tumbling, size: 10s", "type: sliding, size: 10s, slide: 5s", 1),
		strings.Replace(base, "key: [u]", "key: [v]", 1),
		strings.Replace(base, "fn: sum", "fn: max", 1),
		strings.Replace(base, "of: e.x", "of: e.y", 1),
		strings.Replace(base, "where: 'e.ok'", "where: '!e.ok'", 1),
		strings.Replace(base, "s: {fn: sum", "t: {fn: sum", 1) + "derived: {s: agg.t}\n",
	} {
		if s := shape(other); s == b {
			t.Errorf("shape kept by:\n%s", other)
		}
	}
	seq := "id: q\nkind: sequence\nkey: [u]\npattern:\n  within: {size: 10s}\n  steps:\n    - {name: a, where: 'e.t == \"A\"'}\n    - {name: b, after: followedBy, where: 'e.t == \"B\"'}\n"
	if shape(seq) == shape(strings.Replace(seq, "\"B\"", "\"C\"", 1)) || shape(seq) == shape(strings.Replace(seq, "10s", "20s", 1)) {
		t.Error("a sequence's shape ignores its steps or window")
	}
	bl := "id: b\nkind: baseline\nkey: [u]\nprofile: {horizon: 1m, stats: [x], lastN: {c: 2}}\ncondition: 'stats.x.count > p.n'\nparams: {n: 1}\n"
	if shape(bl) != shape(strings.Replace(bl, "{n: 1}", "{n: 3}", 1)) || shape(bl) == shape(strings.Replace(bl, "c: 2", "c: 3", 1)) {
		t.Error("a baseline's shape follows its params or ignores its lastN")
	}
	gl := "id: g\nkind: baseline\nkey: []\nglobal: {horizon: 1d, stats: [x]}\ncondition: 'e.x > global.x.mean'\n"
	if shape(gl) == shape(strings.Replace(gl, "1d", "2d", 1)) || shape(gl) == shape(strings.Replace(gl, "[x]", "[x, y]", 1)) ||
		shape(gl) != shape(strings.Replace(gl, "e.x > global.x.mean", "e.x > 2 * global.x.mean", 1)) {
		t.Error("global statistics' shape ignores their horizon or fields, or follows the condition")
	}
}

// A change of the rule set keeps the state of every rule whose shape is
// the same (a tuned threshold keeps the window), drops the state of a rule
// whose shape changed (reported as changed), and removes the state of a
// deleted rule (reported as gone); the rules beside them are not touched.
func TestKeyedRunRuleChange(t *testing.T) {
	const sum = "id: sum\nkind: aggregate\nkey: [u]\nparams: {limit: 10}\nwindow: {type: tumbling, size: 10s}\naggregates: {s: {fn: sum, of: e.x}}\ncondition: 'agg.s > p.limit'\n"
	const cnt = "id: cnt\nkind: aggregate\nkey: [u]\nwindow: {type: tumbling, size: 10s}\naggregates: {n: {fn: count}}\ncondition: 'agg.n >= 1'\n"
	const gone = "id: gone\nkind: aggregate\nkey: [u]\nwindow: {type: lookback, size: 1h}\naggregates: {n: {fn: count}}\ncondition: 'agg.n >= 5'\n"
	before, err := compileDoc(sum + "---\n" + cnt + "---\n" + gone)
	if err != nil {
		t.Fatal(err)
	}
	after, err := compileDoc(strings.Replace(sum, "limit: 10", "limit: 5", 1) + "version: 2\n---\n" +
		strings.Replace(cnt, "size: 10s", "size: 20s", 1) + "version: 2\n")
	if err != nil {
		t.Fatal(err)
	}
	events, err := ReadEvents(strings.NewReader(lines(`{"ts":1000,"u":"a","x":4}`, `{"ts":2000,"u":"a","x":3}`, `{"ts":6000,"u":"a","x":2}`)),
		"events", DefaultTimeField)
	if err != nil {
		t.Fatal(err)
	}
	k := newKeyedRun(t, before)
	k.run(events, keyedChange{at: 6000, set: after})
	want := []string{
		`{"rule":"cnt","version":2,"key":{"u":"a"},"time":19999,"action":"alert","window":{"start":0,"end":20000},"fields":{"n":1}}`,
		`{"rule":"sum","version":2,"key":{"u":"a"},"time":9999,"action":"alert","window":{"start":0,"end":10000},"fields":{"s":9}}`,
	}
	if got := sortedJSON(t, k.alerts); !slices.Equal(got, want) {
		t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	slices.SortFunc(k.dropped, func(a, b Dropped) int { return cmp.Compare(a.ID, b.ID) })
	ids := map[string]string{}
	for _, r := range before.Rules {
		ids[r.ID] = r.StateID()
	}
	if len(k.dropped) != 2 || k.dropped[0].ID != ids["cnt"] || !k.dropped[0].Changed || k.dropped[0].Version != 1 ||
		k.dropped[1].ID != ids["gone"] || k.dropped[1].Changed {
		t.Errorf("dropped %+v; want cnt's state (changed) and gone's (deleted)", k.dropped)
	}
	if RuleOfStateID(k.dropped[0].ID) != "cnt" {
		t.Errorf("RuleOfStateID(%q) = %q", k.dropped[0].ID, RuleOfStateID(k.dropped[0].ID))
	}
}

// A paused rule keeps its state: it sees no event and raises nothing
// while paused (its timers still close windows and expire look-backs), and
// resumed, it goes on from what is left. The pause and the resume are new
// versions, as with `weir rules pause` and `resume`.
func TestKeyedRunPauseKeepsState(t *testing.T) {
	const cnt = "id: cnt\nkind: aggregate\nkey: [u]\nwindow: {type: tumbling, size: 10s}\naggregates: {n: {fn: count}}\ncondition: 'agg.n >= 3'\n"
	const look = "id: look\nkind: aggregate\nkey: [u]\nwindow: {type: lookback, size: 1h}\naggregates: {n: {fn: count}}\ncondition: 'agg.n >= 3'\n"
	version := func(v int, state string) *Set {
		t.Helper()
		extra := fmt.Sprintf("version: %d\nstate: %s\n", v, state)
		set, err := compileDoc(cnt + extra + "---\n" + look + extra)
		if err != nil {
			t.Fatal(err)
		}
		return set
	}
	run := func(events string, changes ...keyedChange) *keyedRun {
		t.Helper()
		evs, err := ReadEvents(strings.NewReader(events), "events", DefaultTimeField)
		if err != nil {
			t.Fatal(err)
		}
		k := newKeyedRun(t, version(1, "active"))
		k.run(evs, changes...)
		if len(k.errs) > 0 {
			t.Fatal(k.errs)
		}
		if len(k.dropped) > 0 {
			t.Errorf("dropped %+v: a pause and a resume keep the state", k.dropped)
		}
		return k
	}
	check := func(name string, k *keyedRun, want ...string) {
		t.Helper()
		if got := sortedJSON(t, k.alerts); !slices.Equal(got, want) {
			t.Errorf("%s: alerts:\n%s\nwant:\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}

	// Paused at 3000, resumed at 5000: the event at 4000 is not counted,
	// those at 1000 and 2000 are, so the window [0, 10000) and the
	// look-back count 3 at 6000.
	k := run(lines(`{"ts":1000,"u":"a"}`, `{"ts":2000,"u":"a"}`, `{"ts":4000,"u":"a"}`, `{"ts":6000,"u":"a"}`),
		keyedChange{at: 3000, set: version(2, "paused")}, keyedChange{at: 5000, set: version(3, "active")})
	check("resumed", k,
		`{"rule":"cnt","version":3,"key":{"u":"a"},"time":9999,"action":"alert","window":{"start":0,"end":10000},"fields":{"n":3}}`,
		`{"rule":"look","version":3,"key":{"u":"a"},"time":6000,"action":"alert","fields":{"n":3}}`)

	// Paused at 3000 until 25000: the window [0, 10000), which holds 3
	// events, closes while the rule is paused and raises nothing; the
	// look-back goes on counting after the resume (4 at 26000).
	// (The harness applies a change before the first event at or after
	// its time: b's event at 3000 makes the pause apply before 9999.)
	k = run(lines(`{"ts":1000,"u":"a"}`, `{"ts":2000,"u":"a"}`, `{"ts":2500,"u":"a"}`, `{"ts":3000,"u":"b"}`, `{"ts":26000,"u":"a"}`),
		keyedChange{at: 3000, set: version(2, "paused")}, keyedChange{at: 25000, set: version(3, "active")})
	check("closed while paused", k,
		`{"rule":"look","version":1,"key":{"u":"a"},"time":2500,"action":"alert","fields":{"n":3}}`,
		`{"rule":"look","version":3,"key":{"u":"a"},"time":26000,"action":"alert","fields":{"n":4}}`)

	// Paused for good: no alert after the pause, and the paused rules'
	// own timers expire their state, so nothing is left in keyed state.
	k = run(lines(`{"ts":1000,"u":"a"}`, `{"ts":2000,"u":"a"}`, `{"ts":4000,"u":"a"}`, `{"ts":5000,"u":"b"}`),
		keyedChange{at: 3000, set: version(2, "paused")})
	check("paused", k)
	if len(k.store) != 0 {
		t.Errorf("%d keys still hold state after the paused rules' timers fired", len(k.store))
	}
	for _, st := range k.groups["u"].StatsView() {
		if st.Evaluations != 0 || st.Alerts != 0 {
			t.Errorf("paused rule counted %+v", st)
		}
	}
}

// Encoding is deterministic and decoding refuses what is not a state of
// the rule: another kind of rule, trailing bytes, a truncation.
func TestStateCodecRefuses(t *testing.T) {
	set, err := compileDoc(stateDocs[0].doc + "---\n" + strings.Replace(stateDocs[3].doc, "id: s", "id: s2", 1))
	if err != nil {
		t.Fatal(err)
	}
	look, sess := set.Rules[0], set.Rules[1]
	if sess.ID != "s2" {
		look, sess = sess, look
	}
	rn := NewRunner()
	st := look.NewState(map[string]any{"u": "a"})
	var out []Alert
	for i, x := range []float64{1.5, 2, 0.1, 7} {
		ev := &Event{TS: int64(i * 1000), Fields: map[string]any{"u": "a", "x": x, "c": []string{"p", "q"}[i%2]}}
		if out, err = rn.OnEvent(look, st, ev, nopTimers{}, out); err != nil {
			t.Fatal(err)
		}
	}
	b, err := rn.AppendState(nil, look, st)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, err := rn.AppendState(nil, look, st)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("encoding is not deterministic: %v", err)
		}
	}
	got, err := rn.DecodeState(look, st.key, b)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := rn.AppendState(nil, look, got); !bytes.Equal(again, b) {
		t.Error("a decoded state encodes differently")
	}
	if _, err := rn.DecodeState(sess, st.key, b); err == nil {
		t.Error("a look-back state decoded as a session rule's")
	}
	if _, err := rn.DecodeState(look, st.key, append(slices.Clip(b), 0)); err == nil {
		t.Error("trailing bytes accepted")
	}
	for n := range len(b) {
		if _, err := rn.DecodeState(look, st.key, b[:n]); err == nil {
			t.Fatalf("a truncation to %d of %d bytes decoded", n, len(b))
		}
	}
	bad := look.NewState(nil)
	bad.look.add(1, []aggInput{{ok: true, v: struct{}{}}, {}, {}, {}, {}, {}, {}})
	if _, err := rn.AppendState(nil, look, bad); err == nil {
		t.Error("a value with no encoding was encoded")
	}
}

type nopTimers struct{}

func (nopTimers) Register(int64) {}

// What Store returns shares no memory with the group: a snapshot being
// written may hold a stored value while the key's next events are
// evaluated, in place, on the group's decoded states.
func TestStoredStatesAreNotChangedByLaterEvents(t *testing.T) {
	var doc strings.Builder
	for i, c := range stateDocs {
		if i > 0 {
			doc.WriteString("---\n")
		}
		// One rule of each kind, with one key field u.
		d := strings.ReplaceAll(c.doc, "id: ", fmt.Sprintf("id: k%d-", i))
		doc.WriteString(d)
	}
	set, err := compileDoc(doc.String())
	if err != nil {
		t.Fatal(err)
	}
	var keyed []*Rule
	for _, r := range set.Rules {
		if slices.Equal(r.Key, []string{"u"}) {
			keyed = append(keyed, r)
		}
	}
	g := NewKeyGroup(keyed)
	var out []Alert
	ev := func(ts int64, x float64) *Event {
		return &Event{TS: ts, Fields: map[string]any{"ts": float64(ts), "u": "a", "x": x, "c": "p", "type": "A", "city": "Oslo", "dev": "d1"}}
	}
	g.Load(nil, nil)
	for i := range 5 {
		if out, err = g.Process(ev(int64(i)*100, float64(i)), out); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := g.Store()
	if err != nil || snap == nil || len(snap.States) < 5 {
		t.Fatalf("stored %+v, %v", snap, err)
	}
	before := KeyStatesCodec{}.Append(nil, snap)
	for i := 5; i < 50; i++ {
		if out, err = g.Process(ev(int64(i)*100, float64(i)), out); err != nil {
			t.Fatal(err)
		}
		if out, err = g.Fire(int64(i)*100, out); err != nil {
			t.Fatal(err)
		}
		if _, err := g.Store(); err != nil {
			t.Fatal(err)
		}
	}
	if after := (KeyStatesCodec{}).Append(nil, snap); !bytes.Equal(before, after) {
		t.Error("a stored value changed when the key's later events were evaluated")
	}
}
