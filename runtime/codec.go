package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Codec serialises values of one type for the data exchange and for state
// snapshots. Implementations are hand-written per type: no reflection on the
// hot path.
type Codec[T any] interface {
	// Append appends the encoding of v to dst and returns the extended slice.
	Append(dst []byte, v T) []byte
	// Decode decodes one value from exactly src (the runtime frames records).
	Decode(src []byte) (T, error)
}

// ErrCorrupt is wrapped by codecs on input they cannot decode.
var ErrCorrupt = errors.New("corrupt record")

// ErrUnrecoverable marks a failure that restarting cannot cure, such as a
// sink pointed at another job's output: a task that fails with an error
// wrapping it fails its job at once instead of restarting it again and
// again.
var ErrUnrecoverable = errors.New("unrecoverable")

// Int64Codec encodes int64 as a zig-zag varint.
type Int64Codec struct{}

func (Int64Codec) Append(dst []byte, v int64) []byte { return binary.AppendVarint(dst, v) }
func (Int64Codec) Decode(src []byte) (int64, error) {
	v, n := binary.Varint(src)
	if n <= 0 || n != len(src) {
		return 0, fmt.Errorf("int64: %w", ErrCorrupt)
	}
	return v, nil
}

// DecodeCopies marks the codec's values as never referring to the bytes
// they were decoded from, so the Pebble state backend may decode them from
// a buffer it reuses (pebblestate.CopyingDecoder).
func (Int64Codec) DecodeCopies() {}

// StringCodec encodes a string as its bytes.
type StringCodec struct{}

func (StringCodec) Append(dst []byte, v string) []byte { return append(dst, v...) }
func (StringCodec) Decode(src []byte) (string, error)  { return string(src), nil }

// DecodeCopies: string(src) copies (see Int64Codec.DecodeCopies).
func (StringCodec) DecodeCopies() {}

// BoolCodec encodes a bool as one byte.
type BoolCodec struct{}

func (BoolCodec) Append(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}
func (BoolCodec) Decode(src []byte) (bool, error) {
	if len(src) != 1 || src[0] > 1 {
		return false, fmt.Errorf("bool: %w", ErrCorrupt)
	}
	return src[0] == 1, nil
}

// Float64Codec encodes a float64 as 8 little-endian bytes.
type Float64Codec struct{}

func (Float64Codec) Append(dst []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
}
func (Float64Codec) Decode(src []byte) (float64, error) {
	if len(src) != 8 {
		return 0, fmt.Errorf("float64: %w", ErrCorrupt)
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(src)), nil
}

// Reader decodes fields one after another from a record, remembering the
// first error, so codecs for structs stay short.
type Reader struct {
	b   []byte
	err error
}

// NewReader reads from src.
func NewReader(src []byte) Reader { return Reader{b: src} }

func (r *Reader) Varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = ErrCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *Reader) Float64() float64 {
	if r.err != nil || len(r.b) < 8 {
		r.err = ErrCorrupt
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

func (r *Reader) Bytes() []byte {
	n := r.Varint()
	if r.err != nil || n < 0 || int64(len(r.b)) < n {
		r.err = ErrCorrupt
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// More reports whether bytes are left: a codec that appended a field
// later reads it only if present, so records written before still decode.
func (r *Reader) More() bool { return r.err == nil && len(r.b) > 0 }

// Done returns the first error, or ErrCorrupt if bytes are left over.
func (r *Reader) Done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = ErrCorrupt
	}
	return r.err
}
