package fraud

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/connectors/kafka"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/jobs/connect"
	"github.com/weirstream/weir/runtime"
)

// The default topics of the Kafka walkthrough.
const (
	TransactionsTopic = "transactions"
	AlertsTopic       = "alerts"
)

func ioParams() []jobs.Param { return connect.Params(TransactionsTopic, AlertsTopic) }

// ioConfig is the job's Kafka and webhook parameters.
type ioConfig connect.IO

func parseIO(p *runtime.Params, sink string) ioConfig {
	return ioConfig(connect.ParseIO(p, sink, TransactionsTopic, AlertsTopic))
}

func (c ioConfig) kafkaSource() runtime.SourceFunction[Transaction] {
	dec := kafka.JSON[Transaction]()
	if c.Source.Format == "csv" {
		dec = kafka.CSV(ParseCSV)
	} else {
		dec = func(r *kgo.Record) (Transaction, error) { return ParseJSON(r.Value) }
	}
	return connect.NewKafkaSource(c.Source, dec)
}

func (c ioConfig) deadLetters(s runtime.Stream[Transaction]) {
	connect.DeadLetters(s, c.Source, "transactions-dead-letters")
}

// jsonTransaction is a transaction as JSON.
type jsonTransaction struct {
	AccountID *int64   `json:"account_id"`
	Timestamp int64    `json:"timestamp"`
	Amount    *float64 `json:"amount"`
}

// ParseJSON reads {"account_id":1,"timestamp":1546300800000,"amount":188.23}
// (timestamp in Unix ms, optional).
func ParseJSON(b []byte) (Transaction, error) {
	var j jsonTransaction
	if err := json.Unmarshal(b, &j); err != nil {
		return Transaction{}, fmt.Errorf("transaction JSON: %w", err)
	}
	if j.AccountID == nil || j.Amount == nil {
		return Transaction{}, fmt.Errorf("transaction JSON: account_id and amount are required")
	}
	return Transaction{AccountID: *j.AccountID, Timestamp: j.Timestamp, Amount: *j.Amount}, nil
}

// ParseCSV reads account_id,timestamp,amount.
func ParseCSV(f [][]byte) (Transaction, error) {
	if len(f) != 3 {
		return Transaction{}, fmt.Errorf("transaction CSV: %d fields, want account_id,timestamp,amount", len(f))
	}
	id, err := kafka.CSVInt(f, 0, "account_id")
	if err != nil {
		return Transaction{}, err
	}
	ts, err := kafka.CSVInt(f, 1, "timestamp")
	if err != nil {
		return Transaction{}, err
	}
	amt, err := kafka.CSVFloat(f, 2, "amount")
	if err != nil {
		return Transaction{}, err
	}
	return Transaction{AccountID: id, Timestamp: ts, Amount: amt}, nil
}

// AppendTransactionJSON appends t in the format ParseJSON reads.
func AppendTransactionJSON(dst []byte, t Transaction) []byte {
	dst = append(dst, `{"account_id":`...)
	dst = strconv.AppendInt(dst, t.AccountID, 10)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, t.Timestamp, 10)
	dst = append(dst, `,"amount":`...)
	dst = strconv.AppendFloat(dst, t.Amount, 'f', -1, 64)
	return append(dst, '}')
}

// AppendAlertJSON appends {"account_id":N,"timestamp":T}.
func AppendAlertJSON(dst []byte, a Alert) []byte {
	dst = append(dst, `{"account_id":`...)
	dst = strconv.AppendInt(dst, a.ID, 10)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, a.Timestamp, 10)
	return append(dst, '}')
}

// alertHeader names the rule that raised an alert, in every Kafka record.
var alertHeader = []kgo.RecordHeader{{Key: "weir-rule", Value: []byte("small-then-large")}}

func (c ioConfig) kafkaSink() runtime.SinkFunction[Alert] {
	return connect.KafkaSink(c.Sink, func(r *kgo.Record, a Alert) {
		r.Key = strconv.AppendInt(r.Key, a.ID, 10)
		r.Value = AppendAlertJSON(r.Value, a)
		r.Headers = append(r.Headers, alertHeader...)
	})
}

func (c ioConfig) webhookSink(slack bool, small, large float64, timeout time.Duration) runtime.SinkFunction[Alert] {
	enc := AppendAlertJSON
	if slack {
		rule := fmt.Sprintf(": a charge under $%.2f, then one over $%.2f within %v", small, large, timeout)
		enc = func(dst []byte, a Alert) []byte {
			dst = append(dst, ":rotating_light: Fraud alert on account "...)
			dst = strconv.AppendInt(dst, a.ID, 10)
			return append(dst, rule...)
		}
	}
	// An alert is identified by its account and the time of the
	// transaction that raised it, whatever the order of a replay.
	key := func(a Alert) string {
		return "fraud/" + strconv.FormatInt(a.ID, 10) + "/" + strconv.FormatInt(a.Timestamp, 10)
	}
	return connect.WebhookSink(c.Sink, slack, enc, key)
}
