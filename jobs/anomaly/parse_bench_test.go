package anomaly

// BenchmarkParseEventLine parses a typical line (the fast path).

import "testing"

func BenchmarkParseEventLine(b *testing.B) {
	line := []byte(`{"time":1772000000123,"user":"u12345","type":"login","status":"failed","ip":"10.1.2.1"}`)
	for b.Loop() {
		if _, err := parseEvent(line, fUser|fType); err != nil {
			b.Fatal(err)
		}
	}
}
