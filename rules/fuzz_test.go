package rules

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzCompile feeds arbitrary documents to the YAML and expr front end:
// it must refuse or accept them without panicking, and whatever it
// accepts must run on a few events without panicking.
func FuzzCompile(f *testing.F) {
	files, _ := filepath.Glob("examples/*/rules.yaml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("id: r\nkind: aggregate\nkey: [u]\nwindow: {type: session, gap: 1s}\naggregates: {n: {fn: count}}\ncondition: 'agg.n > 1'\n"))
	f.Add([]byte("id: r\nkind: baseline\nprofile: {horizon: 1d, stats: [x], lastN: {x: 2}, seen: [x]}\ncondition: 'prev != nil && stats.x.mean > 1'\n"))
	f.Add([]byte("id: r\nkind: filter\ncondition: 'e.a.b[3] > p.x'\nparams: {x: 1h}\n"))
	events := []Event{
		{TS: 0, Fields: map[string]any{"u": "a", "x": 1.0, "amount": 5.0, "accountId": 1.0}},
		{TS: 1000, Fields: map[string]any{"u": "a", "x": "str", "amount": nil}},
		{TS: 5000, Fields: map[string]any{"u": 2.0, "x": []any{1.0}, "e": map[string]any{"a": 1.0}}},
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		specs, err := Parse("fuzz.yaml", doc)
		if err != nil {
			return
		}
		set, err := Compile(specs)
		if err != nil || set == nil {
			return
		}
		for _, r := range set.Rules {
			if _, err := Parse("again", r.Source()); err != nil {
				t.Fatalf("the source of an accepted rule does not parse: %v", err)
			}
		}
		Run(set, events)
	})
}

// FuzzSetDecode feeds arbitrary bytes to SetCodec.Decode (a checkpoint or
// a store read back): an error or a set, never a panic; a decoded set
// encodes to the same bytes.
func FuzzSetDecode(f *testing.F) {
	for _, d := range []string{"blacklist", "transfers", "a-then-b-without-c"} {
		specs, err := LoadPath("examples/" + d)
		if err != nil {
			f.Fatal(err)
		}
		set, err := Compile(specs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(SetCodec{}.Append(nil, set))
	}
	f.Add([]byte{setFormat, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := SetCodec{}.Decode(b)
		if err != nil {
			return
		}
		again, err := SetCodec{}.Decode(SetCodec{}.Append(nil, set))
		if err != nil || len(again.Rules) != len(set.Rules) {
			t.Fatalf("a decoded set does not round-trip: %v", err)
		}
	})
}
