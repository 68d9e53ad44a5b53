// Package threshold is the job "threshold-alerts", after the PyFlink seed
// job: it reads CSV transactions (transaction_id,customer_id,amount) from
// a file or a directory, or one per record (CSV or JSON) from Kafka, and
// raises an alert for every transaction whose amount exceeds a threshold.
//
// The file source hands lines to the CSV parser; a row that does not parse
// goes, with its file, line and reason, to the dead-letter side output,
// which the exactly-once file sink writes under <output>/dead-letters.
// Alerts are printed as the seed prints them ("tx1002, cust2, 9200.0") and
// written by the same sink under <output> as JSON lines naming the rule,
// the key (the customer), the event time and the evidence. The rule is
// stateless, so the job needs no keyed state and no ordering: records out
// of order alert exactly as in order. From Kafka, a record that does not
// decode is a dead letter naming its topic, partition and offset, and
// alerts may go to a topic (exactly once), a webhook or Slack instead of
// the files.
package threshold

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/connectors"
	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/connectors/filesink"
	"github.com/weirstream/weir/connectors/kafka"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/jobs/connect"
	"github.com/weirstream/weir/runtime"
)

// Name is the job's registered name.
const Name = "threshold-alerts"

// Rule names the alerts' rule.
const Rule = "amount-above-threshold"

// DeadLetterDir is where, under output, the dead letters go.
const DeadLetterDir = "dead-letters"

// The default topics of source=kafka and sink=kafka.
const (
	TransactionsTopic = "threshold-transactions"
	AlertsTopic       = "threshold-alerts"
)

// The operators' stable identifiers.
const (
	KafkaSourceUID = "kafka-transactions"
	SourceUID      = "transactions"
	ParseUID       = "parse-transactions"
	AlertSinkUID   = "alert-files"
	DeadLetterUID  = "dead-letter-files"
	PrintUID       = "print-alerts"
)

func init() {
	jobs.Register(jobs.Job{
		Name:        Name,
		Description: "CSV transactions (transaction_id,customer_id,amount) from files or Kafka; alerts on amounts above `threshold`, printed and written exactly once; bad rows to dead letters",
		Params: append([]jobs.Param{
			{Name: "source", Type: jobs.String, Default: "files", Description: "files (or file): CSV files from input; kafka: one transaction per record from source-topic, CSV transaction_id,customer_id,amount[,timestamp] or JSON {\"transaction_id\":\"tx1\",\"customer_id\":\"c1\",\"amount\":9200,\"timestamp\":...} (format)"},
			{Name: "sink", Type: jobs.String, Default: "files", Description: "files (or file): alerts' part files under output; kafka: JSON alerts keyed by customer to sink-topic; webhook or slack: POSTed to the URL of webhook-url-env/-file (alerts are printed with every sink)"},
			{Name: "input", Type: jobs.Path, Description: "source=files (required): a CSV file, or a directory whose files (not starting with . or _) are read in name order; each file starts with a header naming its columns: transaction_id, customer_id, amount, and optionally timestamp (Unix ms or RFC 3339)"},
			{Name: "output", Type: jobs.Path, Required: true, Description: "directory or s3://bucket/prefix URL: with sink=files the alerts' part files; with every sink, the dead letters go to its dead-letters/ subdirectory (unless dead-letter-topic is set)"},
			{Name: "threshold", Type: jobs.Float, Default: "8000", Description: "an amount above this raises an alert"},
			{Name: "monitor", Type: jobs.Duration, Default: "0s", Description: "source=files: 0 reads the input and finishes; above 0, lists the input directory this often and reads new files, never finishing"},
			{Name: "append", Type: jobs.Bool, Default: "false", Description: "add to an output directory holding another job's part files (a fresh job refuses one otherwise)"},
		}, connect.Params(TransactionsTopic, AlertsTopic)...),
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
	Source, Sink string
	Input        string // a local file or directory
	Output       string // directory, file:// or s3:// URL
	Threshold    float64
	Monitor      time.Duration
	Append       bool
	IO           connect.IO
}

func parseConfig(p *runtime.Params) Config {
	c := Config{
		Source:    connect.Choice(p, "source", connect.Files),
		Sink:      connect.Choice(p, "sink", connect.Files),
		Input:     p.String("input", ""),
		Output:    p.String("output", ""),
		Threshold: p.Float("threshold", 8000),
		Monitor:   p.Duration("monitor", 0),
		Append:    p.Bool("append", false),
	}
	c.IO = connect.ParseIO(p, c.Sink, TransactionsTopic, AlertsTopic)
	switch c.Source {
	case connect.Files:
		if c.Input == "" {
			p.Errorf("input", "required with source=files: the CSV file or directory to read")
		} else if in, err := file.LocalPath(c.Input); err != nil {
			p.Errorf("input", "%v", err)
		} else {
			c.Input = in
		}
	case "kafka":
	default:
		p.Errorf("source", "%q is not a source: use files or kafka", c.Source)
	}
	connect.CheckChoice(p, "sink", c.Sink, connect.Files, "kafka", "webhook", "slack")
	connect.CheckOutput(p, c.Output, "the part files")
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
// (CSV; bad rows to the dead-letter side output), or kafka-transactions
// (bad records to its dead letters) -> above-threshold -> print-alerts and
// alert-files (or alert-kafka, alert-webhook, alert-slack); dead letters
// -> dead-letter-files (or the dead-letter topic).
func Build(env *runtime.Env, p *runtime.Params) error {
	c := parseConfig(p)
	var txs runtime.Stream[Transaction]
	var dead runtime.Stream[file.DeadLetter]
	toFiles := true // the dead letters, unless they go to a topic
	if c.Source == "kafka" {
		txs = runtime.FromSource(env, "kafka-transactions", func() runtime.SourceFunction[Transaction] {
			return connect.NewKafkaSource(c.IO.Source, kafkaDecoder(c.IO.Source.Format))
		}, TransactionCodec{}).UID(KafkaSourceUID)
		if c.IO.Source.DeadLetterTopic != "" {
			connect.DeadLetters(txs, c.IO.Source, "dead-letter-topic")
			toFiles = false
		} else {
			dead = runtime.Map(runtime.SideOutput(txs, kafka.DeadLetterTag), "dead-letter-records", connect.FileDeadLetter, nil)
		}
	} else {
		lines := runtime.FromSource(env, "transactions", func() runtime.SourceFunction[file.Line] {
			return &file.Source{Path: c.Input, Header: true, Monitor: c.Monitor}
		}, file.LineCodec{}).UID(SourceUID)
		txs = file.Parse(lines, "parse-transactions", func() file.Parser[Transaction] {
			return parser{csv: NewParser()}
		}, TransactionCodec{}).UID(ParseUID)
		dead = runtime.SideOutput(txs, file.DeadLetters)
	}
	alerts := runtime.FlatMap(txs, "above-threshold", func(t Transaction, out runtime.Collector[Alert]) {
		if t.Amount > c.Threshold {
			out.Collect(Alert{Transaction: t, Threshold: c.Threshold})
		}
	}, AlertCodec{})
	runtime.SinkTo(alerts, "print-alerts", func() runtime.SinkFunction[Alert] {
		return &connectors.Print[Alert]{Format: Alert.String}
	}).UID(PrintUID)
	switch c.Sink {
	case "kafka":
		runtime.SinkTo(alerts, "alert-kafka", func() runtime.SinkFunction[Alert] {
			return connect.KafkaSink(c.IO.Sink, func(r *kgo.Record, a Alert) {
				r.Key = append(r.Key, a.Customer...)
				r.Value = AppendJSON(r.Value, a)
			})
		}).UID("alert-kafka")
	case "webhook", "slack":
		slack := c.Sink == "slack"
		enc := AppendJSON
		if slack {
			enc = func(dst []byte, a Alert) []byte {
				dst = append(dst, ":rotating_light: "...)
				dst = append(dst, a.String()...)
				dst = append(dst, " is above "...)
				return append(dst, PythonFloat(a.Threshold)...)
			}
		}
		// The transaction's origin identifies it across restores (its ID
		// need not be unique across files).
		key := func(a Alert) string { return Rule + "/" + a.Source + "/" + strconv.FormatInt(a.Line, 10) }
		runtime.SinkTo(alerts, "alert-"+c.Sink, func() runtime.SinkFunction[Alert] {
			return connect.WebhookSink(c.IO.Sink, slack, enc, key)
		}).UID("alert-" + c.Sink)
	default:
		runtime.SinkTo(alerts, "alert-files", func() runtime.SinkFunction[Alert] {
			return &filesink.Sink[Alert]{Dir: c.Output, Encode: AppendJSON, Append: c.Append}
		}).UID(AlertSinkUID)
	}
	if toFiles {
		runtime.SinkTo(dead, "dead-letter-files", func() runtime.SinkFunction[file.DeadLetter] {
			return &filesink.Sink[file.DeadLetter]{Dir: outputDir(c.Output, DeadLetterDir), Encode: appendDeadLetter, Append: c.Append}
		}).UID(DeadLetterUID)
	}
	return nil
}

// kafkaDecoder decodes a record as a CSV row
// (transaction_id,customer_id,amount[,timestamp]) or a JSON object with
// those names. Source and Line are "<topic>/<partition>" and the offset.
func kafkaDecoder(format string) kafka.Decoder[Transaction] {
	fromCSV := kafka.CSV(func(fields [][]byte) (Transaction, error) {
		if len(fields) != 3 && len(fields) != 4 {
			return Transaction{}, fmt.Errorf("row has %d fields, want transaction_id,customer_id,amount[,timestamp]", len(fields))
		}
		f := []string{string(fields[0]), string(fields[1]), string(fields[2]), ""}
		if len(fields) == 4 {
			f[3] = string(fields[3])
		}
		return decode(f)
	})
	type tp struct {
		topic string
		part  int32
	}
	origins := map[tp]string{} // the subtask's partitions, named once
	return func(r *kgo.Record) (Transaction, error) {
		var t Transaction
		var err error
		if format == "csv" {
			t, err = fromCSV(r)
		} else {
			t, err = decodeJSON(r.Value)
		}
		o, ok := origins[tp{r.Topic, r.Partition}]
		if !ok {
			o = r.Topic + "/" + strconv.Itoa(int(r.Partition))
			origins[tp{r.Topic, r.Partition}] = o
		}
		t.Source, t.Line = o, r.Offset
		return t, err
	}
}

// decodeJSON reads {"transaction_id":"tx1","customer_id":"c1","amount":9200,
// "timestamp":...}; amount and timestamp may be numbers or strings.
func decodeJSON(b []byte) (Transaction, error) {
	var j struct {
		ID        string          `json:"transaction_id"`
		Customer  string          `json:"customer_id"`
		Amount    json.RawMessage `json:"amount"`
		Timestamp json.RawMessage `json:"timestamp"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return Transaction{}, fmt.Errorf("invalid JSON: %w", err)
	}
	f := []string{j.ID, j.Customer, strings.Trim(string(j.Amount), `"`), strings.Trim(string(j.Timestamp), `"`)}
	if f[3] == "null" {
		f[3] = ""
	}
	return decode(f)
}

func appendDeadLetter(dst []byte, d file.DeadLetter) []byte { return d.AppendJSON(dst) }
