package main

import (
	"fmt"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/connectors"
	"github.com/weirstream/weir/runtime"
)

// JobName is the name `weir job submit` takes.
const JobName = "card-velocity"

// velocityJob is the registration: name, one line, parameters, builder.
var velocityJob = weir.Job{
	Name:        JobName,
	Description: "Card velocity check: alerts when one card makes more than `limit` payments within `window`",
	Params: []weir.Param{
		{Name: "cards", Type: weir.Int, Default: "100", Description: "number of cards the generated payments draw from"},
		{Name: "hot-card", Type: weir.Int, Default: "7", Description: "the card that also gets every 10th payment (a card in a bot's hands)"},
		{Name: "count", Type: weir.Int, Default: "0", Description: "payments per source subtask before it finishes (0 = unbounded)"},
		{Name: "rate", Type: weir.Float, Default: "100", Description: "payments per second per source subtask (0 = as fast as possible)"},
		{Name: "limit", Type: weir.Int, Default: "20", Description: "payments a card may make within the window"},
		{Name: "window", Type: weir.Duration, Default: "1m", Description: "how long a card's count lasts after its first payment"},
	},
	Build: build,
}

// Payment is one card payment.
type Payment struct {
	Card  int64
	Cents int64
}

// Alert says a card went over the limit.
type Alert struct {
	Card, Count int64
}

func (a Alert) String() string {
	return fmt.Sprintf("VelocityAlert{card=%d, count=%d}", a.Card, a.Count)
}

// paymentCodec carries payments between TaskManagers: records cross the
// wire through a codec per type, with no reflection.
type paymentCodec struct{}

func (paymentCodec) Append(dst []byte, p Payment) []byte {
	dst = runtime.Int64Codec{}.Append(dst, p.Card)
	return runtime.Int64Codec{}.Append(dst, p.Cents)
}

func (paymentCodec) Decode(src []byte) (Payment, error) {
	r := runtime.NewReader(src)
	p := Payment{Card: r.Varint(), Cents: r.Varint()}
	return p, r.Done()
}

type alertCodec struct{}

func (alertCodec) Append(dst []byte, a Alert) []byte {
	dst = runtime.Int64Codec{}.Append(dst, a.Card)
	return runtime.Int64Codec{}.Append(dst, a.Count)
}

func (alertCodec) Decode(src []byte) (Alert, error) {
	r := runtime.NewReader(src)
	a := Alert{Card: r.Varint(), Count: r.Varint()}
	return a, r.Done()
}

type config struct {
	cards, hot, count, limit int64
	rate                     float64
	window                   time.Duration
}

func build(env *runtime.Env, p *runtime.Params) error {
	c := config{
		cards:  p.Int("cards", 100),
		hot:    p.Int("hot-card", 7),
		count:  p.Int("count", 0),
		rate:   p.Float("rate", 100),
		limit:  p.Int("limit", 20),
		window: p.Duration("window", time.Minute),
	}
	if c.cards < 1 {
		p.Errorf("cards", "%d must be at least 1", c.cards)
	}
	if c.limit < 1 {
		p.Errorf("limit", "%d must be at least 1", c.limit)
	}
	if c.window <= 0 {
		p.Errorf("window", "%v must be positive", c.window)
	}
	if err := connectors.ValidateRate(c.rate); err != nil {
		p.Errorf("rate", "%v", err)
	}
	// Fixed so the key groups, and so the state, survive a rescale.
	env.SetMaxParallelism(128)

	payments := runtime.FromSource(env, "payments", func() runtime.SourceFunction[Payment] {
		return &connectors.Generator[Payment]{Rate: c.rate, Count: c.count, Next: func(i int64, _ time.Time) Payment {
			return payment(c, i)
		}}
	}, paymentCodec{}).UID("payments")
	byCard := runtime.KeyBy(payments, runtime.Int64Key, func(p Payment) int64 { return p.Card })
	alerts := runtime.Process(byCard, "velocity", func() runtime.KeyedProcessFunction[int64, Payment, Alert] {
		return &velocity{limit: c.limit, window: c.window.Milliseconds()}
	}, alertCodec{}).UID("velocity")
	runtime.SinkTo(alerts, "print-alerts", func() runtime.SinkFunction[Alert] {
		return &connectors.Print[Alert]{Format: Alert.String}
	}).UID("print-alerts")
	return nil
}

// payment is the i-th payment of a source subtask: a pure function of i,
// so a restored source replays exactly what it would have produced.
func payment(c config, i int64) Payment {
	card := i % c.cards
	if i%10 == 0 {
		card = c.hot
	}
	return Payment{Card: card, Cents: 100 + (i*7919)%50_000}
}

// velocity counts a card's payments in keyed state. The first payment of
// a window registers a processing-time timer at its end, which clears the
// count; a card alerts once per window.
type velocity struct {
	limit, window int64

	count   runtime.ValueState[int64]
	alerted runtime.ValueState[bool]
}

func (v *velocity) Open(ctx *runtime.KeyedContext[int64]) error {
	var err error
	if v.count, err = runtime.GetValueState(ctx, "count", runtime.Int64Codec{}); err != nil {
		return err
	}
	v.alerted, err = runtime.GetValueState(ctx, "alerted", runtime.BoolCodec{})
	return err
}

func (v *velocity) ProcessElement(p Payment, ctx *runtime.KeyedContext[int64], out runtime.Collector[Alert]) error {
	n, ok := v.count.Value()
	if !ok {
		ctx.RegisterProcessingTimeTimer(ctx.CurrentProcessingTime() + v.window)
	}
	n++
	v.count.Update(n)
	if _, done := v.alerted.Value(); n > v.limit && !done {
		v.alerted.Update(true)
		out.Collect(Alert{Card: p.Card, Count: n})
	}
	return nil
}

// OnTimer ends the card's window.
func (v *velocity) OnTimer(_ int64, _ *runtime.KeyedContext[int64], _ runtime.Collector[Alert]) error {
	v.count.Clear()
	v.alerted.Clear()
	return nil
}
