package statebackend

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// mapListModel is the plain Go model of a map table and a list table.
type mapListModel struct {
	maps  map[int64]map[int64]int64
	lists map[int64][]int64
}

func (m mapListModel) clone() mapListModel {
	out := mapListModel{maps: map[int64]map[int64]int64{}, lists: map[int64][]int64{}}
	for k, inner := range m.maps {
		out.maps[k] = maps.Clone(inner)
	}
	for k, l := range m.lists {
		out.lists[k] = slices.Clone(l)
	}
	return out
}

// decodeMapSection reads a map section back, per key.
func decodeMapSection(t *testing.T, s Section, r KeyGroupRange) map[int64]map[int64]int64 {
	t.Helper()
	out := map[int64]map[int64]int64{}
	for kg := r.First; kg <= r.Last; kg++ {
		data, n := s.AppendGroup(nil, kg)
		for range n {
			kb, vb, rest, ok := nextEntry(data)
			if !ok {
				t.Errorf("key group %d: truncated map entry", kg)
				return out
			}
			k, _ := int64Codec{}.Decode(kb)
			cnt, w := binary.Uvarint(vb)
			vb = vb[w:]
			inner := map[int64]int64{}
			for range cnt {
				ukb, v, more, _ := nextEntry(vb)
				uk, _ := int64Codec{}.Decode(ukb)
				inner[uk], _ = int64Codec{}.Decode(v)
				vb = more
			}
			out[k] = inner
			data = rest
		}
	}
	return out
}

func decodeListSection(t *testing.T, s Section, r KeyGroupRange) map[int64][]int64 {
	t.Helper()
	out := map[int64][]int64{}
	for kg := r.First; kg <= r.Last; kg++ {
		data, n := s.AppendGroup(nil, kg)
		for range n {
			kb, vb, rest, ok := nextEntry(data)
			if !ok {
				t.Errorf("key group %d: truncated list entry", kg)
				return out
			}
			k, _ := int64Codec{}.Decode(kb)
			cnt, w := binary.Uvarint(vb)
			vb = vb[w:]
			var l []int64
			for range cnt {
				item, more, _ := field(vb)
				v, _ := int64Codec{}.Decode(item)
				l = append(l, v)
				vb = more
			}
			out[k] = l
			data = rest
		}
	}
	return out
}

// TestMapListTablesAgainstModel runs random puts, removes, clears, appends
// and sets on a map and a list table against plain maps, snapshotting now
// and then. Each snapshot is encoded on its own goroutine while the owner
// goes on writing (run with -race: per-entry copy-on-write must never
// write what a snapshot holds), and must decode to the model of its time.
func TestMapListTablesAgainstModel(t *testing.T) {
	const groups = 16
	r := KeyGroupRange{First: 0, Last: groups - 1}
	kgOf := func(k int64) int { return int(uint64(k)*0x9e3779b97f4a7c15>>40) % groups }
	b := NewBackend(r)
	mt, err := NewMapTable[int64, int64, int64](b, "m", int64Codec{}, int64Codec{}, int64Codec{})
	if err != nil {
		t.Fatal(err)
	}
	lt, err := NewListTable[int64, int64](b, "l", int64Codec{}, int64Codec{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	model := mapListModel{maps: map[int64]map[int64]int64{}, lists: map[int64][]int64{}}
	var wg sync.WaitGroup
	for op := range 80_000 {
		k := rng.Int64N(500)
		kg := kgOf(k)
		switch c := rng.IntN(100); {
		case c < 35:
			uk, v := rng.Int64N(20), int64(op)
			mt.Put(kg, k, uk, v)
			if model.maps[k] == nil {
				model.maps[k] = map[int64]int64{}
			}
			model.maps[k][uk] = v
		case c < 50:
			uk := rng.Int64N(20)
			mt.Remove(kg, k, uk)
			if inner := model.maps[k]; inner != nil {
				delete(inner, uk)
				if len(inner) == 0 {
					delete(model.maps, k)
				}
			}
		case c < 53:
			mt.Clear(kg, k)
			delete(model.maps, k)
		case c < 80:
			lt.Append(kg, k, int64(op))
			model.lists[k] = append(model.lists[k], int64(op))
		case c < 88:
			// Set to a prefix of the current list plus one item: the
			// stored slice must not share an array a snapshot reads.
			cur := lt.List(kg, k)
			n := rng.IntN(len(cur) + 1)
			l := append(slices.Clone(cur[:n]), -int64(op))
			lt.Set(kg, k, l)
			model.lists[k] = slices.Clone(l)
		case c < 90:
			lt.Clear(kg, k)
			delete(model.lists, k)
		default:
			if got := mt.Map(kg, k); !maps.Equal(got, model.maps[k]) {
				t.Fatalf("op %d: map of %d = %v, want %v", op, k, got, model.maps[k])
			}
			if got := lt.List(kg, k); !slices.Equal(got, model.lists[k]) {
				t.Fatalf("op %d: list of %d = %v, want %v", op, k, got, model.lists[k])
			}
		}
		if op%5_000 == 4_999 {
			secs, want := b.Snapshot(), model.clone()
			wg.Go(func() {
				if got := decodeMapSection(t, secs[0], r); !maps.EqualFunc(got, want.maps, maps.Equal) {
					t.Errorf("snapshot after op %d: maps differ from the model of that time", op)
				}
				if got := decodeListSection(t, secs[1], r); !maps.EqualFunc(got, want.lists, slices.Equal) {
					t.Errorf("snapshot after op %d: lists differ from the model of that time", op)
				}
			})
		}
	}
	wg.Wait()
	keys := 0
	for kg := range groups {
		keys += mt.KeysInGroup(kg)
	}
	if keys != len(model.maps) {
		t.Fatalf("%d keys with a map, want %d", keys, len(model.maps))
	}
}

// TestMapFirstWriteCopiesOneMap: after a snapshot, the first write to a
// key clones that key's map only; the other keys' maps stay shared.
func TestMapFirstWriteCopiesOneMap(t *testing.T) {
	b := NewBackend(KeyGroupRange{First: 0, Last: 0})
	mt, _ := NewMapTable[int64, int64, int64](b, "m", int64Codec{}, int64Codec{}, int64Codec{})
	for k := range int64(100) {
		for uk := range int64(100) {
			mt.Put(0, k, uk, uk)
		}
	}
	before := map[int64]map[int64]int64{}
	for k := range int64(100) {
		before[k] = mt.Map(0, k)
	}
	b.Snapshot()
	mt.Put(0, 7, 0, -1)
	changed := 0
	for k := range int64(100) {
		if fmt.Sprintf("%p", mt.Map(0, k)) != fmt.Sprintf("%p", before[k]) {
			changed++
		}
	}
	if changed != 1 || before[7][0] != 0 || mt.Map(0, 7)[0] != -1 {
		t.Fatalf("%d maps replaced (want 1, key 7's); snapshot's key 7 entry = %d", changed, before[7][0])
	}
}
