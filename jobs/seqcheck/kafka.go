package seqcheck

import (
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/connectors/kafka"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/jobs/connect"
	"github.com/weirstream/weir/runtime"
)

// The default topics of source=kafka and sink=kafka.
const (
	InputTopic  = "sequences"
	OutputTopic = "sequences-checked"
)

func kafkaParams() []jobs.Param { return connect.Params(InputTopic, OutputTopic) }

type kafkaConfig connect.IO

func parseKafka(p *runtime.Params) kafkaConfig {
	return kafkaConfig(connect.ParseIO(p, "kafka", InputTopic, OutputTopic))
}

// ParseCSV reads a "key,seq" input record.
func ParseCSV(f [][]byte) (Record, error) {
	if len(f) != 2 {
		return Record{}, fmt.Errorf("sequence CSV: %d fields, want key,seq", len(f))
	}
	k, err := kafka.CSVInt(f, 0, "key")
	if err != nil {
		return Record{}, err
	}
	s, err := kafka.CSVInt(f, 1, "seq")
	if err != nil {
		return Record{}, err
	}
	return Record{Key: k, Seq: s}, nil
}

func (c kafkaConfig) newSource() runtime.SourceFunction[Record] {
	return connect.NewKafkaSource(c.Source, kafka.CSV(ParseCSV))
}

func (c kafkaConfig) newSink() runtime.SinkFunction[Output] {
	return connect.KafkaSink(c.Sink, func(r *kgo.Record, o Output) {
		r.Key = strconv.AppendInt(r.Key, o.Key, 10)
		r.Value = AppendJSON(r.Value, o)
	})
}

// ParseOutput reads one output record ({"key":K,"seq":S} with an optional
// "expected"), as the files and Kafka sinks write it.
func ParseOutput(b []byte) (Output, bool) { return parseJSON(b) }
