package seqcheck

import (
	"testing"
)

// FuzzParseJSON parses arbitrary output lines: what parses must print back
// as the same line (the format is exactly AppendJSON's).
func FuzzParseJSON(f *testing.F) {
	f.Add(AppendJSON(nil, Output{Key: 3, Seq: 17}))
	f.Add(AppendJSON(nil, Output{Key: -1, Seq: 5, Expected: 4}))
	f.Add([]byte(`{"key":1,"seq":2,"expected":0}`))
	f.Add([]byte(`{"key":99999999999999999999,"seq":1}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		o, ok := parseJSON(line)
		if !ok {
			return
		}
		if again, ok := parseJSON(AppendJSON(nil, o)); !ok || again != o {
			t.Fatalf("%q parsed as %+v, which prints as %q", line, o, AppendJSON(nil, o))
		}
	})
}

// FuzzCodecs decodes arbitrary records and outputs.
func FuzzCodecs(f *testing.F) {
	f.Add(RecordCodec{}.Append(nil, Record{Key: 1, Seq: 2}))
	f.Add(OutputCodec{}.Append(nil, Output{Key: 1, Seq: 2, Expected: 3}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, err := (RecordCodec{}).Decode(data); err == nil {
			if again, err := (RecordCodec{}).Decode(RecordCodec{}.Append(nil, r)); err != nil || again != r {
				t.Fatalf("record %+v: round trip %+v, %v", r, again, err)
			}
		}
		if o, err := (OutputCodec{}).Decode(data); err == nil {
			if again, err := (OutputCodec{}).Decode(OutputCodec{}.Append(nil, o)); err != nil || again != o {
				t.Fatalf("output %+v: round trip %+v, %v", o, again, err)
			}
		}
	})
}
