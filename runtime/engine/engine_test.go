package engine

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestManualClockTimer(t *testing.T) {
	c := NewManualClock(time.Unix(100, 0))
	tm := c.NewTimer()
	fired := func() bool {
		select {
		case <-tm.C():
			return true
		default:
			return false
		}
	}
	tm.Reset(c.Now() + int64(time.Second))
	c.Advance(999 * time.Millisecond)
	if fired() {
		t.Fatal("fired before its deadline")
	}
	c.Advance(time.Millisecond)
	if !fired() {
		t.Fatal("did not fire at its deadline")
	}
	c.Advance(time.Hour)
	if fired() {
		t.Fatal("fired twice")
	}
	tm.Reset(c.Now() - 1) // already due
	if !fired() {
		t.Fatal("a deadline in the past did not fire at once")
	}
	tm.Reset(c.Now() + 10)
	tm.Stop()
	c.Advance(time.Second)
	if fired() {
		t.Fatal("a stopped timer fired")
	}
	c.Set(time.Unix(0, 0))
	if c.Now() != time.Unix(100, 0).Add(time.Hour+2*time.Second).UnixNano() {
		t.Fatalf("the clock went back to %d", c.Now())
	}
}

func TestAlignerHoldsAChannelUntilAllDeliverTheBarrier(t *testing.T) {
	a := NewAligner(3)
	b1 := Barrier{ID: 1}
	if got := a.OnBarrier(0, b1, 10); got != BarrierAccepted {
		t.Fatalf("first barrier: %v", got)
	}
	if _, _, ok := a.Aligned(10); ok {
		t.Fatal("aligned with one channel of three")
	}
	if !a.Blocked(0) || a.Blocked(1) {
		t.Fatal("only channel 0 must be blocked")
	}
	held := &Buffer{Channel: 0}
	a.Hold(held)
	a.EndOfPartition(2) // an ended channel is not waited for
	a.OnBarrier(1, b1, 25)
	b, ns, ok := a.Aligned(30)
	if !ok || b.ID != 1 || ns != 20 {
		t.Fatalf("Aligned = %+v, %d, %v", b, ns, ok)
	}
	q := a.Release()
	if len(q[0]) != 1 || q[0][0] != held || a.Blocked(0) {
		t.Fatalf("released %v", q)
	}
	if got := a.OnBarrier(1, b1, 40); got != BarrierIgnore {
		t.Fatalf("a barrier of a taken checkpoint: %v", got)
	}
	// A newer checkpoint overtakes one still aligning.
	a.OnBarrier(0, Barrier{ID: 2}, 50)
	if got := a.OnBarrier(1, Barrier{ID: 3}, 60); got != BarrierOvertaken {
		t.Fatalf("newer barrier: %v", got)
	}
	a.Release()
	if got := a.OnBarrier(1, Barrier{ID: 3}, 60); got != BarrierAccepted {
		t.Fatalf("newer barrier offered again: %v", got)
	}
	if got := a.OnBarrier(0, Barrier{ID: 2}, 70); got != BarrierIgnore {
		t.Fatalf("the overtaken barrier: %v", got)
	}
}

func TestInputWatermarksLeaveIdleAndTimelessChannelsOut(t *testing.T) {
	w := NewInputWatermarks([]bool{false, false, true})
	if wm, active := w.Combined(); !active || wm != NoTimestamp {
		t.Fatalf("before any watermark: %d, %v", wm, active)
	}
	w.Update(0, BufferWatermark, 100)
	w.Update(1, BufferWatermark, 50)
	w.Update(1, BufferWatermark, 40) // never backwards
	if wm, _ := w.Combined(); wm != 50 {
		t.Fatalf("min of 100 and 50: %d", wm)
	}
	w.Update(1, BufferWatermarkStatus, 1)
	if wm, _ := w.Combined(); wm != 100 {
		t.Fatalf("channel 1 idle: %d", wm)
	}
	w.Update(0, BufferWatermarkStatus, 1)
	if _, active := w.Combined(); active {
		t.Fatal("all channels idle or without event time, yet active")
	}
}

func TestMailboxRefusesTriggersOnceClosed(t *testing.T) {
	m := NewMailbox(2)
	if err := m.Trigger(Barrier{ID: 1}); err != nil {
		t.Fatal(err)
	}
	m.Notify(ControlComplete, 1)
	if err := m.Trigger(Barrier{ID: 2}); !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("full mailbox: %v", err)
	}
	m.Notify(ControlAbort, 2) // dropped, not blocking
	pending := m.Close()
	if len(pending) != 1 || pending[0].ID != 1 {
		t.Fatalf("pending triggers %+v", pending)
	}
	if err := m.Trigger(Barrier{ID: 3}); !errors.Is(err, ErrMailboxClosed) {
		t.Fatalf("closed mailbox: %v", err)
	}
}

// sliceChannel keeps what is sent to it.
type sliceChannel struct{ sent []*Buffer }

func (c *sliceChannel) Send(_ context.Context, b *Buffer) error {
	c.sent = append(c.sent, b)
	return nil
}
func (c *sliceChannel) Close() error { return nil }

type host struct {
	err         error
	bytes, bufs int
}

func (h *host) Context() context.Context { return context.Background() }
func (h *host) Failed() bool             { return h.err != nil }
func (h *host) Fail(err error)           { h.err = err }
func (h *host) Sent(n int)               { h.bytes += n; h.bufs++ }

func TestWriterFramesRecordsAndKeepsEventsInOrder(t *testing.T) {
	h := &host{}
	chs := []*sliceChannel{{}, {}}
	w := NewWriter(h, []OutputChannel{chs[0], chs[1]}, 1)
	w.Append(0, []byte("ab"))
	w.Append(0, []byte("c"))
	w.Broadcast(BufferWatermark, 7) // flushes channel 0 first
	w.ForwardMarker(99)             // channel 1, the first
	big := make([]byte, BufferSize/2)
	w.Append(1, big)
	w.Append(1, big) // does not fit: the first goes out
	w.Flush()
	kinds := func(c *sliceChannel) (out []BufferKind) {
		for _, b := range c.sent {
			out = append(out, b.Kind)
		}
		return out
	}
	if k := kinds(chs[0]); len(k) != 2 || k[0] != BufferData || k[1] != BufferWatermark {
		t.Fatalf("channel 0: %v", k)
	}
	if d := chs[0].sent[0]; d.Records != 2 || string(d.Data) != "\x02ab\x01c" {
		t.Fatalf("frames %q (%d records)", d.Data, d.Records)
	}
	if k := kinds(chs[1]); len(k) != 4 || k[0] != BufferWatermark || k[1] != BufferLatencyMarker || k[2] != BufferData || k[3] != BufferData {
		t.Fatalf("channel 1: %v", k)
	}
	if h.bufs != 3 {
		t.Fatalf("%d data buffers counted, want 3", h.bufs)
	}
}
