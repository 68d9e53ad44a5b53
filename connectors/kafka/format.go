package kafka

import (
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/runtime"
)

// Decoder turns a consumed record into the user's type. The record and its
// slices are only valid during the call: copy what is kept.
type Decoder[T any] func(r *kgo.Record) (T, error)

// JSON decodes each record value as one JSON document into T with
// encoding/json (reflection: fine for thousands of records per second per
// core; a hand-written Decoder is faster).
func JSON[T any]() Decoder[T] {
	return func(r *kgo.Record) (T, error) {
		var v T
		err := json.Unmarshal(r.Value, &v)
		return v, err
	}
}

// CSV splits each record value into comma-separated fields and hands them
// to parse. Values without a double quote are split in place without
// allocating; quoted values go through encoding/csv.
func CSV[T any](parse func(fields [][]byte) (T, error)) Decoder[T] {
	var fields [][]byte
	return func(r *kgo.Record) (T, error) {
		v := bytes.TrimRight(r.Value, "\r\n")
		if bytes.IndexByte(v, '"') >= 0 {
			rd := csv.NewReader(bytes.NewReader(v))
			rec, err := rd.Read()
			if err != nil {
				var zero T
				return zero, fmt.Errorf("csv: %w", err)
			}
			fields = fields[:0]
			for _, f := range rec {
				fields = append(fields, []byte(f))
			}
			return parse(fields)
		}
		fields = fields[:0]
		for {
			i := bytes.IndexByte(v, ',')
			if i < 0 {
				fields = append(fields, v)
				break
			}
			fields = append(fields, v[:i])
			v = v[i+1:]
		}
		return parse(fields)
	}
}

// Raw hands each record to fn unparsed (for bytes, text, or a custom
// binary format).
func Raw[T any](fn func(key, value []byte) (T, error)) Decoder[T] {
	return func(r *kgo.Record) (T, error) { return fn(r.Key, r.Value) }
}

// CSVInt and CSVFloat parse one CSV field, naming it in errors.
func CSVInt(fields [][]byte, i int, name string) (int64, error) {
	if i >= len(fields) {
		return 0, fmt.Errorf("csv: field %d (%s) missing: %d fields", i+1, name, len(fields))
	}
	v, err := strconv.ParseInt(string(bytes.TrimSpace(fields[i])), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("csv: field %d (%s): %w", i+1, name, err)
	}
	return v, nil
}

// CSVFloat parses field i as a float64.
func CSVFloat(fields [][]byte, i int, name string) (float64, error) {
	if i >= len(fields) {
		return 0, fmt.Errorf("csv: field %d (%s) missing: %d fields", i+1, name, len(fields))
	}
	v, err := strconv.ParseFloat(string(bytes.TrimSpace(fields[i])), 64)
	if err != nil {
		return 0, fmt.Errorf("csv: field %d (%s): %w", i+1, name, err)
	}
	return v, nil
}

// DeadLetter is a record the source could not decode: where it was and
// why. Value is the raw record value, cut to MaxDeadLetterValue bytes.
type DeadLetter struct {
	Topic     string
	Partition int32
	Offset    int64
	Reason    string
	Value     []byte
}

// MaxDeadLetterValue bounds the bytes of a bad record kept in its dead
// letter, so a flood of huge bad records cannot blow up memory.
const MaxDeadLetterValue = 4096

// DeadLetterCodec serialises dead letters for the exchange.
type DeadLetterCodec struct{}

func (DeadLetterCodec) Append(dst []byte, d DeadLetter) []byte {
	dst = binary.AppendVarint(dst, int64(len(d.Topic)))
	dst = append(dst, d.Topic...)
	dst = binary.AppendVarint(dst, int64(d.Partition))
	dst = binary.AppendVarint(dst, d.Offset)
	dst = binary.AppendVarint(dst, int64(len(d.Reason)))
	dst = append(dst, d.Reason...)
	dst = binary.AppendVarint(dst, int64(len(d.Value)))
	return append(dst, d.Value...)
}

func (DeadLetterCodec) Decode(src []byte) (DeadLetter, error) {
	r := runtime.NewReader(src)
	d := DeadLetter{Topic: string(r.Bytes()), Partition: int32(r.Varint()), Offset: r.Varint(), Reason: string(r.Bytes())}
	if v := r.Bytes(); len(v) > 0 {
		d.Value = append([]byte(nil), v...)
	}
	if err := r.Done(); err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter: %w", err)
	}
	return d, nil
}

// AppendJSON appends d as one JSON object (the value as a string when it
// is valid UTF-8 text, which encoding/json escapes).
func (d DeadLetter) AppendJSON(dst []byte) []byte {
	b, err := json.Marshal(struct {
		Topic     string `json:"topic"`
		Partition int32  `json:"partition"`
		Offset    int64  `json:"offset"`
		Reason    string `json:"reason"`
		Value     string `json:"value"`
	}{d.Topic, d.Partition, d.Offset, d.Reason, string(d.Value)})
	if err != nil { // cannot happen for these field types
		return append(dst, `{}`...)
	}
	return append(dst, b...)
}
