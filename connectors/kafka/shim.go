package kafka

import "github.com/weirstream/weir/runtime"

// sideCollector is replaced by runtime.SideCollector once side outputs land.
func sideCollector(ctx *runtime.RuntimeContext) runtime.Collector[DeadLetter] { return logDead{ctx} }

type logDead struct{ ctx *runtime.RuntimeContext }

func (l logDead) Collect(d DeadLetter) {
	l.ctx.Logger().Warn("kafka source: undecodable record", "topic", d.Topic, "partition", d.Partition, "offset", d.Offset, "reason", d.Reason)
}
