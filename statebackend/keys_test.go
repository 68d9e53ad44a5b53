package statebackend

import (
	"slices"
	"strings"
	"testing"
)

// TestAppendKeys lists the keys of a word table and a value table sharing
// keys, through deletes that shift entries back and an entry that holds
// only the other word, and refuses what it cannot list.
func TestAppendKeys(t *testing.T) {
	b := NewBackend(KeyGroupRange{First: 2, Last: 3})
	w1, ok, err := NewWordTable[int64, bool](b, "w1", int64Codec{}, boolCodec{})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	w2, ok, err := NewWordTable[int64, int64](b, "w2", int64Codec{}, int64Codec{})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	v, err := NewValueTable[int64, string](b, "v", int64Codec{}, stringCodec{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int64{}
	for k := range int64(200) {
		kg := 2 + int(k%2)
		w2.Put(kg, k, k)
		if k%3 == 0 {
			w1.Put(kg, k, true)
		}
		v.Put(kg, k, "x")
	}
	for k := range int64(200) {
		kg := 2 + int(k%2)
		if k%5 == 0 {
			w2.Delete(kg, k)
			v.Delete(kg, k)
		}
		if kg == 3 {
			if k%3 == 0 {
				want["w1"] = append(want["w1"], k)
			}
			if k%5 != 0 {
				want["w2"] = append(want["w2"], k)
				want["v"] = append(want["v"], k)
			}
		}
	}
	for _, name := range []string{"w1", "w2", "v"} {
		got, err := AppendKeys[int64](b, name, 3, nil)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want[name]) {
			t.Fatalf("%s: %v, want %v", name, got, want[name])
		}
	}
	for _, c := range []struct {
		name string
		kg   int
		err  string
	}{{"nope", 2, `no keyed state "nope"`}, {"v", 4, "key group 4 is not in [2, 3]"}} {
		if _, err := AppendKeys[int64](b, c.name, c.kg, nil); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s in %d: %v, want %q", c.name, c.kg, err, c.err)
		}
	}
	if _, err := AppendKeys[string](b, "v", 2, nil); err == nil || !strings.Contains(err.Error(), "keys of type string") {
		t.Errorf("a wrong key type: %v", err)
	}
}
