package anomaly

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

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

// fieldNames names the field bits, in bit order.
var fieldNames = [...]string{"user", "type", "ip", "account", "card", "city", "amount"}

// present is the set of fields e has.
func (e *Event) present() field {
	var f field
	for k, ok := range [...]bool{e.User != "", e.Type != "", e.IP != "", e.Account != "", e.Card != "", e.City != "", e.HasAmount} {
		if ok {
			f |= 1 << k
		}
	}
	return f
}

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
	j, ok := scanFlat(text)
	if !ok {
		var err error
		if j, err = decodeJSON(text); err != nil {
			return Event{}, err
		}
	}
	return checkEvent(j, need)
}

// decodeJSON is the general path: encoding/json, for lines scanFlat
// leaves to it (escapes, nesting, odd values) and for their errors.
func decodeJSON(text []byte) (jsonEvent, error) {
	var j jsonEvent
	d := json.NewDecoder(bytes.NewReader(text))
	if err := d.Decode(&j); err != nil {
		return j, fmt.Errorf("invalid JSON: %w", err)
	}
	if d.More() {
		return j, errors.New("invalid JSON: more than one value on the line")
	}
	return j, nil
}

func checkEvent(j jsonEvent, need field) (Event, error) {
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
	if missing := need &^ e.present(); missing != 0 {
		for k, name := range fieldNames {
			if missing&(1<<k) != 0 {
				return e, fmt.Errorf("%q is missing", name)
			}
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
	ms, ok := plainInt(raw)
	if !ok {
		var err error
		if ms, err = strconv.ParseInt(string(raw), 10, 64); err != nil {
			ms = runtime.NoTimestamp
		}
	}
	if ms == runtime.NoTimestamp || ms == runtime.MaxWatermark {
		return 0, fmt.Errorf(`"time" %s is neither Unix milliseconds nor an RFC 3339 string`, raw)
	}
	return ms, nil
}

// plainInt reads up to 18 decimal digits with an optional minus sign
// without allocating; longer or other numbers go to strconv.
func plainInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
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

// scanFlat parses the common line, a flat JSON object whose values are
// plain strings (no escapes), numbers, true, false or null, without
// reflection: about ten times faster than encoding/json. It reports false
// for anything else, which decodeJSON then reads (or rejects) the same
// way it always would, so both paths give the same events.
func scanFlat(b []byte) (jsonEvent, bool) {
	var j jsonEvent
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return j, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return j, skipSpace(b, i+1) == len(b)
	}
	for {
		key, n, ok := plainString(b, i)
		if !ok {
			return j, false
		}
		i = skipSpace(b, n)
		if i >= len(b) || b[i] != ':' {
			return j, false
		}
		i = skipSpace(b, i+1)
		start := i
		isString := i < len(b) && b[i] == '"'
		var str []byte
		if isString {
			if str, i, ok = plainString(b, i); !ok {
				return j, false
			}
		} else {
			for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ' ' && b[i] != '\t' && b[i] != '\r' && b[i] != '\n' {
				i++
			}
		}
		raw := b[start:i]
		if !isString && !json.Valid(raw) {
			return j, false
		}
		if !setField(&j, key, raw, str, isString) {
			return j, false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return j, false
		}
		if b[i] == '}' {
			return j, skipSpace(b, i+1) == len(b)
		}
		if b[i] != ',' {
			return j, false
		}
		i = skipSpace(b, i+1)
	}
}

// setField stores one member; false leaves the line to encoding/json.
func setField(j *jsonEvent, key, raw, str []byte, isString bool) bool {
	var dst *string
	switch string(key) {
	case "time":
		j.Time = json.RawMessage(raw)
		return true
	case "amount":
		if isString {
			return false // encoding/json's error says why
		}
		if string(raw) == "null" {
			j.Amount = nil
			return true
		}
		v, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return false
		}
		j.Amount = &v
		return true
	case "user":
		dst = &j.User
	case "type":
		dst = &j.Type
	case "ip":
		dst = &j.IP
	case "status":
		dst = &j.Status
	case "account":
		dst = &j.Account
	case "card":
		dst = &j.Card
	case "device":
		dst = &j.Device
	case "city":
		dst = &j.City
	default:
		// encoding/json matches names without regard to case ("User"
		// sets user): leave those to it; other members are ignored.
		for _, name := range [...]string{"time", "amount", "user", "type", "ip", "status", "account", "card", "device", "city"} {
			if bytes.EqualFold(key, []byte(name)) {
				return false
			}
		}
		return true
	}
	switch {
	case isString:
		*dst = string(str)
	case string(raw) == "null":
	default:
		return false
	}
	return true
}

// plainString reads a JSON string at b[i] without escapes or control
// characters, in valid UTF-8, and returns its contents and the index after
// it.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for k := i + 1; k < len(b); k++ {
		switch c := b[k]; {
		case c == '"':
			s := b[i+1 : k]
			return s, k + 1, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, i, false
		}
	}
	return nil, i, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}
