package nexmark

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/window"
)

// Bids keeps the bids of a stream of events, as the suite's bid view.
func Bids(events runtime.Stream[Event]) runtime.Stream[Bid] {
	only := runtime.Filter(events, "bids", func(e Event) bool { return e.Kind == KindBid })
	return runtime.Map(only, "bid", func(e Event) Bid { return e.Bid }, BidCodec{})
}

// Q0 passes every bid through (the suite's measure of the framework's own
// cost).
func Q0(events runtime.Stream[Event]) runtime.Stream[Bid] { return Bids(events) }

// DollarToEuro is q1's exchange rate.
const DollarToEuro = 0.908

// Q1 converts every bid's price to euros. Prices are integer cents, so the
// converted price is rounded down to a whole euro cent.
func Q1(events runtime.Stream[Event]) runtime.Stream[Bid] {
	return runtime.Map(Bids(events), "q1-currency", ToEuro, BidCodec{})
}

// ToEuro is q1's conversion of one bid.
func ToEuro(b Bid) Bid {
	b.Price = b.Price * 908 / 1000
	return b
}

// Q2Modulus selects q2's auctions: those whose ID it divides.
const Q2Modulus = 123

// Q2 keeps the bids of every 123rd auction.
func Q2(events runtime.Stream[Event]) runtime.Stream[Bid] {
	return runtime.Filter(Bids(events), "q2-selection", func(b Bid) bool { return b.Auction%Q2Modulus == 0 })
}

// q5's and q7's windows, as in the suite.
const (
	Q5Size  = 10 * time.Second
	Q5Slide = 2 * time.Second
	Q7Size  = 10 * time.Second
)

// HotItem is a result of q5: an auction with the most bids (Num) in the
// sliding window that ends at WindowEnd.
type HotItem struct {
	Auction, Num, WindowEnd int64
}

// HotItemCodec serialises hot items as three varints.
type HotItemCodec struct{}

func (HotItemCodec) Append(dst []byte, h HotItem) []byte {
	dst = binary.AppendVarint(dst, h.Auction)
	dst = binary.AppendVarint(dst, h.Num)
	return binary.AppendVarint(dst, h.WindowEnd)
}

func (HotItemCodec) Decode(src []byte) (HotItem, error) {
	r := runtime.NewReader(src)
	h := HotItem{Auction: r.Varint(), Num: r.Varint(), WindowEnd: r.Varint()}
	if err := r.Done(); err != nil {
		return HotItem{}, fmt.Errorf("nexmark hot item: %w", err)
	}
	return h, nil
}

// AppendHotItemJSON appends h as one JSON object.
func AppendHotItemJSON(dst []byte, h HotItem) []byte {
	dst = append(dst, `{"auction":`...)
	dst = strconv.AppendInt(dst, h.Auction, 10)
	dst = append(dst, `,"num":`...)
	dst = strconv.AppendInt(dst, h.Num, 10)
	dst = append(dst, `,"windowEnd":`...)
	dst = strconv.AppendInt(dst, h.WindowEnd, 10)
	return append(dst, '}')
}

// Q5 finds the hot items: per sliding window of 10 s every 2 s, the
// auctions with the most bids. Bids are counted per auction and window
// (keyed by auction, so in parallel), then the counts of a window meet in
// one subtask (keyed by the window's end), which emits the auctions with
// the highest count once the watermark passes the window.
func Q5(events runtime.Stream[Event]) runtime.Stream[HotItem] {
	bids := runtime.KeyBy(Bids(events), runtime.Int64Key, func(b Bid) int64 { return b.Auction })
	counts := window.AggregateProcess(bids, "q5-count", window.Sliding(Q5Size, Q5Slide), window.Count[Bid](), nil,
		func() window.ProcessWindowFunction[int64, int64, HotItem] {
			return window.ProcessFunc[int64, int64, HotItem](func(auction int64, w window.Window, n []int64, out runtime.Collector[HotItem]) error {
				out.Collect(HotItem{Auction: auction, Num: n[0], WindowEnd: w.End})
				return nil
			})
		}, HotItemCodec{}).UID("q5-count")
	byWindow := runtime.KeyBy(counts, runtime.Int64Key, func(h HotItem) int64 { return h.WindowEnd })
	return runtime.Process(byWindow, "q5-hottest", func() runtime.KeyedProcessFunction[int64, HotItem, HotItem] {
		return &windowMax[HotItem]{value: func(h HotItem) int64 { return h.Num }, codec: HotItemCodec{}}
	}, HotItemCodec{}).UID("q5-hottest")
}

// TopBid is a result of q7: a bid with the highest price of the tumbling
// window that ends at WindowEnd.
type TopBid struct {
	Bid       Bid
	WindowEnd int64
}

// TopBidCodec serialises a top bid as its window's end and the bid.
type TopBidCodec struct{}

func (TopBidCodec) Append(dst []byte, t TopBid) []byte {
	dst = binary.AppendVarint(dst, t.WindowEnd)
	return BidCodec{}.Append(dst, t.Bid)
}

func (TopBidCodec) Decode(src []byte) (TopBid, error) {
	end, n := binary.Varint(src)
	if n <= 0 {
		return TopBid{}, fmt.Errorf("nexmark top bid: %w", runtime.ErrCorrupt)
	}
	b, err := BidCodec{}.Decode(src[n:])
	return TopBid{Bid: b, WindowEnd: end}, err
}

// AppendTopBidJSON appends t as one JSON object.
func AppendTopBidJSON(dst []byte, t TopBid) []byte {
	dst = AppendBidJSON(dst, t.Bid)
	dst = append(dst[:len(dst)-1], `,"windowEnd":`...)
	dst = strconv.AppendInt(dst, t.WindowEnd, 10)
	return append(dst, '}')
}

// Q7 finds the highest bids: per tumbling window of 10 s, the bids with
// the highest price. As q5, in two steps: the highest bids per auction
// and window, in parallel, then per window.
func Q7(events runtime.Stream[Event]) runtime.Stream[TopBid] {
	bids := runtime.KeyBy(Bids(events), runtime.Int64Key, func(b Bid) int64 { return b.Auction })
	top := window.AggregateProcess(bids, "q7-auction-max", window.Tumbling(Q7Size), topBids{}, maxSetCodec[Bid]{BidCodec{}},
		func() window.ProcessWindowFunction[int64, maxSet[Bid], TopBid] {
			return window.ProcessFunc[int64, maxSet[Bid], TopBid](func(_ int64, w window.Window, m []maxSet[Bid], out runtime.Collector[TopBid]) error {
				for _, b := range m[0].Items {
					out.Collect(TopBid{Bid: b, WindowEnd: w.End})
				}
				return nil
			})
		}, TopBidCodec{}).UID("q7-auction-max")
	byWindow := runtime.KeyBy(top, runtime.Int64Key, func(t TopBid) int64 { return t.WindowEnd })
	return runtime.Process(byWindow, "q7-max", func() runtime.KeyedProcessFunction[int64, TopBid, TopBid] {
		return &windowMax[TopBid]{value: func(t TopBid) int64 { return t.Bid.Price }, codec: TopBidCodec{}}
	}, TopBidCodec{}).UID("q7-max")
}

// maxSet is the items with the highest value seen.
type maxSet[T any] struct {
	Max   int64
	Items []T
}

// add returns s with v of value x added. It never writes into s.Items'
// array, which a checkpoint taken earlier may still be reading.
func (s maxSet[T]) add(v T, x int64) maxSet[T] {
	switch {
	case len(s.Items) == 0 || x > s.Max:
		return maxSet[T]{Max: x, Items: []T{v}}
	case x == s.Max:
		return maxSet[T]{Max: x, Items: append(slices.Clip(s.Items), v)}
	}
	return s
}

type maxSetCodec[T any] struct{ elem runtime.Codec[T] }

func (c maxSetCodec[T]) Append(dst []byte, s maxSet[T]) []byte {
	dst = binary.AppendVarint(dst, s.Max)
	return window.SliceCodec[T]{Elem: c.elem}.Append(dst, s.Items)
}

func (c maxSetCodec[T]) Decode(src []byte) (maxSet[T], error) {
	m, n := binary.Varint(src)
	if n <= 0 {
		return maxSet[T]{}, fmt.Errorf("nexmark max set: %w", runtime.ErrCorrupt)
	}
	items, err := window.SliceCodec[T]{Elem: c.elem}.Decode(src[n:])
	return maxSet[T]{Max: m, Items: items}, err
}

// topBids is q7's per-auction aggregate: the highest bids.
type topBids struct{}

func (topBids) CreateAccumulator() maxSet[Bid]         { return maxSet[Bid]{} }
func (topBids) Add(b Bid, acc maxSet[Bid]) maxSet[Bid] { return acc.add(b, b.Price) }
func (topBids) Result(acc maxSet[Bid]) maxSet[Bid]     { return acc }
func (topBids) Merge(a, b maxSet[Bid]) maxSet[Bid] {
	switch {
	case len(a.Items) == 0 || (len(b.Items) > 0 && b.Max > a.Max):
		return b
	case len(b.Items) == 0 || a.Max > b.Max:
		return a
	}
	return maxSet[Bid]{Max: a.Max, Items: append(slices.Clip(a.Items), b.Items...)}
}

// windowMax is the second step of q5 and q7: keyed by a window's end, it
// keeps the records of the window with the highest value and emits them
// when the watermark passes the window. Its input records carry the
// window's last millisecond as their timestamp (window results do), and
// that is when its timer fires: after every upstream subtask has emitted
// its results for the window.
type windowMax[T any] struct {
	value func(T) int64
	codec runtime.Codec[T]
	state runtime.ValueState[maxSet[T]]
}

func (w *windowMax[T]) Open(ctx *runtime.KeyedContext[int64]) (err error) {
	w.state, err = runtime.GetValueState(ctx, "max", runtime.Codec[maxSet[T]](maxSetCodec[T]{w.codec}))
	return err
}

func (w *windowMax[T]) ProcessElement(v T, ctx *runtime.KeyedContext[int64], _ runtime.Collector[T]) error {
	s, ok := w.state.Value()
	if !ok {
		ctx.RegisterEventTimeTimer(ctx.Timestamp())
	}
	w.state.Update(s.add(v, w.value(v)))
	return nil
}

func (w *windowMax[T]) OnTimer(_ int64, _ *runtime.KeyedContext[int64], out runtime.Collector[T]) error {
	s, _ := w.state.Value()
	for _, v := range s.Items {
		out.Collect(v)
	}
	w.state.Clear()
	return nil
}
