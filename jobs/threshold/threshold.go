// Package threshold is the job "threshold-alerts", after the PyFlink seed
// job: it reads CSV transactions (transaction_id,customer_id,amount) from
// a file or a directory and raises an alert for every transaction whose
// amount exceeds a threshold.
//
// The file source hands lines to the CSV parser; a row that does not parse
// goes, with its file, line and reason, to the dead-letter side output,
// which the exactly-once file sink writes under <output>/dead-letters.
// Alerts are printed as the seed prints them ("tx1002, cust2, 9200.0") and
// written by the same sink under <output> as JSON lines naming the rule,
// the key (the customer), the event time and the evidence. The rule is
// stateless, so the job needs no keyed state and no ordering: records out
// of order alert exactly as in order.
package threshold

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/weirstream/weir/connectors"
	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/connectors/filesink"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/statebackend/storage"
)

// Name is the job's registered name.
const Name = "threshold-alerts"

// Rule names the alerts' rule.
const Rule = "amount-above-threshold"

// DeadLetterDir is where, under output, the dead letters go.
const DeadLetterDir = "dead-letters"

// The operators' stable identifiers.
const (
	SourceUID     = "transactions"
	ParseUID      = "parse-transactions"
	AlertSinkUID  = "alert-files"
	DeadLetterUID = "dead-letter-files"
	PrintUID      = "print-alerts"
)

func init() {
	jobs.Register(jobs.Job{
		Name:        Name,
		Description: "CSV transactions (transaction_id,customer_id,amount) from files; alerts on amounts above `threshold`, printed and written exactly once; bad rows to dead letters",
		Params: []jobs.Param{
			{Name: "input", Type: jobs.Path, Required: true, Description: "a CSV file, or a directory whose files (not starting with . or _) are read in name order; each file starts with a header naming its columns: transaction_id, customer_id, amount, and optionally timestamp (Unix ms or RFC 3339)"},
			{Name: "output", Type: jobs.Path, Required: true, Description: "directory or s3://bucket/prefix URL for the alerts' part files; the dead letters go to its dead-letters/ subdirectory"},
			{Name: "threshold", Type: jobs.Float, Default: "8000", Description: "an amount above this raises an alert"},
			{Name: "monitor", Type: jobs.Duration, Default: "0s", Description: "0 reads the input and finishes; above 0, lists the input directory this often and reads new files, never finishing"},
			{Name: "append", Type: jobs.Bool, Default: "false", Description: "add to an output directory holding another job's part files (a fresh job refuses one otherwise)"},
		},
		Build: Build,
	})
}

// Transaction is one parsed row.
type Transaction struct {
	ID, Customer string
	Amount       float64
	// Time is the row's timestamp column in Unix ms, or
	// runtime.NoTimestamp when the file has none.
	Time int64
	// Source and Line say where the row came from, for the evidence.
	Source string
	Line   int64
}

// TransactionCodec serialises transactions for the exchange.
type TransactionCodec struct{}

func (TransactionCodec) Append(dst []byte, t Transaction) []byte {
	dst = appendString(dst, t.ID)
	dst = appendString(dst, t.Customer)
	dst = runtime.Float64Codec{}.Append(dst, t.Amount)
	dst = runtime.Int64Codec{}.Append(dst, t.Time)
	dst = appendString(dst, t.Source)
	return runtime.Int64Codec{}.Append(dst, t.Line)
}

func (TransactionCodec) Decode(src []byte) (Transaction, error) {
	r := runtime.NewReader(src)
	t := Transaction{ID: string(r.Bytes()), Customer: string(r.Bytes()), Amount: r.Float64(), Time: r.Varint(),
		Source: string(r.Bytes()), Line: r.Varint()}
	if err := r.Done(); err != nil {
		return Transaction{}, fmt.Errorf("transaction: %w", err)
	}
	return t, nil
}

func appendString(dst []byte, s string) []byte {
	dst = runtime.Int64Codec{}.Append(dst, int64(len(s)))
	return append(dst, s...)
}

// Alert is a transaction above the threshold.
type Alert struct {
	Transaction
	Threshold float64
}

// AlertCodec serialises alerts.
type AlertCodec struct{}

func (AlertCodec) Append(dst []byte, a Alert) []byte {
	dst = TransactionCodec{}.Append(dst, a.Transaction)
	return runtime.Float64Codec{}.Append(dst, a.Threshold)
}

func (AlertCodec) Decode(src []byte) (Alert, error) {
	if len(src) < 8 {
		return Alert{}, fmt.Errorf("alert: %w", runtime.ErrCorrupt)
	}
	t, err := TransactionCodec{}.Decode(src[:len(src)-8])
	if err != nil {
		return Alert{}, fmt.Errorf("alert: %w", err)
	}
	th, err := runtime.Float64Codec{}.Decode(src[len(src)-8:])
	return Alert{Transaction: t, Threshold: th}, err
}

// String renders the alert as the seed prints it: "tx1002, cust2, 9200.0".
func (a Alert) String() string {
	return a.ID + ", " + a.Customer + ", " + PythonFloat(a.Amount)
}

// PythonFloat formats v as Python's str(float) does: the shortest text
// that reads back as v, with ".0" on whole numbers, and exponent form
// below 1e-4 and from 1e16 on.
func PythonFloat(v float64) string {
	if a := math.Abs(v); a != 0 && (a < 1e-4 || a >= 1e16) {
		s := strconv.FormatFloat(v, 'e', -1, 64)
		// Go writes 1e+16 as Python does, and 1.5e-05 likewise.
		return s
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// AppendJSON appends a as one JSON object without a newline:
// {"rule":...,"key":customer,"event_time_ms":ms or null,"evidence":{...}}.
func AppendJSON(dst []byte, a Alert) []byte {
	dst = append(dst, `{"rule":"`+Rule+`","key":`...)
	dst = file.AppendJSONString(dst, a.Customer)
	dst = append(dst, `,"event_time_ms":`...)
	if a.Time == runtime.NoTimestamp {
		dst = append(dst, "null"...)
	} else {
		dst = strconv.AppendInt(dst, a.Time, 10)
	}
	dst = append(dst, `,"evidence":{"transaction_id":`...)
	dst = file.AppendJSONString(dst, a.ID)
	dst = append(dst, `,"amount":`...)
	dst = strconv.AppendFloat(dst, a.Amount, 'g', -1, 64)
	dst = append(dst, `,"threshold":`...)
	dst = strconv.AppendFloat(dst, a.Threshold, 'g', -1, 64)
	dst = append(dst, `,"source":`...)
	dst = file.AppendJSONString(dst, a.Source)
	dst = append(dst, `,"line":`...)
	dst = strconv.AppendInt(dst, a.Line, 10)
	return append(dst, "}}"...)
}

// NewParser returns the CSV parser of transaction rows.
func NewParser() *file.CSV[Transaction] {
	c := &file.CSV[Transaction]{
		Columns:  []string{"transaction_id", "customer_id", "amount"},
		Optional: []string{"timestamp"},
	}
	c.Decode = func(f []string) (Transaction, error) { return decode(f) }
	return c
}

// decode builds a transaction from transaction_id, customer_id, amount and
// timestamp. Source and Line are filled in by the caller.
func decode(f []string) (Transaction, error) {
	t := Transaction{ID: strings.TrimSpace(f[0]), Customer: strings.TrimSpace(f[1]), Time: runtime.NoTimestamp}
	if t.ID == "" {
		return t, errors.New("transaction_id is empty")
	}
	if t.Customer == "" {
		return t, errors.New("customer_id is empty")
	}
	a := strings.TrimSpace(f[2])
	amount, err := strconv.ParseFloat(a, 64)
	if err != nil || math.IsNaN(amount) || math.IsInf(amount, 0) {
		return t, fmt.Errorf("amount %q is not a finite number", a)
	}
	t.Amount = amount
	if ts := strings.TrimSpace(f[3]); ts != "" {
		if t.Time, err = parseTime(ts); err != nil {
			return t, err
		}
	}
	return t, nil
}

// parseTime reads Unix milliseconds or an RFC 3339 time.
func parseTime(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms != runtime.NoTimestamp {
		return ms, nil
	}
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("timestamp %q is neither Unix milliseconds nor RFC 3339", s)
	}
	return tm.UnixMilli(), nil
}

// parser adds the line's origin to what the CSV parser decodes.
type parser struct{ csv *file.CSV[Transaction] }

func (p parser) Parse(l file.Line) (Transaction, error) {
	t, err := p.csv.Parse(l)
	t.Source, t.Line = l.Path, l.Number
	return t, err
}

// Config is the job's parameters.
type Config struct {
	Input     string // a local file or directory
	Output    string // directory, file:// or s3:// URL
	Threshold float64
	Monitor   time.Duration
	Append    bool
}

func parseConfig(p *runtime.Params) Config {
	c := Config{
		Input:     p.String("input", ""),
		Output:    p.String("output", ""),
		Threshold: p.Float("threshold", 8000),
		Monitor:   p.Duration("monitor", 0),
		Append:    p.Bool("append", false),
	}
	if in, err := file.LocalPath(c.Input); err != nil {
		p.Errorf("input", "%v", err)
	} else {
		c.Input = in
	}
	if c.Output == "" {
		p.Errorf("output", "must not be empty: the directory or s3://bucket/prefix URL the part files go to")
	} else if _, err := storage.Open(c.Output, storage.Options{}); err != nil {
		p.Errorf("output", "%v", err) // no I/O: malformed URLs only
	}
	if math.IsNaN(c.Threshold) || math.IsInf(c.Threshold, 0) {
		p.Errorf("threshold", "%g must be a finite number", c.Threshold)
	}
	if c.Monitor < 0 {
		p.Errorf("monitor", "%v must be 0 (read once) or positive", c.Monitor)
	}
	return c
}

// outputDir returns dir's subdirectory name, for paths and URLs alike.
func outputDir(dir, name string) string { return strings.TrimSuffix(dir, "/") + "/" + name }

// Build defines the job: transactions (file source) -> parse-transactions
// (CSV; bad rows to the dead-letter side output) -> above-threshold ->
// print-alerts and alert-files; dead letters -> dead-letter-files.
func Build(env *runtime.Env, p *runtime.Params) error {
	c := parseConfig(p)
	lines := runtime.FromSource(env, "transactions", func() runtime.SourceFunction[file.Line] {
		return &file.Source{Path: c.Input, Header: true, Monitor: c.Monitor}
	}, file.LineCodec{}).UID(SourceUID)
	txs := file.Parse(lines, "parse-transactions", func() file.Parser[Transaction] {
		return parser{csv: NewParser()}
	}, TransactionCodec{}).UID(ParseUID)
	alerts := runtime.FlatMap(txs, "above-threshold", func(t Transaction, out runtime.Collector[Alert]) {
		if t.Amount > c.Threshold {
			out.Collect(Alert{Transaction: t, Threshold: c.Threshold})
		}
	}, AlertCodec{})
	runtime.SinkTo(alerts, "print-alerts", func() runtime.SinkFunction[Alert] {
		return &connectors.Print[Alert]{Format: Alert.String}
	}).UID(PrintUID)
	runtime.SinkTo(alerts, "alert-files", func() runtime.SinkFunction[Alert] {
		return &filesink.Sink[Alert]{Dir: c.Output, Encode: AppendJSON, Append: c.Append}
	}).UID(AlertSinkUID)
	dead := runtime.SideOutput(txs, file.DeadLetters)
	runtime.SinkTo(dead, "dead-letter-files", func() runtime.SinkFunction[file.DeadLetter] {
		return &filesink.Sink[file.DeadLetter]{Dir: outputDir(c.Output, DeadLetterDir), Encode: appendDeadLetter, Append: c.Append}
	}).UID(DeadLetterUID)
	return nil
}

func appendDeadLetter(dst []byte, d file.DeadLetter) []byte { return d.AppendJSON(dst) }
