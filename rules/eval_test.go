package rules

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// runDoc compiles doc and runs it on events (JSON lines), returning the
// alerts as JSON lines and the errors.
func runDoc(t *testing.T, doc, events string) (string, []error) {
	t.Helper()
	set, err := compileDoc(doc)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := ReadEvents(strings.NewReader(events), "events", DefaultTimeField)
	if err != nil {
		t.Fatal(err)
	}
	alerts, _, errs := Run(set, evs)
	var b strings.Builder
	for _, a := range alerts {
		j, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String(), errs
}

func lines(s ...string) string { return strings.Join(s, "\n") + "\n" }

func TestEvaluate(t *testing.T) {
	cases := []struct {
		name, doc, events, want string
	}{
		{"filter with when, shadow and params",
			"id: f\nkind: filter\nstate: shadow\nkey: [u]\nparams: {max: 10}\nwhen: 'e.kind == \"pay\"'\ncondition: 'e.x > p.max'\nemit: {action: review}\n",
			lines(`{"ts":1,"u":"a","kind":"pay","x":11}`, `{"ts":2,"u":"a","kind":"refund","x":50}`, `{"ts":3,"u":"b","kind":"pay","x":10}`),
			lines(`{"rule":"f","version":1,"key":{"u":"a"},"time":1,"action":"review","shadow":true}`)},
		{"paused rules are not evaluated",
			"id: f\nkind: filter\nstate: paused\ncondition: 'true'\n", lines(`{"ts":1}`), ""},
		{"list membership matches numbers and strings",
			"id: l\nkind: list\nitems: [7, bob]\n---\nid: f\nkind: filter\ncondition: 'e.u in lists.l'\nemit: {fields: {u: e.u}}\n",
			lines(`{"ts":1,"u":7.0}`, `{"ts":2,"u":"7"}`, `{"ts":3,"u":"bob"}`),
			lines(`{"rule":"f","version":1,"key":{},"time":1,"action":"alert","fields":{"u":7}}`,
				`{"rule":"f","version":1,"key":{},"time":3,"action":"alert","fields":{"u":"bob"}}`)},
		{"dedupe: one alert per key per interval",
			"id: f\nkind: filter\nkey: [u]\ncondition: 'true'\nemit: {dedupe: {for: 10s}}\n",
			lines(`{"ts":0,"u":"a"}`, `{"ts":5000,"u":"a"}`, `{"ts":6000,"u":"b"}`, `{"ts":10000,"u":"a"}`),
			lines(`{"rule":"f","version":1,"key":{"u":"a"},"time":0,"action":"alert"}`,
				`{"rule":"f","version":1,"key":{"u":"b"},"time":6000,"action":"alert"}`,
				`{"rule":"f","version":1,"key":{"u":"a"},"time":10000,"action":"alert"}`)},
		{"lookback: every function over the last 10 s",
			"id: a\nkind: aggregate\nkey: [u]\nwindow: {type: lookback, size: 10s}\n" +
				"aggregates: {n: {fn: count}, s: {fn: sum, of: e.x}, avg: {fn: avg, of: e.x}, lo: {fn: min, of: e.x}, hi: {fn: max, of: e.x}, d: {fn: countDistinct, of: e.c}, big: {fn: count, where: 'e.x >= 5'}}\n" +
				"derived: {spread: 'agg.hi - agg.lo'}\ncondition: 'agg.n >= 3'\n",
			lines(`{"ts":0,"u":"a","x":5,"c":"p"}`, `{"ts":1000,"u":"a","x":1,"c":"q"}`, `{"ts":2000,"u":"a","x":9,"c":"p"}`,
				`{"ts":10000,"u":"a","x":3,"c":"r"}`, `{"ts":20000,"u":"a","x":4,"c":"r"}`),
			lines(`{"rule":"a","version":1,"key":{"u":"a"},"time":2000,"action":"alert","fields":{"avg":5,"big":2,"d":2,"hi":9,"lo":1,"n":3,"s":15,"spread":8}}`,
				`{"rule":"a","version":1,"key":{"u":"a"},"time":10000,"action":"alert","fields":{"avg":4.333333333333333,"big":1,"d":3,"hi":9,"lo":1,"n":3,"s":13,"spread":8}}`)},
		{"lookback with resetOnFire counts again from zero",
			"id: a\nkind: aggregate\nwindow: {type: lookback, size: 1h}\naggregates: {n: {fn: count}}\nresetOnFire: true\ncondition: 'agg.n >= 2'\n",
			lines(`{"ts":1}`, `{"ts":2}`, `{"ts":3}`, `{"ts":4}`, `{"ts":5}`),
			lines(`{"rule":"a","version":1,"key":{},"time":2,"action":"alert","fields":{"n":2}}`,
				`{"rule":"a","version":1,"key":{},"time":4,"action":"alert","fields":{"n":2}}`)},
		{"tumbling windows with an offset close on the watermark",
			"id: t\nkind: aggregate\nkey: [u]\nwindow: {type: tumbling, size: 10s, offset: 2s}\naggregates: {s: {fn: sum, of: e.x}}\ncondition: 'agg.s > 10'\n",
			lines(`{"ts":2000,"u":"a","x":6}`, `{"ts":11999,"u":"a","x":6}`, `{"ts":12000,"u":"a","x":20}`, `{"ts":12500,"u":"b","x":11}`),
			lines(`{"rule":"t","version":1,"key":{"u":"a"},"time":11999,"action":"alert","window":{"start":2000,"end":12000},"fields":{"s":12}}`,
				`{"rule":"t","version":1,"key":{"u":"a"},"time":21999,"action":"alert","window":{"start":12000,"end":22000},"fields":{"s":20}}`,
				`{"rule":"t","version":1,"key":{"u":"b"},"time":21999,"action":"alert","window":{"start":12000,"end":22000},"fields":{"s":11}}`)},
		{"sliding windows: each event in size/slide windows",
			"id: s\nkind: aggregate\nwindow: {type: sliding, size: 10s, slide: 5s}\naggregates: {n: {fn: count}}\ncondition: 'agg.n >= 1'\n",
			lines(`{"ts":7000}`),
			lines(`{"rule":"s","version":1,"key":{},"time":9999,"action":"alert","window":{"start":0,"end":10000},"fields":{"n":1}}`,
				`{"rule":"s","version":1,"key":{},"time":14999,"action":"alert","window":{"start":5000,"end":15000},"fields":{"n":1}}`)},
		{"session windows end after the gap",
			"id: s\nkind: aggregate\nkey: [u]\nwindow: {type: session, gap: 5s}\naggregates: {n: {fn: count}, hi: {fn: max, of: e.x}}\ncondition: 'agg.n >= 2'\n",
			lines(`{"ts":0,"u":"a","x":1}`, `{"ts":4000,"u":"a","x":3}`, `{"ts":8999,"u":"a","x":2}`, `{"ts":14000,"u":"a","x":9}`, `{"ts":20000,"u":"a","x":9}`),
			lines(`{"rule":"s","version":1,"key":{"u":"a"},"time":13998,"action":"alert","window":{"start":0,"end":13999},"fields":{"hi":3,"n":3}}`)},
		{"baseline: statistics before the event, over the horizon",
			"id: b\nkind: baseline\nkey: [u]\nprofile: {horizon: 1m, stats: [x]}\ncondition: 'stats.x.count >= 2'\n" +
				"emit: {fields: {n: stats.x.count, mean: stats.x.mean, sd: stats.x.stddev, lo: stats.x.min, hi: stats.x.max}}\n",
			lines(`{"ts":0,"u":"a","x":2}`, `{"ts":1000,"u":"a","x":4}`, `{"ts":2000,"u":"a","x":100}`, `{"ts":60500,"u":"a","x":1}`, `{"ts":200000,"u":"a","x":1}`),
			lines(`{"rule":"b","version":1,"key":{"u":"a"},"time":2000,"action":"alert","fields":{"hi":4,"lo":2,"mean":3,"n":2,"sd":1}}`,
				`{"rule":"b","version":1,"key":{"u":"a"},"time":60500,"action":"alert","fields":{"hi":100,"lo":4,"mean":52,"n":2,"sd":48}}`)},
		{"baseline: global statistics over every user's events, before the event, over their horizon",
			"id: g\nkind: baseline\nkey: []\nparams: {factor: 2}\nglobal: {horizon: 1m, stats: [x]}\n" +
				"condition: 'global.x.count >= 2 && e.x > p.factor * global.x.mean'\nemit: {fields: {u: e.u, n: global.x.count, mean: global.x.mean}}\n",
			lines(`{"ts":0,"u":"a","x":2}`, `{"ts":1000,"u":"b","x":4}`, `{"ts":2000,"u":"c","x":7}`, `{"ts":3000,"u":"a","x":20}`,
				`{"ts":61500,"u":"b","x":20}`, `{"ts":62000,"u":"d","x":100}`),
			lines(`{"rule":"g","version":1,"key":{},"time":2000,"action":"alert","fields":{"mean":3,"n":2,"u":"c"}}`,
				`{"rule":"g","version":1,"key":{},"time":3000,"action":"alert","fields":{"mean":4.333333333333333,"n":3,"u":"a"}}`,
				`{"rule":"g","version":1,"key":{},"time":62000,"action":"alert","fields":{"mean":20,"n":2,"u":"d"}}`)},
		{"baseline: last N values, seen values and the previous event",
			"id: b\nkind: baseline\nkey: [u]\nparams: {gap: 10m}\nprofile: {horizon: 1d, lastN: {city: 2}, seen: [dev]}\n" +
				"condition: 'len(hist.city) == 2 && all(hist.city, # == hist.city[0]) && e.city != hist.city[0] && e.ts - prev.ts <= p.gap && !(e.dev in seen.dev)'\n" +
				"emit: {fields: {from: 'hist.city[0]', to: e.city}}\n",
			lines(`{"ts":0,"u":"a","city":"Oslo","dev":"d1"}`, `{"ts":1000,"u":"a","city":"Oslo","dev":"d1"}`,
				`{"ts":2000,"u":"a","city":"Lima","dev":"d1"}`, `{"ts":3000,"u":"a","city":"Lima","dev":"d1"}`,
				`{"ts":4000,"u":"a","city":"Lima","dev":"d1"}`, `{"ts":5000,"u":"a","city":"Rome","dev":"d2"}`),
			lines(`{"rule":"b","version":1,"key":{"u":"a"},"time":5000,"action":"alert","fields":{"from":"Lima","to":"Rome"}}`)},
		{"input out of order is run in event-time order",
			"id: a\nkind: aggregate\nwindow: {type: lookback, size: 1s}\naggregates: {n: {fn: count}}\ncondition: 'agg.n == 2'\nemit: {fields: {x: e.x}}\n",
			lines(`{"ts":500,"x":"second"}`, `{"ts":0,"x":"first"}`, `{"ts":2000,"x":"third"}`),
			lines(`{"rule":"a","version":1,"key":{},"time":500,"action":"alert","fields":{"x":"second"}}`)},
		{"timers fire in time, rule, key order",
			"id: t1\nkind: aggregate\nkey: [u]\nwindow: {type: tumbling, size: 1s}\naggregates: {n: {fn: count}}\ncondition: 'true'\n---\n" +
				"id: t2\nkind: aggregate\nkey: [u]\nwindow: {type: tumbling, size: 1s}\naggregates: {n: {fn: count}}\ncondition: 'true'\n",
			lines(`{"ts":0,"u":"b"}`, `{"ts":1,"u":"a"}`),
			lines(`{"rule":"t1","version":1,"key":{"u":"a"},"time":999,"action":"alert","window":{"start":0,"end":1000},"fields":{"n":1}}`,
				`{"rule":"t1","version":1,"key":{"u":"b"},"time":999,"action":"alert","window":{"start":0,"end":1000},"fields":{"n":1}}`,
				`{"rule":"t2","version":1,"key":{"u":"a"},"time":999,"action":"alert","window":{"start":0,"end":1000},"fields":{"n":1}}`,
				`{"rule":"t2","version":1,"key":{"u":"b"},"time":999,"action":"alert","window":{"start":0,"end":1000},"fields":{"n":1}}`)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, errs := runDoc(t, c.doc, c.events)
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			if got != c.want {
				t.Errorf("alerts:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

// A rule that fails on an event reports it and leaves its state as it
// was; the other rules and the other events go on.
func TestEvaluateErrors(t *testing.T) {
	doc := "id: a\nkind: aggregate\nkey: [u]\nwindow: {type: lookback, size: 1h}\naggregates: {s: {fn: sum, of: e.x}}\ncondition: 'agg.s > 10'\n---\n" +
		"id: f\nkind: filter\ncondition: 'e.x == 8'\n"
	got, errs := runDoc(t, doc, lines(`{"ts":1,"u":"a","x":8}`, `{"ts":2,"u":"a","x":"8"}`, `{"ts":3,"x":8}`, `{"ts":4,"u":"a","x":3}`))
	want := lines(`{"rule":"f","version":1,"key":{},"time":1,"action":"alert"}`,
		`{"rule":"f","version":1,"key":{},"time":3,"action":"alert"}`,
		`{"rule":"a","version":1,"key":{"u":"a"},"time":4,"action":"alert","fields":{"s":11}}`)
	if got != want {
		t.Errorf("alerts:\n%s\nwant:\n%s", got, want)
	}
	if len(errs) != 2 {
		t.Fatalf("errors %v, want 2", errs)
	}
	var ee *EventError
	var ev *EvalError
	if !errors.As(errs[0], &ee) || ee.Index != 1 || !errors.As(errs[0], &ev) || ev.Part != "aggregates.s.of" ||
		errs[0].Error() != `event 2: rule a version 1: aggregates.s.of: value 8 is a string, not a number` {
		t.Errorf("first error %v", errs[0])
	}
	if errs[1].Error() != `event 3: rule a version 1: key: the event has no key field "u"` {
		t.Errorf("second error %v", errs[1])
	}
}

func TestReadEvents(t *testing.T) {
	evs, err := ReadEvents(strings.NewReader(`{"ts":"2026-11-30T07:00:00.5Z","a":1}`+"\n\n"+`{"ts":7,"a":2}`+"\n"), "in", "ts")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].TS != 1796022000500 || evs[0].Fields["ts"] != 1796022000500.0 || evs[1].TS != 7 || evs[1].Line != 3 {
		t.Errorf("events %+v", evs)
	}
	_, err = ReadEvents(strings.NewReader("{\"ts\":1.5}\n{\"ts\":\"yesterday\"}\nnope\nnull\n"), "in", "ts")
	want := "in:1: time field \"ts\": 1.5 is not a whole number of Unix milliseconds\n" +
		"in:2: time field \"ts\": \"yesterday\" is not RFC 3339 (2026-11-30T07:00:00Z) or Unix milliseconds\n" +
		"in:3: not JSON: invalid character 'o' in literal null (expecting 'u')\n" +
		"in:4: an event must be a JSON object"
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
}

// Expressions on event fields and params alone run on the event map; the
// others on the full environment. Both give the same answers, also for
// field names that are builtins.
func TestEventOnlyPrograms(t *testing.T) {
	for src, want := range map[string]bool{
		"e.amount > p.max":       true,
		"e.a > 1 && e.b == nil":  true,
		"all(e.items, # > 1)":    true,
		"e.count > 1":            false, // count is a builtin's name
		"e.amount > 1 && ts > 0": false,
		"e?.a > 1":               false,
		"e['a b'] > 1":           false,
		"e.u in lists.b":         false,
		"let x = e.a; x > 1":     false,
		"now().Year() > 1":       false,
		"len(e) > 1":             false,
	} {
		if got := eventOnly(src); got != want {
			t.Errorf("eventOnly(%q) = %v, want %v", src, got, want)
		}
	}
	got, errs := runDoc(t, "id: f\nkind: filter\nparams: {max: 2}\ncondition: 'e.count > p.max && e.amount > p.max && e.missing == nil'\n",
		lines(`{"ts":1,"count":3,"amount":3}`, `{"ts":2,"count":1,"amount":3}`, `{"ts":3,"count":3,"amount":1}`))
	if len(errs) > 0 || got != lines(`{"rule":"f","version":1,"key":{},"time":1,"action":"alert"}`) {
		t.Errorf("alerts %q, errors %v", got, errs)
	}
}

// Once the watermark passes everything, no key keeps state: look-backs
// and profiles ask for a timer when their events leave them, windows and
// sessions close, idle sequences and spent dedupe intervals are dropped.
func TestStateIsDropped(t *testing.T) {
	doc := "id: l\nkind: aggregate\nkey: [u]\nwindow: {type: lookback, size: 1m}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 1'\nemit: {dedupe: {for: 1h}}\n---\n" +
		"id: b\nkind: baseline\nkey: [u]\nprofile: {horizon: 1d, stats: [x], lastN: {x: 3}, seen: [x]}\ncondition: 'stats.x.count > 0'\n---\n" +
		"id: t\nkind: aggregate\nkey: [u]\nwindow: {type: sliding, size: 10s, slide: 5s}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 0'\n---\n" +
		"id: s\nkind: aggregate\nkey: [u]\nwindow: {type: session, gap: 10s}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 0'\n---\n" +
		"id: q\nkind: sequence\nkey: [u]\npattern:\n  within: {size: 1m}\n  steps:\n    - {name: a, where: 'e.x == 1'}\n    - {name: b, after: followedBy, where: 'e.x == 2'}\n---\n" +
		"id: f\nkind: filter\nkey: [u]\ncondition: 'e.x == 2'\nemit: {dedupe: {for: 1m}}\n"
	set, err := compileDoc(doc)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := ReadEvents(strings.NewReader(lines(`{"ts":0,"u":"a","x":1}`, `{"ts":1000,"u":"a","x":2}`, `{"ts":2000,"u":"b","x":1}`)), "in", "ts")
	if err != nil {
		t.Fatal(err)
	}
	alerts, e, errs := Run(set, evs)
	if len(errs) > 0 || len(alerts) == 0 {
		t.Fatalf("%d alerts, errors %v", len(alerts), errs)
	}
	for _, g := range e.groups {
		if len(g.slots) != 0 {
			t.Errorf("%d keys keep state after the end of input", len(g.slots))
		}
	}
	if len(e.timers) != 0 || len(e.armed) != 0 {
		t.Errorf("%d timers left", len(e.timers))
	}
}
