package kafka

import (
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/connectors/kafka/kafkatest"
	"github.com/weirstream/weir/runtime"
)

// BenchmarkSource reads 200,000 records of 100 bytes from 4 partitions of
// the in-process broker through one source subtask: decode and offset
// bookkeeping plus franz-go's fetch path (kfake shares the CPU); with
// event-time, also each record's timestamp and its partition's watermark.
func BenchmarkSource(b *testing.B) {
	const n = 200_000
	c := kafkatest.Start(b, map[string]int32{"bench": 4})
	addrs := c.ListenAddrs()
	val := make([]byte, 100)
	var rs []*kgo.Record
	for i := range n {
		rs = append(rs, &kgo.Record{Topic: "bench", Partition: int32(i % 4), Value: val, Timestamp: time.UnixMilli(int64(i))})
		if len(rs) == 10_000 {
			kafkatest.Produce(b, addrs, rs...)
			rs = rs[:0]
		}
	}
	for _, eventTime := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "event-time"}[eventTime], func(b *testing.B) {
			var count countCollector
			for b.Loop() {
				s := &Source[int]{Client: ClientConfig{Brokers: addrs}, Topics: []string{"bench"}, Bounded: true,
					Decode: Raw(func(_, v []byte) (int, error) { return len(v), nil })}
				poll := func() (time.Duration, error) { return s.Poll(&count) }
				var open func(*runtime.RuntimeContext) error = s.Open
				if eventTime {
					e := s.EventTime(Watermarks[int]{OutOfOrderness: time.Second, Idleness: time.Minute})
					poll = func() (time.Duration, error) { return e.Poll(&count) }
					open = e.Open
				}
				ctx := runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "b", UID: "s"})
				if err := s.InitializeState(ctx, nil); err != nil {
					b.Fatal(err)
				}
				if err := open(ctx); err != nil {
					b.Fatal(err)
				}
				for {
					wait, err := poll()
					if err == runtime.ErrEndOfInput {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					time.Sleep(wait)
				}
				s.Close()
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

type countCollector struct{ n int64 }

func (c *countCollector) Collect(int) { c.n++ }

func (c *countCollector) CollectWithTimestamp(int, int64) { c.n++ }
func (c *countCollector) EmitWatermark(int64)             {}
func (c *countCollector) MarkIdle()                       {}

// BenchmarkSink writes 200,000 records of about 60 bytes through one sink
// subtask with a checkpoint (pre-commit, then commit) every 50,000
// records, for each delivery guarantee. The pre-commit's flush runs
// inline here; in a job it runs in the checkpoint's asynchronous phase.
func BenchmarkSink(b *testing.B) {
	const n, every = 200_000, 50_000
	for _, g := range []Guarantee{ExactlyOnce, AtLeastOnce, None} {
		b.Run(g.String(), func(b *testing.B) {
			c := kafkatest.Start(b, map[string]int32{"out": 4})
			addrs := c.ListenAddrs()
			var cp int64
			for b.Loop() {
				s := &Sink[int64]{Client: ClientConfig{Brokers: addrs}, Topic: "out", Guarantee: g,
					Encode: func(r *kgo.Record, v int64) {
						r.Key = strconv.AppendInt(r.Key, v%1000, 10)
						r.Value = append(strconv.AppendInt(r.Value, v, 10), `,"padding to about sixty bytes of JSON"`...)
					}}
				ctx := runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "b", UID: "k"})
				if err := s.InitializeState(ctx, nil); err != nil {
					b.Fatal(err)
				}
				if err := s.Open(ctx); err != nil {
					b.Fatal(err)
				}
				for i := range int64(n) {
					if err := s.Invoke(i); err != nil {
						b.Fatal(err)
					}
					if (i+1)%every == 0 {
						cp++
						if _, err := s.SnapshotState(cp); err != nil {
							b.Fatal(err)
						}
						if err := s.NotifyCheckpointComplete(cp); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := s.EndInput(); err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
