package statebackend

import (
	"strings"
	"testing"
)

func TestTablesKeepKeyGroupsApart(t *testing.T) {
	b := NewBackend(KeyGroupRange{First: 64, Last: 127})
	v, err := NewValueTable[int64, bool](b, "flag", int64Codec{}, boolCodec{})
	if err != nil {
		t.Fatal(err)
	}
	v.Put(64, 1, true)
	v.Put(127, 1, false) // same key, another key group: another entry
	v.Put(127, 2, true)
	if got, ok := v.Get(64, 1); !ok || !got {
		t.Errorf("kg 64 key 1 = %v, %v", got, ok)
	}
	if got, ok := v.Get(127, 1); !ok || got {
		t.Errorf("kg 127 key 1 = %v, %v", got, ok)
	}
	if _, ok := v.Get(100, 1); ok {
		t.Error("key 1 found in key group 100, where it was never put")
	}
	if v.KeysInGroup(64) != 1 || v.KeysInGroup(127) != 2 || v.KeysInGroup(65) != 0 {
		t.Errorf("keys per group %d %d %d", v.KeysInGroup(64), v.KeysInGroup(127), v.KeysInGroup(65))
	}
	v.Delete(127, 1)
	if _, ok := v.Get(127, 1); ok || v.KeysInGroup(127) != 1 {
		t.Error("delete did not remove the entry")
	}
	if len(v.Group(127)) != 1 || v.Group(65) != nil {
		t.Errorf("Group views: %v %v", v.Group(127), v.Group(65))
	}
}

func TestMapAndListTables(t *testing.T) {
	b := NewBackend(KeyGroupRange{First: 0, Last: 3})
	m, _ := NewMapTable[string, string, int64](b, "counts", stringCodec{}, stringCodec{}, int64Codec{})
	m.Put(1, "a", "x", 1)
	m.Put(1, "a", "y", 2)
	if got := m.Map(1, "a"); len(got) != 2 || got["y"] != 2 {
		t.Errorf("map = %v", got)
	}
	m.Remove(1, "a", "x")
	m.Remove(1, "a", "y")
	m.Remove(1, "b", "y") // absent: no-op
	if m.KeysInGroup(1) != 0 {
		t.Error("an emptied map should drop its key")
	}
	l, _ := NewListTable[string, int64](b, "events", stringCodec{}, int64Codec{})
	l.Append(2, "a", 1)
	l.Append(2, "a", 2)
	if got := l.List(2, "a"); len(got) != 2 || got[1] != 2 {
		t.Errorf("list = %v", got)
	}
	l.Set(2, "a", nil)
	if l.KeysInGroup(2) != 0 {
		t.Error("an empty list should clear the key")
	}
}

func TestRegistration(t *testing.T) {
	b := NewBackend(KeyGroupRange{First: 0, Last: 0})
	a, _ := NewValueTable[int64, bool](b, "flag", int64Codec{}, boolCodec{})
	again, err := NewValueTable[int64, bool](b, "flag", int64Codec{}, boolCodec{})
	if err != nil || again != a {
		t.Errorf("re-registering the same state should return it: %v", err)
	}
	if _, err := NewValueTable[int64, int64](b, "flag", int64Codec{}, int64Codec{}); err == nil || !strings.Contains(err.Error(), `"flag"`) {
		t.Errorf("same name, other type: error %v", err)
	}
	if _, err := NewListTable[int64, bool](b, "flag", int64Codec{}, boolCodec{}); err == nil {
		t.Error("same name, other kind: no error")
	}
	NewListTable[int64, bool](b, "later", int64Codec{}, boolCodec{})
	for _, bad := range []string{"", "_timers", strings.Repeat("x", 2000)} {
		if _, err := NewValueTable[int64, bool](b, bad, int64Codec{}, boolCodec{}); err == nil {
			t.Errorf("state name %.10q accepted", bad)
		}
	}
	names := []string{}
	for _, tb := range b.Tables() {
		names = append(names, tb.Name())
	}
	if strings.Join(names, ",") != "flag,later" {
		t.Errorf("tables %v, want registration order", names)
	}
}

func TestKeyGroupRange(t *testing.T) {
	if r := (KeyGroupRange{First: 3, Last: 5}); r.Len() != 3 || !r.Contains(5) || r.Contains(6) || r.String() != "[3, 5]" || r.Empty() {
		t.Errorf("range %v", r)
	}
	empty := KeyGroupRange{First: 0, Last: -1}
	if !empty.Empty() || empty.Len() != 0 || empty.Contains(0) || (KeyGroupRange{}).Empty() {
		t.Error("empty range")
	}
	a, b := KeyGroupRange{First: 0, Last: 63}, KeyGroupRange{First: 32, Last: 127}
	if a.Intersect(b) != (KeyGroupRange{First: 32, Last: 63}) || !a.Overlaps(b) ||
		a.Overlaps(KeyGroupRange{First: 64, Last: 127}) || a.Overlaps(empty) || (KeyGroupRange{First: 9, Last: 2}).Len() != 0 {
		t.Error("intersect / overlaps")
	}
}
