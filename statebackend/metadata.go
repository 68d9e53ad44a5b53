package statebackend

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"path"
	"strconv"
	"strings"
)

// MetadataVersion is the version of the _metadata format EncodeMetadata
// writes and DecodeMetadata reads.
const MetadataVersion = 1

// MetadataFile is the name of the manifest in a checkpoint directory.
const MetadataFile = "_metadata"

const metadataMagic = "WEIR-METADATA"

// Metadata is a completed checkpoint's or savepoint's manifest, written
// last: its presence means the checkpoint is complete.
type Metadata struct {
	Version        int             `json:"version"` // MetadataVersion
	JobID          string          `json:"jobId"`
	JobName        string          `json:"jobName"`
	CheckpointID   int64           `json:"checkpointId"`
	Savepoint      bool            `json:"savepoint"`
	TimestampMs    int64           `json:"timestampMs"` // trigger time
	DurationMs     int64           `json:"durationMs"`
	MaxParallelism int             `json:"maxParallelism"`
	Operators      []OperatorState `json:"operators"`
}

// OperatorState lists one operator's state files, one per subtask with
// state.
type OperatorState struct {
	UID         string         `json:"uid"`
	Name        string         `json:"name"`
	Parallelism int            `json:"parallelism"`
	Subtasks    []SubtaskState `json:"subtasks"`
}

// SubtaskState describes one subtask's state file.
type SubtaskState struct {
	Subtask int `json:"subtask"`
	// File is relative to the checkpoint directory, '/'-separated:
	// StateFileName(uid, subtask).
	File      string        `json:"file"`
	Size      int64         `json:"size"`
	KeyGroups KeyGroupRange `json:"keyGroups"` // empty without keyed state
	Keys      int64         `json:"keys"`      // keyed entries, for reporting
}

// Size is the total size of the checkpoint's state files in bytes.
func (m *Metadata) Size() int64 {
	var n int64
	for _, o := range m.Operators {
		for _, s := range o.Subtasks {
			n += s.Size
		}
	}
	return n
}

// StateFileName is the name of an operator subtask's state file in a
// checkpoint directory: "<uid>/<subtask>.state".
func StateFileName(uid string, subtask int) string {
	return uid + "/" + strconv.Itoa(subtask) + ".state"
}

// Overlapping returns the subtask states whose key groups intersect r:
// the files a subtask owning r must read its keyed state from.
func (o *OperatorState) Overlapping(r KeyGroupRange) []SubtaskState {
	var out []SubtaskState
	for _, s := range o.Subtasks {
		if s.KeyGroups.Overlaps(r) {
			out = append(out, s)
		}
	}
	return out
}

// EncodeMetadata encodes m in the current format (Version is written as
// MetadataVersion whatever m says, since that is the format produced).
func EncodeMetadata(m *Metadata) []byte {
	c := *m
	c.Version = MetadataVersion
	body, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		panic("statebackend: encoding metadata: " + err.Error()) // plain ints and strings cannot fail
	}
	body = append(body, '\n')
	head := fmt.Sprintf("%s v%d crc32c=%08x\n", metadataMagic, MetadataVersion, crc32.Checksum(body, castagnoli))
	return append([]byte(head), body...)
}

// DecodeMetadata checks the format, version and checksum of a _metadata
// file and decodes it; name (its path) appears in errors, which wrap
// ErrCorrupt.
func DecodeMetadata(name string, data []byte) (*Metadata, error) {
	line, body, ok := bytes.Cut(data, []byte("\n"))
	if !ok {
		return nil, corrupt(name, "metadata: no header line (truncated?)")
	}
	fields := strings.Fields(string(line))
	if len(fields) != 3 || fields[0] != metadataMagic || !strings.HasPrefix(fields[2], "crc32c=") {
		return nil, corrupt(name, "metadata: bad header %q, want %q", truncate(line), metadataMagic+" v1 crc32c=…")
	}
	if fields[1] != "v"+strconv.Itoa(MetadataVersion) {
		return nil, corrupt(name, "metadata: unsupported version %q (this build reads v%d)", fields[1], MetadataVersion)
	}
	want, err := strconv.ParseUint(strings.TrimPrefix(fields[2], "crc32c="), 16, 32)
	if err != nil {
		return nil, corrupt(name, "metadata: bad checksum field %q", fields[2])
	}
	if uint32(want) != crc32.Checksum(body, castagnoli) {
		return nil, corrupt(name, "metadata: checksum mismatch")
	}
	var m Metadata
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, &corruptError{name: name, what: "metadata", cause: err}
	}
	if err := m.check(); err != nil {
		return nil, corrupt(name, "metadata: %v", err)
	}
	return &m, nil
}

// check catches manifests a restore could not use: these are bugs or
// hand edits, since the checksum matched.
func (m *Metadata) check() error {
	if m.Version != MetadataVersion {
		return fmt.Errorf("body version %d, header v%d", m.Version, MetadataVersion)
	}
	if m.MaxParallelism < 1 || m.MaxParallelism > MaxKeyGroups {
		return fmt.Errorf("max parallelism %d is outside [1, %d]", m.MaxParallelism, MaxKeyGroups)
	}
	uids := map[string]bool{}
	for _, o := range m.Operators {
		if o.UID == "" || uids[o.UID] {
			return fmt.Errorf("operator uid %q is empty or repeated", o.UID)
		}
		uids[o.UID] = true
		for _, s := range o.Subtasks {
			if s.Subtask < 0 || (o.Parallelism > 0 && s.Subtask >= o.Parallelism) {
				return fmt.Errorf("operator %s: subtask %d of parallelism %d", o.UID, s.Subtask, o.Parallelism)
			}
			if s.File == "" || path.IsAbs(s.File) || path.Clean(s.File) != s.File ||
				s.File == "." || s.File == ".." || strings.HasPrefix(s.File, "../") {
				return fmt.Errorf("operator %s subtask %d: file %q is not a clean relative path", o.UID, s.Subtask, s.File)
			}
			if s.Size < 0 || s.Keys < 0 {
				return fmt.Errorf("operator %s subtask %d: negative size or key count", o.UID, s.Subtask)
			}
			if kg := s.KeyGroups; !kg.Empty() && (kg.First < 0 || kg.Last >= m.MaxParallelism) {
				return fmt.Errorf("operator %s subtask %d: key groups %v outside [0, %d)", o.UID, s.Subtask, kg, m.MaxParallelism)
			}
		}
	}
	return nil
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}
