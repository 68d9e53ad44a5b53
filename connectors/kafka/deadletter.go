package kafka

import "github.com/weirstream/weir/runtime"

// DeadLetterTag is the side output of a Source's undecodable records:
// runtime.SideOutput(stream, kafka.DeadLetterTag) is their stream.
var DeadLetterTag = runtime.NewOutputTag[DeadLetter]("dead-letters", DeadLetterCodec{})

// deadLetters hands dead letters to the side output and logs a few of
// them, so a job that does not consume the side output still says that
// records were rejected (the first ten, then every thousandth).
type deadLetters struct {
	out runtime.Collector[DeadLetter]
	rc  *runtime.RuntimeContext
	n   int64
}

func (d *deadLetters) Collect(l DeadLetter) {
	d.n++
	if d.n <= 10 || d.n%1000 == 0 {
		d.rc.Logger().Warn("kafka source: undecodable record sent to the dead letters", "topic", l.Topic,
			"partition", l.Partition, "offset", l.Offset, "reason", l.Reason, "count", d.n)
	}
	d.out.Collect(l)
}
