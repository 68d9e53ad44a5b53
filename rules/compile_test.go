package rules

import (
	"strings"
	"testing"
)

func compileDoc(doc string) (*Set, error) {
	specs, err := Parse("r.yaml", []byte(doc))
	if err != nil {
		return nil, err
	}
	return Compile(specs)
}

// Each bad document is refused with its line and this exact reason.
func TestCompileRefuses(t *testing.T) {
	const base = "id: r\nkind: filter\ncondition: 'e.a > 1'\n"
	cases := []struct{ name, doc, want string }{
		{"unknown top-level field", base + "conditon: x\n",
			`r.yaml:4: rule r: unknown field "conditon" (known: aggregates, apiVersion, condition, derived, description, drift, emit, evaluate, global, history, id, input, items, key, kind, labels, lateness, params, pattern, profile, resetOnFire, serve, state, tests, time, version, when, window)`},
		{"a drift factor of 1", base + "drift: {factor: 1}\n", `r.yaml:4: rule r: drift.factor 1: must be above 1`},
		{"unknown field in drift", base + "drift: {factr: 2}\n", `r.yaml:4: rule r: unknown field "factr" in drift (known: factor, minEvaluations, window)`},
		{"unknown nested field", "id: r\nkind: aggregate\nwindow: {type: lookback, sise: 1m}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 1'\n",
			`r.yaml:3: rule r: unknown field "sise" in window (known: gap, offset, size, slide, type)`},
		{"unknown field in an aggregate", "id: r\nkind: aggregate\nwindow: {type: lookback, size: 1m}\naggregates:\n  n: {fn: count, off: e.x}\ncondition: 'agg.n > 1'\n",
			`r.yaml:5: rule r: unknown field "off" in aggregates.n (known: fn, of, where)`},
		{"syntax error", "id: r\n\tkind: x\n", `r.yaml:2: found a tab character that violates indentation`},
		{"mapping in a scalar", "id: r\ncondition: a: b\n", `r.yaml:2: mapping values are not allowed in this context`},
		{"not a mapping", "- a\n- b\n", `r.yaml:1: a rule document must be a mapping`},
		{"bad id", "id: 'a b'\nkind: filter\ncondition: 'true'\n",
			`r.yaml:1: rule a b: a rule needs an id of letters, digits, '.', '_' or '-', at most 128 (got "a b")`},
		{"bad apiVersion", "apiVersion: v2\n" + base, `r.yaml:1: rule r: apiVersion "v2": want weir.rules/v1`},
		{"missing kind", "id: r\ncondition: 'true'\n", `r.yaml:1: rule r: kind is missing: want filter, aggregate, baseline, sequence or list`},
		{"bad kind", "id: r\nkind: filtre\ncondition: 'true'\n", `r.yaml:2: rule r: kind "filtre": want filter, aggregate, baseline, sequence or list`},
		{"profile not yet", "id: r\nkind: profile\ncondition: 'true'\n", `r.yaml:2: rule r: kind profile is not supported yet`},
		{"processing time", base + "time: processing\n",
			`r.yaml:4: rule r: time: processing is not supported: rules run on event time, so a replay gives the same alerts`},
		{"sinks are the job's", base + "emit: {sinks: [console]}\n",
			`r.yaml:4: rule r: emit.sinks: a rule does not choose sinks: rules change while the job runs, its sinks are fixed when it is submitted (its sink parameter); every alert goes to them`},
		{"alerts are JSON", base + "emit: {format: 'Alert{id={{e.id}}}'}\n",
			`r.yaml:4: rule r: emit.format: alerts are JSON lines in every sink, whatever rule raised them; put the evidence in emit.fields`},
		{"bad state", base + "state: on\n", `r.yaml:4: rule r: state "on": want active, shadow or paused`},
		{"missing condition", "id: r\nkind: filter\n", `r.yaml:1: rule r: condition is missing`},
		{"expression syntax", "id: r\nkind: filter\ncondition: 'e.a >'\n",
			`r.yaml:3: rule r: condition: "e.a >" does not compile: unexpected token EOF (column 5)`},
		{"unknown name", "id: r\nkind: filter\ncondition: 'x > 1'\n",
			`r.yaml:3: rule r: condition: "x > 1" does not compile: unknown name x (column 1)`},
		{"now is disabled", "id: r\nkind: filter\ncondition: 'now().Year() > 2000'\n",
			`r.yaml:3: rule r: condition: "now().Year() > 2000" does not compile: unknown name now (column 1)`},
		{"not a boolean", "id: r\nkind: filter\ncondition: '1 + 2'\n",
			`r.yaml:3: rule r: condition: "1 + 2" does not compile: expected bool, but got int`},
		{"unknown param", "id: r\nkind: filter\nparams: {max: 3}\ncondition: 'e.a > p.mx'\n",
			`r.yaml:4: rule r: condition: unknown name p.mx (params: max)`},
		{"unknown list", "id: r\nkind: filter\ncondition: 'e.u in lists.black'\n",
			`r.yaml:3: rule r: condition: unknown name lists.black (lists: none)`},
		{"agg in a filter", "id: r\nkind: filter\ncondition: 'agg.n > 1'\n",
			`r.yaml:3: rule r: condition: agg is only available in an aggregate rule's condition, derived values and emit.fields`},
		{"stats in a filter", "id: r\nkind: filter\ncondition: 'stats.a.mean > 1'\n",
			`r.yaml:3: rule r: condition: stats is only available in a baseline rule's condition and emit.fields`},
		{"unknown aggregate", "id: r\nkind: aggregate\nwindow: {type: lookback, size: 1m}\naggregates: {n: {fn: count}}\ncondition: 'agg.m > 1'\n",
			`r.yaml:5: rule r: condition: unknown name agg.m (aggregates or derived values: n)`},
		{"event in a closing window", "id: r\nkind: aggregate\nwindow: {type: tumbling, size: 1m}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > e.x'\n",
			`r.yaml:5: rule r: condition: e is not available here: a window evaluated onWindowClose sees its aggregates (agg), not one event`},
		{"window missing", "id: r\nkind: aggregate\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 1'\n",
			`r.yaml:1: rule r: an aggregate rule needs a window`},
		{"window in a filter", base + "window: {type: tumbling, size: 1m}\n", `r.yaml:4: rule r: window belongs to kind aggregate, not filter`},
		{"bad duration", "id: r\nkind: aggregate\nwindow: {type: tumbling, size: 10}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 1'\n",
			`r.yaml:3: rule r: "10" is not a duration: want a number with a unit (500ms, 10s, 1m, 2h, 30d)`},
		{"bad window type", "id: r\nkind: aggregate\nwindow: {type: hopping, size: 1m}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 1'\n",
			`r.yaml:3: rule r: window: type "hopping": want tumbling, sliding, session or lookback`},
		{"sliding without slide", "id: r\nkind: aggregate\nwindow: {type: sliding, size: 1m}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 1'\n",
			`r.yaml:3: rule r: window: a sliding window needs a positive slide`},
		{"slide over size", "id: r\nkind: aggregate\nwindow: {type: sliding, size: 1m, slide: 2m}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 1'\n",
			`r.yaml:3: rule r: window: slide 2m0s is larger than size 1m0s (events between windows would be lost)`},
		{"too many windows", "id: r\nkind: aggregate\nwindow: {type: sliding, size: 1h, slide: 1s}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 1'\n",
			`r.yaml:3: rule r: window: size/slide is 3600; at most 1000 windows per event`},
		{"gap on tumbling", "id: r\nkind: aggregate\nwindow: {type: tumbling, size: 1m, gap: 1s}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 1'\n",
			`r.yaml:3: rule r: window: a tumbling window has no gap`},
		{"session without gap", "id: r\nkind: aggregate\nwindow: {type: session}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 1'\n",
			`r.yaml:3: rule r: window: a session window needs a positive gap`},
		{"onEvent on a tumbling window", "id: r\nkind: aggregate\nwindow: {type: tumbling, size: 1m}\nevaluate: onEvent\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 1'\n",
			`r.yaml:4: rule r: evaluate "onEvent": a tumbling window is evaluated onWindowClose`},
		{"bad fn", "id: r\nkind: aggregate\nwindow: {type: lookback, size: 1m}\naggregates: {n: {fn: median, of: e.x}}\ncondition: 'agg.n > 1'\n",
			`r.yaml:4: rule r: aggregates.n: fn "median": want count, sum, avg, min, max or countDistinct`},
		{"sum without of", "id: r\nkind: aggregate\nwindow: {type: lookback, size: 1m}\naggregates: {n: {fn: sum}}\ncondition: 'agg.n > 1'\n",
			`r.yaml:4: rule r: aggregates.n: sum needs ` + "`of`" + `, the value to aggregate`},
		{"baseline without profile", "id: r\nkind: baseline\ncondition: 'true'\n", `r.yaml:1: rule r: a baseline rule needs a profile or global statistics`},
		{"global statistics of a keyed rule", "id: r\nkind: baseline\nkey: [u]\nglobal: {horizon: 1d, stats: [x]}\ncondition: 'e.x > global.x.mean'\n",
			`r.yaml:4: rule r: global statistics need key: [] (every event of the rule in one place, so the statistics are exact and the same at any parallelism); key ["u"] has its own profile`},
		{"global statistics in a filter", "id: r\nkind: filter\nglobal: {horizon: 1d, stats: [x]}\ncondition: 'e.x > 1'\n",
			`r.yaml:3: rule r: global belongs to kind baseline, not filter`},
		{"unknown global field", "id: r\nkind: baseline\nglobal: {horizon: 1d, stats: [x]}\ncondition: 'e.x > global.y.mean'\n",
			`r.yaml:4: rule r: condition: unknown name global.y (global.stats fields: x)`},
		{"global without horizon", "id: r\nkind: baseline\nglobal: {stats: [x]}\ncondition: 'e.x > global.x.mean'\n",
			`r.yaml:3: rule r: global: horizon must be a positive duration`},
		{"stats without a profile", "id: r\nkind: baseline\nglobal: {horizon: 1d, stats: [x]}\ncondition: 'e.x > stats.x.mean'\n",
			`r.yaml:4: rule r: condition: unknown name stats.x (profile fields: none)`},
		{"unknown stats field", "id: r\nkind: baseline\nprofile: {horizon: 1d, stats: [amount]}\ncondition: 'stats.amont.mean > 1'\n",
			`r.yaml:4: rule r: condition: unknown name stats.amont (profile.stats fields: amount)`},
		{"unknown stats member", "id: r\nkind: baseline\nprofile: {horizon: 1d, stats: [amount]}\ncondition: 'stats.amount.median > 1'\n",
			`r.yaml:4: rule r: condition: "stats.amount.median > 1" does not compile: type rules.Stats has no field median (column 14)`},
		{"lastN too big", "id: r\nkind: baseline\nprofile: {horizon: 1d, lastN: {city: 0}}\ncondition: 'true'\n",
			`r.yaml:3: rule r: profile: lastN.city is 0: want 1 to 10000`},
		{"bad action", base + "emit: {action: page}\n", `r.yaml:4: rule r: emit.action "page": want alert, review, block, allow or tag`},
		{"failing inline test", base + "tests:\n  - events: [{a: 5}]\n    expect: []\n",
			`r.yaml:5: rule r: tests[0]: want 0 alerts, got 1: {"rule":"r","version":1,"key":{},"time":0,"action":"alert"}`},
		{"inline test expectation", base + "emit: {fields: {a: e.a}}\ntests:\n  - events: [{a: 5}]\n    expect: [{a: 6}]\n",
			`r.yaml:6: rule r: tests[0]: alert 1: a is 5, want 6`},
		{"duplicate id", base + "---\n" + base, `r.yaml:5: rule r: id r is also used at r.yaml:1`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := compileDoc(c.doc)
			if err == nil {
				t.Fatalf("accepted, want %q", c.want)
			}
			if err.Error() != c.want {
				t.Errorf("error:\n%s\nwant:\n%s", err, c.want)
			}
		})
	}
}

func TestCompileAccepts(t *testing.T) {
	docs := map[string]string{
		"filter with params and lists": "id: b\nkind: list\nitems: [x, 1]\n---\nid: r\nkind: filter\nparams: {max: 3, gap: 10m, name: bob, on: true}\n" +
			"when: 'p.on'\ncondition: 'e.a > p.max && e.t < p.gap && e.u in lists.b && e.n != p.name'\n",
		"aggregate with everything": "id: r\nkind: aggregate\nkey: [u]\nwindow: {type: tumbling, size: 1m, offset: 10s}\n" +
			"aggregates: {n: {fn: count, where: 'e.ok'}, s: {fn: sum, of: e.x}, d: {fn: countDistinct, of: e.c}}\n" +
			"derived: {rate: 'agg.n / max(agg.s, 1)'}\ncondition: 'agg.rate > 0.5'\nemit: {action: review, fields: {n: agg.n}, dedupe: {for: 1h}}\n",
		"baseline": "id: r\nkind: baseline\nkey: [u]\nprofile: {horizon: 30d, stats: [amount], lastN: {city: 5}, seen: [device]}\n" +
			"condition: 'stats.amount.count > 0 && len(hist.city) > 0 && !(e.device in seen.device) && prev != nil'\n",
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			set, err := compileDoc(doc)
			if err != nil {
				t.Fatal(err)
			}
			if len(set.Rules) != 1 {
				t.Fatalf("%d rules", len(set.Rules))
			}
			r := set.Rules[0]
			if r.Version != 1 || r.State != "active" || r.Action == "" {
				t.Errorf("defaults: version %d, state %q, action %q", r.Version, r.State, r.Action)
			}
			// The stored source compiles back to the same rule.
			again, err := Parse("again", r.Source())
			if err != nil || len(again) != 1 || again[0].ID != r.ID {
				t.Fatalf("source does not parse back: %v\n%s", err, r.Source())
			}
		})
	}
}

// Every refused document in a file is reported, not just the first.
func TestCompileReportsEveryBadRule(t *testing.T) {
	_, err := compileDoc("id: a\nkind: filter\ncondition: 'x'\n---\nid: b\nkind: filter\ncondition: 'y'\n")
	if err == nil || strings.Count(err.Error(), "unknown name") != 2 {
		t.Fatalf("error %v, want both rules reported", err)
	}
}
