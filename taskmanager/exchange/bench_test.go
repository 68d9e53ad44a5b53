package exchange

import (
	"context"
	"fmt"
	"testing"

	"github.com/weirstream/weir/runtime/engine"
)

// benchmarkThroughput pushes full 32 KiB data buffers through one channel
// to a consumer that recycles them at once.
func benchmarkThroughput(b *testing.B, remote bool, credits int) {
	p := newPair(b, remote, Config{Credits: credits})
	g, err := p.consumer.x.RegisterGate(gateKey("bench", 0), producers(1))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ch := p.open(b, ctx, channelID("bench", 0, 0))
	consumed := make(chan int)
	go func() {
		n := 0
		for buf := range g.Buffers() {
			eop := buf.Kind == engine.BufferEndOfPartition
			n += len(buf.Data)
			g.Recycle(buf)
			if eop {
				consumed <- n
				return
			}
		}
	}()

	b.SetBytes(engine.BufferSize)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		buf := engine.GetBuffer()
		buf.Data = buf.Data[:engine.BufferSize]
		buf.Records = 1
		if err := ch.Send(ctx, buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := ch.Send(ctx, eventBuffer(engine.BufferEndOfPartition, 0)); err != nil {
		b.Fatal(err)
	}
	n := <-consumed
	b.StopTimer()
	if err := ch.Close(); err != nil {
		b.Fatal(err)
	}
	if n != b.N*engine.BufferSize {
		b.Fatalf("consumed %d bytes, want %d", n, b.N*engine.BufferSize)
	}
}

func BenchmarkLocalThroughput(b *testing.B) {
	for _, credits := range []int{4, 16} {
		b.Run(fmt.Sprintf("credits=%d", credits), func(b *testing.B) { benchmarkThroughput(b, false, credits) })
	}
}

func BenchmarkRemoteThroughput(b *testing.B) {
	for _, credits := range []int{4, 16} {
		b.Run(fmt.Sprintf("credits=%d", credits), func(b *testing.B) { benchmarkThroughput(b, true, credits) })
	}
}
