package rules

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// setFormat is the first byte of an encoded Set; a change of the encoding
// gets a new value, so an old checkpoint is recognised rather than misread.
const setFormat = 1

// ErrCorruptSet is wrapped by SetCodec.Decode on input it cannot read.
var ErrCorruptSet = errors.New("rules: corrupt rule set encoding")

// SetCodec encodes a compiled Set as its documents' sources with each
// rule's version and state, so that broadcast state, a checkpoint or a
// store of rules holds text a later release can recompile. It has the
// shape of runtime.Codec[*Set].
type SetCodec struct{}

// Append appends the encoding of set to dst. A set is immutable, so its
// encoding is made once (a set of 10,000 rules is megabytes, written by
// every checkpoint while it is in force) and copied after.
func (SetCodec) Append(dst []byte, set *Set) []byte {
	if b := set.enc.Load(); b != nil {
		return append(dst, *b...)
	}
	b := appendSet(nil, set)
	set.enc.Store(&b)
	return append(dst, b...)
}

func appendSet(dst []byte, set *Set) []byte {
	dst = append(dst, setFormat)
	dst = binary.AppendUvarint(dst, uint64(len(set.lists)))
	for _, s := range set.lists {
		dst = appendDoc(dst, s.file, 0, "", s.source)
	}
	dst = binary.AppendUvarint(dst, uint64(len(set.Rules)))
	for _, r := range set.Rules {
		dst = appendDoc(dst, r.spec.file, r.Version, r.State, r.spec.source)
	}
	return dst
}

func appendDoc(dst []byte, file string, version int64, state string, src []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(file)))
	dst = append(dst, file...)
	dst = binary.AppendVarint(dst, version)
	dst = binary.AppendUvarint(dst, uint64(len(state)))
	dst = append(dst, state...)
	dst = binary.AppendUvarint(dst, uint64(len(src)))
	return append(dst, src...)
}

// Decode recompiles the documents of src (CompileDocs: the rules a set
// decoded before in this process shares with this one are not compiled
// again). The inline tests passed when the rules were accepted and are
// not run again.
func (SetCodec) Decode(src []byte) (*Set, error) {
	if len(src) == 0 || src[0] != setFormat {
		return nil, fmt.Errorf("%w: unknown format", ErrCorruptSet)
	}
	d := &docReader{b: src[1:]}
	var docs []Doc
	lists := 0
	for part := range 2 {
		n := d.uvarint()
		if d.err != nil {
			return nil, d.err
		}
		if n > uint64(len(d.b)) {
			return nil, fmt.Errorf("%w: %d documents in %d bytes", ErrCorruptSet, n, len(d.b))
		}
		for range n {
			doc := Doc{File: string(d.bytes()), Version: d.varint(), State: string(d.bytes()), Source: d.bytes()}
			if d.err != nil {
				return nil, d.err
			}
			if part == 0 {
				doc.Version, doc.State = 0, ""
				lists++
			}
			docs = append(docs, doc)
		}
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorruptSet, len(d.b))
	}
	set, err := CompileDocs(docs)
	if err != nil {
		return nil, err
	}
	if len(set.lists) != lists {
		return nil, fmt.Errorf("%w: %d lists among the rules or rules among the lists", ErrCorruptSet, abs(len(set.lists)-lists))
	}
	return set, nil
}

func abs(n int) int { return max(n, -n) }

type docReader struct {
	b   []byte
	err error
}

func (d *docReader) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *docReader) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *docReader) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *docReader) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated", ErrCorruptSet)
	}
}
