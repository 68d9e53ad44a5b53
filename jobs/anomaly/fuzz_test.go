package anomaly

import "testing"

// FuzzParseEvent feeds arbitrary lines to the event parser: it must not
// panic, and what it accepts must survive the codec unchanged.
func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{
		`{"time":"2026-03-01T10:00:00Z","user":"u1","type":"transaction","amount":12}`,
		`{"time":1772359200000,"card":"c","city":"Paris","device":"d"}`,
		`{"time":"x"}`, `[]`, `{"time":1,"amount":1e400}`, `{"User":"u","time":1}`, `{"time":1,"user":"a\u00e9"}`,
		` { "time" : 1 , "amount" : null , "city" : "Paris" } `, `{"time":1,"user":5}`, `{}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		// The fast path must read a line exactly as encoding/json does.
		if fast, ok := scanFlat([]byte(line)); ok {
			slow, err := decodeJSON([]byte(line))
			if err != nil || string(fast.Time) != string(slow.Time) || (fast.Amount == nil) != (slow.Amount == nil) ||
				fast.Amount != nil && *fast.Amount != *slow.Amount || fast.User != slow.User || fast.Type != slow.Type ||
				fast.IP != slow.IP || fast.Status != slow.Status || fast.Account != slow.Account || fast.Card != slow.Card ||
				fast.Device != slow.Device || fast.City != slow.City {
				t.Fatalf("%q: fast path %+v, encoding/json %+v (%v)", line, fast, slow, err)
			}
		}
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
