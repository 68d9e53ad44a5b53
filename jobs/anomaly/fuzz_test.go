package anomaly

import "testing"

// FuzzParseEvent feeds arbitrary lines to the event parser: it must not
// panic, and what it accepts must survive the codec unchanged.
func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{
		`{"time":"2026-03-01T10:00:00Z","user":"u1","type":"transaction","amount":12}`,
		`{"time":1772359200000,"card":"c","city":"Paris","device":"d"}`,
		`{"time":"x"}`, `[]`, `{"time":1,"amount":1e400}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, err := eventParser{need: fCity}.Parse(lineOf(line))
		if err != nil {
			return
		}
		back, err := EventCodec{}.Decode(EventCodec{}.Append(nil, e))
		if err != nil || back != e {
			t.Fatalf("%q: codec round trip %+v, %v; want %+v", line, back, err, e)
		}
	})
}
