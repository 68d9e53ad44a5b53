package exchange

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime/engine"
)

// pieces splits b into a BufferSlice of random pieces, as the transport
// delivers a message.
func pieces(rng *rand.Rand, b []byte) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		n := min(len(b), rng.IntN(40000)+1)
		if rng.IntN(4) == 0 {
			n = min(len(b), rng.IntN(3)+1)
		}
		s = append(s, mem.SliceBuffer(b[:n]))
		if rng.IntN(10) == 0 {
			s = append(s, mem.SliceBuffer(nil))
		}
		b = b[n:]
	}
	return s
}

func randomBuffer(rng *rand.Rand) *engine.Buffer {
	b := engine.GetBuffer()
	switch rng.IntN(4) {
	case 0:
		b.Kind, b.Value = engine.BufferEndOfPartition, rng.Int64N(3)
	case 1:
		b.Kind, b.Value = engine.BufferLatencyMarker, time.Now().UnixNano()-rng.Int64N(1e9)
	default:
		n := rng.IntN(engine.BufferSize + 1)
		if rng.IntN(8) == 0 {
			n = rng.IntN(3 * engine.BufferSize) // an oversized record
		}
		b.Data = b.Data[:0]
		for range n {
			b.Data = append(b.Data, byte(rng.Uint32()))
		}
		b.Records = rng.IntN(1000)
	}
	return b
}

func kindOf(e weirv1.EventKind) engine.BufferKind {
	switch e {
	case weirv1.EventKind_EVENT_KIND_END_OF_PARTITION:
		return engine.BufferEndOfPartition
	case weirv1.EventKind_EVENT_KIND_TASK_EVENT:
		return engine.BufferLatencyMarker // the only task event randomBuffer makes
	}
	return engine.BufferData
}

// TestFrameCodec checks that frameCodec writes exactly what the generated
// protobuf code writes for the same ExchangeFrame, and reads it back from
// arbitrarily split transport buffers.
func TestFrameCodec(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(testSeed(t)), 0))
	codec := encoding.GetCodecV2(codecName)
	if codec == nil {
		t.Fatalf("codec %q not registered", codecName)
	}
	for i := range 300 {
		b := randomBuffer(rng)
		want := &weirv1.ExchangeFrame{Records: int32(b.Records)}
		switch b.Kind {
		case engine.BufferData:
			want.Data = b.Data
		case engine.BufferEndOfPartition:
			want.Event, want.EventValue = weirv1.EventKind_EVENT_KIND_END_OF_PARTITION, b.Value
		case engine.BufferLatencyMarker:
			want.Event, want.EventValue = weirv1.EventKind_EVENT_KIND_TASK_EVENT, b.Value
			want.TaskEvent = uint32(engine.BufferLatencyMarker)
		}
		wantBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := codec.Marshal(&outFrame{buf: b})
		if err != nil {
			t.Fatal(err)
		}
		got := enc.Materialize()
		enc.Free()
		if !bytes.Equal(got, wantBytes) {
			t.Fatalf("frame %d: encoding differs from protobuf's\n got %x\nwant %x", i, got[:min(len(got), 64)], wantBytes[:min(len(wantBytes), 64)])
		}

		in := &inFrame{buf: engine.GetBuffer()}
		if err := codec.Unmarshal(pieces(rng, wantBytes), in); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if kindOf(in.event) != b.Kind || uint32(in.taskEvent) != want.TaskEvent || in.value != want.EventValue || in.buf.Records != b.Records ||
			!bytes.Equal(in.buf.Data, want.Data) || in.open {
			t.Fatalf("frame %d: decoded event %v value %d records %d len %d open %v, want %v", i,
				in.event, in.value, in.buf.Records, len(in.buf.Data), in.open, want)
		}
		engine.PutBuffer(in.buf)
		engine.PutBuffer(b)
	}

	// Other messages go through the proto codec.
	open := &weirv1.ExchangeFrame{Open: &weirv1.ChannelOpen{JobId: "j", ConsumerSubtask: 3}}
	enc, err := codec.Marshal(open)
	if err != nil {
		t.Fatal(err)
	}
	var back weirv1.ExchangeFrame
	if err := codec.Unmarshal(enc, &back); err != nil || !proto.Equal(&back, open) {
		t.Fatalf("open frame round trip: %v, %v", &back, err)
	}
	// An open frame read as inFrame says so.
	in := &inFrame{buf: engine.GetBuffer()}
	if err := codec.Unmarshal(enc, in); err != nil || !in.open {
		t.Fatalf("open frame as inFrame: open=%v err=%v", in.open, err)
	}
}

// TestFrameCodecRejectsGarbage feeds truncated and random bytes to the
// decoder: errors, never panics.
func TestFrameCodecRejectsGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(testSeed(t)), 1))
	codec := encoding.GetCodecV2(codecName)
	good, err := proto.Marshal(&weirv1.ExchangeFrame{Data: []byte("hello, world"), Records: 2})
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(good) {
		in := &inFrame{buf: engine.GetBuffer()}
		err := codec.Unmarshal(pieces(rng, good[:n]), in)
		if n > 0 && err == nil && n != 2+len("hello, world") {
			t.Errorf("truncated to %d bytes: no error", n)
		}
	}
	for range 2000 {
		junk := make([]byte, rng.IntN(64))
		for i := range junk {
			junk[i] = byte(rng.Uint32())
		}
		in := &inFrame{buf: engine.GetBuffer()}
		_ = codec.Unmarshal(pieces(rng, junk), in) // must not panic
	}
}
