package exchange

import (
	"sync/atomic"
	"time"

	"github.com/weirstream/weir/runtime/engine"
)

// backpressure measures how long a channel's Send waits for credit: the
// waits that ended, plus the one under way, so a task blocked for minutes
// shows it while blocked. Only the slow path (no credit at hand) reads the
// clock.
type backpressure struct {
	total, since atomic.Int64 // ns; since is 0 when not waiting
}

func (b *backpressure) begin() int64 {
	now := time.Now().UnixNano()
	b.since.Store(now)
	return now
}

func (b *backpressure) end(since int64) {
	b.since.Store(0)
	b.total.Add(time.Now().UnixNano() - since)
}

func (b *backpressure) nanos() int64 {
	t := b.total.Load()
	if s := b.since.Load(); s != 0 {
		t += max(time.Now().UnixNano()-s, 0)
	}
	return t
}

var (
	_ engine.OutputChannelStats = (*localChannel)(nil)
	_ engine.OutputChannelStats = (*remoteChannel)(nil)
	_ engine.InputGateStats     = (*Gate)(nil)
)
