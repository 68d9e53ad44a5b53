package statebackend

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"
)

func testMetadata() *Metadata {
	return &Metadata{
		JobID: "3f2a", JobName: "fraud detector", CheckpointID: 17, Savepoint: true,
		TimestampMs: 1_700_000_000_123, DurationMs: 840, MaxParallelism: 128,
		Operators: []OperatorState{
			{UID: "source", Name: "Source: transactions", Parallelism: 2, Subtasks: []SubtaskState{
				{Subtask: 0, File: StateFileName("source", 0), Size: 70, KeyGroups: KeyGroupRange{First: 0, Last: -1}},
				{Subtask: 1, File: StateFileName("source", 1), Size: 71, KeyGroups: KeyGroupRange{First: 0, Last: -1}},
			}},
			{UID: "detector", Name: "Detector", Parallelism: 3, Subtasks: []SubtaskState{
				{Subtask: 0, File: StateFileName("detector", 0), Size: 1000, KeyGroups: KeyGroupRange{First: 0, Last: 42}, Keys: 10},
				{Subtask: 1, File: StateFileName("detector", 1), Size: 2000, KeyGroups: KeyGroupRange{First: 43, Last: 85}, Keys: 20},
				{Subtask: 2, File: StateFileName("detector", 2), Size: 3000, KeyGroups: KeyGroupRange{First: 86, Last: 127}, Keys: 30},
			}},
		},
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	m := testMetadata()
	data := EncodeMetadata(m)
	if !bytes.HasPrefix(data, []byte("WEIR-METADATA v1 crc32c=")) || !bytes.Contains(data, []byte(`"file": "detector/2.state"`)) {
		t.Errorf("encoding:\n%s", data)
	}
	got, err := DecodeMetadata("ckpt/chk-17/_metadata", data)
	if err != nil {
		t.Fatal(err)
	}
	m.Version = 1
	if !reflect.DeepEqual(got, m) {
		t.Errorf("decoded %+v\nwant %+v", got, m)
	}
	if got.Size() != 6141 {
		t.Errorf("Size %d", got.Size())
	}
	if StateFileName("detector", 2) != "detector/2.state" {
		t.Error(StateFileName("detector", 2))
	}
	det := &got.Operators[1]
	for _, tc := range []struct {
		r    KeyGroupRange
		want []int
	}{
		{KeyGroupRange{First: 0, Last: 63}, []int{0, 1}},   // 3 -> 2
		{KeyGroupRange{First: 64, Last: 127}, []int{1, 2}}, // 3 -> 2
		{KeyGroupRange{First: 0, Last: 127}, []int{0, 1, 2}},
		{KeyGroupRange{First: 43, Last: 43}, []int{1}},
		{KeyGroupRange{First: 0, Last: -1}, nil},
	} {
		var subs []int
		for _, s := range det.Overlapping(tc.r) {
			subs = append(subs, s.Subtask)
		}
		if !reflect.DeepEqual(subs, tc.want) {
			t.Errorf("Overlapping(%v) = %v, want %v", tc.r, subs, tc.want)
		}
	}
	if len(got.Operators[0].Overlapping(KeyGroupRange{First: 0, Last: 127})) != 0 {
		t.Error("a source's empty key groups overlap")
	}
}

func TestCorruptMetadata(t *testing.T) {
	const name = "s3://bucket/ckpt/chk-17/_metadata"
	data := EncodeMetadata(testMetadata())
	header, body, _ := bytes.Cut(data, []byte("\n"))
	reencode := func(edit func(m *Metadata)) []byte {
		m := testMetadata()
		edit(m)
		return EncodeMetadata(m)
	}
	for _, tc := range []struct {
		what, says string
		data       []byte
	}{
		{"flipped body byte", "checksum mismatch", bytes.Replace(data, []byte("fraud"), []byte("frauD"), 1)},
		{"truncated body", "checksum mismatch", data[:len(data)-10]},
		{"truncated header", "no header line", header[:10]},
		{"empty", "no header line", nil},
		{"wrong magic", "bad header", append([]byte("WEIR-METADATX v1 crc32c=00000000\n"), body...)},
		{"bad version", "unsupported version \"v4\"", bytes.Replace(data, []byte(" v1 "), []byte(" v4 "), 1)},
		{"bad checksum field", "bad checksum field", bytes.Replace(data, []byte("crc32c="), []byte("crc32c=zz"), 1)},
		{"a state file", "bad header", []byte("WEIRSTAT\x01\x00....\n{}")},
		{"max parallelism", "max parallelism", reencode(func(m *Metadata) { m.MaxParallelism = 0 })},
		{"escaping file", "not a clean relative path", reencode(func(m *Metadata) { m.Operators[1].Subtasks[0].File = "../x.state" })},
		{"absolute file", "not a clean relative path", reencode(func(m *Metadata) { m.Operators[1].Subtasks[0].File = "/etc/x" })},
		{"key groups", "outside [0, 128)", reencode(func(m *Metadata) { m.Operators[1].Subtasks[2].KeyGroups.Last = 128 })},
		{"repeated uid", "repeated", reencode(func(m *Metadata) { m.Operators[1].UID = "source" })},
	} {
		_, err := DecodeMetadata(name, tc.data)
		if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), name+": corrupt metadata") || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want ErrCorrupt naming the file and saying %q", tc.what, err, tc.says)
		}
	}
	// Checksummed, but not JSON.
	bad := []byte("not json\n")
	_, err := DecodeMetadata(name, append(fmt.Appendf(nil, "WEIR-METADATA v1 crc32c=%08x\n", crc32.Checksum(bad, castagnoli)), bad...))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "invalid character") {
		t.Errorf("checksummed garbage: %v", err)
	}
}

// TestNativeChainMetadata: a chain with native files is written as
// version 3 and read back; its shared SSTs count as shared files and
// their names tell the checkpoint that wrote them; malformed native
// entries are refused.
func TestNativeChainMetadata(t *testing.T) {
	sst := SharedNativeName("detector", 1, 7, "000012.sst")
	if sst != "detector/1-7-000012.sst" {
		t.Fatal(sst)
	}
	if id, ok := ParseSharedFileName(sst); !ok || id != 7 {
		t.Errorf("ParseSharedFileName(%q) = %d, %v", sst, id, ok)
	}
	seg := SharedNativeName("detector", 1, 9, "0000000003.changelog")
	if id, ok := ParseSharedFileName(seg); !ok || id != 9 {
		t.Errorf("ParseSharedFileName(%q) = %d, %v", seg, id, ok)
	}
	for _, bad := range []string{"detector/1-x-000012.sst", "detector/1-0000000003.changelog", "detector/1-000012.sst", "detector/1.native/MANIFEST-000001"} {
		if _, ok := ParseSharedFileName(bad); ok {
			t.Errorf("ParseSharedFileName(%q) accepted", bad)
		}
	}
	chain := []FileRef{{Path: StateFileName("detector", 1), Size: 10},
		{Path: sst, Size: 100, Shared: true, Local: "000012.sst"},
		{Path: NativeFileName("detector", 1, "MANIFEST-000001"), Size: 5, Local: "MANIFEST-000001"}}
	m := &Metadata{JobID: "j", CheckpointID: 9, MaxParallelism: 128, Operators: []OperatorState{{UID: "detector", Parallelism: 2,
		Subtasks: []SubtaskState{{Subtask: 1, Chain: chain, Size: 115, KeyGroups: KeyGroupRange{First: 64, Last: 127}}}}}}
	data := EncodeMetadata(m)
	if !bytes.HasPrefix(data, []byte("WEIR-METADATA v3 ")) {
		t.Fatalf("encoding:\n%s", data)
	}
	got, err := DecodeMetadata("chk-9/_metadata", data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Operators[0].Subtasks[0].Chain, chain) || !NativeChain(got.Operators[0].Subtasks[0].Chain) {
		t.Errorf("chain %+v", got.Operators[0].Subtasks[0].Chain)
	}
	if sh := got.SharedFiles(); !reflect.DeepEqual(sh, []string{sst}) {
		t.Errorf("SharedFiles %v", sh)
	}
	for _, mutate := range []func(c []FileRef){
		func(c []FileRef) { c[2].Local = "../MANIFEST" },
		func(c []FileRef) { c[2].Local = "a/b" },
		func(c []FileRef) { c[0].Local = "x"; c[0].Delta = false },
		func(c []FileRef) { c[1].Delta = true },
	} {
		c := append([]FileRef(nil), chain...)
		mutate(c)
		bad := *m
		bad.Operators = []OperatorState{{UID: "detector", Parallelism: 2, Subtasks: []SubtaskState{{Subtask: 1, Chain: c, KeyGroups: KeyGroupRange{First: 64, Last: 127}}}}}
		if _, err := DecodeMetadata("bad", EncodeMetadata(&bad)); err == nil {
			t.Errorf("chain %+v accepted", c)
		}
	}
	// A version 2 header cannot carry native files.
	v2 := bytes.Replace(data, []byte("v3"), []byte("v2"), 1)
	if _, err := DecodeMetadata("v2", v2); err == nil {
		t.Error("native files accepted in version 2")
	}
}
