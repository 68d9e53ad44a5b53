package rules

import (
	"encoding/json"
	"strings"
	"testing"
)

type timerList []int64

func (l *timerList) Register(t int64) { *l = append(*l, t) }

// A window rule with lateness keeps a fired window for that long: an
// event behind the watermark joins it and fires it again (marked late); a
// window past its lateness is gone and the event is refused.
func TestLateness(t *testing.T) {
	set, err := compileDoc("id: l\nkind: aggregate\nkey: [u]\nwindow: {type: tumbling, size: 10s}\nlateness: 5s\n" +
		"aggregates: {n: {fn: count}, s: {fn: sum, of: e.x}}\nwhen: 'e.x > 0'\ncondition: 'agg.n >= 1'\n")
	if err != nil {
		t.Fatal(err)
	}
	r, rn := set.Rules[0], NewRunner()
	st := r.NewState(map[string]any{"u": "a"})
	var timers timerList
	var out []Alert
	ev := func(ts int64, x float64) *Event {
		return &Event{TS: ts, Fields: map[string]any{"u": "a", "x": x, "ts": float64(ts)}}
	}
	late := func(ts int64, x float64, wm int64, want bool) {
		t.Helper()
		var took bool
		if out, took, err = rn.OnLateEvent(r, st, ev(ts, x), wm, &timers, out); err != nil || took != want {
			t.Fatalf("late event at %d, watermark %d: taken %v, %v; want taken %v", ts, wm, took, err, want)
		}
	}
	if out, err = rn.OnEvent(r, st, ev(1000, 1), &timers, out); err != nil {
		t.Fatal(err)
	}
	if out, err = rn.OnTimer(r, st, 9999, &timers, out); err != nil {
		t.Fatal(err)
	}
	late(2000, 2, 12000, true)  // the fired window [0, 10s) is kept until 14999
	late(2500, -1, 12000, true) // filtered out by when: no new firing
	late(3000, 4, 14999, false) // past the lateness
	late(11000, 5, 22000, true) // a window no event had: created and fired
	if out, err = rn.OnTimer(r, st, 14999, &timers, out); err != nil {
		t.Fatal(err)
	}
	if out, err = rn.OnTimer(r, st, 24999, &timers, out); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range out {
		b, _ := json.Marshal(a)
		got = append(got, string(b))
	}
	want := []string{
		`{"rule":"l","version":1,"key":{"u":"a"},"time":9999,"action":"alert","window":{"start":0,"end":10000},"fields":{"n":1,"s":1}}`,
		`{"rule":"l","version":1,"key":{"u":"a"},"time":9999,"action":"alert","late":true,"window":{"start":0,"end":10000},"fields":{"n":2,"s":3}}`,
		`{"rule":"l","version":1,"key":{"u":"a"},"time":19999,"action":"alert","late":true,"window":{"start":10000,"end":20000},"fields":{"n":1,"s":5}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !st.Empty() {
		t.Errorf("the windows are past their lateness but the state holds %v", st.wins)
	}
}

func TestLatenessRefused(t *testing.T) {
	for doc, want := range map[string]string{
		"id: l\nkind: aggregate\nwindow: {type: lookback, size: 10s}\nlateness: 5s\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 1'\n": "r.yaml:4: rule l: lateness applies to tumbling and sliding windows: a lookback window sees each key's events in event-time order only",
		"id: l\nkind: filter\nlateness: 5s\ncondition: 'true'\n":                                                                            "r.yaml:3: rule l: lateness belongs to kind aggregate, not filter",
	} {
		if _, err := compileDoc(doc); err == nil || err.Error() != want {
			t.Errorf("error:\n%v\nwant:\n%s", err, want)
		}
	}
}
