package rulesjob

import (
	"errors"
	"fmt"
	"iter"
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/runtime"
)

// mapState is a broadcast state held in a map, as one subtask holds it.
type mapState[K comparable, V any] map[K]V

func (m mapState[K, V]) Get(k K) (V, bool)    { v, ok := m[k]; return v, ok }
func (m mapState[K, V]) Put(k K, v V)         { m[k] = v }
func (m mapState[K, V]) Remove(k K)           { delete(m, k) }
func (m mapState[K, V]) Contains(k K) bool    { _, ok := m[k]; return ok }
func (m mapState[K, V]) Len() int             { return len(m) }
func (m mapState[K, V]) All() iter.Seq2[K, V] { return maps.All(m) }
func (m mapState[K, V]) Clear()               { clear(m) }

func compileSet(t *testing.T, doc string) *rules.Set {
	t.Helper()
	specs, err := rules.Parse("r.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.Compile(specs)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// A change that moves a rule to other key fields, or deletes the last
// rule of a key, retires that key: events are copied to it from the
// change's time for as long as the rules' state there may live, and not
// while a set in force still has it.
func TestRetiredRuleKeys(t *testing.T) {
	const cnt = "id: cnt\nkind: aggregate\nkey: [%s]\nwindow: {type: tumbling, size: 10s}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 5'\n"
	const seq = "id: seq\nkind: sequence\nkey: [card]\npattern: {steps: [{name: a, where: 'e.x == 1'}, {name: b, after: next, where: 'e.x == 2'}]}\n"
	const flt = "id: flt\nkind: filter\nkey: [ip]\ncondition: 'e.x > 1'\n"
	v1 := compileSet(t, fmt.Sprintf(cnt, "user")+"---\n"+seq+"---\n"+flt)
	v2 := compileSet(t, fmt.Sprintf(cnt, "ip")+"version: 2\n") // cnt moves to ip; seq and flt deleted

	retired := mapState[string, int64]{}
	retire(retired, v1, v2, 5000)
	// user: cnt's windows live at most 10 s; card: a sequence without
	// within waits for ever; ip: still a key of v2 (and flt kept nothing).
	want := map[string]int64{retiredKey(5000, "user"): 15001, retiredKey(5000, "card"): math.MaxInt64}
	if !maps.Equal(retired, want) {
		t.Fatalf("retired %v, want %v", retired, want)
	}
	sigs := func(s []sigFields) []string {
		var out []string
		for _, x := range s {
			out = append(out, x.sig)
			if !slices.Equal(x.fields, fieldsOfSig(x.sig)) || len(x.fields) != 1 {
				t.Errorf("fields %q of %q", x.fields, x.sig)
			}
		}
		return out
	}
	for _, c := range []struct {
		t    int64
		set  *rules.Set
		want []string
	}{
		{4999, v1, nil},                      // before the change: v1 routes to user and card itself
		{5000, v2, []string{"card", "user"}}, // from the change on
		{15000, v2, []string{"card", "user"}},
		{15001, v2, []string{"card"}}, // cnt's old windows have all closed
		{15001, v1, nil},              // a set in force with the keys
	} {
		if got := sigs(retiredAt(nil, retired, c.t, keySigs(c.set))); !slices.Equal(got, c.want) {
			t.Errorf("at %d: copies to %q, want %q", c.t, got, c.want)
		}
	}
	// At the watermark 14999 an event at 15000 may still come.
	pruneRetired(retired, 14999)
	if _, ok := retired[retiredKey(5000, "user")]; !ok || len(retired) != 2 {
		t.Errorf("pruned at 14999: %v", retired)
	}
	pruneRetired(retired, 15001)
	if len(retired) != 1 {
		t.Errorf("pruned at 15001: %v, want only card", retired)
	}
}

type changes []Change

func (c *changes) Collect(x Change) { *c = append(*c, x) }

// The rule set of a job without etcd is sent once; with a continuous
// input its source then stays (an ended input's maximum watermark would
// close every window while the events' input is idle), otherwise it ends.
func TestSetSourceStaysForContinuousInput(t *testing.T) {
	set := compileSet(t, "id: f\nkind: filter\ncondition: 'true'\n")
	for _, forever := range []bool{false, true} {
		s := &setSource{set: set, forever: forever}
		var out changes
		if _, err := s.Poll(&out); err != nil || len(out) != 1 || out[0].Set != set || out[0].From != setTime {
			t.Fatalf("forever=%v: first poll %+v, %v", forever, out, err)
		}
		for range 3 {
			d, err := s.Poll(&out)
			switch {
			case len(out) != 1:
				t.Fatalf("forever=%v: sent the set again", forever)
			case forever && (err != nil || d <= 0):
				t.Fatalf("forever: poll %v, %v; want a wait", d, err)
			case !forever && !errors.Is(err, runtime.ErrEndOfInput):
				t.Fatalf("poll %v, %v; want the end", d, err)
			}
		}
	}
	bounded := Config{Source: "kafka"}
	bounded.IO.Source.Bounded = true
	if !continuous(Config{Monitor: time.Second}) || !continuous(Config{Source: "kafka"}) || continuous(Config{Source: "files"}) ||
		continuous(bounded) {
		t.Errorf("continuous: monitored files and Kafka are, files read once and bounded Kafka are not")
	}
}
