package anomaly

import (
	"fmt"
	"strconv"
	"time"

	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/runtime"
)

// Alert is what a detector raises: which detector, for which key, at what
// event time, and the evidence, as JSON object members
// (`"amount":9200,"average":310`).
type Alert struct {
	Detector string
	Key      string
	Time     int64 // Unix ms
	Evidence string
}

// AppendJSON appends a as one JSON object without a newline:
// {"detector":...,"key":...,"time":"2026-03-01T10:00:00.000Z","time_ms":...,<evidence>}.
func (a Alert) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"detector":`...)
	dst = file.AppendJSONString(dst, a.Detector)
	dst = append(dst, `,"key":`...)
	dst = file.AppendJSONString(dst, a.Key)
	dst = append(dst, `,"time":"`...)
	dst = time.UnixMilli(a.Time).UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	dst = append(dst, `","time_ms":`...)
	dst = strconv.AppendInt(dst, a.Time, 10)
	if a.Evidence != "" {
		dst = append(dst, ',')
		dst = append(dst, a.Evidence...)
	}
	return append(dst, '}')
}

// String is the alert's JSON line, as the jobs print it.
func (a Alert) String() string { return string(a.AppendJSON(nil)) }

// AlertCodec serialises alerts.
type AlertCodec struct{}

func (AlertCodec) Append(dst []byte, a Alert) []byte {
	dst = appendString(dst, a.Detector)
	dst = appendString(dst, a.Key)
	dst = binary64(dst, a.Time)
	return appendString(dst, a.Evidence)
}

func (AlertCodec) Decode(src []byte) (Alert, error) {
	r := runtime.NewReader(src)
	a := Alert{Detector: string(r.Bytes()), Key: string(r.Bytes()), Time: r.Varint(), Evidence: string(r.Bytes())}
	if err := r.Done(); err != nil {
		return Alert{}, fmt.Errorf("alert: %w", err)
	}
	return a, nil
}

// evidence builds the JSON members of an alert's evidence.
type evidence []byte

func (e evidence) str(name, v string) evidence {
	e = e.sep(name)
	return file.AppendJSONString(e, v)
}

func (e evidence) num(name string, v float64) evidence {
	return strconv.AppendFloat(e.sep(name), v, 'g', -1, 64)
}

func (e evidence) int(name string, v int64) evidence {
	return strconv.AppendInt(e.sep(name), v, 10)
}

func (e evidence) sep(name string) evidence {
	if len(e) > 0 {
		e = append(e, ',')
	}
	e = file.AppendJSONString(e, name)
	return append(e, ':')
}
