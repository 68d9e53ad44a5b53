package anomaly

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/jobs"
)

func TestParseEvent(t *testing.T) {
	for _, c := range []struct {
		line string
		need field
		want Event
		err  string
	}{
		{`{"time":"2026-03-01T10:00:00Z","user":"u1","type":"login","ip":"1.2.3.4","status":"failed"}`, fUser | fType,
			Event{Time: 1772359200000, User: "u1", Type: "login", IP: "1.2.3.4", Status: "failed"}, ""},
		{`{"time":1772359200123,"account":"a","amount":12.5}`, fAccount | fAmount,
			Event{Time: 1772359200123, Account: "a", Amount: 12.5, HasAmount: true}, ""},
		{`{"time":"2026-03-01T10:00:00.5+01:00","card":"c","city":"Paris"}`, fCard | fCity,
			Event{Time: 1772355600500, Card: "c", City: "Paris"}, ""},
		{`{"time":1,"amount":0}`, fAmount, Event{Time: 1, HasAmount: true}, ""},
		{`not json`, 0, Event{}, "invalid JSON"},
		{`{"time":1} {"time":2}`, 0, Event{}, "more than one value"},
		{`{"user":"u"}`, 0, Event{}, `"time" is missing`},
		{`{"time":null}`, 0, Event{}, `"time" is missing`},
		{`{"time":"yesterday"}`, 0, Event{}, `"time" "yesterday" is not RFC 3339`},
		{`{"time":1.5}`, 0, Event{}, "neither Unix milliseconds"},
		{`{"time":-9223372036854775808}`, 0, Event{}, "neither Unix milliseconds"},
		{`{"time":1,"type":"x"}`, fUser, Event{}, `"user" is missing`},
		{`{"time":1,"user":"u"}`, fAmount, Event{}, `"amount" is missing`},
		{`{"time":1,"amount":"12"}`, 0, Event{}, "invalid JSON"},
		{`{"time":1,"card":"c","city":"Atlantis"}`, fCard | fCity, Event{}, `unknown city "Atlantis"`},
	} {
		got, err := eventParser{need: c.need}.Parse(lineOf(c.line))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.line, err, c.err)
			}
			continue
		}
		c.want.Source, c.want.Line = "in.jsonl", 7
		if err != nil || got != c.want {
			t.Errorf("%s:\n got %+v, %v\nwant %+v", c.line, got, err, c.want)
		}
	}
}

func TestCodecsRoundTrip(t *testing.T) {
	e := Event{Time: -5, User: "ü", Type: "t", IP: "ip", Status: "s", Account: "a", Card: "c", Device: "d", City: "x",
		Amount: math.Pi, HasAmount: true, Source: "f", Line: 99}
	back, err := EventCodec{}.Decode(EventCodec{}.Append(nil, e))
	if err != nil || back != e {
		t.Fatalf("event: %+v, %v", back, err)
	}
	es, err := eventsCodec{}.Decode(eventsCodec{}.Append(nil, []Event{e, {Time: 1}}))
	if err != nil || len(es) != 2 || es[0] != e || es[1].Time != 1 {
		t.Fatalf("events: %+v, %v", es, err)
	}
	a := Alert{Detector: "d", Key: "k", Time: 1772359200000, Evidence: `"n":1`}
	if back, err := (AlertCodec{}).Decode(AlertCodec{}.Append(nil, a)); err != nil || back != a {
		t.Fatalf("alert: %+v, %v", back, err)
	}
	enc := EventCodec{}.Append(nil, e)
	for _, bad := range [][]byte{nil, enc[:len(enc)-1], append(enc, 0)} {
		if _, err := (EventCodec{}).Decode(bad); err == nil {
			t.Errorf("EventCodec accepted %x", bad)
		}
	}
}

func TestAlertJSON(t *testing.T) {
	a := Alert{Detector: Spike, Key: `u"1`, Time: 1772359200000,
		Evidence: string(evidence(nil).num("amount", 450).str("source", "a\nb").int("line", 6))}
	var m map[string]any
	if err := json.Unmarshal(a.AppendJSON(nil), &m); err != nil {
		t.Fatalf("%s: %v", a.AppendJSON(nil), err)
	}
	if m["detector"] != Spike || m["key"] != `u"1` || m["time"] != "2026-03-01T10:00:00.000Z" || m["amount"] != 450.0 ||
		m["source"] != "a\nb" || m["line"] != 6.0 || m["time_ms"] != 1772359200000.0 {
		t.Errorf("decoded %v", m)
	}
}

func TestDistance(t *testing.T) {
	hz, _ := cityOf("Hangzhou")
	bj, _ := cityOf(" beijing ")
	if d := distanceKm(hz, bj); d < 1100 || d > 1150 {
		t.Errorf("Hangzhou-Beijing %g km, want about 1125", d)
	}
	if d := distanceKm(hz, hz); d != 0 {
		t.Errorf("a city to itself: %g", d)
	}
}

func TestBadParameters(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		job    string
		params map[string]string
		want   string
	}{
		{AnomalyDetection, map[string]string{"output": dir}, "parameter input: required with source=files"},
		{AnomalyDetection, map[string]string{"source": "kafka"}, "parameter output is required"},
		{AnomalyDetection, map[string]string{"source": "filez", "output": dir}, `"filez" is not a source`},
		{AnomalyDetection, map[string]string{"input": dir, "output": dir, "sink": "print"}, `"print" is not a sink`},
		{TransferMonitor, map[string]string{"source": "kafka", "output": dir, "format": "csv"}, "the events are JSON objects"},
		{TransferMonitor, map[string]string{"source": "kafka", "output": dir, "idleness": "-1s"}, "must not be negative"},
		{ImpossibleTravel, map[string]string{"input": dir, "output": dir, "sink": "webhook"}, "needs webhook-url-env or webhook-url-file"},
		{AnomalyDetection, map[string]string{"input": "s3://b/x", "output": dir}, "must be a local file or directory"},
		{AnomalyDetection, map[string]string{"input": dir, "output": dir, "factor": "0"}, "must be above 0"},
		{AnomalyDetection, map[string]string{"input": dir, "output": dir, "login-slide": "2m"}, "slide no longer than the window"},
		{TransferMonitor, map[string]string{"input": dir, "output": dir, "low": "50000"}, "must be below high"},
		{ImpossibleTravel, map[string]string{"input": dir, "output": dir, "max-speed": "-1"}, "positive number of km/h"},
		{ImpossibleTravel, map[string]string{"input": dir, "output": dir, "out-of-orderness": "-1s"}, "must not be negative"},
	} {
		if _, err := jobs.Build(c.job, 1, c.params); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v, want %q", c.job, c.params, err, c.want)
		}
	}
}

func lineOf(text string) file.Line { return file.Line{Path: "in.jsonl", Number: 7, Text: text} }
