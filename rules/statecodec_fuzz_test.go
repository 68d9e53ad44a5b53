package rules

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzStateDecode feeds arbitrary bytes to the key-state and rule-state
// decoders of a rule of every state body: they must refuse or accept
// without panicking, and what they accept must encode, decode again and
// encode to the same bytes. The seeds are the states the keyed
// runs of stateDocs store.
func FuzzStateDecode(f *testing.F) {
	var specs []*Spec
	for i, c := range stateDocs {
		s, err := Parse("r.yaml", []byte(c.doc))
		if err != nil {
			f.Fatal(err)
		}
		for _, sp := range s {
			sp.ID = sp.ID + "-" + string(rune('a'+i))
		}
		specs = append(specs, s...)
	}
	set, err := Compile(specs)
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range stateDocs {
		one, err := compileDoc(c.doc)
		if err != nil {
			f.Fatal(err)
		}
		events, err := ReadEvents(strings.NewReader(c.events), "events", DefaultTimeField)
		if err != nil {
			f.Fatal(err)
		}
		k := newKeyedRun(&testing.T{}, one)
		k.onStore = func(b []byte) { f.Add(b) }
		k.run(events)
	}
	rn := NewRunner()
	f.Fuzz(func(t *testing.T, b []byte) {
		ks, err := KeyStatesCodec{}.Decode(b)
		if err != nil {
			return
		}
		again := KeyStatesCodec{}.Append(nil, ks)
		ks2, err := KeyStatesCodec{}.Decode(again)
		if err != nil {
			t.Fatalf("re-encoded key states do not decode: %v", err)
		}
		if b2 := (KeyStatesCodec{}).Append(nil, ks2); !bytes.Equal(b2, again) {
			t.Fatalf("key states do not settle on one encoding")
		}
		for _, s := range ks.States {
			for _, r := range set.Rules {
				st, err := rn.DecodeState(r, ks.Key, s.Data)
				if err != nil {
					continue
				}
				again, err := rn.AppendState(nil, r, st)
				if err != nil {
					t.Fatalf("rule %s: a decoded state does not encode: %v", r.ID, err)
				}
				st2, err := rn.DecodeState(r, ks.Key, again)
				if err != nil {
					t.Fatalf("rule %s: a re-encoded state does not decode: %v", r.ID, err)
				}
				if b2, _ := rn.AppendState(nil, r, st2); !bytes.Equal(b2, again) {
					t.Fatalf("rule %s: a state does not settle on one encoding", r.ID)
				}
			}
		}
	})
}
