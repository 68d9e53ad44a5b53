package window

import (
	"bytes"
	"testing"

	"github.com/weirstream/weir/runtime"
)

// FuzzCodecs decodes arbitrary bytes with the window codecs, as a restore
// of a damaged state file would: they must fail cleanly or give a value
// that encodes back to the same bytes.
func FuzzCodecs(f *testing.F) {
	f.Add(Codec{}.Append(nil, Window{Start: -10, End: 20}))
	f.Add(SliceCodec[string]{Elem: runtime.StringCodec{}}.Append(nil, []string{"a", "bc"}))
	f.Add(MeanCodec{}.Append(nil, Mean{Sum: 2.5, Count: 2}))
	f.Add(ExtremeCodec[int64]{}.Append(nil, Extreme[int64]{V: 7, Set: true}))
	f.Add(sessionsCodec{}.Append(nil, []mapped{{Window{0, 30}, Window{0, 10}}, {Window{40, 50}, Window{40, 50}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		roundTrip(t, "window", Codec{}, b)
		roundTrip(t, "slice", SliceCodec[string]{Elem: runtime.StringCodec{}}, b)
		roundTrip(t, "mean", MeanCodec{}, b)
		roundTrip(t, "extreme", ExtremeCodec[int64]{}, b)
		roundTrip(t, "float", NumberCodec[float64]{}, b)
		roundTrip(t, "sessions", sessionsCodec{}, b)
	})
}

func roundTrip[T any](t *testing.T, name string, c runtime.Codec[T], b []byte) {
	v, err := c.Decode(b)
	if err != nil {
		return
	}
	again, err := c.Decode(c.Append(nil, v))
	if err != nil {
		t.Fatalf("%s: %x decoded to %v, whose encoding does not decode: %v", name, b, v, err)
	}
	if enc1, enc2 := c.Append(nil, v), c.Append(nil, again); !bytes.Equal(enc1, enc2) {
		t.Fatalf("%s: %x: %v and %v encode differently", name, b, v, again)
	}
}
