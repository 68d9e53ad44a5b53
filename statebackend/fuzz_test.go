package statebackend

import (
	"context"
	"fmt"
	"hash/crc32"
	"testing"
)

// FuzzStateFile opens arbitrary bytes as a state file and, when the footer
// and index pass, reads every key group, every entry of every section and
// the operator state: corrupt input must be an error, never a panic or a
// huge allocation. Seeds are valid files of each kind of section.
func FuzzStateFile(f *testing.F) {
	all := KeyGroupRange{First: 0, Last: 3}
	for _, s := range []Section{
		rawSection{KindValue, []byte{1, 'k', 1, 'v'}},
		rawSection{KindMap, []byte{1, 'k', 4, 1, 'a', 1, 'b'}},
		rawSection{KindList, []byte{1, 'k', 4, 1, 1, 1, 2}},
	} {
		data, err := WriteStateFile(all, []Section{s}, [][]byte{[]byte("op")})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		read := func(_ context.Context, off, n int64) ([]byte, error) {
			if off < 0 || n < 0 || off+n > int64(len(data)) || off+n < off {
				return nil, fmt.Errorf("read %d+%d beyond %d bytes", off, n, len(data))
			}
			return data[off : off+n], nil
		}
		sf, err := OpenStateFile(ctx, "fuzz", int64(len(data)), read)
		if err != nil {
			return
		}
		ks, err := sf.ReadKeyGroups(ctx, KeyGroupRange{First: 0, Last: 1 << 20})
		if err == nil {
			for _, name := range ks.Sections() {
				_ = ks.Kind(name)
				_ = ks.Each(name, func(int, []byte, []byte) error { return nil })
			}
		}
		_, _ = sf.ReadOperatorState(ctx)
	})
}

// FuzzMetadata decodes arbitrary _metadata files, and arbitrary bodies
// under a correct header (so the fuzzer gets past the checksum to the
// JSON and the checks after it).
func FuzzMetadata(f *testing.F) {
	valid := EncodeMetadata(testMetadata())
	f.Add(valid, false)
	_, body, _ := cutLine(valid)
	f.Add(body, true)
	f.Add([]byte(`{"version":1,"operators":[{"subtasks":[{"keyGroups":{"first":5,"last":-9}}]}]}`), true)
	f.Fuzz(func(t *testing.T, data []byte, withHeader bool) {
		if withHeader {
			head := fmt.Sprintf("%s v%d crc32c=%08x\n", metadataMagic, 1, crc32.Checksum(data, castagnoli))
			data = append([]byte(head), data...)
		}
		m, err := DecodeMetadata("fuzz/_metadata", data)
		if err != nil {
			return
		}
		_ = m.Size()
		again, err := DecodeMetadata("fuzz/_metadata", EncodeMetadata(m))
		if err != nil {
			t.Fatalf("a decoded _metadata does not decode again after encoding: %v", err)
		}
		if again.Size() != m.Size() {
			t.Fatalf("size %d after a round trip, was %d", again.Size(), m.Size())
		}
	})
}

func cutLine(b []byte) (line, rest []byte, ok bool) {
	for i, c := range b {
		if c == '\n' {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// FuzzMergeChain applies arbitrary bytes, opened as a delta file, to a
// valid full file: a damaged delta must be an error, never a panic, and a
// merge that succeeds must be readable.
func FuzzMergeChain(f *testing.F) {
	all := KeyGroupRange{First: 0, Last: 3}
	base, err := WriteStateFile(all, []Section{
		rawSection{KindValue, []byte{1, 'k', 1, 'v'}},
		timerRaw{[]byte{1, 'k', 1, 2}},
	}, nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range [][]Section{
		{rawSection{KindValue, []byte{1, 'k', 1, 'x'}}},
		{deletedRaw{KindValue, "raw", []byte{1, 'k', 0}}},
		{deletedRaw{KindTimers, "_timers", []byte{1, 'k', 1, 2}}},
	} {
		data, err := WriteStateFile(all, s, nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		open := func(name string, b []byte) (*KeyedState, error) {
			read := func(_ context.Context, off, n int64) ([]byte, error) {
				if off < 0 || n < 0 || off+n > int64(len(b)) || off+n < off {
					return nil, fmt.Errorf("read %d+%d beyond %d bytes", off, n, len(b))
				}
				return b[off : off+n], nil
			}
			sf, err := OpenStateFile(ctx, name, int64(len(b)), read)
			if err != nil {
				return nil, err
			}
			return sf.ReadKeyGroups(ctx, all)
		}
		full, err := open("base", base)
		if err != nil {
			t.Fatal(err)
		}
		delta, err := open("delta", data)
		if err != nil {
			return
		}
		merged, err := MergeChain([]*KeyedState{full, delta})
		if err != nil {
			return
		}
		for _, name := range merged.Sections() {
			_ = merged.Each(name, func(int, []byte, []byte) error { return nil })
		}
	})
}

// timerRaw is a timer section of raw entries in key group 0.
type timerRaw struct{ b []byte }

func (timerRaw) Name() string { return "_timers" }
func (timerRaw) Kind() Kind   { return KindTimers }
func (s timerRaw) AppendGroup(dst []byte, kg int) ([]byte, int) {
	if kg != 0 {
		return dst, 0
	}
	return append(dst, s.b...), 1
}

// deletedRaw is a delta's deletions of one entry in key group 0.
type deletedRaw struct {
	kind Kind
	name string
	b    []byte
}

func (s deletedRaw) Name() string { return DeletedPrefix + s.name }
func (s deletedRaw) Kind() Kind   { return s.kind }
func (s deletedRaw) AppendGroup(dst []byte, kg int) ([]byte, int) {
	if kg != 0 {
		return dst, 0
	}
	return append(dst, s.b...), 1
}
