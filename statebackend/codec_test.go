package statebackend

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"testing"
)

// Test codecs, in the style of the runtime's.

var errBadInput = errors.New("bad input")

type int64Codec struct{}

func (int64Codec) Append(dst []byte, v int64) []byte { return binary.AppendVarint(dst, v) }
func (int64Codec) Decode(src []byte) (int64, error) {
	v, n := binary.Varint(src)
	if n <= 0 || n != len(src) {
		return 0, errBadInput
	}
	return v, nil
}

type stringCodec struct{}

func (stringCodec) Append(dst []byte, v string) []byte { return append(dst, v...) }
func (stringCodec) Decode(src []byte) (string, error)  { return string(src), nil }

type boolCodec struct{}

func (boolCodec) Append(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}
func (boolCodec) Decode(src []byte) (bool, error) {
	if len(src) != 1 || src[0] > 1 {
		return false, errBadInput
	}
	return src[0] == 1, nil
}

// fixed8Codec wants exactly 8 bytes: registering it over varint-encoded
// values makes restored entries undecodable.
type fixed8Codec struct{}

func (fixed8Codec) Append(dst []byte, v int64) []byte {
	return binary.LittleEndian.AppendUint64(dst, uint64(v))
}
func (fixed8Codec) Decode(src []byte) (int64, error) {
	if len(src) != 8 {
		return 0, fmt.Errorf("%d bytes, want 8: %w", len(src), errBadInput)
	}
	return int64(binary.LittleEndian.Uint64(src)), nil
}

const testMaxP = 8

func kgOf(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % testMaxP)
}

// fixture is a backend with one table of each kind.
type fixture struct {
	b      *Backend
	counts *ValueTable[string, int64]
	attrs  *MapTable[string, string, int64]
	events *ListTable[string, int64]
}

func newFixture(t testing.TB, r KeyGroupRange) *fixture {
	t.Helper()
	return registerFixture(t, NewBackend(r))
}

// registerFixture registers the fixture's tables on b (which may hold
// restored state).
func registerFixture(t testing.TB, b *Backend) *fixture {
	t.Helper()
	f := &fixture{b: b}
	var err error
	if f.counts, err = NewValueTable[string, int64](f.b, "counts", stringCodec{}, int64Codec{}); err != nil {
		t.Fatal(err)
	}
	if f.attrs, err = NewMapTable[string, string, int64](f.b, "attrs", stringCodec{}, stringCodec{}, int64Codec{}); err != nil {
		t.Fatal(err)
	}
	if f.events, err = NewListTable[string, int64](f.b, "events", stringCodec{}, int64Codec{}); err != nil {
		t.Fatal(err)
	}
	return f
}

// fill writes n keys' worth of state into every table, skipping keys whose
// key group the backend does not own.
func (f *fixture) fill(n int) {
	for i := range n {
		k := fmt.Sprintf("key-%d", i)
		kg := kgOf(k)
		if !f.b.KeyGroups().Contains(kg) {
			continue
		}
		f.counts.Put(kg, k, int64(i)*1000-7)
		if i%2 == 0 {
			for j := range i%5 + 1 {
				f.attrs.Put(kg, k, fmt.Sprintf("attr-%d", j), int64(i*j))
			}
		}
		if i%3 == 0 {
			for j := range i%4 + 1 {
				f.events.Append(kg, k, int64(i+j))
			}
		}
	}
	// A long value, so that length prefixes take more than one byte.
	k := "long"
	if kg := kgOf(k); f.b.KeyGroups().Contains(kg) {
		for j := range 300 {
			f.events.Append(kg, k, int64(j)<<40)
		}
		f.attrs.Put(kg, k, strings.Repeat("u", 200), 1)
	}
}

// dump renders the fixture's state as "table kg key" -> value, for
// comparisons.
func (f *fixture) dump() map[string]string {
	out := map[string]string{}
	r := f.b.KeyGroups()
	for kg := r.First; kg <= r.Last; kg++ {
		for k, v := range f.counts.Group(kg) {
			out[fmt.Sprintf("counts %d %s", kg, k)] = fmt.Sprint(v)
		}
		for k, m := range f.attrs.Group(kg) {
			out[fmt.Sprintf("attrs %d %s", kg, k)] = fmt.Sprint(m) // fmt sorts map keys
		}
		for k, l := range f.events.Group(kg) {
			out[fmt.Sprintf("events %d %s", kg, k)] = fmt.Sprint(l)
		}
	}
	return out
}

// within keeps the entries of dump d whose key group is in r.
func within(d map[string]string, r KeyGroupRange) map[string]string {
	out := map[string]string{}
	for k, v := range d {
		var table string
		var kg int
		fmt.Sscanf(k, "%s %d", &table, &kg)
		if r.Contains(kg) {
			out[k] = v
		}
	}
	return out
}

func diffDumps(t testing.TB, got, want map[string]string) {
	t.Helper()
	if maps.Equal(got, want) {
		return
	}
	n := 0
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] && n < 10 {
			t.Errorf("%s = %q, want %q", k, got[k], want[k])
			n++
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok && n < 10 {
			t.Errorf("unexpected %s = %q", k, got[k])
			n++
		}
	}
	t.Fatalf("state differs: %d entries, want %d", len(got), len(want))
}

// memFile serves ranged reads of a file image and records them.
type memFile struct {
	data  []byte
	reads [][2]int64
}

func (m *memFile) read(_ context.Context, off, n int64) ([]byte, error) {
	m.reads = append(m.reads, [2]int64{off, n})
	if off < 0 || n < 0 || off+n > int64(len(m.data)) {
		return nil, fmt.Errorf("range %d+%d beyond %d bytes", off, n, len(m.data))
	}
	return slices.Clone(m.data[off : off+n]), nil
}

func openMem(t testing.TB, name string, data []byte) (*StateFile, *memFile) {
	t.Helper()
	m := &memFile{data: data}
	f, err := OpenStateFile(context.Background(), name, int64(len(data)), m.read)
	if err != nil {
		t.Fatal(err)
	}
	return f, m
}

// restoreFixture restores the given files' key groups in r into a new
// backend, then registers the fixture's tables, as an operator's Open does.
func restoreFixture(t testing.TB, r KeyGroupRange, files map[string][]byte) *fixture {
	t.Helper()
	b := NewBackend(r)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		f, _ := openMem(t, name, files[name])
		ks, err := f.ReadKeyGroups(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Restore(ks); err != nil {
			t.Fatal(err)
		}
	}
	return registerFixture(t, b)
}
