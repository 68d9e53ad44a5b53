package runtime

import (
	"math"
	"testing"
)

// FuzzCodecs decodes arbitrary bytes with every built-in record codec and
// a Reader; what decodes must encode and decode to the same value.
func FuzzCodecs(f *testing.F) {
	f.Add(Int64Codec{}.Append(nil, -42))
	f.Add(Float64Codec{}.Append(nil, 3.5))
	f.Add([]byte{1})
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		if v, err := (Int64Codec{}).Decode(data); err == nil {
			if w, err := (Int64Codec{}).Decode(Int64Codec{}.Append(nil, v)); err != nil || w != v {
				t.Fatalf("int64 %d: round trip gave %d, %v", v, w, err)
			}
		}
		if v, err := (BoolCodec{}).Decode(data); err == nil {
			if w, err := (BoolCodec{}).Decode(BoolCodec{}.Append(nil, v)); err != nil || w != v {
				t.Fatalf("bool %v: round trip gave %v, %v", v, w, err)
			}
		}
		if v, err := (Float64Codec{}).Decode(data); err == nil {
			w, err := Float64Codec{}.Decode(Float64Codec{}.Append(nil, v))
			if err != nil || math.Float64bits(w) != math.Float64bits(v) {
				t.Fatalf("float64 %v: round trip gave %v, %v", v, w, err)
			}
		}
		if v, _ := (StringCodec{}).Decode(data); v != string(data) {
			t.Fatalf("string %q decoded as %q", data, v)
		}
		// A Reader driven by the data itself: each byte picks the next
		// field, until an error.
		r := NewReader(data)
		for i := 0; i < len(data) && i < 64; i++ {
			switch data[i] % 3 {
			case 0:
				r.Varint()
			case 1:
				r.Float64()
			case 2:
				r.Bytes()
			}
		}
		_ = r.Done()
	})
}

// FuzzParams parses a --param argument and reads it with every getter.
func FuzzParams(f *testing.F) {
	for _, s := range []string{"count=10", "rate=1.5", "timeout=90s", "append=yes", "=x", "noequals", "k= 7 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		k, v, err := ParseParam(arg)
		if err != nil {
			return
		}
		if k == "" {
			t.Fatalf("ParseParam(%q) gave an empty key", arg)
		}
		p := NewDeclaredParams(map[string]string{k: v}, []string{k})
		p.SetSecret(k)
		p.String(k, "")
		p.Int(k, 0)
		p.Float(k, 0)
		p.Duration(k, 0)
		p.Bool(k, false)
		_ = p.CheckUnused()
	})
}
