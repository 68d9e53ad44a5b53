package nexmark

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/weirstream/weir/runtime"
)

// The suite's event model: out of every 50 events, 1 is a new person, 3
// are new auctions and 46 are bids.
const (
	personProportion  = 1
	auctionProportion = 3
	bidProportion     = 46
	proportionDenom   = personProportion + auctionProportion + bidProportion

	firstPersonID   = 1000
	firstAuctionID  = 1000
	firstCategoryID = 10
	numCategories   = 5

	// Of every ratio draws, ratio-1 go to the hot auction, bidder or
	// seller, the remaining one to a random recent one.
	hotAuctionRatio = 2
	hotBidderRatio  = 4
	hotSellerRatio  = 4

	// Random sellers and bidders are drawn from the newest activePeople
	// persons, random auctions from the newest inFlightAuctions.
	activePeople     = 1000
	inFlightAuctions = 100
)

// BaseTime is the event time of event 0 (2026-01-01T00:00:00Z), fixed so
// that generated data, and the windows over it, are the same on every run.
const BaseTime int64 = 1767225600000

// GenConfig is the generator's model parameters.
type GenConfig struct {
	// Seed makes different, equally deterministic, event sequences.
	Seed uint64
	// EventRate is events per second of event time: event n happens at
	// BaseTime + n*1000/EventRate ms, whatever the wall clock does.
	EventRate int64
}

// splitmix64 is the step of the SplitMix64 generator: a fast, well mixed
// bijection, used here to derive each event's random draws from its
// number alone.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// rng draws the random numbers of one event.
type rng struct{ s uint64 }

func (r *rng) next() uint64       { r.s = splitmix64(r.s); return r.s }
func (r *rng) intn(n int64) int64 { return int64(r.next() % uint64(n)) }
func (r *rng) float() float64     { return float64(r.next()>>11) / (1 << 53) }

// price draws a price in cents, log-uniform between $1 and $1M, as the
// suite's generator does.
func (r *rng) price() int64 { return int64(math.Round(math.Exp(r.float()*(6*math.Ln10)) * 100)) }

// lastPerson is the number (from 0) of the newest person at event n, and
// lastAuction that of the newest auction (-1 before the first).
func lastPerson(n int64) int64 { return n / proportionDenom }

func lastAuction(n int64) int64 {
	epoch, off := n/proportionDenom, n%proportionDenom
	switch {
	case off < personProportion:
		return epoch*auctionProportion - 1
	case off < personProportion+auctionProportion:
		return epoch*auctionProportion + off - personProportion
	default:
		return epoch*auctionProportion + auctionProportion - 1
	}
}

// recent draws one of the newest window numbers up to last.
func (r *rng) recent(last, window int64) int64 {
	lo := max(last-window+1, 0)
	return lo + r.intn(last-lo+1)
}

// Tables the generator's strings come from: no string is built per event.
var (
	firstNames = []string{"Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"}
	lastNames  = []string{"Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"}
	cities     = []string{"Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"}
	states     = []string{"AZ", "CA", "ID", "OR", "WA", "WY"}
	channels   = []string{"Google", "Facebook", "Baidu", "Apple"}
	names      []string // first x last
	emails     []string
	cards      []string
	items      []string
	descs      []string
	urls       []string
)

func init() {
	for _, f := range firstNames {
		for _, l := range lastNames {
			names = append(names, f+" "+l)
			emails = append(emails, f+"."+l+"@example.com")
		}
	}
	for i := range 64 {
		cards = append(cards, fmt.Sprintf("%04d %04d %04d %04d", 1000+i*37, 2000+i*53, 3000+i*71, 4000+i*89))
		items = append(items, fmt.Sprintf("item-%02d", i))
		descs = append(descs, fmt.Sprintf("description of item %02d", i))
		urls = append(urls, fmt.Sprintf("https://www.nexmark.example/item.htm?query=1&channel_id=%d", i))
	}
	for _, t := range [][]string{names, emails, cards, items, descs, urls, cities, states, channels} {
		for _, s := range t {
			interned[s] = s
		}
	}
}

func pick(r *rng, t []string) string { return t[r.intn(int64(len(t)))] }

// Generate sets e to event n of the sequence cfg describes: a pure
// function of (cfg, n), so any subtask can generate any event and the
// whole sequence does not depend on the parallelism.
func Generate(cfg GenConfig, n int64, e *Event) {
	r := rng{s: cfg.Seed ^ uint64(n)*0xd1342543de82ef95}
	ts := BaseTime + n*1000/cfg.EventRate
	lp := lastPerson(n)
	switch off := n % proportionDenom; {
	case off < personProportion:
		*e = Event{Kind: KindPerson}
		e.Person = Person{ID: firstPersonID + lp, Name: pick(&r, names), Email: pick(&r, emails), CreditCard: pick(&r, cards),
			City: pick(&r, cities), State: pick(&r, states), DateTime: ts}
	case off < personProportion+auctionProportion:
		*e = Event{Kind: KindAuction}
		seller := lp
		if r.intn(hotSellerRatio) == 0 {
			seller = r.recent(lp, activePeople)
		} else {
			seller = lp / hotSellerRatio * hotSellerRatio
		}
		initial := r.price()
		// An auction lasts about as long as it takes inFlightAuctions
		// more auctions to start, so that many are open at a time.
		length := 1 + r.intn(2*inFlightAuctions*proportionDenom/auctionProportion)
		e.Auction = Auction{ID: firstAuctionID + lastAuction(n), ItemName: pick(&r, items), Description: pick(&r, descs),
			InitialBid: initial, Reserve: initial + r.price(), DateTime: ts, Expires: ts + max(length*1000/cfg.EventRate, 1),
			Seller: firstPersonID + seller, Category: firstCategoryID + r.intn(numCategories)}
	default:
		*e = Event{Kind: KindBid}
		la := lastAuction(n)
		auction := la / hotAuctionRatio * hotAuctionRatio
		if r.intn(hotAuctionRatio) == 0 {
			auction = r.recent(la, inFlightAuctions)
		}
		bidder := lp/hotBidderRatio*hotBidderRatio + 1
		if r.intn(hotBidderRatio) == 0 {
			bidder = r.recent(lp, activePeople)
		}
		e.Bid = Bid{Auction: firstAuctionID + auction, Bidder: firstPersonID + bidder, Price: r.price(),
			Channel: pick(&r, channels), URL: pick(&r, urls), DateTime: ts}
	}
}

// sourceBatch bounds the events of one Poll, so the task gets control back
// often enough for barriers, timers and cancellation.
const sourceBatch = 1024

// Source is the parallel Nexmark generator: subtask i of p emits events
// i, i+p, i+2p, ... below Count, as fast as downstream accepts. Its
// events are therefore in event-time order per subtask, and their union
// is the same at every parallelism. Its operator state is how many events
// it emitted.
type Source struct {
	Config GenConfig
	// Count is the number of events of the whole sequence (all subtasks).
	Count int64
	// Rate limits the subtask to Rate events per second of wall-clock
	// time; 0 is as fast as downstream accepts.
	Rate float64

	subtask, parallelism int
	emitted              int64 // events this subtask emitted
	ev                   Event
	start                time.Time // when emitted would have been 0, at Rate
}

var _ runtime.CheckpointedFunction = (*Source)(nil)

// InitializeState restores the subtask's position. Positions are strides
// of the old parallelism, which another parallelism cannot continue
// without replaying or skipping events, so a restore at another
// parallelism is refused.
func (s *Source) InitializeState(ctx *runtime.RuntimeContext, entries [][]byte) error {
	s.subtask, s.parallelism = ctx.SubtaskIndex(), ctx.Parallelism()
	for _, e := range entries {
		r := runtime.NewReader(e)
		subtask, parallelism, emitted := r.Varint(), r.Varint(), r.Varint()
		if err := r.Done(); err != nil || emitted < 0 {
			return fmt.Errorf("nexmark source: restored position %x: %w", e, runtime.ErrCorrupt)
		}
		if int(parallelism) != s.parallelism {
			return fmt.Errorf("nexmark source: restored from parallelism %d at %d: the generator cannot be rescaled: %w",
				parallelism, s.parallelism, runtime.ErrUnrecoverable)
		}
		if int(subtask) == s.subtask {
			s.emitted = emitted
		}
	}
	return nil
}

// SnapshotState records the position.
func (s *Source) SnapshotState(int64) ([][]byte, error) {
	e := binary.AppendVarint(nil, int64(s.subtask))
	e = binary.AppendVarint(e, int64(s.parallelism))
	return [][]byte{binary.AppendVarint(e, s.emitted)}, nil
}

// Poll implements runtime.SourceFunction.
func (s *Source) Poll(out runtime.Collector[Event]) (time.Duration, error) {
	p := int64(max(s.parallelism, 1))
	n := int64(s.subtask) + s.emitted*p
	batch := int64(sourceBatch)
	if s.Rate > 0 {
		now := time.Now()
		if s.start.IsZero() {
			// A restored subtask goes on at its rate from its position.
			s.start = now.Add(-time.Duration(float64(s.emitted) / s.Rate * float64(time.Second)))
		}
		due := int64(now.Sub(s.start).Seconds() * s.Rate)
		if due <= s.emitted {
			next := s.start.Add(time.Duration(float64(s.emitted+1) / s.Rate * float64(time.Second)))
			return max(next.Sub(now), time.Microsecond), nil
		}
		batch = min(batch, due-s.emitted)
	}
	for range batch {
		if n >= s.Count {
			return 0, runtime.ErrEndOfInput
		}
		Generate(s.Config, n, &s.ev)
		out.Collect(s.ev)
		s.emitted++
		n += p
	}
	return 0, nil
}
