package rules

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// deltaModel is a store of documents by ID, changed at random the ways a
// live rule store changes: rules put, tuned, paused, shadowed, deleted,
// and lists added, changed and removed.
type deltaModel struct {
	docs    map[string]Doc
	version map[string]int64
}

func (m *deltaModel) ruleDoc(id string, max, state int, list bool) Doc {
	m.version[id]++
	cond := fmt.Sprintf("e.amount > p.max")
	if list {
		cond += " && !(e.user in lists.l0)"
	}
	return Doc{File: "etcd:" + id, Version: m.version[id], State: []string{"active", "shadow", "paused"}[state%3],
		Source: fmt.Appendf(nil, "id: %s\nkind: filter\nkey: [user]\nparams: {max: %d}\ncondition: '%s'\n", id, max, cond)}
}

func (m *deltaModel) listDoc(id string, items int) Doc {
	m.version[id]++
	return Doc{File: "etcd:" + id, Source: fmt.Appendf(nil, "id: %s\nkind: list\nitems: [a%d, b]\n", id, items)}
}

// change makes one random change: the documents it puts and the IDs it
// removes.
func (m *deltaModel) change(rnd *rand.Rand) (Doc, string) {
	_, hasList := m.docs["l0"]
	switch op := rnd.IntN(10); {
	case op == 0 && !hasList:
		d := m.listDoc("l0", rnd.IntN(5))
		return d, ""
	case op == 0 && hasList:
		// Removing the list drops the rules reading it first.
		for id, d := range m.docs {
			if bytes.Contains(d.Source, []byte("lists.l0")) {
				return Doc{}, id
			}
		}
		return Doc{}, "l0"
	case op == 1 && hasList:
		return m.listDoc("l0", rnd.IntN(5)), ""
	case op == 2:
		ids := slices.Sorted(func(yield func(string) bool) {
			for id := range m.docs {
				if id != "l0" && !yield(id) {
					return
				}
			}
		})
		if len(ids) > 0 {
			return Doc{}, ids[rnd.IntN(len(ids))]
		}
	}
	id := fmt.Sprintf("r%02d", rnd.IntN(30))
	return m.ruleDoc(id, rnd.IntN(100), rnd.IntN(3), hasList && rnd.IntN(3) == 0), ""
}

// full is what the live rule source compiles: every document, by ID.
func (m *deltaModel) full(t testing.TB) *Set {
	ids := make([]string, 0, len(m.docs))
	for id := range m.docs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	docs := make([]Doc, len(ids))
	for i, id := range ids {
		docs[i] = m.docs[id]
	}
	set, err := CompileDocs(docs)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func sameSet(t testing.TB, what string, got, want *Set) {
	t.Helper()
	if got.Digest() != want.Digest() {
		t.Fatalf("%s: digest %016x, the full set's %016x", what, got.Digest(), want.Digest())
	}
	if g, w := (SetCodec{}).Append(nil, got), (SetCodec{}).Append(nil, want); !bytes.Equal(g, w) {
		t.Fatalf("%s: the set differs from the full set:\n%q\nwant\n%q", what, g, w)
	}
}

// checkDeltas applies random changes, grouped at random into deltas
// (as the rule source groups a put of several rules), to a set, through
// the codec, and checks each result equals the full set of the same
// documents.
func checkDeltas(t testing.TB, seed uint64, steps int) {
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m := &deltaModel{docs: map[string]Doc{}, version: map[string]int64{}}
	for range 5 {
		d, _ := m.change(rnd)
		if d.Source != nil {
			id := strings.Fields(string(d.Source))[1]
			m.docs[id] = d
		}
	}
	src := m.full(t)
	// The holder decodes the full set, as a subtask does at start.
	held, err := SetCodec{}.Decode(SetCodec{}.Append(nil, src))
	if err != nil {
		t.Fatal(err)
	}
	for step := 0; step < steps; {
		var docs []Doc
		var removed []string
		touched := map[string]bool{}
		for range 1 + rnd.IntN(4) {
			d, rm := m.change(rnd)
			id := rm
			if d.Source != nil {
				id = strings.Fields(string(d.Source))[1]
			}
			if touched[id] {
				continue // one change per ID and delta, as the source sends
			}
			touched[id] = true
			if rm != "" {
				delete(m.docs, rm)
				removed = append(removed, rm)
			} else {
				m.docs[id] = d
				docs = append(docs, d)
			}
			step++
		}
		next, err := src.With(docs, removed)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		want := m.full(t)
		sameSet(t, fmt.Sprintf("step %d, the source's set", step), next, want)
		b := DeltaCodec{}.Append(nil, src.Delta(next, docs, removed))
		d, err := DeltaCodec{}.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if held, err = held.Apply(d); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		sameSet(t, fmt.Sprintf("step %d, the holder's set", step), held, want)
		src = next
	}
}

func TestDeltasMakeTheFullSet(t *testing.T) {
	for seed := range uint64(20) {
		checkDeltas(t, seed, 60)
	}
}

func FuzzDeltas(f *testing.F) {
	f.Add(uint64(1))
	f.Add(uint64(12345))
	f.Fuzz(func(t *testing.T, seed uint64) { checkDeltas(t, seed, 30) })
}

func TestDeltaRefusesAnotherBase(t *testing.T) {
	docs := cacheDocs(3, 10)
	a, err := CompileDocs(docs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(a.Delta(a, nil, nil)); err != nil {
		t.Fatalf("an empty delta: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	change := []Doc{{File: "r.yaml", Version: 2, Source: []byte("id: r1\nkind: filter\nkey: [user]\nparams: {max: 7}\ncondition: 'e.amount > p.max'\n")}}
	b, err := a.With(change, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := a.Delta(b, change, nil)
	// A holder that missed the change to b cannot apply the next one.
	c, err := b.With(nil, []string{"r0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(b.Delta(c, nil, []string{"r0"})); !errors.Is(err, ErrDeltaBase) {
		t.Errorf("a delta applied to a set that is not its base: %v", err)
	}
	// A delta whose result is not what it makes is refused too.
	d.Result++
	if _, err := a.Apply(d); !errors.Is(err, ErrDeltaBase) {
		t.Errorf("a delta with a wrong result applied: %v", err)
	}
	// A set compiled otherwise has no digest: no delta applies to it.
	specs, err := Parse("r.yaml", change[0].Source)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := CompileStored(specs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Apply(Delta{}); !errors.Is(err, ErrDeltaBase) {
		t.Errorf("a delta applied to a set without a digest: %v", err)
	}
	// A rule of the delta that does not compile is an error, not a set.
	bad := []Doc{{File: "r.yaml", Version: 3, Source: []byte("id: r1\nkind: filter\ncondition: 'e.amount >'\n")}}
	if _, err := a.With(bad, nil); err == nil {
		t.Error("a delta with a rule that does not compile applied")
	}
}

func TestDeltaCodecRefusesCorruptInput(t *testing.T) {
	good := DeltaCodec{}.Append(nil, Delta{Base: 1, Result: 2, Docs: cacheDocs(2, 1), Removed: []string{"x"}})
	for n := range len(good) {
		if _, err := (DeltaCodec{}).Decode(good[:n]); err == nil {
			t.Fatalf("a delta cut to %d of %d bytes decoded", n, len(good))
		}
	}
	if _, err := (DeltaCodec{}).Decode(append(slices.Clone(good), 0)); err == nil {
		t.Error("a delta with a trailing byte decoded")
	}
	if IsDelta((SetCodec{}).Append(nil, &Set{})) {
		t.Error("a set's encoding reads as a delta")
	}
}

// BenchmarkSetWith is a change of one rule of 10,000: what the rule
// source and every subtask pay per change.
func BenchmarkSetWith(b *testing.B) {
	docs := cacheDocs(10000, 10)
	// Sorted by ID, as the live rule source compiles them.
	slices.SortFunc(docs[1:], func(a, b Doc) int { return bytes.Compare(a.Source, b.Source) })
	set, err := CompileDocs(docs)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		change := []Doc{{File: "r.yaml", Version: int64(2 + i%2), Source: fmt.Appendf(nil,
			"id: r5\nkind: filter\nkey: [user]\nparams: {max: %d}\ncondition: 'e.amount > p.max && !(e.user in lists.vips)'\n", i%2)}}
		next, err := set.With(change, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := set.Apply(set.Delta(next, change, nil)); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzDeltaDecode: any input decodes to an error or to a delta that
// survives a round trip (varints may have longer forms than Append's).
func FuzzDeltaDecode(f *testing.F) {
	f.Add(DeltaCodec{}.Append(nil, Delta{Base: 1, Result: 2, Docs: cacheDocs(2, 1), Removed: []string{"x"}}))
	f.Add([]byte{deltaFormat})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DeltaCodec{}.Decode(b)
		if err != nil {
			return
		}
		again, err := DeltaCodec{}.Decode(DeltaCodec{}.Append(nil, d))
		if err != nil || !reflect.DeepEqual(again, d) {
			t.Fatalf("%q decodes to %+v, which round-trips to %+v, %v", b, d, again, err)
		}
	})
}
