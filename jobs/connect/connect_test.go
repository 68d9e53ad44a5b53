package connect

import (
	"strings"
	"testing"

	"github.com/weirstream/weir/connectors/kafka"
	"github.com/weirstream/weir/runtime"
)

func params(kv ...string) *runtime.Params {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return runtime.NewParams(m)
}

func TestSourceAndSinkParameters(t *testing.T) {
	p := params("kafka-brokers", "a:9092, b:9092", "source-topic", "x,y", "start", "timestamp:5", "delivery", "at-least-once",
		"kafka-sasl-mechanism", "SCRAM-SHA-512", "kafka-sasl-user", "u", "kafka-sasl-password-env", "KAFKA_PW")
	src := Source(p, "t")
	sink := Sink(p, "kafka", "out", src.Client)
	if err := p.CheckUnused(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(src.Client.Brokers, "|") != "a:9092|b:9092" || strings.Join(src.Topics, "|") != "x|y" ||
		src.Start != kafka.Timestamp || src.StartMs != 5 || sink.Delivery != kafka.AtLeastOnce || sink.Topic != "out" {
		t.Fatalf("source %+v sink %+v", src, sink)
	}
	if src.Client.SASLPassword.Env != "KAFKA_PW" || src.Client.SASLPassword.String() != "env:KAFKA_PW" {
		t.Fatalf("password source %v", src.Client.SASLPassword)
	}
}

func TestParameterErrors(t *testing.T) {
	for _, tc := range []struct {
		kv   []string
		sink string
		want string
	}{
		{[]string{"kafka-sasl-mechanism", "PLAIN", "kafka-sasl-user", "u"}, "kafka", "kafka-sasl-password-env"},
		{[]string{"start", "committed"}, "kafka", "committed needs a group"},
		{nil, "webhook", "webhook-url-env or webhook-url-file"},
		{[]string{"webhook-batch", "0"}, "kafka", "at least 1"},
	} {
		p := params(tc.kv...)
		src := Source(p, "t")
		Sink(p, tc.sink, "out", src.Client)
		if err := p.CheckUnused(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v sink=%s: %v, want %q", tc.kv, tc.sink, err, tc.want)
		}
	}
}
