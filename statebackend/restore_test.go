package statebackend

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func readState(t *testing.T, name string, data []byte, r KeyGroupRange) *KeyedState {
	t.Helper()
	f, _ := openMem(t, name, data)
	ks, err := f.ReadKeyGroups(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestRestoreDecodesAtRegistration(t *testing.T) {
	f := newFixture(t, all)
	f.fill(100)
	want := f.dump()
	data := writeSnapshot(t, append(f.b.Snapshot(), testTimers()), all)

	b := NewBackend(all)
	// A table registered before the restore decodes at once...
	counts, err := NewValueTable[string, int64](b, "counts", stringCodec{}, int64Codec{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(readState(t, "f", data, all)); err != nil {
		t.Fatal(err)
	}
	if v, ok := counts.Get(kgOf("key-3"), "key-3"); !ok || v != 2993 {
		t.Errorf("restored into a registered table: %v %v", v, ok)
	}
	// ...the others wait; the timers are the runtime's, never unclaimed.
	if got := strings.Join(b.Unclaimed(), ","); got != "attrs,events" {
		t.Errorf("unclaimed %q", got)
	}
	diffDumps(t, registerFixture(t, b).dump(), want)
	if len(b.Unclaimed()) != 0 {
		t.Errorf("unclaimed after registration: %v", b.Unclaimed())
	}
	// The same file again overlaps what is there.
	if err := b.Restore(readState(t, "f", data, all)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("restoring a file twice: %v", err)
	}
}

func TestRestoreRejectsForeignKeyGroups(t *testing.T) {
	f := newFixture(t, all)
	f.fill(50)
	data := writeSnapshot(t, f.b.Snapshot(), all)
	b := NewBackend(KeyGroupRange{First: 0, Last: 3})
	err := b.Restore(readState(t, "old/0.state", data, all)) // read too much
	if err == nil || !strings.Contains(err.Error(), "outside this subtask's key groups [0, 3]") || !strings.Contains(err.Error(), "old/0.state") {
		t.Fatalf("error %v", err)
	}
	if len(b.Unclaimed()) != 0 {
		t.Error("a rejected restore left sections behind")
	}
}

func TestRegistrationFindsCorruptEntries(t *testing.T) {
	f := newFixture(t, all)
	f.fill(50)
	data := writeSnapshot(t, f.b.Snapshot(), all)
	b := NewBackend(all)
	if err := b.Restore(readState(t, "ckpt/op/3.state", data, all)); err != nil {
		t.Fatal(err)
	}

	// Values written with a varint codec cannot be read by a fixed-width one.
	_, err := NewValueTable[string, int64](b, "counts", stringCodec{}, fixed8Codec{})
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, errBadInput) ||
		!strings.Contains(err.Error(), `ckpt/op/3.state: state "counts": corrupt key group`) {
		t.Fatalf("error %v", err)
	}
	// The failed table is not registered and its section still waits.
	if len(b.Tables()) != 0 || !strings.Contains(strings.Join(b.Unclaimed(), ","), "counts") {
		t.Errorf("tables %v, unclaimed %v", b.Tables(), b.Unclaimed())
	}
	if _, err := NewMapTable[string, string, int64](b, "attrs", stringCodec{}, stringCodec{}, fixed8Codec{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("map table: %v", err)
	}
	if _, err := NewListTable[string, int64](b, "events", stringCodec{}, fixed8Codec{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("list table: %v", err)
	}

	// Another kind under the same name is not corruption but an error too.
	_, err = NewListTable[string, int64](b, "counts", stringCodec{}, int64Codec{})
	if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "value state, but it is registered as list state") {
		t.Errorf("kind mismatch: %v", err)
	}

	// With the right codecs everything comes back.
	diffDumps(t, registerFixture(t, b).dump(), f.dump())
}

// Entries whose framing is broken but whose block checksum matches (a
// writer bug rather than bit rot) are reported, not half restored.
func TestRestoreBadFraming(t *testing.T) {
	for _, tc := range []struct {
		name    string
		section Section
		reg     func(b *Backend) error
	}{
		{"value", rawSection{KindValue, []byte{1, 'k'}}, func(b *Backend) error {
			_, err := NewValueTable[string, int64](b, "raw", stringCodec{}, int64Codec{})
			return err
		}},
		{"empty map", rawSection{KindMap, []byte{1, 'k', 1, 0}}, func(b *Backend) error {
			_, err := NewMapTable[string, string, int64](b, "raw", stringCodec{}, stringCodec{}, int64Codec{})
			return err
		}},
		{"huge list", rawSection{KindList, []byte{1, 'k', 3, 0xff, 0xff, 0x7f}}, func(b *Backend) error {
			_, err := NewListTable[string, int64](b, "raw", stringCodec{}, int64Codec{})
			return err
		}},
		{"list trailing bytes", rawSection{KindList, []byte{1, 'k', 4, 1, 1, 2, 9}}, func(b *Backend) error {
			_, err := NewListTable[string, int64](b, "raw", stringCodec{}, int64Codec{})
			return err
		}},
	} {
		data := writeSnapshot(t, []Section{tc.section}, all)
		b := NewBackend(all)
		if err := b.Restore(readState(t, "x", data, all)); err != nil {
			t.Fatal(err)
		}
		if err := tc.reg(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// rawSection writes the same raw bytes as one entry into key group 0.
type rawSection struct {
	kind Kind
	raw  []byte
}

func (rawSection) Name() string { return "raw" }
func (s rawSection) Kind() Kind { return s.kind }
func (s rawSection) AppendGroup(dst []byte, kg int) ([]byte, int) {
	if kg != 0 {
		return dst, 0
	}
	return append(dst, s.raw...), 1
}
