package anomaly

import (
	"hash/fnv"
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

// The default topics of source=kafka (one per job, named as its input)
// and of sink=kafka (shared: every alert names its detector).
const (
	EventsTopic    = "events"
	TransfersTopic = "transfers"
	CardUsesTopic  = "card-uses"
	AlertsTopic    = "anomaly-alerts"
)

// ioParams are the parameters every job of the package has; topic is the
// job's default source topic.
func ioParams(topic string) []jobs.Param {
	ps := []jobs.Param{
		{Name: "source", Type: jobs.String, Default: "files", Description: "files (or file): JSON lines from input; kafka: the same JSON events, one per record, from source-topic, with per-partition watermarks"},
		{Name: "sink", Type: jobs.String, Default: "files", Description: "files (or file): each detector's alerts under <output>/<detector>/; kafka: JSON alerts keyed by the alert's key to sink-topic; webhook or slack: POSTed to the URL of webhook-url-env/-file (alerts are printed with every sink)"},
		{Name: "input", Type: jobs.Path, Description: "source=files (required): a JSON-lines file, or a directory whose files (not starting with . or _) are read in name order"},
		{Name: "output", Type: jobs.Path, Required: true, Description: "directory or s3://bucket/prefix URL: with sink=files each detector's alerts go to <output>/<detector>/; with every sink, lines or records that do not parse go to <output>/dead-letters/ (unless dead-letter-topic is set), events behind the watermark to <output>/late/"},
		{Name: "out-of-orderness", Type: jobs.Duration, Default: "5s", Description: "how far an event may arrive behind the newest one seen (with source=kafka, the newest of its partition); the watermark trails by this much"},
		{Name: "idleness", Type: jobs.Duration, Default: "10s", Description: "source=kafka: a partition without records for this long is left out of the watermark until its next record (0s: never, and a partition without records holds event time back)"},
		{Name: "monitor", Type: jobs.Duration, Default: "0s", Description: "source=files: 0 reads the input and finishes; above 0, lists the input directory this often and reads new files, never finishing"},
		{Name: "append", Type: jobs.Bool, Default: "false", Description: "add to an output directory holding another job's part files (a fresh job refuses one otherwise)"},
	}
	return append(ps, connect.Params(topic, AlertsTopic)...)
}

func withIO(topic string, ps ...jobs.Param) []jobs.Param {
	return append(ioParams(topic), ps...)
}

// ioConfig is the parameters of ioParams.
type ioConfig struct {
	source, sink   string
	input, output  string
	outOfOrderness time.Duration
	idleness       time.Duration
	monitor        time.Duration
	append         bool
	kafka          connect.IO
}

func parseIO(p *runtime.Params, topic string) ioConfig {
	c := ioConfig{source: connect.Choice(p, "source", connect.Files), sink: connect.Choice(p, "sink", connect.Files),
		input: p.String("input", ""), output: p.String("output", ""),
		outOfOrderness: p.Duration("out-of-orderness", 5*time.Second), idleness: p.Duration("idleness", 10*time.Second),
		monitor: p.Duration("monitor", 0), append: p.Bool("append", false)}
	c.kafka = connect.ParseIO(p, c.sink, topic, AlertsTopic)
	switch c.source {
	case connect.Files:
		if c.input == "" {
			p.Errorf("input", "required with source=files: the JSON-lines file or directory to read")
		} else if in, err := file.LocalPath(c.input); err != nil {
			p.Errorf("input", "%v", err)
		} else {
			c.input = in
		}
	case "kafka":
		if c.kafka.Source.Format != "json" {
			p.Errorf("format", "%q: the events are JSON objects; use json", c.kafka.Source.Format)
		}
	default:
		p.Errorf("source", "%q is not a source: use files or kafka", c.source)
	}
	connect.CheckChoice(p, "sink", c.sink, connect.Files, "kafka", "webhook", "slack")
	connect.CheckOutput(p, c.output, "the alerts, dead letters and late events")
	if c.outOfOrderness < 0 {
		p.Errorf("out-of-orderness", "%v must not be negative", c.outOfOrderness)
	}
	if c.idleness < 0 {
		p.Errorf("idleness", "%v must not be negative", c.idleness)
	}
	if c.monitor < 0 {
		p.Errorf("monitor", "%v must be 0 (read once) or positive", c.monitor)
	}
	return c
}

func (c ioConfig) dir(name string) string { return strings.TrimSuffix(c.output, "/") + "/" + name }

// readEvents reads the events with the fields in need, in event time, from
// the input files or the source topic; what does not parse goes to
// <output>/dead-letters (or, from Kafka, to the dead-letter topic if set).
func readEvents(env *runtime.Env, c ioConfig, uid string, need field) runtime.Stream[Event] {
	if c.source == "kafka" {
		return readKafkaEvents(env, c, uid, need)
	}
	lines := runtime.FromSource(env, uid, func() runtime.SourceFunction[file.Line] {
		return &file.Source{Path: c.input, Monitor: c.monitor}
	}, file.LineCodec{}).UID(uid)
	events := file.Parse(lines, "parse-"+uid, func() file.Parser[Event] { return eventParser{need: need} }, EventCodec{}).
		UID("parse-" + uid)
	writeDeadLetters(c, runtime.SideOutput(events, file.DeadLetters), "dead-letters-"+uid, "dead-letters")
	ws := runtime.ForBoundedOutOfOrderness(c.outOfOrderness, func(e Event) int64 { return e.Time })
	if c.monitor > 0 {
		// Watching a directory, a source subtask with no new file has no
		// records and would hold the watermark back for good; idle, it is
		// left out until a file comes.
		ws = ws.WithIdleness(max(time.Second, 4*c.monitor))
	}
	return runtime.AssignTimestampsAndWatermarks(events, ws)
}

// readKafkaEvents reads one JSON event per record. Each partition has its
// own watermark, so a quiet partition does not hold event time back once
// idle. An event's Source is "<topic>/<partition>" and its Line the
// record's offset: the origin in the evidence, and the tie-break of events
// with equal times (an order every run agrees on, as the file's is).
func readKafkaEvents(env *runtime.Env, c ioConfig, uid string, need field) runtime.Stream[Event] {
	wm := kafka.Watermarks[Event]{Timestamp: func(e Event, _ *kgo.Record) int64 { return e.Time },
		OutOfOrderness: c.outOfOrderness, Idleness: c.idleness}
	events := runtime.FromWatermarkingSource(env, "kafka-"+uid, func() runtime.WatermarkingSource[Event] {
		return connect.NewKafkaSource(c.kafka.Source, eventDecoder(need)).EventTime(wm)
	}, EventCodec{}).UID("kafka-" + uid)
	if c.kafka.Source.DeadLetterTopic != "" {
		connect.DeadLetters(events, c.kafka.Source, "dead-letter-topic-"+uid)
	} else {
		writeDeadLetters(c, runtime.Map(runtime.SideOutput(events, kafka.DeadLetterTag), "dead-letters-"+uid+"-records",
			connect.FileDeadLetter, nil), "dead-letters-"+uid, "dead-letters")
	}
	return events
}

// eventDecoder decodes records as eventParser parses lines. Made per
// subtask: its cache of origins is the subtask's own.
func eventDecoder(need field) kafka.Decoder[Event] {
	type tp struct {
		topic string
		part  int32
	}
	origins := map[tp]string{}
	return func(r *kgo.Record) (Event, error) {
		e, err := parseEvent(r.Value, need)
		if err == nil && need&fCity != 0 {
			err = knownCity(e)
		}
		k := tp{r.Topic, r.Partition}
		o, ok := origins[k]
		if !ok {
			o = r.Topic + "/" + strconv.Itoa(int(r.Partition))
			origins[k] = o
		}
		e.Source, e.Line = o, r.Offset
		return e, err
	}
}

func writeDeadLetters(c ioConfig, s runtime.Stream[file.DeadLetter], uid, dir string) {
	runtime.SinkTo(s, uid, func() runtime.SinkFunction[file.DeadLetter] {
		return &filesink.Sink[file.DeadLetter]{Dir: c.dir(dir), Encode: func(dst []byte, d file.DeadLetter) []byte { return d.AppendJSON(dst) },
			Append: c.append}
	}).UID(uid)
}

// writeAlerts prints a detector's alerts and sends them to the sink:
// exactly once to <output>/<detector> or to the topic (with
// delivery=exactly-once), at least once with an idempotency key to a
// webhook.
func writeAlerts(c ioConfig, alerts runtime.Stream[Alert], detector string) {
	runtime.SinkTo(alerts, "print-"+detector, func() runtime.SinkFunction[Alert] {
		return &connectors.Print[Alert]{Format: Alert.String}
	}).UID("print-" + detector)
	switch c.sink {
	case "kafka":
		sc := c.kafka.Sink
		if sc.TransactionalPrefix != "" {
			// One sink per detector: each needs IDs of its own.
			sc.TransactionalPrefix += "-" + detector
		}
		runtime.SinkTo(alerts, "kafka-"+detector, func() runtime.SinkFunction[Alert] {
			names := map[string][]byte{} // a stream's few detector names, as header values
			return connect.KafkaSink(sc, func(r *kgo.Record, a Alert) {
				r.Key = append(r.Key, a.Key...)
				r.Value = a.AppendJSON(r.Value)
				name, ok := names[a.Detector]
				if !ok {
					name = []byte(a.Detector)
					names[a.Detector] = name
				}
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: "weir-detector", Value: name})
			})
		}).UID("kafka-" + detector)
	case "webhook", "slack":
		slack := c.sink == "slack"
		enc := func(dst []byte, a Alert) []byte { return a.AppendJSON(dst) }
		if slack {
			enc = slackLine
		}
		runtime.SinkTo(alerts, c.sink+"-"+detector, func() runtime.SinkFunction[Alert] {
			return connect.WebhookSink(c.kafka.Sink, slack, enc, alertKey)
		}).UID(c.sink + "-" + detector)
	default:
		runtime.SinkTo(alerts, "files-"+detector, func() runtime.SinkFunction[Alert] {
			return &filesink.Sink[Alert]{Dir: c.dir(detector), Encode: func(dst []byte, a Alert) []byte { return a.AppendJSON(dst) },
				Append: c.append}
		}).UID("files-" + detector)
	}
}

// alertKey identifies an alert across restores, for a webhook receiver to
// drop the ones it has seen: detector, key, time and a hash of the
// evidence (which tells apart two alerts of one key at one time).
func alertKey(a Alert) string {
	h := fnv.New32a()
	h.Write([]byte(a.Evidence))
	return a.Detector + "/" + a.Key + "/" + strconv.FormatInt(a.Time, 10) + "/" + strconv.FormatUint(uint64(h.Sum32()), 16)
}

// slackLine renders an alert as one line of a Slack message.
func slackLine(dst []byte, a Alert) []byte {
	dst = append(dst, ":rotating_light: "...)
	dst = append(dst, a.Detector...)
	dst = append(dst, " alert on "...)
	dst = append(dst, a.Key...)
	dst = append(dst, " at "...)
	dst = time.UnixMilli(a.Time).UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	if a.Evidence != "" {
		dst = append(dst, ": "...)
		dst = append(dst, a.Evidence...)
	}
	return dst
}
