package rules

import (
	"encoding/json"
	"strings"
	"testing"
)

// Of the alerts raised on one event by rules with a priority, the lowest
// priority wins (ties: the lower rule ID); shadow rules, window closes and
// rules without a priority take no part.
func TestDecisions(t *testing.T) {
	const doc = "id: z-block\nkind: filter\ncondition: 'e.x > 1'\nemit: {action: block, priority: 5}\n---\n" +
		"id: a-review\nkind: filter\nkey: [u]\ncondition: 'e.x > 2'\nemit: {action: review, priority: 5}\n---\n" +
		"id: allow\nkind: filter\ncondition: 'e.ok == true'\nemit: {action: allow, priority: 1}\n---\n" +
		"id: shadow-first\nkind: filter\nstate: shadow\ncondition: 'true'\nemit: {action: block, priority: 0}\n---\n" +
		"id: no-priority\nkind: filter\ncondition: 'true'\n---\n" +
		"id: window\nkind: aggregate\nwindow: {type: tumbling, size: 10s}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 0'\nemit: {priority: 0}\n"
	set, err := compileDoc(doc)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := ReadEvents(strings.NewReader(lines(`{"ts":1,"u":"a","x":0}`, `{"ts":2,"u":"a","x":2}`, `{"ts":3,"u":"b","x":3}`,
		`{"ts":4,"u":"c","x":3,"ok":true}`)), "events", DefaultTimeField)
	if err != nil {
		t.Fatal(err)
	}
	_, eng, errs := Run(set, evs)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var got []string
	for _, d := range eng.Decisions() {
		b, _ := json.Marshal(d)
		got = append(got, string(b))
	}
	want := []string{
		`{"time":2,"line":2,"decision":"block","rule":"z-block","version":1,"priority":5,"key":{}}`,
		`{"time":3,"line":3,"decision":"review","rule":"a-review","version":1,"priority":5,"key":{"u":"b"},"overruled":[{"rule":"z-block","version":1,"action":"block","priority":5,"key":{}}]}`,
		`{"time":4,"line":4,"decision":"allow","rule":"allow","version":1,"priority":1,"key":{},"overruled":[{"rule":"a-review","version":1,"action":"review","priority":5,"key":{"u":"c"}},{"rule":"z-block","version":1,"action":"block","priority":5,"key":{}}]}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("decisions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := compileDoc("id: r\nkind: filter\ncondition: 'true'\nemit: {priority: -1}\n"); err == nil ||
		err.Error() != "r.yaml:4: rule r: emit.priority -1: want 0 to 1000000 (lower wins)" {
		t.Errorf("a negative priority: %v", err)
	}
}
