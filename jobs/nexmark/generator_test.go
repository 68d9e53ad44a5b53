package nexmark

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
)

var testGen = GenConfig{Seed: 7, EventRate: 1000}

func TestProportionsAndIDs(t *testing.T) {
	const n = 50 * 2000
	var kinds [3]int
	var e Event
	nextPerson, nextAuction := int64(firstPersonID), int64(firstAuctionID)
	hotAuction, hotBidder, hotSeller := 0, 0, 0
	lastAuctionID, lastPersonID := int64(-1), int64(-1)
	for i := range int64(n) {
		Generate(testGen, i, &e)
		kinds[e.Kind]++
		if got, want := e.Time(), BaseTime+i; got != want {
			t.Fatalf("event %d at %d, want %d (1000 events/s)", i, got, want)
		}
		switch e.Kind {
		case KindPerson:
			if e.Person.ID != nextPerson {
				t.Fatalf("event %d: person %d, want %d", i, e.Person.ID, nextPerson)
			}
			lastPersonID = e.Person.ID
			nextPerson++
		case KindAuction:
			if e.Auction.ID != nextAuction {
				t.Fatalf("event %d: auction %d, want %d", i, e.Auction.ID, nextAuction)
			}
			lastAuctionID = e.Auction.ID
			nextAuction++
			if e.Auction.Seller > lastPersonID || e.Auction.Seller < firstPersonID {
				t.Fatalf("event %d: seller %d does not exist yet", i, e.Auction.Seller)
			}
			if e.Auction.Category < firstCategoryID || e.Auction.Category >= firstCategoryID+numCategories ||
				e.Auction.Expires <= e.Auction.DateTime || e.Auction.Reserve <= e.Auction.InitialBid {
				t.Fatalf("event %d: bad auction %+v", i, e.Auction)
			}
			if e.Auction.Seller == firstPersonID+lastPerson(i)/hotSellerRatio*hotSellerRatio {
				hotSeller++
			}
		case KindBid:
			b := e.Bid
			if b.Auction > lastAuctionID || b.Auction < firstAuctionID || b.Bidder > lastPersonID+1 || b.Price < 100 {
				t.Fatalf("event %d: bid %+v refers to an auction or person that does not exist yet", i, b)
			}
			if b.Auction == firstAuctionID+lastAuction(i)/hotAuctionRatio*hotAuctionRatio {
				hotAuction++
			}
			if b.Bidder == firstPersonID+lastPerson(i)/hotBidderRatio*hotBidderRatio+1 {
				hotBidder++
			}
		}
	}
	if kinds != [3]int{n / 50, n / 50 * 3, n / 50 * 46} {
		t.Fatalf("persons, auctions, bids = %v, want 1:3:46 of %d", kinds, n)
	}
	// The hot auction, bidder and seller of the moment get (ratio-1)/ratio
	// of the draws, plus the few random draws that land on them.
	for _, c := range []struct {
		what    string
		got, of int
		atLeast float64
	}{
		{"bids on hot auctions", hotAuction, kinds[KindBid], 0.5},
		{"bids by hot bidders", hotBidder, kinds[KindBid], 0.75},
		{"auctions by hot sellers", hotSeller, kinds[KindAuction], 0.75},
	} {
		if f := float64(c.got) / float64(c.of); f < c.atLeast-0.02 || f > c.atLeast+0.03 {
			t.Errorf("%s: %.3f, want about %.2f", c.what, f, c.atLeast)
		}
	}
}

func TestDeterministic(t *testing.T) {
	var a, b Event
	for i := range int64(10_000) {
		Generate(testGen, i, &a)
		Generate(testGen, i, &b)
		if a != b {
			t.Fatalf("event %d differs between two calls: %+v, %+v", i, a, b)
		}
	}
	other := testGen
	other.Seed++
	same := 0
	for i := range int64(1000) {
		Generate(testGen, i, &a)
		Generate(other, i, &b)
		if a == b {
			same++
		}
	}
	if same > 100 {
		t.Errorf("%d of 1000 events equal under another seed", same)
	}
}

type collector struct{ evs []Event }

func (c *collector) Collect(e Event) { c.evs = append(c.evs, e) }

func ctxOf(subtask, parallelism int) *runtime.RuntimeContext {
	return runtime.NewRuntimeContext(runtime.ContextConfig{JobName: Name, UID: SourceUID, Subtask: subtask, Parallelism: parallelism})
}

// drain polls s until it ends, at most polls times (0: no limit).
func drain(t *testing.T, s *Source, out *collector, polls int) bool {
	t.Helper()
	for i := 0; polls == 0 || i < polls; i++ {
		if _, err := s.Poll(out); errors.Is(err, runtime.ErrEndOfInput) {
			return true
		} else if err != nil {
			t.Fatal(err)
		}
	}
	return false
}

func newSource(t *testing.T, count int64, subtask, parallelism int, entries [][]byte) *Source {
	t.Helper()
	s := &Source{Config: testGen, Count: count}
	if err := s.InitializeState(ctxOf(subtask, parallelism), entries); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestParallelSourcesMakeTheSameEvents: the union of four subtasks'
// events is the one subtask's sequence, each subtask's in time order, and
// a subtask restored from a snapshot goes on where it was.
func TestParallelSourcesMakeTheSameEvents(t *testing.T) {
	const count = 10_000
	one := &collector{}
	drain(t, newSource(t, count, 0, 1, nil), one, 0)
	if len(one.evs) != count {
		t.Fatalf("%d events, want %d", len(one.evs), count)
	}
	var union []Event
	for i := range 4 {
		c := &collector{}
		s := newSource(t, count, i, 4, nil)
		if drain(t, s, c, 2) {
			t.Fatal("ended too early")
		}
		snap, err := s.SnapshotState(1)
		if err != nil {
			t.Fatal(err)
		}
		drain(t, newSource(t, count, i, 4, snap), c, 0)
		if !slices.IsSortedFunc(c.evs, func(a, b Event) int { return int(a.Time() - b.Time()) }) {
			t.Errorf("subtask %d: events out of time order", i)
		}
		union = append(union, c.evs...)
	}
	key := func(a, b Event) int {
		if d := a.Time() - b.Time(); d != 0 {
			return int(d)
		}
		return int(a.Kind) - int(b.Kind)
	}
	slices.SortStableFunc(union, key)
	if !slices.Equal(union, one.evs) {
		t.Fatal("four subtasks made other events than one")
	}
}

func TestSourceRefusesRescale(t *testing.T) {
	s := newSource(t, 100, 0, 2, nil)
	snap, _ := s.SnapshotState(1)
	err := (&Source{Config: testGen, Count: 100}).InitializeState(ctxOf(0, 3), snap)
	if !errors.Is(err, runtime.ErrUnrecoverable) {
		t.Fatalf("restore at another parallelism: %v, want an unrecoverable error", err)
	}
	if err := (&Source{}).InitializeState(ctxOf(0, 1), [][]byte{{1}}); !errors.Is(err, runtime.ErrCorrupt) {
		t.Fatalf("corrupt state: %v", err)
	}
}

func TestCodecs(t *testing.T) {
	var e Event
	buf := []byte(nil)
	for i := range int64(200) {
		Generate(testGen, i, &e)
		buf = EventCodec{}.Append(buf[:0], e)
		got, err := EventCodec{}.Decode(buf)
		if err != nil || got != e {
			t.Fatalf("event %d: %+v, %v; want %+v", i, got, err, e)
		}
		for cut := range len(buf) {
			if _, err := (EventCodec{}).Decode(buf[:cut]); err == nil {
				t.Fatalf("event %d cut at %d of %d bytes decoded", i, cut, len(buf))
			}
		}
	}
	// Generated strings decode interned: no allocation per event.
	Generate(testGen, 7, &e)
	buf = EventCodec{}.Append(buf[:0], e)
	if a := testing.AllocsPerRun(100, func() { EventCodec{}.Decode(buf) }); a != 0 {
		t.Errorf("decoding a bid allocates %v times", a)
	}
	h := HotItem{Auction: 1, Num: -2, WindowEnd: BaseTime}
	if got, err := (HotItemCodec{}).Decode(HotItemCodec{}.Append(nil, h)); err != nil || got != h {
		t.Errorf("hot item %+v, %v", got, err)
	}
	tb := TopBid{Bid: e.Bid, WindowEnd: 5}
	if got, err := (TopBidCodec{}).Decode(TopBidCodec{}.Append(nil, tb)); err != nil || got != tb {
		t.Errorf("top bid %+v, %v", got, err)
	}
	var p, a Event
	Generate(testGen, 0, &p)
	Generate(testGen, 1, &a)
	roundTrip(t, PersonCodec{}, p.Person)
	roundTrip(t, AuctionCodec{}, a.Auction)
	roundTrip(t, openAuctionCodec{}, openAuction{Auction: a.Auction, Best: 12345})
	roundTrip(t, LocalItemCodec{}, LocalItem{Name: p.Person.Name, City: p.Person.City, State: p.Person.State, Auction: 7})
	roundTrip(t, NewUserCodec{}, NewUser{ID: 1000, Name: p.Person.Name, WindowStart: BaseTime})
	roundTrip(t, ClosedAuctionCodec{}, ClosedAuction{Auction: 1, Category: 10, Price: 99})
	roundTrip(t, CategoryAverageCodec{}, CategoryAverage{Category: 10, Avg: 5, Auctions: 2})
	m := maxSet[Bid]{Max: 3, Items: []Bid{e.Bid, e.Bid}}
	c := maxSetCodec[Bid]{BidCodec{}}
	if got, err := c.Decode(c.Append(nil, m)); err != nil || got.Max != 3 || !slices.Equal(got.Items, m.Items) {
		t.Errorf("max set %+v, %v", got, err)
	}
}

func BenchmarkGenerate(b *testing.B) {
	var e Event
	for i := range b.N {
		Generate(testGen, int64(i), &e)
	}
}

func TestSourceRate(t *testing.T) {
	s := newSource(t, 1000, 0, 1, nil)
	s.Rate = 100
	c := &collector{}
	wait, err := s.Poll(c)
	if err != nil || len(c.evs) != 0 || wait <= 0 || wait > 10*time.Millisecond {
		t.Fatalf("first poll at 100/s: %d events, wait %v, %v; want none and a wait of up to 10ms", len(c.evs), wait, err)
	}
	time.Sleep(wait)
	if _, err := s.Poll(c); err != nil || len(c.evs) != 1 {
		t.Fatalf("after the wait: %d events, %v; want 1", len(c.evs), err)
	}
}

// roundTrip checks that c decodes what it encodes, and refuses every
// truncation of it.
func roundTrip[T comparable](t *testing.T, c runtime.Codec[T], v T) {
	t.Helper()
	b := c.Append(nil, v)
	if got, err := c.Decode(b); err != nil || got != v {
		t.Errorf("%T: %+v, %v; want %+v", c, got, err, v)
	}
	for cut := range len(b) {
		if _, err := c.Decode(b[:cut]); err == nil {
			t.Errorf("%T: %d of %d bytes decoded", c, cut, len(b))
		}
	}
}
