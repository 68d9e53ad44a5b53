package exchange

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime/engine"
)

// FuzzFrameCodec decodes arbitrary bytes, split in pieces as the transport
// delivers them, as an ExchangeFrame: it must not panic, and what the
// generated protobuf code accepts the codec must read the same way.
func FuzzFrameCodec(f *testing.F) {
	c := frameCodec{}
	for _, fr := range []*weirv1.ExchangeFrame{
		{Data: []byte("records"), Records: 3},
		{Event: weirv1.EventKind_EVENT_KIND_TASK_EVENT, EventValue: 7, TaskEvent: uint32(engine.BufferBarrier)},
		{Event: weirv1.EventKind_EVENT_KIND_END_OF_PARTITION},
		{Open: &weirv1.ChannelOpen{}},
	} {
		b, err := proto.Marshal(fr)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint64(1))
	}
	f.Add([]byte{0x12, 0xff, 0xff, 0xff, 0xff, 0x0f}, uint64(2))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		in := &inFrame{buf: engine.GetBuffer()}
		defer engine.PutBuffer(in.buf)
		err := c.Unmarshal(pieces(rand.New(rand.NewPCG(seed, 0)), data), in)
		var want weirv1.ExchangeFrame
		if perr := proto.Unmarshal(data, &want); perr != nil || err != nil {
			return
		}
		if !bytes.Equal(in.buf.Data, want.GetData()) || in.buf.Records != int(want.GetRecords()) ||
			in.event != want.GetEvent() || in.value != want.GetEventValue() || uint32(in.taskEvent) != want.GetTaskEvent() || in.open != (want.GetOpen() != nil) {
			t.Fatalf("codec read data %d bytes, records %d, event %v/%d, open %v; proto: %d, %d, %v/%d, %v",
				len(in.buf.Data), in.buf.Records, in.event, in.value, in.open,
				len(want.GetData()), want.GetRecords(), want.GetEvent(), want.GetEventValue(), want.GetOpen() != nil)
		}
	})
}
