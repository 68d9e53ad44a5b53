package statebackend

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
)

// ErrCorrupt is wrapped by every error about a damaged, truncated or
// unreadable state file or metadata, and by restore decoding errors.
var ErrCorrupt = errors.New("corrupt state")

const (
	fileMagic     = "WEIRSTAT"
	fileVersion   = 1
	headerLen     = len(fileMagic) + 2
	footerLen     = 8 + 4 + 2 + len(fileMagic)
	secHeaderLen  = 2 + 4 + 4 // section index, entry count, byte length
	crcLen        = 4
	indexGroupLen = 8 + 4 // offset, length
	maxNameLen    = 1 << 10
	maxSections   = math.MaxUint16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// corruptError names the file (and what in it) that is damaged.
type corruptError struct {
	name, what string
	cause      error
}

func (e *corruptError) Error() string {
	if e.cause != nil {
		return e.name + ": corrupt " + e.what + ": " + e.cause.Error()
	}
	return e.name + ": corrupt " + e.what
}

func (e *corruptError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrCorrupt, e.cause}
	}
	return []error{ErrCorrupt}
}

func corrupt(name, format string, args ...any) error {
	return &corruptError{name: name, what: fmt.Sprintf(format, args...)}
}

// WriteStateFile serialises sections for the key groups in r, plus
// operator state, into one file image. r may be empty (an operator without
// keyed state); sections then contribute only their names to the index.
func WriteStateFile(r KeyGroupRange, sections []Section, operatorState [][]byte) ([]byte, error) {
	if r.Empty() {
		r = KeyGroupRange{First: 0, Last: -1}
	} else if r.First < 0 || r.Last >= MaxKeyGroups {
		return nil, fmt.Errorf("key group range %v is outside [0, %d)", r, MaxKeyGroups)
	}
	if len(sections) > maxSections {
		return nil, fmt.Errorf("%d state sections, at most %d fit a state file", len(sections), maxSections)
	}
	seen := make(map[string]bool, len(sections))
	for _, s := range sections {
		name := s.Name()
		switch {
		case name == "" || len(name) > maxNameLen:
			return nil, fmt.Errorf("state section name %q: want 1 to %d bytes", name, maxNameLen)
		case seen[name]:
			return nil, fmt.Errorf("two state sections are named %q", name)
		case !s.Kind().valid():
			return nil, fmt.Errorf("state section %q has unknown kind %d", name, s.Kind())
		}
		seen[name] = true
	}

	buf := make([]byte, 0, 4096)
	buf = append(buf, fileMagic...)
	buf = binary.LittleEndian.AppendUint16(buf, fileVersion)

	blocks := make([]blockRef, r.Len())
	head := len(buf)
	for kg := r.First; kg <= r.Last; kg++ {
		// Once what the key groups so far project for the rest exceeds
		// the buffer, reserve that and an eighth more: append alone grows
		// a large buffer by a quarter at a time, copying a 300 MB image
		// (10 M keys) some five times over, which was a quarter of a
		// state-heavy job's CPU at 10 M accounts. Key groups are of about
		// one size, so the buffer is reserved once, after the first.
		if done := kg - r.First; done > 0 {
			if rest := (len(buf) - head) / done * (r.Last - kg + 1); len(buf)+rest > cap(buf) {
				buf = slices.Grow(buf, rest+rest/8)
			}
		}
		start := len(buf)
		for si, s := range sections {
			h := len(buf)
			buf = append(buf, make([]byte, secHeaderLen)...)
			var n int
			buf, n = s.AppendGroup(buf, kg)
			size := len(buf) - h - secHeaderLen
			switch {
			case size < 0 || n < 0 || (n == 0) != (size == 0):
				return nil, fmt.Errorf("state section %q, key group %d: %d entries in %d bytes", s.Name(), kg, n, size)
			case n == 0:
				buf = buf[:h]
				continue
			case size > math.MaxUint32 || n > math.MaxUint32:
				return nil, fmt.Errorf("state section %q, key group %d: %d entries in %d bytes is too large", s.Name(), kg, n, size)
			}
			binary.LittleEndian.PutUint16(buf[h:], uint16(si))
			binary.LittleEndian.PutUint32(buf[h+2:], uint32(n))
			binary.LittleEndian.PutUint32(buf[h+6:], uint32(size))
		}
		if len(buf) == start {
			continue
		}
		buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoli))
		if n := len(buf) - start; n > math.MaxUint32 {
			return nil, fmt.Errorf("key group %d holds %d bytes of state, more than a state file block can", kg, n)
		}
		blocks[kg-r.First] = blockRef{off: int64(start), n: int64(len(buf) - start)}
	}

	opOff := len(buf)
	buf = binary.AppendUvarint(buf, uint64(len(operatorState)))
	for _, e := range operatorState {
		buf = binary.AppendUvarint(buf, uint64(len(e)))
		buf = append(buf, e...)
	}
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf[opOff:], castagnoli))
	opLen := len(buf) - opOff

	idxOff := len(buf)
	le := binary.LittleEndian
	first := max(r.First, 0)
	buf = le.AppendUint32(buf, uint32(first))
	buf = le.AppendUint32(buf, uint32(r.Len()))
	buf = le.AppendUint16(buf, uint16(len(sections)))
	for _, s := range sections {
		buf = append(buf, byte(s.Kind()))
		buf = le.AppendUint16(buf, uint16(len(s.Name())))
		buf = append(buf, s.Name()...)
	}
	for _, b := range blocks {
		buf = le.AppendUint64(buf, uint64(b.off))
		buf = le.AppendUint32(buf, uint32(b.n))
	}
	buf = le.AppendUint64(buf, uint64(opOff))
	buf = le.AppendUint64(buf, uint64(opLen))
	buf = le.AppendUint32(buf, crc32.Checksum(buf[idxOff:], castagnoli))
	idxLen := len(buf) - idxOff
	if idxLen > math.MaxUint32 {
		return nil, fmt.Errorf("state file index of %d bytes is too large", idxLen)
	}

	buf = le.AppendUint64(buf, uint64(idxOff))
	buf = le.AppendUint32(buf, uint32(idxLen))
	buf = le.AppendUint16(buf, fileVersion)
	buf = append(buf, fileMagic...)
	return buf, nil
}

// RangeReader reads n bytes at off of one file (a ranged GET on S3, ReadAt
// on disk).
type RangeReader func(ctx context.Context, off, n int64) ([]byte, error)

type blockRef struct{ off, n int64 } // n == 0: no block

type sectionInfo struct {
	name string
	kind Kind
}

// StateFile is an opened state file: its footer and index have been read
// and checked.
type StateFile struct {
	name      string
	read      RangeReader
	keyGroups KeyGroupRange
	sections  []sectionInfo
	blocks    []blockRef // per key group of keyGroups
	op        blockRef
}

// OpenStateFile reads the footer and index of the state file of size bytes
// (two small ranged reads). name is used in errors.
func OpenStateFile(ctx context.Context, name string, size int64, read RangeReader) (*StateFile, error) {
	if size < int64(headerLen+footerLen) {
		return nil, corrupt(name, "file: %d bytes is too short for a state file (truncated?)", size)
	}
	foot, err := readExact(ctx, name, "footer", read, size-int64(footerLen), int64(footerLen))
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if string(foot[14:]) != fileMagic {
		return nil, corrupt(name, "footer: bad magic %q, not a state file or truncated", foot[14:])
	}
	if v := le.Uint16(foot[12:]); v != fileVersion {
		return nil, corrupt(name, "footer: unsupported state file version %d (this build reads %d)", v, fileVersion)
	}
	idxOff, idxLen := le.Uint64(foot), uint64(le.Uint32(foot[8:]))
	end := uint64(size) - uint64(footerLen)
	if idxOff < uint64(headerLen) || idxOff > end || idxLen != end-idxOff {
		return nil, corrupt(name, "footer: index at %d+%d does not end at the footer (%d)", idxOff, idxLen, end)
	}
	idx, err := readExact(ctx, name, "index", read, int64(idxOff), int64(idxLen))
	if err != nil {
		return nil, err
	}
	if err := checkCRC(idx); err != nil {
		return nil, corrupt(name, "index: %v", err)
	}
	f := &StateFile{name: name, read: read}
	if err := f.parseIndex(idx[:len(idx)-crcLen], int64(idxOff)); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *StateFile) parseIndex(idx []byte, idxOff int64) error {
	d := decoder{b: idx}
	first, n := int(d.u32()), int(d.u32())
	if d.bad || first >= MaxKeyGroups || n > MaxKeyGroups-first {
		return corrupt(f.name, "index: key groups %d+%d are outside [0, %d)", first, n, MaxKeyGroups)
	}
	f.keyGroups = KeyGroupRange{First: first, Last: first + n - 1}
	if n == 0 {
		f.keyGroups = KeyGroupRange{First: 0, Last: -1}
	}
	ns := int(d.u16())
	f.sections = make([]sectionInfo, 0, min(ns, len(idx)/3))
	seen := map[string]bool{}
	for range ns {
		kind := Kind(d.u8())
		name := string(d.bytes(int(d.u16())))
		if d.bad {
			return corrupt(f.name, "index: truncated section table")
		}
		if !kind.valid() || name == "" || seen[name] {
			return corrupt(f.name, "index: section %q of kind %d is invalid or repeated", name, kind)
		}
		seen[name] = true
		f.sections = append(f.sections, sectionInfo{name: name, kind: kind})
	}
	if d.bad || len(d.b) != n*indexGroupLen+16 {
		return corrupt(f.name, "index: %d bytes left for %d key groups", len(d.b), n)
	}
	f.blocks = make([]blockRef, n)
	prevEnd := int64(headerLen)
	for i := range f.blocks {
		off, l := d.u64(), uint64(d.u32())
		if l == 0 {
			continue
		}
		if off < uint64(prevEnd) || off > uint64(idxOff) || l > uint64(idxOff)-off || l < secHeaderLen+crcLen {
			return corrupt(f.name, "index: key group %d at %d+%d is out of bounds", first+i, off, l)
		}
		f.blocks[i] = blockRef{off: int64(off), n: int64(l)}
		prevEnd = int64(off + l)
	}
	opOff, opLen := d.u64(), d.u64()
	if opOff < uint64(prevEnd) || opOff > uint64(idxOff) || opLen > uint64(idxOff)-opOff || opLen < 1+crcLen {
		return corrupt(f.name, "index: operator state at %d+%d is out of bounds", opOff, opLen)
	}
	f.op = blockRef{off: int64(opOff), n: int64(opLen)}
	return nil
}

// KeyGroups is the range of key groups the file holds state for.
func (f *StateFile) KeyGroups() KeyGroupRange { return f.keyGroups }

// KeyGroupSizes returns the bytes of each key group's block in the file,
// in the order of KeyGroups (0 for a key group without state). It reads
// nothing: the index holds them.
func (f *StateFile) KeyGroupSizes() []int64 {
	sizes := make([]int64, len(f.blocks))
	for i, b := range f.blocks {
		sizes[i] = b.n
	}
	return sizes
}

// ReadKeyGroups reads the blocks of the key groups of f within want (one
// ranged read over their contiguous span), verifies their checksums and
// returns them; groups outside f's range are simply absent. The result
// lists every section of the file, with or without entries in want.
func (f *StateFile) ReadKeyGroups(ctx context.Context, want KeyGroupRange) (*KeyedState, error) {
	r := f.keyGroups.Intersect(want)
	ks := &KeyedState{file: f.name, keyGroups: r, sections: make([]*restoredSection, len(f.sections))}
	for i, s := range f.sections {
		ks.sections[i] = &restoredSection{file: f.name, name: s.name, kind: s.kind}
	}
	if r.Empty() {
		ks.keyGroups = KeyGroupRange{First: 0, Last: -1}
		return ks, nil
	}
	blocks := f.blocks[r.First-f.keyGroups.First : r.Last-f.keyGroups.First+1]
	lo, hi := -1, -1
	for i, b := range blocks {
		if b.n > 0 {
			if lo < 0 {
				lo = i
			}
			hi = i
		}
	}
	if lo < 0 {
		return ks, nil
	}
	base := blocks[lo].off
	data, err := readExact(ctx, f.name, "key groups "+r.String(), f.read, base, blocks[hi].off+blocks[hi].n-base)
	if err != nil {
		return nil, err
	}
	for i := lo; i <= hi; i++ {
		if blocks[i].n == 0 {
			continue
		}
		kg := r.First + i
		if err := ks.addBlock(kg, data[blocks[i].off-base:blocks[i].off-base+blocks[i].n]); err != nil {
			return nil, err
		}
	}
	return ks, nil
}

// addBlock checks key group kg's block and files its sections' entries.
func (ks *KeyedState) addBlock(kg int, block []byte) error {
	if err := checkCRC(block); err != nil {
		return corrupt(ks.file, "key group %d: %v", kg, err)
	}
	d := decoder{b: block[:len(block)-crcLen]}
	prev := -1
	for len(d.b) > 0 {
		si, count, size := int(d.u16()), int(d.u32()), int(d.u32())
		data := d.bytes(size)
		// Every entry takes at least two bytes (two lengths), which also
		// bounds the allocations a restore sizes by count.
		if d.bad || si <= prev || si >= len(ks.sections) || count == 0 || count > size/2 {
			return corrupt(ks.file, "key group %d: bad section entry (section %d, %d entries in %d bytes)", kg, si, count, size)
		}
		prev = si
		s := ks.sections[si]
		s.groups = append(s.groups, groupEntries{kg: kg, count: count, data: data})
	}
	return nil
}

// ReadOperatorState reads the operator-state entries (nil when none).
func (f *StateFile) ReadOperatorState(ctx context.Context) ([][]byte, error) {
	block, err := readExact(ctx, f.name, "operator state", f.read, f.op.off, f.op.n)
	if err != nil {
		return nil, err
	}
	if err := checkCRC(block); err != nil {
		return nil, corrupt(f.name, "operator state: %v", err)
	}
	b := block[:len(block)-crcLen]
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return nil, corrupt(f.name, "operator state: bad entry count")
	}
	b = b[w:]
	if n == 0 {
		if len(b) != 0 {
			return nil, corrupt(f.name, "operator state: %d trailing bytes", len(b))
		}
		return nil, nil
	}
	out := make([][]byte, n)
	for i := range out {
		e, rest, ok := field(b)
		if !ok {
			return nil, corrupt(f.name, "operator state: entry %d is truncated", i)
		}
		out[i], b = e[:len(e):len(e)], rest
	}
	if len(b) != 0 {
		return nil, corrupt(f.name, "operator state: %d trailing bytes", len(b))
	}
	return out, nil
}

func readExact(ctx context.Context, name, what string, read RangeReader, off, n int64) ([]byte, error) {
	b, err := read(ctx, off, n)
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %w", name, what, err)
	}
	if int64(len(b)) != n {
		return nil, corrupt(name, "%s: read %d of %d bytes at %d (truncated?)", what, len(b), n, off)
	}
	return b, nil
}

// checkCRC verifies the CRC-32C that ends b.
func checkCRC(b []byte) error {
	if len(b) < crcLen {
		return errors.New("too short for its checksum")
	}
	body := b[:len(b)-crcLen]
	if binary.LittleEndian.Uint32(b[len(body):]) != crc32.Checksum(body, castagnoli) {
		return errors.New("checksum mismatch")
	}
	return nil
}

// KeyedState is decoded-but-raw keyed state read from one state file: per
// section, per key group, the entries' bytes. It is immutable and refers
// into the buffer it was read into.
type KeyedState struct {
	file      string
	keyGroups KeyGroupRange
	sections  []*restoredSection
}

// restoredSection is one section of a KeyedState.
type restoredSection struct {
	file   string
	name   string
	kind   Kind
	groups []groupEntries // ascending key groups
}

type groupEntries struct {
	kg, count int
	data      []byte
}

// KeyGroups is the range of key groups that was read (empty if none).
func (s *KeyedState) KeyGroups() KeyGroupRange { return s.keyGroups }

// Sections lists the names of the file's sections, in file order.
func (s *KeyedState) Sections() []string {
	out := make([]string, len(s.sections))
	for i, sec := range s.sections {
		out[i] = sec.name
	}
	return out
}

// Kind is section's kind, 0 if the file has no such section.
func (s *KeyedState) Kind(section string) Kind {
	if sec := s.section(section); sec != nil {
		return sec.kind
	}
	return 0
}

func (s *KeyedState) section(name string) *restoredSection {
	for _, sec := range s.sections {
		if sec.name == name {
			return sec
		}
	}
	return nil
}

// Each calls fn for every entry of section, in key-group order; a missing
// section has no entries. key and value alias the read buffer: copy them
// to keep them. An error from fn stops the walk and is returned wrapped
// with the file, section and key group.
func (s *KeyedState) Each(section string, fn func(kg int, key, value []byte) error) error {
	sec := s.section(section)
	if sec == nil {
		return nil
	}
	for _, g := range sec.groups {
		data, n := g.data, 0
		for len(data) > 0 {
			k, v, rest, ok := nextEntry(data)
			if !ok {
				return sec.corrupt(g.kg, nil, "truncated entry")
			}
			if err := fn(g.kg, k, v); err != nil {
				return fmt.Errorf("%s: section %q, key group %d: %w", s.file, section, g.kg, err)
			}
			data = rest
			n++
		}
		if n != g.count {
			return sec.corrupt(g.kg, nil, "%d entries, the block says %d", n, g.count)
		}
	}
	return nil
}

func (p *restoredSection) corrupt(kg int, cause error, format string, args ...any) error {
	return &corruptError{
		name:  fmt.Sprintf("%s: state %q", p.file, p.name),
		what:  fmt.Sprintf("key group %d: ", kg) + fmt.Sprintf(format, args...),
		cause: cause,
	}
}

// field splits a uvarint-length-prefixed byte string off b.
func field(b []byte) (f, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, false
	}
	end := w + int(n)
	return b[w:end:end], b[end:], true
}

// nextEntry splits one key and value off b.
func nextEntry(b []byte) (k, v, rest []byte, ok bool) {
	if k, b, ok = field(b); !ok {
		return nil, nil, nil, false
	}
	if v, b, ok = field(b); !ok {
		return nil, nil, nil, false
	}
	return k, v, b, true
}

// decoder reads little-endian fixed-width fields, remembering underflow so
// callers check once.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) bytes(n int) []byte {
	if d.bad || n < 0 || n > len(d.b) {
		d.bad = true
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) u8() uint8 {
	if b := d.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if b := d.bytes(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.bytes(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.bytes(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}
