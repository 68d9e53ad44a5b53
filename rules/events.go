package rules

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"
)

// DefaultTimeField is the event field that carries the event time.
const DefaultTimeField = "ts"

// maxLineBytes bounds one JSON line.
const maxLineBytes = 1 << 20

// ReadEvents reads JSON-lines events. Each line is an object with the
// time field: Unix milliseconds, or an RFC 3339 string. The field is
// replaced by its Unix milliseconds, which is what expressions see as
// e.<timeField> and ts. Blank lines are skipped. Every bad line is
// reported (the first ten), with its number, and no event is returned:
// a partial run would report alerts for a different input.
func ReadEvents(r io.Reader, name, timeField string) ([]Event, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	var evs []Event
	var errs []error
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		ev, err := decodeEvent(b, timeField)
		if err != nil {
			if len(errs) < 10 {
				errs = append(errs, fmt.Errorf("%s:%d: %w", name, line, err))
			}
			continue
		}
		ev.Line = line
		evs = append(evs, ev)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return evs, nil
}

// DecodeEvent reads one JSON-lines event as ReadEvents does: an object
// with the time field (Unix ms or RFC 3339), which is replaced by its Unix
// milliseconds. The error is the reason, without the line.
func DecodeEvent(b []byte, timeField string) (Event, error) { return decodeEvent(b, timeField) }

func decodeEvent(b []byte, timeField string) (Event, error) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return Event{}, errors.New("an event must be a JSON object")
		case errors.As(err, &se):
			return Event{}, fmt.Errorf("not JSON: %v", se)
		}
		return Event{}, fmt.Errorf("not JSON: %w", err)
	}
	if m == nil {
		return Event{}, errors.New("an event must be a JSON object")
	}
	ts, err := eventTime(m, timeField)
	if err != nil {
		return Event{}, err
	}
	m[timeField] = float64(ts)
	return Event{Fields: m, TS: ts}, nil
}

// EventTime reads the time field of fields as DecodeEvent does: Unix ms
// (a whole number) or an RFC 3339 string.
func EventTime(fields map[string]any, field string) (int64, error) { return eventTime(fields, field) }

// eventTime reads the time field: Unix ms (a whole number) or RFC 3339.
func eventTime(m map[string]any, field string) (int64, error) {
	v, ok := m[field]
	if !ok {
		return 0, fmt.Errorf("no time field %q", field)
	}
	switch x := v.(type) {
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
			return 0, fmt.Errorf("time field %q: %v is not a whole number of Unix milliseconds", field, x)
		}
		return int64(x), nil
	case string:
		t, err := time.Parse(time.RFC3339Nano, x)
		if err != nil {
			return 0, fmt.Errorf("time field %q: %q is not RFC 3339 (2026-11-30T07:00:00Z) or Unix milliseconds", field, x)
		}
		return t.UnixMilli(), nil
	}
	return 0, fmt.Errorf("time field %q: a %T, want Unix milliseconds or an RFC 3339 string", field, v)
}

// runInlineTests runs each of r's tests: the events (an event without
// "ts" is at its position in milliseconds), then the alerts compared
// with the expectations in order.
func runInlineTests(r *Rule, lists map[string]List) error {
	s := r.spec
	if len(s.Tests) == 0 {
		return nil
	}
	// A paused or shadow rule is tested as the active rule it will become.
	tr := *r
	tr.State = "active"
	set := &Set{Rules: []*Rule{&tr}, Lists: lists}
	for ti, t := range s.Tests {
		line := s.lineOf("tests", fmt.Sprint(ti))
		name := fmt.Sprintf("tests[%d]", ti)
		if t.Name != "" {
			name += " (" + t.Name + ")"
		}
		evs := make([]Event, len(t.Events))
		for i, f := range t.Events {
			f = normValue(f).(map[string]any)
			if f == nil {
				f = map[string]any{}
			}
			ts := int64(i)
			if _, ok := f[DefaultTimeField]; ok {
				var err error
				if ts, err = eventTime(f, DefaultTimeField); err != nil {
					return s.errorf(s.lineOf("tests", fmt.Sprint(ti), "events", fmt.Sprint(i)), "%s: event %d: %v", name, i+1, err)
				}
			}
			f[DefaultTimeField] = float64(ts)
			evs[i] = Event{Fields: f, TS: ts}
		}
		alerts, _, errs := Run(set, evs)
		if len(errs) > 0 {
			return s.errorf(line, "%s: %v", name, errors.Join(errs...))
		}
		if len(alerts) != len(t.Expect) {
			return s.errorf(line, "%s: want %d alerts, got %d%s", name, len(t.Expect), len(alerts), describe(alerts))
		}
		for j, want := range t.Expect {
			for k, wv := range want {
				got, ok := alertValue(&alerts[j], k)
				if !ok {
					return s.errorf(line, "%s: alert %d has no key field, evidence field, action or time %q%s", name, j+1, k, describe(alerts[j:j+1]))
				}
				if !reflect.DeepEqual(normValue(wv), normValue(got)) {
					return s.errorf(line, "%s: alert %d: %s is %v, want %v", name, j+1, k, got, wv)
				}
			}
		}
	}
	return nil
}

func alertValue(a *Alert, k string) (any, bool) {
	switch k {
	case "time":
		return float64(a.Time), true
	case "action":
		return a.Action, true
	case "timedOut":
		return a.TimedOut, true
	}
	if v, ok := a.Key[k]; ok {
		return v, true
	}
	v, ok := a.Fields[k]
	return v, ok
}

func describe(alerts []Alert) string {
	if len(alerts) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(": ")
	for i, a := range slices.Clone(alerts) {
		if i == 3 {
			fmt.Fprintf(&b, " and %d more", len(alerts)-3)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		j, _ := json.Marshal(a)
		b.Write(j)
	}
	return b.String()
}
