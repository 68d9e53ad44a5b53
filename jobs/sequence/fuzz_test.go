package sequence

import "testing"

// FuzzCodecs: the event codec refuses what it did not write, never
// panics, and round-trips what it did.
func FuzzCodecs(f *testing.F) {
	f.Add(EventCodec{}.Append(nil, Event{User: 7, Type: 'B', Time: 1234}))
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := EventCodec{}.Decode(b)
		if err != nil {
			return
		}
		again, err := EventCodec{}.Decode(EventCodec{}.Append(nil, e))
		if err != nil || again != e {
			t.Fatalf("round trip of %+v: %+v, %v", e, again, err)
		}
	})
}
