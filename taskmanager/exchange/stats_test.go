package exchange

import (
	"context"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
)

// TestBackpressureIsTheWaitForCredit checks that a channel counts the time
// Send waits for credit, a wait under way included, and reports the credit
// in use; and that the gate reports its queue.
func TestBackpressureIsTheWaitForCredit(t *testing.T) {
	const credits = 2
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			checkGoroutines(t)
			p := newPair(t, mode.remote, Config{Credits: credits})
			g, err := p.consumer.x.RegisterGate(gateKey("j", 0), producers(1))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch := p.open(t, ctx, channelID("j", 0, 0))
			st := ch.(engine.OutputChannelStats)
			if used, capacity := st.Credits(); used != 0 || capacity != credits {
				t.Fatalf("credits %d/%d before sending, want 0/%d", used, capacity, credits)
			}
			for i := range credits {
				if err := ch.Send(ctx, dataBuffer(i)); err != nil {
					t.Fatal(err)
				}
			}
			if bp := st.BackpressuredNanos(); bp != 0 {
				t.Fatalf("backpressured %v with credit at hand, want 0", time.Duration(bp))
			}
			if used, _ := st.Credits(); used != credits {
				t.Fatalf("credits in use %d, want all %d", used, credits)
			}
			// The third Send waits until the consumer recycles a buffer.
			sent := make(chan error, 1)
			go func() { sent <- ch.Send(ctx, dataBuffer(credits)) }()
			const hold = 100 * time.Millisecond
			first := receive(t, g, 5*time.Second)
			second := receive(t, g, 5*time.Second)
			if q, capacity := g.Queued(); q != 0 || capacity < credits {
				t.Fatalf("gate queue %d/%d after taking both buffers", q, capacity)
			}
			// The wait is counted while it lasts, and keeps growing.
			var during int64
			deadline := time.Now().Add(5 * time.Second)
			for during = st.BackpressuredNanos(); during == 0; during = st.BackpressuredNanos() {
				if time.Now().After(deadline) {
					t.Fatal("no backpressure counted while Send waits for credit")
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(hold)
			if bp := st.BackpressuredNanos(); bp <= during {
				t.Fatalf("backpressure stayed at %v while Send went on waiting", time.Duration(bp))
			}
			g.Recycle(first)
			if err := waitDone(t, sent, 5*time.Second, "send"); err != nil {
				t.Fatal(err)
			}
			after := st.BackpressuredNanos()
			if after <= during {
				t.Fatalf("backpressured %v after the wait, want more than the %v counted during it", time.Duration(after), time.Duration(during))
			}
			third := receive(t, g, 5*time.Second)
			if later := st.BackpressuredNanos(); later != after {
				t.Fatalf("backpressure grew from %d to %d without a wait", after, later)
			}
			if err := ch.Send(ctx, eventBuffer(engine.BufferEndOfPartition, 0)); err != nil {
				t.Fatal(err)
			}
			g.Recycle(receive(t, g, 5*time.Second))
			g.Recycle(second)
			g.Recycle(third)
			ch.Close()
			expectIdle(t)
		})
	}
}
