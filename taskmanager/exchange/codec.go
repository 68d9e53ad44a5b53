package exchange

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime/engine"
)

// codecName is the content-subtype of Exchange streams
// ("application/grpc+weir-exchange"). The codec writes and reads the same
// protobuf ExchangeFrame bytes as the generated code, but straight from and
// into engine.Buffers: a data frame costs one copy each way and no
// allocation. Going through the generic proto codec would cost a copy more
// and two allocations per frame on the receiving side, and on both sides
// a cleared 1 MiB pool buffer, the tier gRPC's default pool picks for a
// frame just over 32 KiB.
const codecName = "weir-exchange"

func init() { encoding.RegisterCodecV2(frameCodec{proto: encoding.GetCodecV2(grpcproto.Name)}) }

// outFrame is the message a remote channel sends per buffer: the
// ExchangeFrame of a data or event buffer.
type outFrame struct{ buf *engine.Buffer }

// inFrame is the message Serve receives per buffer: the data or event of an
// ExchangeFrame, decoded into buf.
type inFrame struct {
	buf   *engine.Buffer // Data and Records are filled in; Kind is not
	event weirv1.EventKind
	value int64
	// taskEvent is the engine.BufferKind of a task event.
	taskEvent engine.BufferKind
	open      bool // the frame carried a ChannelOpen
}

// frameCodec encodes outFrame and decodes inFrame, and hands every other
// message (ChannelOpen frames, credits) to gRPC's proto codec.
type frameCodec struct{ proto encoding.CodecV2 }

func (frameCodec) Name() string { return codecName }

func (c frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*outFrame)
	if !ok {
		return c.proto.Marshal(v)
	}
	b := f.buf
	var event weirv1.EventKind
	var taskEvent uint64
	switch {
	case b.Kind == engine.BufferData:
	case b.Kind == engine.BufferEndOfPartition:
		event = weirv1.EventKind_EVENT_KIND_END_OF_PARTITION
	case b.Kind.IsTaskEvent():
		event, taskEvent = weirv1.EventKind_EVENT_KIND_TASK_EVENT, uint64(b.Kind)
	default:
		return nil, fmt.Errorf("unknown buffer kind %d", b.Kind)
	}
	// Fields in number order, zero values omitted, as proto3 does.
	size := 0
	if len(b.Data) > 0 {
		size += 1 + protowire.SizeBytes(len(b.Data))
	}
	if b.Records != 0 {
		size += 1 + protowire.SizeVarint(uint64(int64(int32(b.Records))))
	}
	if event != 0 {
		size += 1 + protowire.SizeVarint(uint64(event))
	}
	if event != 0 && b.Value != 0 {
		size += 1 + protowire.SizeVarint(uint64(b.Value))
	}
	if taskEvent != 0 {
		size += 1 + protowire.SizeVarint(taskEvent)
	}
	p := framePool.Get(size)
	out := (*p)[:0]
	if len(b.Data) > 0 {
		out = protowire.AppendTag(out, 2, protowire.BytesType)
		out = protowire.AppendBytes(out, b.Data)
	}
	if b.Records != 0 {
		out = protowire.AppendTag(out, 3, protowire.VarintType)
		out = protowire.AppendVarint(out, uint64(int64(int32(b.Records))))
	}
	if event != 0 {
		out = protowire.AppendTag(out, 4, protowire.VarintType)
		out = protowire.AppendVarint(out, uint64(event))
	}
	if event != 0 && b.Value != 0 {
		out = protowire.AppendTag(out, 5, protowire.VarintType)
		out = protowire.AppendVarint(out, uint64(b.Value))
	}
	if taskEvent != 0 {
		out = protowire.AppendTag(out, 6, protowire.VarintType)
		out = protowire.AppendVarint(out, taskEvent)
	}
	*p = out
	return mem.BufferSlice{mem.NewBuffer(p, framePool)}, nil
}

func (c frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*inFrame)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	f.event, f.value, f.taskEvent, f.open = 0, 0, 0, false
	b := f.buf
	b.Data, b.Records = b.Data[:0], 0
	r := sliceReader{s: data}
	for r.remaining() > 0 {
		num, typ, err := r.tag()
		if err != nil {
			return err
		}
		switch {
		case num == 2 && typ == protowire.BytesType:
			n, err := r.length()
			if err != nil {
				return err
			}
			b.Data = slices.Grow(b.Data[:0], n)[:n]
			r.read(b.Data)
		case num == 3 && typ == protowire.VarintType:
			x, err := r.varint()
			b.Records = int(int32(x))
			if err != nil {
				return err
			}
		case num == 4 && typ == protowire.VarintType:
			x, err := r.varint()
			f.event = weirv1.EventKind(int32(x))
			if err != nil {
				return err
			}
		case num == 5 && typ == protowire.VarintType:
			x, err := r.varint()
			f.value = int64(x)
			if err != nil {
				return err
			}
		case num == 6 && typ == protowire.VarintType:
			x, err := r.varint()
			if err != nil {
				return err
			}
			if k := engine.BufferKind(x); x <= 255 && k.IsTaskEvent() {
				f.taskEvent = k
			} else {
				return fmt.Errorf("%w: task event kind %d", ErrProtocol, x)
			}
		default:
			// ChannelOpen is a message: a field 1 of another wire type is
			// an unknown field, as the generated code reads it.
			f.open = f.open || (num == 1 && typ == protowire.BytesType)
			if err := r.skip(typ); err != nil {
				return err
			}
		}
	}
	return nil
}

var errTruncated = errors.New("exchange frame: truncated")

// sliceReader reads protobuf wire format from a BufferSlice without
// materialising it.
type sliceReader struct {
	s   mem.BufferSlice
	i   int // current buffer
	off int // offset in s[i]
	n   int // bytes read
}

func (r *sliceReader) remaining() int { return r.s.Len() - r.n }

func (r *sliceReader) byte() (byte, error) {
	for r.i < len(r.s) {
		d := r.s[r.i].ReadOnlyData()
		if r.off < len(d) {
			c := d[r.off]
			r.off++
			r.n++
			return c, nil
		}
		r.i, r.off = r.i+1, 0
	}
	return 0, errTruncated
}

// read fills dst, which the caller has checked fits.
func (r *sliceReader) read(dst []byte) {
	for len(dst) > 0 {
		d := r.s[r.i].ReadOnlyData()[r.off:]
		n := copy(dst, d)
		dst = dst[n:]
		r.off += n
		r.n += n
		if r.off == len(r.s[r.i].ReadOnlyData()) {
			r.i, r.off = r.i+1, 0
		}
	}
}

func (r *sliceReader) varint() (uint64, error) {
	var x uint64
	for shift := 0; shift < 64; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x, nil
		}
	}
	return 0, errors.New("exchange frame: varint overflow")
}

func (r *sliceReader) tag() (protowire.Number, protowire.Type, error) {
	x, err := r.varint()
	if err != nil {
		return 0, 0, err
	}
	num, typ := protowire.DecodeTag(x)
	if num < protowire.MinValidNumber {
		return 0, 0, fmt.Errorf("exchange frame: invalid field number %d", num)
	}
	return num, typ, nil
}

// length reads a length prefix and checks that many bytes follow.
func (r *sliceReader) length() (int, error) {
	n, err := r.varint()
	if err != nil {
		return 0, err
	}
	if n > uint64(r.remaining()) {
		return 0, errTruncated
	}
	return int(n), nil
}

func (r *sliceReader) skip(typ protowire.Type) error {
	var n int
	switch typ {
	case protowire.VarintType:
		_, err := r.varint()
		return err
	case protowire.Fixed32Type:
		n = 4
	case protowire.Fixed64Type:
		n = 8
	case protowire.BytesType:
		var err error
		if n, err = r.length(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("exchange frame: unsupported wire type %d", typ)
	}
	if n > r.remaining() {
		return errTruncated
	}
	for ; n > 0; n-- {
		r.byte()
	}
	return nil
}

// framePool holds the buffers encoded frames are written to until the
// transport has sent them. Unlike gRPC's default pool it does not clear
// them (Marshal overwrites what it hands out) and it has a tier that fits
// a full 32 KiB data frame.
var framePool = &bytePool{}

type bytePool struct{ p sync.Pool }

// frameCap fits a data frame of engine.BufferSize plus its header.
const frameCap = engine.BufferSize + 64

func (bp *bytePool) Get(n int) *[]byte {
	if n <= frameCap {
		if p, ok := bp.p.Get().(*[]byte); ok {
			*p = (*p)[:n]
			return p
		}
		b := make([]byte, n, frameCap)
		return &b
	}
	b := make([]byte, n)
	return &b
}

func (bp *bytePool) Put(p *[]byte) {
	if cap(*p) == frameCap {
		bp.p.Put(p)
	}
}
