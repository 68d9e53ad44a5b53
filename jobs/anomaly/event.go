package anomaly

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/runtime"
)

// Event is one JSON line of the seeds' jobs. Each job reads the fields it
// needs and requires them (see the jobs' field lists); the others may be
// absent.
type Event struct {
	Time    int64 // Unix ms
	User    string
	Type    string
	IP      string
	Status  string
	Account string
	Card    string
	Device  string
	City    string
	Amount  float64
	// HasAmount tells an absent amount from 0.
	HasAmount bool
	// Source and Line say where the event was read, for the evidence and
	// to order events with equal timestamps the same way in every run.
	Source string
	Line   int64
}

// jsonEvent is the wire form; time is a string or a number.
type jsonEvent struct {
	Time    json.RawMessage `json:"time"`
	User    string          `json:"user"`
	Type    string          `json:"type"`
	IP      string          `json:"ip"`
	Status  string          `json:"status"`
	Account string          `json:"account"`
	Card    string          `json:"card"`
	Device  string          `json:"device"`
	City    string          `json:"city"`
	Amount  *float64        `json:"amount"`
}

// field names the fields a job requires of every event.
type field uint8

const (
	fUser field = 1 << iota
	fType
	fIP
	fAccount
	fCard
	fCity
	fAmount
)

// eventParser parses JSON lines into events, requiring the fields in need.
type eventParser struct{ need field }

func (p eventParser) Parse(l file.Line) (Event, error) {
	e, err := parseEvent([]byte(l.Text), p.need)
	e.Source, e.Line = l.Path, l.Number
	if err == nil && p.need&fCity != 0 {
		err = knownCity(e)
	}
	return e, err
}

func parseEvent(text []byte, need field) (Event, error) {
	var j jsonEvent
	d := json.NewDecoder(bytes.NewReader(text))
	if err := d.Decode(&j); err != nil {
		return Event{}, fmt.Errorf("invalid JSON: %w", err)
	}
	if d.More() {
		return Event{}, errors.New("invalid JSON: more than one value on the line")
	}
	e := Event{User: j.User, Type: j.Type, IP: j.IP, Status: j.Status, Account: j.Account, Card: j.Card,
		Device: j.Device, City: j.City}
	if len(j.Time) == 0 || string(j.Time) == "null" {
		return e, errors.New(`"time" is missing`)
	}
	var err error
	if e.Time, err = parseTime(j.Time); err != nil {
		return e, err
	}
	if j.Amount != nil {
		if math.IsNaN(*j.Amount) || math.IsInf(*j.Amount, 0) {
			return e, errors.New(`"amount" is not a finite number`)
		}
		e.Amount, e.HasAmount = *j.Amount, true
	}
	for _, f := range []struct {
		bit   field
		name  string
		empty bool
	}{{fUser, "user", e.User == ""}, {fType, "type", e.Type == ""}, {fIP, "ip", e.IP == ""},
		{fAccount, "account", e.Account == ""}, {fCard, "card", e.Card == ""}, {fCity, "city", e.City == ""},
		{fAmount, "amount", !e.HasAmount}} {
		if need&f.bit != 0 && f.empty {
			return e, fmt.Errorf("%q is missing", f.name)
		}
	}
	return e, nil
}

// parseTime reads a JSON number of Unix milliseconds or a JSON string in
// RFC 3339.
func parseTime(raw json.RawMessage) (int64, error) {
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf(`"time": %w`, err)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, fmt.Errorf(`"time" %q is not RFC 3339`, s)
		}
		return t.UnixMilli(), nil
	}
	ms, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || ms == runtime.NoTimestamp || ms == runtime.MaxWatermark {
		return 0, fmt.Errorf(`"time" %s is neither Unix milliseconds nor an RFC 3339 string`, raw)
	}
	return ms, nil
}

// EventCodec serialises events.
type EventCodec struct{}

func (EventCodec) Append(dst []byte, e Event) []byte {
	dst = binary64(dst, e.Time)
	for _, s := range [...]string{e.User, e.Type, e.IP, e.Status, e.Account, e.Card, e.Device, e.City, e.Source} {
		dst = appendString(dst, s)
	}
	dst = runtime.Float64Codec{}.Append(dst, e.Amount)
	has := int64(0)
	if e.HasAmount {
		has = 1
	}
	dst = binary64(dst, has)
	return binary64(dst, e.Line)
}

func (EventCodec) Decode(src []byte) (Event, error) {
	r := runtime.NewReader(src)
	e := Event{Time: r.Varint()}
	for _, s := range [...]*string{&e.User, &e.Type, &e.IP, &e.Status, &e.Account, &e.Card, &e.Device, &e.City, &e.Source} {
		*s = string(r.Bytes())
	}
	e.Amount = r.Float64()
	has := r.Varint()
	e.HasAmount = has == 1
	e.Line = r.Varint()
	if err := r.Done(); err != nil || has > 1 || has < 0 {
		return Event{}, fmt.Errorf("event: %w", runtime.ErrCorrupt)
	}
	return e, nil
}

func binary64(dst []byte, v int64) []byte { return runtime.Int64Codec{}.Append(dst, v) }

func appendString(dst []byte, s string) []byte {
	dst = binary64(dst, int64(len(s)))
	return append(dst, s...)
}
