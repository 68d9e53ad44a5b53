// Package connect gives jobs the same documented parameters for reading
// from Kafka and writing to Kafka, a webhook or Slack, so every job that
// takes source=kafka or sink=kafka|webhook|slack spells them alike.
//
// Secrets never appear as parameter values: the SASL password and the
// webhook URL are named by an environment variable (…-env) or a file
// (…-file) that the TaskManagers read, so `weir job status` shows only
// the name.
package connect

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/connectors/kafka"
	"github.com/weirstream/weir/connectors/webhook"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/statebackend/storage"
)

// ClientParams are the parameters of the connection to Kafka.
func ClientParams() []jobs.Param {
	return []jobs.Param{
		{Name: "kafka-brokers", Type: jobs.String, Default: "127.0.0.1:9092", Description: "comma-separated Kafka bootstrap brokers (host:port)"},
		{Name: "kafka-tls", Type: jobs.Bool, Default: "false", Description: "connect to the brokers with TLS"},
		{Name: "kafka-ca-file", Type: jobs.String, Description: "PEM file of the CA certificates that sign the brokers' (default: the system's)"},
		{Name: "kafka-sasl-mechanism", Type: jobs.String, Description: "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default: no SASL)"},
		{Name: "kafka-sasl-user", Type: jobs.String, Description: "SASL user name"},
		{Name: "kafka-sasl-password-env", Type: jobs.String, Description: "environment variable of the TaskManagers holding the SASL password"},
		{Name: "kafka-sasl-password-file", Type: jobs.String, Description: "file on the TaskManagers holding the SASL password"},
	}
}

// SourceParams are the parameters of a Kafka source.
func SourceParams(defaultTopic string) []jobs.Param {
	return []jobs.Param{
		{Name: "source-topic", Type: jobs.String, Default: defaultTopic, Description: "source=kafka: comma-separated topics to read"},
		{Name: "source-topic-regex", Type: jobs.String, Description: "source=kafka: read every topic whose whole name matches this regular expression, instead of source-topic"},
		{Name: "group", Type: jobs.String, Description: "source=kafka: consumer group whose offsets start=committed reads and to which completed checkpoints' offsets are reported (for lag monitoring)"},
		{Name: "format", Type: jobs.String, Default: "json", Description: "source=kafka: record format, json or csv"},
		{Name: "start", Type: jobs.String, Default: "earliest", Description: "source=kafka: where a fresh job starts: earliest, latest, committed or timestamp:<unix ms>"},
		{Name: "bounded", Type: jobs.Bool, Default: "false", Description: "source=kafka: finish after reading up to the end offsets at the start"},
		{Name: "dead-letter-topic", Type: jobs.String, Description: "source=kafka: topic the undecodable records go to as JSON (topic, partition, offset, reason, value); default: logged only"},
	}
}

// SinkParams are the parameters of the Kafka, webhook and Slack sinks.
func SinkParams(defaultTopic string) []jobs.Param {
	return []jobs.Param{
		{Name: "sink-topic", Type: jobs.String, Default: defaultTopic, Description: "sink=kafka: topic to write"},
		{Name: "delivery", Type: jobs.String, Default: "exactly-once", Description: "sink=kafka: exactly-once (transactions committed with checkpoints), at-least-once or none"},
		{Name: "transaction-timeout", Type: jobs.Duration, Default: "1m", Description: "sink=kafka exactly-once: broker-side transaction timeout; must exceed the checkpoint interval plus the time a checkpoint takes"},
		{Name: "transactional-id-prefix", Type: jobs.String, Description: "sink=kafka exactly-once: prefix of the sink's transactional IDs (default weir-<job id>-<sink uid>); set one your broker's ACLs allow, unique to the job"},
		{Name: "skip-lost-transactions", Type: jobs.Bool, Default: "false", Description: "sink=kafka exactly-once: restore past a transaction of a completed checkpoint that the broker aborted (its records are lost; logged as an error) instead of failing the job"},
		{Name: "create-topic-partitions", Type: jobs.Int, Default: "0", Description: "sink=kafka: create a missing sink topic with this many partitions (0: a missing topic is an error)"},
		{Name: "webhook-url-env", Type: jobs.String, Description: "sink=webhook|slack: environment variable of the TaskManagers holding the URL"},
		{Name: "webhook-url-file", Type: jobs.String, Description: "sink=webhook|slack: file on the TaskManagers holding the URL"},
		{Name: "webhook-batch", Type: jobs.Int, Default: "100", Description: "sink=webhook|slack: most records per request"},
		{Name: "webhook-linger", Type: jobs.Duration, Default: "200ms", Description: "sink=webhook|slack: how long a batch waits for more records"},
		{Name: "webhook-rate", Type: jobs.Float, Default: "0", Description: "sink=webhook|slack: most requests per second (0: no limit)"},
	}
}

// Client reads the connection parameters.
func Client(p *runtime.Params) kafka.ClientConfig {
	c := kafka.ClientConfig{
		TLS:           p.Bool("kafka-tls", false),
		CAFile:        p.String("kafka-ca-file", ""),
		SASLMechanism: p.String("kafka-sasl-mechanism", ""),
		SASLUser:      p.String("kafka-sasl-user", ""),
		SASLPassword:  kafka.Secret{Env: p.String("kafka-sasl-password-env", ""), File: p.String("kafka-sasl-password-file", "")},
	}
	for _, b := range strings.Split(p.String("kafka-brokers", "127.0.0.1:9092"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Brokers = append(c.Brokers, b)
		}
	}
	if err := c.Validate(); err != nil {
		p.Errorf("kafka-brokers", "%v", err)
	}
	if c.SASLMechanism != "" && c.SASLPassword.IsZero() {
		p.Errorf("kafka-sasl-password-env", "SASL needs kafka-sasl-password-env or kafka-sasl-password-file")
	}
	return c
}

// SourceConfig is a Kafka source's parameters, decoded.
type SourceConfig struct {
	Client          kafka.ClientConfig
	Topics          []string
	TopicRegex      string
	Group           string
	Format          string
	Start           kafka.StartFrom
	StartMs         int64
	Bounded         bool
	DeadLetterTopic string
}

// Source reads the source parameters (call it whatever the source is, so
// every declared parameter is read).
func Source(p *runtime.Params, defaultTopic string) SourceConfig {
	c := SourceConfig{
		Client:          Client(p),
		TopicRegex:      p.String("source-topic-regex", ""),
		Group:           p.String("group", ""),
		Format:          p.String("format", "json"),
		Bounded:         p.Bool("bounded", false),
		DeadLetterTopic: p.String("dead-letter-topic", ""),
	}
	for _, t := range strings.Split(p.String("source-topic", defaultTopic), ",") {
		if t = strings.TrimSpace(t); t != "" {
			c.Topics = append(c.Topics, t)
		}
	}
	if c.TopicRegex != "" {
		c.Topics = nil
	}
	var err error
	if c.Start, c.StartMs, err = kafka.ParseStartFrom(p.String("start", "earliest")); err != nil {
		p.Errorf("start", "%v", err)
	}
	if c.Start == kafka.Committed && c.Group == "" {
		p.Errorf("start", "committed needs a group")
	}
	if c.Format != "json" && c.Format != "csv" {
		p.Errorf("format", "%q: use json or csv", c.Format)
	}
	return c
}

// SinkConfig is the sink parameters, decoded.
type SinkConfig struct {
	Client              kafka.ClientConfig
	Topic               string
	Delivery            kafka.Guarantee
	TransactionTimeout  time.Duration
	TransactionalPrefix string
	SkipLost            bool
	CreateTopicParts    int32
	WebhookURL          webhook.Secret
	WebhookBatch        int
	WebhookLinger       time.Duration
	WebhookRate         float64
}

// Sink reads the sink parameters; kind is the job's sink parameter
// (kafka, webhook, slack or another), whose required settings it checks.
func Sink(p *runtime.Params, kind, defaultTopic string, client kafka.ClientConfig) SinkConfig {
	c := SinkConfig{
		Client:              client,
		Topic:               p.String("sink-topic", defaultTopic),
		TransactionTimeout:  p.Duration("transaction-timeout", time.Minute),
		TransactionalPrefix: p.String("transactional-id-prefix", ""),
		SkipLost:            p.Bool("skip-lost-transactions", false),
		CreateTopicParts:    int32(p.Int("create-topic-partitions", 0)),
		WebhookURL:          webhook.Secret{Env: p.String("webhook-url-env", ""), File: p.String("webhook-url-file", "")},
		WebhookBatch:        int(p.Int("webhook-batch", 100)),
		WebhookLinger:       p.Duration("webhook-linger", 200*time.Millisecond),
		WebhookRate:         p.Float("webhook-rate", 0),
	}
	var err error
	if c.Delivery, err = kafka.ParseGuarantee(p.String("delivery", "exactly-once")); err != nil {
		p.Errorf("delivery", "%v", err)
	}
	if c.TransactionTimeout <= 0 {
		p.Errorf("transaction-timeout", "%v must be positive", c.TransactionTimeout)
	}
	if c.CreateTopicParts < 0 {
		p.Errorf("create-topic-partitions", "%d must not be negative", c.CreateTopicParts)
	}
	if c.WebhookBatch < 1 {
		p.Errorf("webhook-batch", "%d must be at least 1", c.WebhookBatch)
	}
	if c.WebhookRate < 0 {
		p.Errorf("webhook-rate", "%g must not be negative", c.WebhookRate)
	}
	if (kind == "webhook" || kind == "slack") && c.WebhookURL.Env == "" && c.WebhookURL.File == "" {
		p.Errorf("webhook-url-env", "sink=%s needs webhook-url-env or webhook-url-file (the URL holds a token, so it is never a parameter)", kind)
	}
	return c
}

// KafkaSink makes a Kafka sink for one subtask.
func KafkaSink[T any](c SinkConfig, encode func(r *kgo.Record, v T)) *kafka.Sink[T] {
	return &kafka.Sink[T]{Client: c.Client, Topic: c.Topic, Encode: encode, Guarantee: c.Delivery,
		TransactionTimeout: c.TransactionTimeout, TransactionalIDPrefix: c.TransactionalPrefix, CreateTopicPartitions: c.CreateTopicParts,
		SkipLostTransactions: c.SkipLost}
}

// WebhookSink makes a webhook (slack=false) or Slack sink for one subtask.
func WebhookSink[T any](c SinkConfig, slack bool, encode func(dst []byte, v T) []byte, key func(T) string) *webhook.Sink[T] {
	s := &webhook.Sink[T]{URL: c.WebhookURL, Encode: encode, Key: key, BatchSize: c.WebhookBatch,
		Linger: c.WebhookLinger, RateLimit: c.WebhookRate}
	if slack {
		s.Format = webhook.Slack{}
	}
	return s
}

// NewKafkaSource makes a Kafka source for one subtask.
func NewKafkaSource[T any](c SourceConfig, decode kafka.Decoder[T]) *kafka.Source[T] {
	return &kafka.Source[T]{Client: c.Client, Topics: c.Topics, TopicRegex: c.TopicRegex, Group: c.Group,
		Start: c.Start, StartMs: c.StartMs, Decode: decode, Bounded: c.Bounded}
}

// DeadLetters routes a Kafka source's undecodable records to the
// dead-letter topic, if one is set (at least once: they are diagnostics).
func DeadLetters[T any](s runtime.Stream[T], c SourceConfig, uid string) {
	if c.DeadLetterTopic == "" {
		return
	}
	dl := runtime.SideOutput(s, kafka.DeadLetterTag)
	sc := SinkConfig{Client: c.Client, Topic: c.DeadLetterTopic, Delivery: kafka.AtLeastOnce, TransactionTimeout: time.Minute}
	runtime.SinkTo(dl, "dead-letters", func() runtime.SinkFunction[kafka.DeadLetter] {
		return KafkaSink(sc, func(r *kgo.Record, d kafka.DeadLetter) {
			r.Key = append(r.Key, d.Topic...)
			r.Value = d.AppendJSON(r.Value)
		})
	}).UID(uid)
}

// Params is what a job reading from and writing to Kafka (or a webhook)
// declares: the client's, the source's and the sink's parameters.
func Params(sourceTopic, sinkTopic string) []jobs.Param {
	ps := ClientParams()
	ps = append(ps, SourceParams(sourceTopic)...)
	return append(ps, SinkParams(sinkTopic)...)
}

// IO is a job's parsed source and sink parameters, sharing one client.
type IO struct {
	Source SourceConfig
	Sink   SinkConfig
}

// ParseIO reads what Params declared; kind is the job's sink choice.
func ParseIO(p *runtime.Params, kind, sourceTopic, sinkTopic string) IO {
	src := Source(p, sourceTopic)
	return IO{Source: src, Sink: Sink(p, kind, sinkTopic, src.Client)}
}

// FileDeadLetter turns a Kafka source's dead letter into the files'
// kind, for jobs that write every dead letter to one place: Source is
// "<topic>/<partition>", Line the record's offset, Text its value.
func FileDeadLetter(d kafka.DeadLetter) file.DeadLetter {
	return file.DeadLetter{Source: d.Topic + "/" + strconv.Itoa(int(d.Partition)), Line: d.Offset,
		Text: string(d.Value), Reason: d.Reason}
}

// Files is the documented name of the file connector in the source and
// sink parameters. Jobs accept "file" too: early jobs documented that
// spelling, and a parameter users have written must keep its meaning.
const Files = "files"

// Choice reads the source or sink parameter name, with "file" read as
// Files, so every job spells its file connector the same way.
func Choice(p *runtime.Params, name, def string) string {
	if v := p.String(name, def); v != "file" {
		return v
	}
	return Files
}

// CheckChoice refuses a source or sink parameter outside allowed, naming
// the choices.
func CheckChoice(p *runtime.Params, name, got string, allowed ...string) {
	if slices.Contains(allowed, got) {
		return
	}
	list := strings.Join(allowed, ", ")
	if n := len(allowed); n > 1 {
		list = strings.Join(allowed[:n-1], ", ") + " or " + allowed[n-1]
	}
	p.Errorf(name, "%q is not a %s: use %s", got, name, list)
}

// CheckOutput checks the output parameter, a directory or s3:// URL that
// what goes to. It does no I/O, so it refuses only empty or malformed
// URLs and unknown schemes, at submission rather than in every subtask.
func CheckOutput(p *runtime.Params, url, what string) {
	if url == "" {
		p.Errorf("output", "must not be empty: the directory or s3://bucket/prefix URL %s go to", what)
	} else if _, err := storage.Open(url, storage.Options{}); err != nil {
		p.Errorf("output", "%v", err)
	}
}
