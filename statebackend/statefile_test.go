package statebackend

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
)

// timerSection is a runtime-like timer section: several entries per key.
type timerSection map[int][]timer

type timer struct {
	key string
	ts  int64
}

func (timerSection) Name() string { return "_timers" }
func (timerSection) Kind() Kind   { return KindTimers }
func (s timerSection) AppendGroup(dst []byte, kg int) ([]byte, int) {
	for _, tm := range s[kg] {
		dst = binary.AppendUvarint(dst, uint64(len(tm.key)))
		dst = append(dst, tm.key...)
		dst = binary.AppendUvarint(dst, uint64(binary.PutVarint(make([]byte, 10), tm.ts)))
		dst = binary.AppendVarint(dst, tm.ts)
	}
	return dst, len(s[kg])
}

func testTimers() timerSection {
	ts := timerSection{}
	for i := range 40 {
		k := fmt.Sprintf("key-%d", i%15)
		ts[kgOf(k)] = append(ts[kgOf(k)], timer{k, int64(i) * 1_000_000_007})
	}
	return ts
}

// readTimers collects a KeyedState's timers as "kg key ts" strings.
func readTimers(t testing.TB, ks *KeyedState) []string {
	t.Helper()
	var out []string
	err := ks.Each("_timers", func(kg int, key, value []byte) error {
		ts, n := binary.Varint(value)
		if n != len(value) {
			return errors.New("bad timestamp")
		}
		out = append(out, fmt.Sprintf("%d %s %d", kg, key, ts))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func timersIn(ts timerSection, r KeyGroupRange) []string {
	var out []string
	for kg, l := range ts {
		for _, tm := range l {
			if r.Contains(kg) {
				out = append(out, fmt.Sprintf("%d %s %d", kg, tm.key, tm.ts))
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestStateFileRoundTrip covers all table kinds, a timer section, operator
// state, and restores at the same parallelism, 1 -> 2 and 2 -> 1.
func TestStateFileRoundTrip(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, all)
	f.fill(300)
	want := f.dump()
	timers := testTimers()
	ops := [][]byte{[]byte("partition-0@42"), {}, bytes.Repeat([]byte{7}, 300)}
	data, err := WriteStateFile(all, append(f.b.Snapshot(), timers), ops)
	if err != nil {
		t.Fatal(err)
	}
	sf, mem := openMem(t, "op/0.state", data)
	if len(mem.reads) != 2 {
		t.Errorf("OpenStateFile made %d reads, want 2 (footer, index)", len(mem.reads))
	}
	if sf.KeyGroups() != all {
		t.Errorf("key groups %v, want %v", sf.KeyGroups(), all)
	}
	gotOps, err := sf.ReadOperatorState(ctx)
	if err != nil || len(gotOps) != 3 || string(gotOps[0]) != "partition-0@42" || len(gotOps[1]) != 0 || !bytes.Equal(gotOps[2], ops[2]) {
		t.Errorf("operator state %q, %v", gotOps, err)
	}

	t.Run("same parallelism", func(t *testing.T) {
		ks, err := sf.ReadKeyGroups(ctx, all)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(ks.Sections(), ","); got != "counts,attrs,events,_timers" {
			t.Errorf("sections %s", got)
		}
		if ks.Kind("attrs") != KindMap || ks.Kind("_timers") != KindTimers || ks.Kind("nope") != 0 {
			t.Error("section kinds")
		}
		if got, want := readTimers(t, ks), timersIn(timers, all); !slices.Equal(got, want) {
			t.Errorf("timers %v, want %v", got, want)
		}
		diffDumps(t, restoreFixture(t, all, map[string][]byte{"op/0.state": data}).dump(), want)
	})

	// 1 -> 2: each new subtask reads only its half, in one ranged read.
	lo, hi := KeyGroupRange{First: 0, Last: 3}, KeyGroupRange{First: 4, Last: 7}
	files := map[string][]byte{}
	for i, r := range []KeyGroupRange{lo, hi} {
		mem.reads = nil
		ks, err := sf.ReadKeyGroups(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(mem.reads) != 1 {
			t.Errorf("%v: %d reads, want one ranged read", r, len(mem.reads))
		}
		if got, want := readTimers(t, ks), timersIn(timers, r); !slices.Equal(got, want) {
			t.Errorf("%v: timers %v, want %v", r, got, want)
		}
		half := restoreFixture(t, r, map[string][]byte{"op/0.state": data})
		if u := half.b.Unclaimed(); len(u) != 0 {
			t.Errorf("unclaimed %v", u)
		}
		hw := within(want, r)
		if len(hw) == 0 || len(hw) == len(want) {
			t.Fatalf("test data does not spread over both halves")
		}
		diffDumps(t, half.dump(), hw)
		b, err := WriteStateFile(r, append(half.b.Snapshot(), timers), ops[:1])
		if err != nil {
			t.Fatal(err)
		}
		files[fmt.Sprintf("op/%d.state", i)] = b
	}

	// 2 -> 1: merge both files back into one backend.
	diffDumps(t, restoreFixture(t, all, files).dump(), want)
	var merged []string
	for _, name := range []string{"op/0.state", "op/1.state"} {
		f, _ := openMem(t, name, files[name])
		ks, err := f.ReadKeyGroups(ctx, all)
		if err != nil {
			t.Fatal(err)
		}
		if f.KeyGroups() == all {
			t.Errorf("%s holds all key groups", name)
		}
		merged = append(merged, readTimers(t, ks)...)
	}
	slices.Sort(merged)
	if !slices.Equal(merged, timersIn(timers, all)) {
		t.Errorf("merged timers %v", merged)
	}
}

func TestReadKeyGroupsSubsetsAndGaps(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, all)
	f.counts.Put(1, "a", 1)
	f.counts.Put(5, "b", 2)
	data := writeSnapshot(t, f.b.Snapshot(), all)
	sf, mem := openMem(t, "x", data)
	for _, tc := range []struct {
		want  KeyGroupRange
		reads int
		keys  string
	}{
		{KeyGroupRange{First: 2, Last: 4}, 0, ""}, // only empty groups: nothing to read
		{KeyGroupRange{First: 1, Last: 1}, 1, "1a"},
		{KeyGroupRange{First: 0, Last: 100}, 1, "1a5b"},
		{KeyGroupRange{First: 5, Last: 9}, 1, "5b"},
		{KeyGroupRange{First: 8, Last: 9}, 0, ""}, // outside the file
		{KeyGroupRange{First: 0, Last: -1}, 0, ""},
	} {
		mem.reads = nil
		ks, err := sf.ReadKeyGroups(ctx, tc.want)
		if err != nil {
			t.Fatal(err)
		}
		var keys string
		ks.Each("counts", func(kg int, k, v []byte) error {
			keys += fmt.Sprint(kg) + string(k)
			return nil
		})
		if keys != tc.keys || len(mem.reads) != tc.reads {
			t.Errorf("%v: keys %q in %d reads, want %q in %d", tc.want, keys, len(mem.reads), tc.keys, tc.reads)
		}
	}
	// An error from the callback stops the walk and says where.
	ks, _ := sf.ReadKeyGroups(ctx, all)
	stop := errors.New("stop")
	if err := ks.Each("counts", func(int, []byte, []byte) error { return stop }); !errors.Is(err, stop) || !strings.Contains(err.Error(), "key group 1") {
		t.Errorf("Each error %v", err)
	}
}

func TestEmptyState(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, all) // registered, never written
	data, err := WriteStateFile(all, f.b.Snapshot(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sf, mem := openMem(t, "empty", data)
	mem.reads = nil
	ks, err := sf.ReadKeyGroups(ctx, all)
	if err != nil || len(mem.reads) != 0 {
		t.Fatalf("%v, %d reads", err, len(mem.reads))
	}
	if ops, err := sf.ReadOperatorState(ctx); err != nil || ops != nil {
		t.Errorf("operator state %q, %v", ops, err)
	}
	b := NewBackend(all)
	if err := b.Restore(ks); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(b.Unclaimed(), ","); got != "attrs,counts,events" {
		t.Errorf("unclaimed before registration: %s", got)
	}
	r := registerFixture(t, b)
	if len(r.dump()) != 0 || len(b.Unclaimed()) != 0 {
		t.Errorf("restored empty state: %v, unclaimed %v", r.dump(), b.Unclaimed())
	}

	// No sections at all, the smallest file.
	data, err = WriteStateFile(all, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sf, _ = openMem(t, "bare", data)
	if ks, err := sf.ReadKeyGroups(ctx, all); err != nil || len(ks.Sections()) != 0 {
		t.Errorf("bare file: %v", err)
	}
}

func TestOperatorStateOnly(t *testing.T) {
	ctx := context.Background()
	ops := [][]byte{[]byte("split-3:offset=1234"), []byte("split-9:offset=0")}
	data, err := WriteStateFile(KeyGroupRange{First: 0, Last: -1}, nil, ops)
	if err != nil {
		t.Fatal(err)
	}
	sf, mem := openMem(t, "source/1.state", data)
	if !sf.KeyGroups().Empty() {
		t.Errorf("key groups %v, want empty", sf.KeyGroups())
	}
	mem.reads = nil
	ks, err := sf.ReadKeyGroups(ctx, all)
	if err != nil || len(mem.reads) != 0 || len(ks.Sections()) != 0 || !ks.KeyGroups().Empty() {
		t.Errorf("keyed state of a source: %v, %d reads", err, len(mem.reads))
	}
	got, err := sf.ReadOperatorState(ctx)
	if err != nil || len(got) != 2 || string(got[0]) != string(ops[0]) || string(got[1]) != string(ops[1]) {
		t.Errorf("operator state %q, %v", got, err)
	}
}

func TestWriteStateFileRejects(t *testing.T) {
	f := newFixture(t, all)
	for name, tc := range map[string]struct {
		r        KeyGroupRange
		sections []Section
	}{
		"range beyond max": {KeyGroupRange{First: 0, Last: MaxKeyGroups}, nil},
		"negative range":   {KeyGroupRange{First: -1, Last: 3}, nil},
		"duplicate names":  {all, append(f.b.Snapshot(), f.b.Snapshot()[0])},
		"bad kind":         {all, []Section{badSection{kind: 9}}},
		"lying count":      {all, []Section{badSection{kind: KindValue, n: 0, bytes: 3}}},
	} {
		if _, err := WriteStateFile(tc.r, tc.sections, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

type badSection struct {
	kind     Kind
	n, bytes int
}

func (badSection) Name() string { return "bad" }
func (s badSection) Kind() Kind { return s.kind }
func (s badSection) AppendGroup(dst []byte, kg int) ([]byte, int) {
	return append(dst, make([]byte, s.bytes)...), s.n
}

// corruptFixture is a small state file with keyed and operator state.
func corruptFixture(t *testing.T) []byte {
	f := newFixture(t, all)
	f.fill(40)
	data, err := WriteStateFile(all, append(f.b.Snapshot(), testTimers()), [][]byte{[]byte("pos=7")})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// readAll opens data and reads everything in it.
func readAll(name string, data []byte) error {
	ctx := context.Background()
	m := &memFile{data: data}
	f, err := OpenStateFile(ctx, name, int64(len(data)), m.read)
	if err != nil {
		return err
	}
	ks, err := f.ReadKeyGroups(ctx, all)
	if err != nil {
		return err
	}
	for _, s := range ks.Sections() {
		if err := ks.Each(s, func(int, []byte, []byte) error { return nil }); err != nil {
			return err
		}
	}
	_, err = f.ReadOperatorState(ctx)
	return err
}

func wantCorrupt(t *testing.T, what string, err error, contains string) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), "ckpt-7/op/0.state: ") || !strings.Contains(err.Error(), contains) {
		t.Errorf("%s: error %v, want ErrCorrupt naming the file and saying %q", what, err, contains)
	}
}

func TestCorruptStateFile(t *testing.T) {
	const name = "ckpt-7/op/0.state"
	data := corruptFixture(t)
	if err := readAll(name, data); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	foot := len(data) - footerLen
	idxOff := int(le.Uint64(data[foot:]))
	sf, _ := openMem(t, name, data)
	var firstBlock blockRef
	for _, b := range sf.blocks {
		if b.n > 0 {
			firstBlock = b
			break
		}
	}
	flip := func(i int) []byte {
		c := bytes.Clone(data)
		c[i] ^= 0x10
		return c
	}
	for _, tc := range []struct {
		what, says string
		data       []byte
	}{
		{"byte in a block", "key group", flip(int(firstBlock.off + firstBlock.n/2))},
		{"block checksum", "checksum mismatch", flip(int(firstBlock.off + firstBlock.n - 1))},
		{"operator state", "operator state: checksum mismatch", flip(int(sf.op.off + 1))},
		{"byte in the index", "index: checksum mismatch", flip(idxOff + 5)},
		{"index offset", "footer: index at", flip(foot)},
		{"footer magic", "bad magic", flip(len(data) - 1)},
		{"bad version", "unsupported state file version 17", func() []byte {
			c := bytes.Clone(data)
			le.PutUint16(c[foot+12:], 17)
			return c
		}()},
		{"truncated by a byte", "", data[:len(data)-1]},
		{"truncated to half", "", data[:len(data)/2]},
		{"truncated to nothing", "too short", nil},
		{"wrong magic", "bad magic", append(bytes.Clone(data[:len(data)-8]), "WEIRSTAX"...)},
		{"not a state file", "bad magic", bytes.Repeat([]byte("{}\n"), 100)},
	} {
		wantCorrupt(t, tc.what, readAll(name, tc.data), tc.says)
	}

	// Exhaustively: any flipped bit after the header, and any truncation,
	// is an ErrCorrupt error, never a panic or a silent success.
	for i := headerLen; i < len(data); i++ {
		for bit := range 8 {
			c := bytes.Clone(data)
			c[i] ^= 1 << bit
			if err := readAll(name, c); !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), name+": ") {
				t.Fatalf("bit %d of byte %d flipped: %v", bit, i, err)
			}
		}
	}
	for n := range len(data) {
		if err := readAll(name, data[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
}

// A reader failing (network, permissions) is not corruption.
func TestStateFileReadError(t *testing.T) {
	boom := errors.New("connection reset")
	_, err := OpenStateFile(context.Background(), "s3://b/x", 1000, func(context.Context, int64, int64) ([]byte, error) {
		return nil, boom
	})
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "s3://b/x") {
		t.Errorf("error %v", err)
	}
}

// TestKeyGroupSizes: the index gives each key group's bytes without a read,
// zero exactly for the key groups without state, larger for more state.
func TestKeyGroupSizes(t *testing.T) {
	r := KeyGroupRange{First: 4, Last: 9}
	ts := timerSection{5: {{"a", 1}}, 7: {{"b", 2}, {"c", 3}, {"d", 4}}}
	data, err := WriteStateFile(r, []Section{ts}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sf, mem := openMem(t, "op/0.state", data)
	mem.reads = nil
	sizes := sf.KeyGroupSizes()
	if len(mem.reads) != 0 || len(sizes) != r.Len() {
		t.Fatalf("%d sizes after %d reads, want %d after none", len(sizes), len(mem.reads), r.Len())
	}
	var sum int64
	for i, n := range sizes {
		kg := r.First + i
		if (n > 0) != (len(ts[kg]) > 0) {
			t.Errorf("key group %d: %d bytes with %d timers", kg, n, len(ts[kg]))
		}
		sum += n
	}
	if sizes[7-r.First] <= sizes[5-r.First] || sum >= int64(len(data)) {
		t.Errorf("sizes %v of a %d-byte file", sizes, len(data))
	}
}

// TestWriteStateFileReservesItsSize: the image of a large state is built
// in a buffer reserved from the first key groups' sizes, not grown by
// append's quarter steps, which allocated and copied it about five times
// over. Here 128 key groups of 5,000 entries each: 1.2 times the image
// (2.3 under the race detector) against 5.2 before.
func TestWriteStateFileReservesItsSize(t *testing.T) {
	r := KeyGroupRange{First: 0, Last: 127}
	be := NewBackend(r)
	vt, err := NewValueTable[int64, int64](be, "v", int64Codec{}, int64Codec{})
	if err != nil {
		t.Fatal(err)
	}
	for k := range int64(640_000) {
		vt.Put(int(k)%r.Len(), k, k)
	}
	sections := be.Snapshot()
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	data, err := WriteStateFile(r, sections, nil)
	goruntime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 3*uint64(len(data)) {
		t.Fatalf("writing a %d-byte state file allocated %d bytes, want under three times the file", len(data), got)
	}
}
