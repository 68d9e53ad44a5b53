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

// MetadataVersion is the newest version of the _metadata format:
// DecodeMetadata reads it and every earlier one. EncodeMetadata writes
// version 1 for a checkpoint without file chains, so that builds which
// only know version 1 still read it, version 2 (chains of shared files,
// see SubtaskState.Chain) when it has chains, and version 3 when a chain
// holds a state backend's native files (FileRef.Local), which a version 2
// reader would mistake for state files.
const MetadataVersion = 3

// MetadataFile is the name of the manifest in a checkpoint directory.
const MetadataFile = "_metadata"

const metadataMagic = "WEIR-METADATA"

// Metadata is a completed checkpoint's or savepoint's manifest, written
// last: its presence means the checkpoint is complete.
type Metadata struct {
	Version        int             `json:"version"` // 1 or 2
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

// SubtaskState describes one subtask's state: one self-contained file
// (File), or a chain of files read in order (Chain), some of them shared
// with earlier checkpoints.
type SubtaskState struct {
	Subtask int `json:"subtask"`
	// File is relative to the checkpoint directory, '/'-separated:
	// StateFileName(uid, subtask). Empty when Chain is set.
	File string `json:"file,omitempty"`
	// Chain, when set, is the subtask's state as a list of file
	// references (version 2): a full state file first, then deltas.
	Chain []FileRef `json:"chain,omitempty"`
	// Size is the bytes this checkpoint wrote for the subtask: the file,
	// or the chain's files that this checkpoint added.
	Size      int64         `json:"size"`
	KeyGroups KeyGroupRange `json:"keyGroups"` // empty without keyed state
	Keys      int64         `json:"keys"`      // keyed entries, for reporting
}

// FileRef is one file of a subtask's state chain.
type FileRef struct {
	// Path is '/'-separated and relative to the job's shared directory
	// (SharedDir of the checkpoint's location) when Shared, else to the
	// checkpoint directory.
	Path string `json:"path"`
	Size int64  `json:"size"`
	// Shared files may be used by several checkpoints of the job: they
	// are deleted only when no retained checkpoint refers to them.
	Shared bool `json:"shared,omitempty"`
	// Delta says the file holds the changes since the files before it
	// (WriteDeltaFile); otherwise it is a full state file.
	Delta bool `json:"delta,omitempty"`
	// Local, when set, makes the file one of a state backend's native
	// checkpoint files (version 3): its name in the backend's directory,
	// such as a Pebble SST's "000123.sst". A native chain is a full state
	// file first (the timers and operator state), then the native files
	// (see NativeChain).
	Local string `json:"local,omitempty"`
}

// NativeChain reports whether chain holds a state backend's native files
// after its first, common-format file.
func NativeChain(chain []FileRef) bool {
	for _, f := range chain {
		if f.Local != "" {
			return true
		}
	}
	return false
}

// Size is the bytes of state files the checkpoint wrote itself (shared
// files written by earlier checkpoints are not counted).
func (m *Metadata) Size() int64 {
	var n int64
	for _, o := range m.Operators {
		for _, s := range o.Subtasks {
			n += s.Size
		}
	}
	return n
}

// SharedFiles lists the shared files the checkpoint refers to, as paths
// relative to the job's shared directory.
func (m *Metadata) SharedFiles() []string {
	var out []string
	for _, o := range m.Operators {
		for _, s := range o.Subtasks {
			for _, f := range s.Chain {
				if f.Shared {
					out = append(out, f.Path)
				}
			}
		}
	}
	return out
}

// SharedDirName is the directory, beside a job's chk-N directories, that
// holds the files incremental checkpoints share.
const SharedDirName = "shared"

// SharedDir is the shared directory of the job whose checkpoint directory
// is location: its sibling "shared" (location's parent is the job's
// checkpoint directory).
func SharedDir(location string) string {
	trimmed := strings.TrimRight(location, "/")
	i := strings.LastIndex(trimmed, "/")
	if i < 0 {
		return SharedDirName
	}
	return trimmed[:i+1] + SharedDirName
}

// SharedFileName is the name, within the shared directory, of the file
// checkpoint id writes for an operator subtask. Checkpoint IDs are never
// reused within a job, so the name is unique and tells which checkpoint
// wrote the file (ParseSharedFileName).
func SharedFileName(uid string, subtask int, id int64) string {
	return uid + "/" + strconv.Itoa(subtask) + "-" + strconv.FormatInt(id, 10) + ".state"
}

// SharedNativeName is the name, within the shared directory, under which
// checkpoint id uploads an operator subtask's native file local (a Pebble
// SST) that later checkpoints may refer to. Like SharedFileName it tells
// which checkpoint wrote the file.
func SharedNativeName(uid string, subtask int, id int64, local string) string {
	return uid + "/" + strconv.Itoa(subtask) + "-" + strconv.FormatInt(id, 10) + "-" + local
}

// ParseSharedFileName returns the checkpoint ID in a SharedFileName or a
// SharedNativeName of an SST or a changelog segment (".changelog"), and
// false for a name of another form.
func ParseSharedFileName(name string) (int64, bool) {
	base := path.Base(name)
	var id string
	if b, ok := strings.CutSuffix(base, ".state"); ok {
		_, id, ok = strings.Cut(b, "-")
		if !ok {
			return 0, false
		}
	} else if b, ok := cutNativeSuffix(base); ok {
		parts := strings.Split(b, "-")
		if len(parts) != 3 {
			return 0, false
		}
		id = parts[1]
	} else {
		return 0, false
	}
	n, err := strconv.ParseInt(id, 10, 64)
	return n, err == nil && n > 0
}

// cutNativeSuffix cuts the suffix of a shared native file's name: an SST,
// or a pebble changelog segment.
func cutNativeSuffix(name string) (string, bool) {
	if b, ok := strings.CutSuffix(name, ".sst"); ok {
		return b, true
	}
	return strings.CutSuffix(name, ".changelog")
}

// UnusedSharedFiles picks, from the names in a job's shared directory,
// those no checkpoint in retained refers to and which a checkpoint with an
// ID of at most upTo wrote: the files that can be deleted once checkpoint
// upTo completed. Files of later checkpoints may belong to one in flight;
// names of another form are left alone. The reference counts are derived
// from the retained checkpoints' metadata, so nothing but the metadata
// has to survive a JobManager failover.
func UnusedSharedFiles(names []string, retained []*Metadata, upTo int64) []string {
	used := map[string]bool{}
	for _, m := range retained {
		for _, f := range m.SharedFiles() {
			used[f] = true
		}
	}
	var out []string
	for _, n := range names {
		if id, ok := ParseSharedFileName(n); ok && id <= upTo && !used[n] {
			out = append(out, n)
		}
	}
	return out
}

// NativeFileName is the name, in a checkpoint directory, of an operator
// subtask's native file local that only this checkpoint uses (a Pebble
// MANIFEST, OPTIONS, ...).
func NativeFileName(uid string, subtask int, local string) string {
	return uid + "/" + strconv.Itoa(subtask) + ".native/" + local
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

// EncodeMetadata encodes m: version 3 if a chain holds native files,
// version 2 if a subtask's state is a chain, else version 1, whatever m.Version says, since that is the format
// produced.
func EncodeMetadata(m *Metadata) []byte {
	c := *m
	c.Version = 1
	for _, o := range m.Operators {
		for _, s := range o.Subtasks {
			if len(s.Chain) > 0 {
				c.Version = max(c.Version, 2)
			}
			if NativeChain(s.Chain) {
				c.Version = 3
			}
		}
	}
	body, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		panic("statebackend: encoding metadata: " + err.Error()) // plain ints and strings cannot fail
	}
	body = append(body, '\n')
	head := fmt.Sprintf("%s v%d crc32c=%08x\n", metadataMagic, c.Version, crc32.Checksum(body, castagnoli))
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
	version, err := strconv.Atoi(strings.TrimPrefix(fields[1], "v"))
	if err != nil || !strings.HasPrefix(fields[1], "v") || version < 1 || version > MetadataVersion {
		return nil, corrupt(name, "metadata: unsupported version %q (this build reads v1 to v%d)", fields[1], MetadataVersion)
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
	if err := m.check(version); err != nil {
		return nil, corrupt(name, "metadata: %v", err)
	}
	return &m, nil
}

// check catches manifests a restore could not use: these are bugs or
// hand edits, since the checksum matched.
func (m *Metadata) check(version int) error {
	if m.Version != version {
		return fmt.Errorf("body version %d, header v%d", m.Version, version)
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
			if (s.File == "") == (len(s.Chain) == 0) {
				return fmt.Errorf("operator %s subtask %d: want a file or a chain, not both or neither", o.UID, s.Subtask)
			}
			if len(s.Chain) > 0 && (m.Version < 2 || s.Chain[0].Delta) {
				return fmt.Errorf("operator %s subtask %d: a chain needs version 2 and a full file first", o.UID, s.Subtask)
			}
			if s.File != "" && !cleanRelative(s.File) {
				return fmt.Errorf("operator %s subtask %d: file %q is not a clean relative path", o.UID, s.Subtask, s.File)
			}
			for i, f := range s.Chain {
				if !cleanRelative(f.Path) || f.Size < 0 {
					return fmt.Errorf("operator %s subtask %d: chain file %q is not a clean relative path or has a negative size", o.UID, s.Subtask, f.Path)
				}
				if f.Local != "" && (m.Version < 3 || i == 0 || f.Delta || path.Base(f.Local) != f.Local || !cleanRelative(f.Local)) {
					return fmt.Errorf("operator %s subtask %d: native file %q needs version 3, a state file before it and a plain file name", o.UID, s.Subtask, f.Local)
				}
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

func cleanRelative(p string) bool {
	return p != "" && !path.IsAbs(p) && path.Clean(p) == p && p != "." && p != ".." && !strings.HasPrefix(p, "../")
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}
