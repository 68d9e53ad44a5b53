package rules

import (
	"errors"
	"reflect"
	"testing"

	"github.com/weirstream/weir/runtime"
)

var _ runtime.Codec[*Set] = SetCodec{}

// A set survives encoding: the same rules, versions, states and lists,
// and the same alerts on the same events.
func TestSetCodecRoundTrip(t *testing.T) {
	specs, err := LoadPath("examples")
	if err == nil {
		t.Fatal("examples is a directory of directories: LoadPath should find no files")
	}
	var all []*Spec
	for _, d := range []string{"blacklist", "transfers", "a-then-b-without-c", "three-times-average"} {
		specs, err = LoadPath("examples/" + d)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, specs...)
	}
	set, err := Compile(all)
	if err != nil {
		t.Fatal(err)
	}
	set.Rules[0].Version, set.Rules[0].State = 7, "shadow"
	b := SetCodec{}.Append(nil, set)
	got, err := SetCodec{}.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Rules) != len(set.Rules) || !reflect.DeepEqual(got.Lists, set.Lists) {
		t.Fatalf("decoded %d rules, lists %v; want %d, %v", len(got.Rules), got.Lists, len(set.Rules), set.Lists)
	}
	for i, r := range got.Rules {
		w := set.Rules[i]
		if r.ID != w.ID || r.Version != w.Version || r.State != w.State || string(r.Source()) != string(w.Source()) {
			t.Errorf("rule %d: %s v%d %s, want %s v%d %s", i, r.ID, r.Version, r.State, w.ID, w.Version, w.State)
		}
	}
	evs := []Event{{TS: 1, Fields: map[string]any{"userId": "mallory", "accountId": "a", "amount": 20000.0, "type": "A", "ts": 1.0}}}
	a1, _, _ := Run(set, evs)
	a2, _, _ := Run(got, evs)
	if len(a1) == 0 || !reflect.DeepEqual(a1, a2) {
		t.Errorf("alerts after decoding %v, before %v", a2, a1)
	}
	for n := range len(b) {
		if _, err := (SetCodec{}).Decode(b[:n]); err == nil {
			t.Fatalf("a truncation at %d of %d bytes decodes", n, len(b))
		} else if n > 0 && !errors.Is(err, ErrCorruptSet) {
			t.Fatalf("truncation at %d: %v does not wrap ErrCorruptSet", n, err)
		}
	}
	// A rule where the lists go is refused, not misread.
	bad := appendDoc([]byte{setFormat, 1}, "x", 1, "active", []byte("id: r\nkind: filter\ncondition: 'true'\n"))
	bad = append(bad, 0)
	if _, err := (SetCodec{}).Decode(bad); !errors.Is(err, ErrCorruptSet) {
		t.Errorf("a rule among the lists: %v", err)
	}
}
