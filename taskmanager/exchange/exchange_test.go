package exchange

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime/engine"
)

// TestDelivery sends data, latency markers and end-of-partition from several
// producers and checks that each channel's buffers arrive on the channel
// index of their producer, complete and in order.
func TestDelivery(t *testing.T) {
	for _, mode := range []struct {
		name   string
		remote []bool // per producer subtask
	}{
		{"local", []bool{false, false, false}},
		{"remote", []bool{true, true, true}},
		{"mixed", []bool{false, true, false, true}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			checkGoroutines(t)
			consumer := startNode(t, Config{Credits: 3})
			producer := startNode(t, Config{})
			n := len(mode.remote)
			// The gate lists the producers in reverse so that channel index
			// and subtask differ.
			ps := producers(n)
			for i, j := 0, n-1; i < j; i, j = i+1, j-1 {
				ps[i], ps[j] = ps[j], ps[i]
			}
			g, err := consumer.x.RegisterGate(gateKey("j", 0), ps)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			sendErrs := make(chan error, n)
			count := func(p int) int { return 100 + 37*p } // data buffers of producer p
			for p := range n {
				from := consumer
				if mode.remote[p] {
					from = producer
				}
				ch, err := from.x.OpenChannel(ctx, channelID("j", p, 0), consumer.addr)
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					sendErrs <- func() error {
						defer ch.Close()
						for i := range count(p) {
							if i%10 == 5 {
								if err := ch.Send(ctx, eventBuffer(engine.BufferLatencyMarker, int64(1000*p+i))); err != nil {
									return err
								}
							}
							if err := ch.Send(ctx, dataBuffer(i)); err != nil {
								return err
							}
						}
						return ch.Send(ctx, eventBuffer(engine.BufferEndOfPartition, 0))
					}()
				}()
			}

			next := make([]int, n)    // next data sequence number, by subtask
			markers := make([]int, n) // markers seen, by subtask
			for done := 0; done < n; {
				b := receive(t, g, 10*time.Second)
				if b.Channel < 0 || b.Channel >= n {
					t.Fatalf("buffer on channel %d of %d", b.Channel, n)
				}
				p := ps[b.Channel].Subtask
				switch b.Kind {
				case engine.BufferData:
					if seq := seqOf(t, b); seq != next[p] {
						t.Fatalf("producer %d: got data %d, want %d", p, seq, next[p])
					}
					next[p]++
				case engine.BufferLatencyMarker:
					if want := int64(1000*p + next[p]); next[p]%10 != 5 || b.Value != want {
						t.Fatalf("producer %d: latency marker %d after %d data buffers", p, b.Value, next[p])
					}
					markers[p]++
				case engine.BufferEndOfPartition:
					if next[p] != count(p) {
						t.Fatalf("producer %d: end of partition after %d of %d data buffers", p, next[p], count(p))
					}
					next[p] = -1 // nothing may follow
					done++
				}
				g.Recycle(b)
			}
			for p := range n {
				if err := waitDone(t, sendErrs, 5*time.Second, "producer"); err != nil {
					t.Errorf("producer: %v", err)
				}
				if want := (count(p) + 4) / 10; markers[p] != want {
					t.Errorf("producer %d: %d latency markers, want %d", p, markers[p], want)
				}
			}
			expectNothing(t, g, 50*time.Millisecond)
			consumer.x.UnregisterGate(g.Key())
			expectIdle(t)
		})
	}
}

// TestFlowControl checks that a consumer that does not recycle holds its
// producer at exactly Credits data buffers, and that each recycled buffer
// lets exactly one more through.
func TestFlowControl(t *testing.T) {
	const credits = 3
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
			var mu sync.Mutex
			sent := 0 // Send calls that returned
			sentNow := func() int { mu.Lock(); defer mu.Unlock(); return sent }
			total := credits + 5
			result := make(chan error, 1)
			go func() {
				result <- func() error {
					defer ch.Close()
					for i := range total {
						if err := ch.Send(ctx, dataBuffer(i)); err != nil {
							return err
						}
						mu.Lock()
						sent++
						mu.Unlock()
					}
					return ch.Send(ctx, eventBuffer(engine.BufferEndOfPartition, 0))
				}()
			}()

			var held []*engine.Buffer
			for i := range credits {
				b := receive(t, g, 5*time.Second)
				if seq := seqOf(t, b); seq != i {
					t.Fatalf("got data %d, want %d", seq, i)
				}
				held = append(held, b)
			}
			expectNothing(t, g, 200*time.Millisecond)
			if n := sentNow(); n != credits {
				t.Fatalf("%d Sends returned without recycling, want %d (the credits)", n, credits)
			}
			for i := credits; i < total; i++ {
				g.Recycle(held[0])
				held = held[1:]
				b := receive(t, g, 5*time.Second)
				if seq := seqOf(t, b); seq != i {
					t.Fatalf("got data %d, want %d", seq, i)
				}
				held = append(held, b)
				if i < total-1 {
					expectNothing(t, g, 100*time.Millisecond)
					if n := sentNow(); n != i+1 {
						t.Fatalf("%d Sends returned after %d recycles, want %d", n, i-credits+1, i+1)
					}
				}
			}
			// The end of partition needs no credit.
			if b := receive(t, g, 5*time.Second); b.Kind != engine.BufferEndOfPartition {
				t.Fatalf("got buffer kind %d, want end of partition", b.Kind)
			} else {
				g.Recycle(b)
			}
			if err := waitDone(t, result, 5*time.Second, "producer"); err != nil {
				t.Fatalf("producer: %v", err)
			}
			for _, b := range held {
				g.Recycle(b)
			}
			expectIdle(t)
		})
	}
}

// TestEventsNeedNoCredit checks that events pass a channel whose credits
// are all spent, in order behind its data.
func TestEventsNeedNoCredit(t *testing.T) {
	const credits = 2
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			checkGoroutines(t)
			p := newPair(t, mode.remote, Config{Credits: credits})
			g, err := p.consumer.x.RegisterGate(gateKey("j", 0), producers(1))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			ch := p.open(t, ctx, channelID("j", 0, 0))
			defer ch.Close()
			for i := range credits {
				if err := ch.Send(ctx, dataBuffer(i)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 3 {
				if err := ch.Send(ctx, eventBuffer(engine.BufferLatencyMarker, int64(i))); err != nil {
					t.Fatal(err)
				}
			}
			if err := ch.Send(ctx, eventBuffer(engine.BufferEndOfPartition, 0)); err != nil {
				t.Fatal(err)
			}
			var kinds []engine.BufferKind
			var held []*engine.Buffer
			for range credits + 4 {
				b := receive(t, g, 5*time.Second)
				kinds = append(kinds, b.Kind)
				held = append(held, b)
			}
			want := []engine.BufferKind{engine.BufferData, engine.BufferData, engine.BufferLatencyMarker,
				engine.BufferLatencyMarker, engine.BufferLatencyMarker, engine.BufferEndOfPartition}
			if fmt.Sprint(kinds) != fmt.Sprint(want) {
				t.Fatalf("got kinds %v, want %v", kinds, want)
			}
			for _, b := range held {
				g.Recycle(b)
			}
		})
	}
}

// TestSlowConsumer runs a fast producer against a consumer that recycles
// slowly and checks that the buffers sent and not yet recycled never exceed
// the credits, and that all arrive in order.
func TestSlowConsumer(t *testing.T) {
	const (
		credits = 4
		total   = 2000
	)
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			checkGoroutines(t)
			rng := rand.New(rand.NewPCG(uint64(testSeed(t)), 0))
			p := newPair(t, mode.remote, Config{Credits: credits})
			g, err := p.consumer.x.RegisterGate(gateKey("j", 0), producers(1))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			ch := p.open(t, ctx, channelID("j", 0, 0))

			var mu sync.Mutex
			sent, recycled, maxOutstanding := 0, 0, 0
			result := make(chan error, 1)
			go func() {
				result <- func() error {
					defer ch.Close()
					for i := range total {
						if err := ch.Send(ctx, dataBuffer(i)); err != nil {
							return err
						}
						mu.Lock()
						sent++
						maxOutstanding = max(maxOutstanding, sent-recycled)
						mu.Unlock()
					}
					return ch.Send(ctx, eventBuffer(engine.BufferEndOfPartition, 0))
				}()
			}()
			for i := 0; ; i++ {
				b := receive(t, g, 10*time.Second)
				if b.Kind == engine.BufferEndOfPartition {
					if i != total {
						t.Fatalf("end of partition after %d buffers, want %d", i, total)
					}
					g.Recycle(b)
					break
				}
				if seq := seqOf(t, b); seq != i {
					t.Fatalf("got data %d, want %d", seq, i)
				}
				if rng.IntN(3) == 0 { // a slow consumer
					time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
				}
				mu.Lock()
				recycled++ // before the credit goes back
				mu.Unlock()
				g.Recycle(b)
			}
			if err := waitDone(t, result, 5*time.Second, "producer"); err != nil {
				t.Fatalf("producer: %v", err)
			}
			t.Logf("max outstanding buffers: %d (credits %d)", maxOutstanding, credits)
			if maxOutstanding > credits {
				t.Fatalf("%d buffers were sent and not recycled, credits are %d", maxOutstanding, credits)
			}
			if maxOutstanding < 1 {
				t.Fatalf("max outstanding %d", maxOutstanding)
			}
			expectIdle(t)
		})
	}
}

// TestRemoteCreditsAreTheReceivers checks that a remote channel gets the
// consumer TaskManager's credits, not the producer's.
func TestRemoteCreditsAreTheReceivers(t *testing.T) {
	checkGoroutines(t)
	consumer := startNode(t, Config{Credits: 2})
	producer := startNode(t, Config{Credits: 10})
	g, err := consumer.x.RegisterGate(gateKey("j", 0), producers(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := producer.x.OpenChannel(ctx, channelID("j", 0, 0), consumer.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	for i := range 2 {
		if err := ch.Send(ctx, dataBuffer(i)); err != nil {
			t.Fatal(err)
		}
	}
	sctx, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer scancel()
	if err := ch.Send(sctx, dataBuffer(2)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third Send: got %v, want it to wait for credit until its context ends", err)
	}
	for range 2 {
		g.Recycle(receive(t, g, 5*time.Second))
	}
}

// TestBrokenStream covers the failures of a remote channel: the consumer's
// TaskManager going away (the producer's Send fails, also while it waits
// for credit) and the producer going away before end-of-partition (the
// consumer's gate fails).
func TestBrokenStream(t *testing.T) {
	t.Run("consumer stops while producer waits for credit", func(t *testing.T) {
		checkGoroutines(t)
		p := newPair(t, true, Config{Credits: 2})
		g, err := p.consumer.x.RegisterGate(gateKey("j", 0), producers(1))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		ch := p.open(t, ctx, channelID("j", 0, 0))
		defer ch.Close()
		result := make(chan error, 1)
		go func() {
			for i := 0; ; i++ {
				if err := ch.Send(ctx, dataBuffer(i)); err != nil {
					result <- err
					return
				}
			}
		}()
		for range 2 {
			receive(t, g, 5*time.Second) // not recycled: the producer blocks
		}
		expectNothing(t, g, 100*time.Millisecond)
		start := time.Now()
		p.consumer.srv.Stop()
		err = waitDone(t, result, 5*time.Second, "blocked Send after the consumer stopped")
		t.Logf("Send failed after %v: %v", time.Since(start), err)
		if err == nil {
			t.Fatal("Send succeeded")
		}
		if err := waitErr(t, g, 5*time.Second); !errors.Is(err, ErrIncomplete) {
			t.Errorf("gate error %v, want ErrIncomplete", err)
		}
		// A later Send fails at once.
		if err := ch.Send(ctx, dataBuffer(0)); err == nil {
			t.Fatal("Send on a broken channel succeeded")
		}
		expectIdle(t)
	})

	t.Run("consumer stops while producer streams", func(t *testing.T) {
		checkGoroutines(t)
		p := newPair(t, true, Config{Credits: 4})
		g, err := p.consumer.x.RegisterGate(gateKey("j", 0), producers(1))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		ch := p.open(t, ctx, channelID("j", 0, 0))
		defer ch.Close()
		result := make(chan error, 1)
		go func() {
			for i := 0; ; i++ {
				if err := ch.Send(ctx, dataBuffer(i)); err != nil {
					result <- err
					return
				}
			}
		}()
		consumed := make(chan struct{})
		go func() { // a consumer that keeps up until its server stops
			defer close(consumed)
			for i := 0; ; i++ {
				select {
				case b := <-g.Buffers():
					g.Recycle(b)
					if i == 100 {
						p.consumer.srv.Stop()
					}
				case <-g.Err():
					return
				}
			}
		}()
		if err := waitDone(t, result, 5*time.Second, "Send after the consumer stopped"); err == nil {
			t.Fatal("Send succeeded")
		}
		waitDone(t, consumed, 5*time.Second, "gate error")
	})

	t.Run("producer closes before end of partition", func(t *testing.T) {
		for _, mode := range modes() {
			t.Run(mode.name, func(t *testing.T) {
				checkGoroutines(t)
				p := newPair(t, mode.remote, Config{})
				g, err := p.consumer.x.RegisterGate(gateKey("j", 0), producers(2))
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				ch := p.open(t, ctx, channelID("j", 1, 0))
				if err := ch.Send(ctx, dataBuffer(0)); err != nil {
					t.Fatal(err)
				}
				g.Recycle(receive(t, g, 5*time.Second))
				ch.Close()
				err = waitErr(t, g, 5*time.Second)
				if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), channelID("j", 1, 0).String()) {
					t.Fatalf("gate error %q, want ErrIncomplete naming the channel", err)
				}
				if err := ch.Close(); err != nil {
					t.Fatalf("second Close: %v", err)
				}
				if err := ch.Send(ctx, dataBuffer(1)); !errors.Is(err, ErrClosed) {
					t.Fatalf("Send after Close: %v, want ErrClosed", err)
				}
				expectIdle(t)
			})
		}
	})

	t.Run("producer canceled before end of partition", func(t *testing.T) {
		for _, mode := range modes() {
			t.Run(mode.name, func(t *testing.T) {
				checkGoroutines(t)
				p := newPair(t, mode.remote, Config{})
				g, err := p.consumer.x.RegisterGate(gateKey("j", 0), producers(1))
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancelCause(context.Background())
				ch := p.open(t, ctx, channelID("j", 0, 0))
				if err := ch.Send(ctx, dataBuffer(0)); err != nil {
					t.Fatal(err)
				}
				g.Recycle(receive(t, g, 5*time.Second))
				cancel(fmt.Errorf("%w: by the JobManager", ErrCanceled))
				if err := ch.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				err = waitErr(t, g, 5*time.Second)
				if !errors.Is(err, ErrCanceled) || errors.Is(err, ErrIncomplete) ||
					!strings.Contains(err.Error(), channelID("j", 0, 0).String()) {
					t.Fatalf("gate error %q, want ErrCanceled (not ErrIncomplete) naming the channel", err)
				}
				expectIdle(t)
			})
		}
	})

	t.Run("producer context cancelled while waiting for credit", func(t *testing.T) {
		for _, mode := range modes() {
			t.Run(mode.name, func(t *testing.T) {
				checkGoroutines(t)
				p := newPair(t, mode.remote, Config{Credits: 1})
				g, err := p.consumer.x.RegisterGate(gateKey("j", 0), producers(1))
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				ch := p.open(t, ctx, channelID("j", 0, 0))
				result := make(chan error, 1)
				go func() {
					defer ch.Close() // as a task does when it fails
					for i := 0; ; i++ {
						if err := ch.Send(ctx, dataBuffer(i)); err != nil {
							result <- err
							return
						}
					}
				}()
				b := receive(t, g, 5*time.Second)
				expectNothing(t, g, 50*time.Millisecond)
				cancel()
				if err := waitDone(t, result, 5*time.Second, "Send after cancel"); !errors.Is(err, context.Canceled) {
					t.Fatalf("Send: %v, want context.Canceled", err)
				}
				if err := waitErr(t, g, 5*time.Second); !errors.Is(err, ErrIncomplete) {
					t.Fatalf("gate error %v, want ErrIncomplete", err)
				}
				g.Recycle(b)
				expectIdle(t)
			})
		}
	})

	t.Run("producer TaskManager closes", func(t *testing.T) {
		checkGoroutines(t)
		p := newPair(t, true, Config{})
		g, err := p.consumer.x.RegisterGate(gateKey("j", 0), producers(1))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		ch := p.open(t, ctx, channelID("j", 0, 0))
		defer ch.Close()
		if err := ch.Send(ctx, dataBuffer(0)); err != nil {
			t.Fatal(err)
		}
		g.Recycle(receive(t, g, 5*time.Second))
		p.producer.x.Close() // closes its connections
		p.producer.srv.Stop()
		if err := waitErr(t, g, 5*time.Second); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("gate error %v, want ErrIncomplete", err)
		}
		if err := ch.Send(ctx, dataBuffer(1)); err == nil {
			t.Fatal("Send after the producer's exchange closed succeeded")
		}
	})

	t.Run("gate unregistered while producer waits for credit", func(t *testing.T) {
		for _, mode := range modes() {
			t.Run(mode.name, func(t *testing.T) {
				checkGoroutines(t)
				p := newPair(t, mode.remote, Config{Credits: 1})
				g, err := p.consumer.x.RegisterGate(gateKey("j", 0), producers(1))
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				ch := p.open(t, ctx, channelID("j", 0, 0))
				defer ch.Close()
				result := make(chan error, 1)
				go func() {
					for i := 0; ; i++ {
						if err := ch.Send(ctx, dataBuffer(i)); err != nil {
							result <- err
							return
						}
					}
				}()
				receive(t, g, 5*time.Second) // not recycled
				expectNothing(t, g, 50*time.Millisecond)
				p.consumer.x.UnregisterGate(g.Key())
				err = waitDone(t, result, 5*time.Second, "Send after unregister")
				if !errors.Is(err, ErrGateUnregistered) {
					t.Fatalf("Send: %v, want ErrGateUnregistered", err)
				}
				expectIdle(t) // the stream ended: no Close needed for that
			})
		}
	})
}

// TestOpen covers opening channels: before the gate is registered, to a gate
// that never appears, with a cancelled context, and the errors for unknown
// and duplicate channels.
func TestOpen(t *testing.T) {
	for _, mode := range modes() {
		t.Run(mode.name, func(t *testing.T) {
			t.Run("gate never registered", func(t *testing.T) {
				checkGoroutines(t)
				const timeout = 200 * time.Millisecond
				p := newPair(t, mode.remote, Config{OpenTimeout: timeout})
				id := channelID("j", 0, 0)
				start := time.Now()
				_, err := p.producer.x.OpenChannel(context.Background(), id, p.consumer.addr)
				took := time.Since(start)
				t.Logf("error after %v: %v", took, err)
				if !errors.Is(err, ErrGateNotFound) {
					t.Fatalf("got %v, want ErrGateNotFound", err)
				}
				if !strings.Contains(err.Error(), id.String()) {
					t.Fatalf("error %q does not name %v", err, id)
				}
				expectIdle(t)
				if took < timeout || took > timeout+2*time.Second {
					t.Fatalf("failed after %v, OpenTimeout is %v", took, timeout)
				}
			})

			t.Run("gate registered later", func(t *testing.T) {
				checkGoroutines(t)
				p := newPair(t, mode.remote, Config{OpenTimeout: 10 * time.Second})
				id := channelID("j", 0, 0)
				type opened struct {
					ch  engine.OutputChannel
					err error
				}
				result := make(chan opened, 1)
				go func() {
					ch, err := p.producer.x.OpenChannel(context.Background(), id, p.consumer.addr)
					result <- opened{ch, err}
				}()
				time.Sleep(100 * time.Millisecond)
				select {
				case r := <-result:
					t.Fatalf("open returned before the gate was registered: %v", r.err)
				default:
				}
				g, err := p.consumer.x.RegisterGate(id.Gate(), producers(1))
				if err != nil {
					t.Fatal(err)
				}
				r := waitDone(t, result, 5*time.Second, "open")
				if r.err != nil {
					t.Fatal(r.err)
				}
				if err := r.ch.Send(context.Background(), dataBuffer(7)); err != nil {
					t.Fatal(err)
				}
				if err := r.ch.Send(context.Background(), eventBuffer(engine.BufferEndOfPartition, 0)); err != nil {
					t.Fatal(err)
				}
				if err := r.ch.Close(); err != nil {
					t.Fatal(err)
				}
				b := receive(t, g, 5*time.Second)
				if seq := seqOf(t, b); seq != 7 {
					t.Fatalf("got %d, want 7", seq)
				}
				g.Recycle(b)
				if b := receive(t, g, 5*time.Second); b.Kind != engine.BufferEndOfPartition {
					t.Fatalf("got kind %d, want end of partition", b.Kind)
				}
				expectNothing(t, g, 50*time.Millisecond)
				expectIdle(t)
			})

			t.Run("context cancelled", func(t *testing.T) {
				checkGoroutines(t)
				p := newPair(t, mode.remote, Config{OpenTimeout: 10 * time.Second})
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				start := time.Now()
				_, err := p.producer.x.OpenChannel(ctx, channelID("j", 0, 0), p.consumer.addr)
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("got %v, want context.DeadlineExceeded", err)
				}
				if took := time.Since(start); took > 2*time.Second {
					t.Fatalf("open returned %v after its context ended", took)
				}
			})

			t.Run("unknown and duplicate channels", func(t *testing.T) {
				checkGoroutines(t)
				p := newPair(t, mode.remote, Config{OpenTimeout: time.Second})
				if _, err := p.consumer.x.RegisterGate(gateKey("j", 0), producers(1)); err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				if _, err := p.producer.x.OpenChannel(ctx, channelID("j", 5, 0), p.consumer.addr); !errors.Is(err, ErrUnknownChannel) {
					t.Fatalf("unknown producer: got %v, want ErrUnknownChannel", err)
				}
				ch := p.open(t, ctx, channelID("j", 0, 0))
				defer ch.Close()
				if _, err := p.producer.x.OpenChannel(ctx, channelID("j", 0, 0), p.consumer.addr); !errors.Is(err, ErrChannelInUse) {
					t.Fatalf("second open: got %v, want ErrChannelInUse", err)
				}
			})
		})
	}
}

func TestRegisterGate(t *testing.T) {
	x := New(Config{Logger: testLogger()})
	defer x.Close()
	key := gateKey("j", 0)
	g, err := x.RegisterGate(key, producers(3))
	if err != nil {
		t.Fatal(err)
	}
	if g.NumChannels() != 3 || g.Key() != key {
		t.Fatalf("gate %v with %d channels", g.Key(), g.NumChannels())
	}
	if _, err := x.RegisterGate(key, producers(3)); err == nil {
		t.Fatal("registered a gate twice")
	}
	if _, err := x.RegisterGate(gateKey("j", 1), []Producer{{1, 0}, {1, 0}}); err == nil {
		t.Fatal("registered a gate listing a producer twice")
	}
	if _, err := x.RegisterGate(gateKey("j", 2), nil); err == nil {
		t.Fatal("registered a gate without channels")
	}
	x.UnregisterGate(key)
	x.UnregisterGate(key) // idempotent
	if _, err := x.RegisterGate(key, producers(1)); err != nil {
		t.Fatalf("register after unregister: %v", err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := x.OpenChannel(context.Background(), channelID("j", 0, 0), "127.0.0.1:1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("open after Close: %v, want ErrClosed", err)
	}
}

// TestUnregisterDropsQueuedBuffers checks that buffers still queued when the
// gate goes away are dropped and the local producer then gets an error.
func TestUnregisterDropsQueuedBuffers(t *testing.T) {
	x := New(Config{SelfAddress: "self", Credits: 2, Logger: testLogger()})
	defer x.Close()
	g, err := x.RegisterGate(gateKey("j", 0), producers(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ch, err := x.OpenChannel(ctx, channelID("j", 0, 0), "self")
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	for i := range 2 {
		if err := ch.Send(ctx, dataBuffer(i)); err != nil {
			t.Fatal(err)
		}
	}
	x.UnregisterGate(g.Key())
	if n := len(g.Buffers()); n != 0 {
		t.Fatalf("%d buffers still queued", n)
	}
	if err := ch.Send(ctx, eventBuffer(engine.BufferEndOfPartition, 0)); !errors.Is(err, ErrGateUnregistered) {
		t.Fatalf("Send after unregister: %v, want ErrGateUnregistered", err)
	}
}
