package rules

import "testing"

func TestSequence(t *testing.T) {
	cases := []struct{ name, doc, events, want string }{
		{"A then B within 10 s without C in between",
			"id: s\nkind: sequence\nkey: [u]\npattern:\n  within: {size: 10s}\n  steps:\n" +
				"    - {name: a, where: 'e.type == \"A\"'}\n    - {name: noC, after: notFollowedBy, where: 'e.type == \"C\"'}\n" +
				"    - {name: b, after: followedBy, where: 'e.type == \"B\"'}\nemit: {fields: {a_ts: 'm.a[0].ts', b_ts: e.ts}}\n",
			lines(`{"ts":0,"u":"x","type":"A"}`, `{"ts":1000,"u":"x","type":"D"}`, `{"ts":2000,"u":"x","type":"B"}`,
				`{"ts":3000,"u":"y","type":"A"}`, `{"ts":4000,"u":"y","type":"C"}`, `{"ts":5000,"u":"y","type":"B"}`,
				`{"ts":6000,"u":"z","type":"A"}`, `{"ts":16000,"u":"z","type":"B"}`),
			lines(`{"rule":"s","version":1,"key":{"u":"x"},"time":2000,"action":"alert","fields":{"a_ts":0,"b_ts":2000}}`)},
		{"small then next large, one alert per episode",
			"id: w\nkind: sequence\nkey: [a]\nparams: {small: 1, large: 500}\npattern:\n  within: {size: 1m}\n  steps:\n" +
				"    - {name: small, where: 'e.amount < p.small'}\n    - {name: large, after: next, where: 'e.amount > p.large'}\n",
			lines(`{"ts":0,"a":3,"amount":0.5}`, `{"ts":1,"a":3,"amount":900}`, `{"ts":2,"a":1,"amount":0.5}`, `{"ts":3,"a":1,"amount":20}`, `{"ts":4,"a":1,"amount":900}`),
			lines(`{"rule":"w","version":1,"key":{"a":3},"time":1,"action":"alert","fields":{"large":[1],"small":[0]}}`)},
		{"a trailing notFollowedBy completes when the window closes",
			"id: t\nkind: sequence\nkey: [u]\npattern:\n  within: {size: 10s}\n  steps:\n" +
				"    - {name: a, where: 'e.type == \"A\"'}\n    - {name: b, after: followedBy, where: 'e.type == \"B\"'}\n" +
				"    - {name: noC, after: notFollowedBy, where: 'e.type == \"C\"'}\n",
			lines(`{"ts":0,"u":"x","type":"A"}`, `{"ts":1000,"u":"x","type":"B"}`, `{"ts":0,"u":"y","type":"A"}`, `{"ts":2000,"u":"y","type":"B"}`, `{"ts":3000,"u":"y","type":"C"}`),
			lines(`{"rule":"t","version":1,"key":{"u":"x"},"time":10000,"action":"alert","fields":{"a":[0],"b":[1000]}}`)},
		{"times and a condition on the match",
			"id: n\nkind: sequence\nkey: [u]\npattern:\n  steps:\n    - {name: fail, where: 'e.ok == false', times: 3, consecutive: true}\n" +
				"    - {name: ok, after: next, where: 'e.ok'}\ncondition: 'len(m.fail) == 3 && m.fail[0].ip != e.ip'\nemit: {fields: {ip: e.ip}}\n",
			lines(`{"ts":1,"u":"x","ok":false,"ip":"a"}`, `{"ts":2,"u":"x","ok":false,"ip":"a"}`, `{"ts":3,"u":"x","ok":false,"ip":"a"}`, `{"ts":4,"u":"x","ok":true,"ip":"b"}`,
				`{"ts":5,"u":"y","ok":false,"ip":"a"}`, `{"ts":6,"u":"y","ok":false,"ip":"a"}`, `{"ts":7,"u":"y","ok":false,"ip":"a"}`, `{"ts":8,"u":"y","ok":true,"ip":"a"}`),
			lines(`{"rule":"n","version":1,"key":{"u":"x"},"time":4,"action":"alert","fields":{"ip":"b"}}`)},
	}
	cases = append(cases, struct{ name, doc, events, want string }{"an iterative condition reads the events accepted so far",
		"id: i\nkind: sequence\nkey: [u]\npattern:\n  steps:\n    - {name: first, where: 'e.x > 0'}\n" +
			"    - {name: rise, after: next, where: 'e.x > m.first[0].x * 2'}\n",
		lines(`{"ts":1,"u":"a","x":5}`, `{"ts":2,"u":"a","x":9}`, `{"ts":3,"u":"a","x":19}`),
		lines(`{"rule":"i","version":1,"key":{"u":"a"},"time":3,"action":"alert","fields":{"first":[2],"rise":[3]}}`)})
	cases = append(cases, struct{ name, doc, events, want string }{"onTimeout: a partial match the window discards is an alert marked timedOut",
		"id: o\nkind: sequence\nkey: [u]\npattern:\n  within: {size: 10s}\n  steps:\n" +
			"    - {name: a, where: 'e.type == \"A\"'}\n    - {name: b, after: followedBy, where: 'e.type == \"B\"'}\n" +
			"  onTimeout: {action: review, fields: {a_x: 'm.a[0].x', last: e.x}}\n",
		lines(`{"ts":0,"u":"x","type":"A","x":1}`, `{"ts":2000,"u":"x","type":"B","x":2}`,
			`{"ts":3000,"u":"y","type":"A","x":3}`, `{"ts":4000,"u":"y","type":"D","x":4}`, `{"ts":20000,"u":"y","type":"B","x":5}`),
		lines(`{"rule":"o","version":1,"key":{"u":"x"},"time":2000,"action":"alert","fields":{"a":[0],"b":[2000]}}`,
			`{"rule":"o","version":1,"key":{"u":"y"},"time":13000,"action":"review","timedOut":true,"fields":{"a_x":3,"last":3}}`)},
		struct{ name, doc, events, want string }{"onTimeout without fields: each step's event times, once per distinct partial match; the condition does not apply",
			"id: o\nkind: sequence\nkey: [u]\npattern:\n  within: {size: 10s}\n  steps:\n" +
				"    - {name: a, where: 'e.type == \"A\"', oneOrMore: true}\n    - {name: b, after: followedBy, where: 'e.type == \"B\"'}\n" +
				"  onTimeout: {}\ncondition: 'false'\nemit: {action: block}\n",
			lines(`{"ts":0,"u":"x","type":"A"}`, `{"ts":1000,"u":"x","type":"A"}`, `{"ts":2000,"u":"x","type":"C"}`),
			lines(`{"rule":"o","version":1,"key":{"u":"x"},"time":10000,"action":"block","timedOut":true,"fields":{"a":[0,1000]}}`,
				`{"rule":"o","version":1,"key":{"u":"x"},"time":10000,"action":"block","timedOut":true,"fields":{"a":[0]}}`,
				`{"rule":"o","version":1,"key":{"u":"x"},"time":11000,"action":"block","timedOut":true,"fields":{"a":[1000]}}`)})
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

func TestSequenceRefused(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"no steps", "id: s\nkind: sequence\npattern: {}\n", `r.yaml:1: rule s: a sequence rule needs a pattern with steps`},
		{"bad after", "id: s\nkind: sequence\npattern:\n  steps:\n    - {name: a, where: 'true'}\n    - {name: b, after: then, where: 'true'}\n",
			`r.yaml:6: rule s: pattern.steps[1]: after "then": want next, followedBy, followedByAny, notNext, notFollowedBy`},
		{"trailing not without within", "id: s\nkind: sequence\npattern:\n  steps:\n    - {name: a, where: 'true'}\n    - {name: b, after: notFollowedBy, where: 'true'}\n",
			`r.yaml:4: rule s: pattern: malformed pattern: NotFollowedBy "b" ends the pattern without Within, so it could never complete`},
		{"m outside a sequence", "id: f\nkind: filter\ncondition: 'len(m.a) > 0'\n",
			`r.yaml:3: rule f: condition: m is only available in a sequence rule's steps, condition and emit.fields`},
		{"unknown step in m", "id: s\nkind: sequence\npattern:\n  steps:\n    - {name: a, where: 'len(m.b) == 0'}\n",
			`r.yaml:5: rule s: pattern.steps[0].where: unknown name m.b (pattern steps: a)`},
		{"onTimeout without within", "id: s\nkind: sequence\npattern:\n  steps:\n    - {name: a, where: 'true'}\n  onTimeout: {action: review}\n",
			`r.yaml:6: rule s: pattern.onTimeout needs pattern.within: only a window times a partial match out`},
		{"onTimeout sink", "id: s\nkind: sequence\npattern:\n  within: {size: 1s}\n  steps:\n    - {name: a, where: 'true'}\n    - {name: b, after: next, where: 'true'}\n  onTimeout: {sink: slack}\n",
			`r.yaml:8: rule s: pattern.onTimeout.sink: a rule does not choose sinks; timed-out matches are alerts marked timedOut, which the rules job writes to <output>/timeouts/`},
		{"onTimeout fields see m", "id: s\nkind: sequence\npattern:\n  within: {size: 1s}\n  steps:\n    - {name: a, where: 'true'}\n    - {name: b, after: next, where: 'true'}\n  onTimeout: {fields: {x: m.c}}\n",
			`r.yaml:8: rule s: pattern.onTimeout.fields.x: unknown name m.c (pattern steps: a, b)`},
		{"bad times", "id: s\nkind: sequence\npattern:\n  steps:\n    - {name: a, where: 'true', times: [1, 2, 3]}\n",
			`r.yaml:5: rule s: times: want a count (3) or a range ([2, 4])`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := compileDoc(c.doc)
			if err == nil || err.Error() != c.want {
				t.Errorf("error:\n%v\nwant:\n%s", err, c.want)
			}
		})
	}
}
