package rulesjob

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/runtime"
)

// Record is one parsed input event: its fields as JSON types (what rule
// expressions see as e), its event time, and where it was read.
type Record struct {
	Fields map[string]any
	TS     int64
	Source string
	Line   int64
}

// Text is the record as a JSON line, for a dead letter.
func (r Record) Text() string {
	b, err := json.Marshal(r.Fields)
	if err != nil {
		return fmt.Sprintf("%v", r.Fields)
	}
	return string(b)
}

// RecordCodec serialises records for the exchange: the fields travel as
// JSON, so they decode to the same types the parser produced.
type RecordCodec struct{}

func (RecordCodec) Append(dst []byte, r Record) []byte {
	dst = runtime.Int64Codec{}.Append(dst, r.TS)
	dst = appendBytes(dst, []byte(r.Source))
	dst = runtime.Int64Codec{}.Append(dst, r.Line)
	b, err := json.Marshal(r.Fields)
	if err != nil {
		// Parsed from JSON or typed by the schema: always encodable.
		b = []byte("{}")
	}
	return appendBytes(dst, b)
}

func (RecordCodec) Decode(src []byte) (Record, error) {
	rd := runtime.NewReader(src)
	r := Record{TS: rd.Varint(), Source: string(rd.Bytes()), Line: rd.Varint()}
	rest := rd.Bytes()
	if err := rd.Done(); err != nil {
		return Record{}, fmt.Errorf("record: %w", err)
	}
	if err := json.Unmarshal(rest, &r.Fields); err != nil || r.Fields == nil {
		return Record{}, fmt.Errorf("record fields: %w", runtime.ErrCorrupt)
	}
	return r, nil
}

func appendBytes(dst, b []byte) []byte {
	dst = runtime.Int64Codec{}.Append(dst, int64(len(b)))
	return append(dst, b...)
}

// Routed is a record on its way to the rules of one key: Key is the key's
// signature (its field names) and the record's values of those fields, so
// that records with the same key for the same rules meet in one subtask.
type Routed struct {
	Key string
	Rec Record
}

// RoutedCodec serialises routed records.
type RoutedCodec struct{}

func (RoutedCodec) Append(dst []byte, r Routed) []byte {
	return appendBytes(appendBytes(dst, []byte(r.Key)), RecordCodec{}.Append(nil, r.Rec))
}

func (RoutedCodec) Decode(src []byte) (Routed, error) {
	rd := runtime.NewReader(src)
	k := string(rd.Bytes())
	b := rd.Bytes()
	if err := rd.Done(); err != nil {
		return Routed{}, fmt.Errorf("routed record: %w", err)
	}
	rec, err := RecordCodec{}.Decode(b)
	return Routed{Key: k, Rec: rec}, err
}

// recordsCodec serialises the records waiting at one timestamp.
type recordsCodec struct{}

func (recordsCodec) Append(dst []byte, rs []Record) []byte {
	dst = runtime.Int64Codec{}.Append(dst, int64(len(rs)))
	for _, r := range rs {
		dst = appendBytes(dst, RecordCodec{}.Append(nil, r))
	}
	return dst
}

func (recordsCodec) Decode(src []byte) ([]Record, error) {
	rd := runtime.NewReader(src)
	n := rd.Varint()
	if n < 0 || n > int64(len(src)) {
		return nil, fmt.Errorf("records: %w", runtime.ErrCorrupt)
	}
	rs := make([]Record, 0, n)
	for range n {
		r, err := RecordCodec{}.Decode(rd.Bytes())
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	if err := rd.Done(); err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	return rs, nil
}

// compareRecords orders records of one timestamp by where they were read,
// so every run evaluates them in the same order.
func compareRecords(a, b Record) int {
	return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Line, b.Line))
}

// fieldType is a schema field's type.
type fieldType uint8

const (
	typeString fieldType = iota
	typeNumber
	typeBool
	typeTime
)

var typeNames = map[string]fieldType{"string": typeString, "number": typeNumber, "bool": typeBool, "time": typeTime}

// schemaField is one declared field: its name, its type, and whether an
// event may lack it.
type schemaField struct {
	name     string
	typ      fieldType
	optional bool
}

// Schema is the declared shape of the input events.
type Schema struct {
	fields    []schemaField
	timeField string
}

// ParseSchema reads "name:type,name:type?" (types string, number, bool,
// time; a trailing ? makes the field optional). The time field is always
// required and holds Unix ms or RFC 3339, whatever type it is declared.
func ParseSchema(s, timeField string) (Schema, error) {
	sc := Schema{timeField: timeField}
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		name, typ, ok := strings.Cut(part, ":")
		name, typ = strings.TrimSpace(name), strings.TrimSpace(typ)
		f := schemaField{name: name}
		if f.optional = strings.HasSuffix(typ, "?"); f.optional {
			typ = strings.TrimSuffix(typ, "?")
		}
		t, known := typeNames[typ]
		if !ok || name == "" || !known {
			return Schema{}, fmt.Errorf("%q: want name:type with type string, number, bool or time (a trailing ? for an optional field)", part)
		}
		if seen[name] {
			return Schema{}, fmt.Errorf("field %q is declared twice", name)
		}
		seen[name] = true
		f.typ = t
		if name == timeField {
			f.typ, f.optional = typeTime, false
		}
		sc.fields = append(sc.fields, f)
	}
	return sc, nil
}

// Columns are the schema's fields, for a CSV header; the time field is
// one of them whether declared or not.
func (s Schema) columns() (required, optional []string) {
	hasTime := false
	for _, f := range s.fields {
		hasTime = hasTime || f.name == s.timeField
		if f.optional {
			optional = append(optional, f.name)
		} else {
			required = append(required, f.name)
		}
	}
	if !hasTime {
		required = append(required, s.timeField)
	}
	return required, optional
}

// check verifies a JSON event against the schema.
func (s Schema) check(m map[string]any) error {
	for _, f := range s.fields {
		if f.name == s.timeField {
			continue // DecodeEvent checked it
		}
		v, ok := m[f.name]
		if !ok || v == nil {
			if f.optional {
				continue
			}
			return fmt.Errorf("field %q is missing", f.name)
		}
		var good bool
		switch f.typ {
		case typeString:
			_, good = v.(string)
		case typeNumber:
			_, good = v.(float64)
		case typeBool:
			_, good = v.(bool)
		case typeTime:
			_, err := rules.EventTime(m, f.name)
			good = err == nil
		}
		if !good {
			return fmt.Errorf("field %q is %s, the schema says %s", f.name, jsonType(v), typeName(f.typ))
		}
	}
	return nil
}

func typeName(t fieldType) string {
	for n, v := range typeNames {
		if v == t {
			return n
		}
	}
	return "?"
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}

// jsonParser parses JSON lines with the schema.
type jsonParser struct{ schema Schema }

func (p jsonParser) Parse(l file.Line) (Record, error) {
	r, err := p.parse([]byte(l.Text))
	r.Source, r.Line = l.Path, l.Number
	return r, err
}

func (p jsonParser) parse(b []byte) (Record, error) {
	ev, err := rules.DecodeEvent(b, p.schema.timeField)
	if err != nil {
		return Record{}, err
	}
	if err := p.schema.check(ev.Fields); err != nil {
		return Record{}, err
	}
	return Record{Fields: ev.Fields, TS: ev.TS}, nil
}

// newCSVParser parses CSV rows whose header names the schema's fields;
// each value is converted to its declared type (an empty optional field
// is absent).
func newCSVParser(s Schema) file.Parser[Record] {
	req, opt := s.columns()
	names := append(append([]string(nil), req...), opt...)
	types := make([]fieldType, len(names))
	optional := make([]bool, len(names))
	for i, n := range names {
		optional[i] = i >= len(req)
		for _, f := range s.fields {
			if f.name == n {
				types[i] = f.typ
			}
		}
		if n == s.timeField {
			types[i] = typeTime
		}
	}
	c := &file.CSV[Record]{Columns: req, Optional: opt}
	c.Decode = func(fs []string) (Record, error) {
		m := make(map[string]any, len(fs))
		for i, raw := range fs {
			v := strings.TrimSpace(raw)
			if v == "" && (optional[i] || types[i] == typeString) {
				if types[i] == typeString && !optional[i] {
					m[names[i]] = ""
				}
				continue
			}
			switch types[i] {
			case typeString:
				m[names[i]] = v
			case typeNumber:
				f, err := strconv.ParseFloat(v, 64)
				if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
					return Record{}, fmt.Errorf("field %q: %q is not a finite number", names[i], v)
				}
				m[names[i]] = f
			case typeBool:
				b, err := strconv.ParseBool(v)
				if err != nil {
					return Record{}, fmt.Errorf("field %q: %q is not true or false", names[i], v)
				}
				m[names[i]] = b
			case typeTime:
				if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
					m[names[i]] = float64(ms)
				} else {
					m[names[i]] = v
				}
			}
		}
		ts, err := rules.EventTime(m, s.timeField)
		if err != nil {
			return Record{}, err
		}
		m[s.timeField] = float64(ts)
		return Record{Fields: m, TS: ts}, nil
	}
	return csvParser{c}
}

type csvParser struct{ c *file.CSV[Record] }

func (p csvParser) Parse(l file.Line) (Record, error) {
	r, err := p.c.Parse(l)
	r.Source, r.Line = l.Path, l.Number
	return r, err
}

// keySig is the signature of a rule's key: its field names.
func keySig(fields []string) string { return strings.Join(fields, "\x1f") }

// appendKey appends sig and the record's values of its fields: the string
// a routed record is keyed by. A missing field is encoded as null; the
// rule engine refuses such an event with the reason.
func appendKey(dst []byte, sig string, fields []string, r Record) []byte {
	dst = append(dst, sig...)
	for _, f := range fields {
		dst = append(dst, 0)
		switch v := r.Fields[f].(type) {
		case string:
			dst = strconv.AppendQuote(append(dst, 's'), v)
		case float64:
			dst = strconv.AppendFloat(append(dst, 'n'), v, 'g', -1, 64)
		case bool:
			dst = strconv.AppendBool(append(dst, 'b'), v)
		default:
			dst = append(dst, 'x')
		}
	}
	return dst
}

// sigOf is the signature part of a routed key.
func sigOf(key string) string {
	sig, _, _ := strings.Cut(key, "\x00")
	return sig
}
