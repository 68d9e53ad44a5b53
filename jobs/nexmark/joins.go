package nexmark

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/join"
	"github.com/weirstream/weir/runtime/window"
)

// PersonCodec serialises persons.
type PersonCodec struct{}

func (PersonCodec) Append(dst []byte, p Person) []byte {
	dst = binary.AppendVarint(dst, p.ID)
	dst = appendString(dst, p.Name)
	dst = appendString(dst, p.Email)
	dst = appendString(dst, p.CreditCard)
	dst = appendString(dst, p.City)
	dst = appendString(dst, p.State)
	return binary.AppendVarint(dst, p.DateTime)
}

func (PersonCodec) Decode(src []byte) (Person, error) {
	r := reader{runtime.NewReader(src)}
	p := Person{ID: r.Varint(), Name: r.str(), Email: r.str(), CreditCard: r.str(), City: r.str(), State: r.str(), DateTime: r.Varint()}
	if err := r.Done(); err != nil {
		return Person{}, fmt.Errorf("nexmark person: %w", err)
	}
	return p, nil
}

// AuctionCodec serialises auctions.
type AuctionCodec struct{}

func (AuctionCodec) Append(dst []byte, a Auction) []byte {
	dst = binary.AppendVarint(dst, a.ID)
	dst = appendString(dst, a.ItemName)
	dst = appendString(dst, a.Description)
	dst = binary.AppendVarint(dst, a.InitialBid)
	dst = binary.AppendVarint(dst, a.Reserve)
	dst = binary.AppendVarint(dst, a.DateTime)
	dst = binary.AppendVarint(dst, a.Expires)
	dst = binary.AppendVarint(dst, a.Seller)
	return binary.AppendVarint(dst, a.Category)
}

func (AuctionCodec) Decode(src []byte) (Auction, error) {
	r := reader{runtime.NewReader(src)}
	a := Auction{ID: r.Varint(), ItemName: r.str(), Description: r.str(), InitialBid: r.Varint(), Reserve: r.Varint(),
		DateTime: r.Varint(), Expires: r.Varint(), Seller: r.Varint(), Category: r.Varint()}
	if err := r.Done(); err != nil {
		return Auction{}, fmt.Errorf("nexmark auction: %w", err)
	}
	return a, nil
}

// Persons keeps the new persons of a stream of events, in a task of their
// own (runtime.Rebalanced), so that a join can take persons and auctions,
// which come from one source, on its two inputs.
func Persons(events runtime.Stream[Event]) runtime.Stream[Person] {
	only := runtime.Filter(events, "persons", func(e Event) bool { return e.Kind == KindPerson })
	return runtime.Map(runtime.Rebalanced(only), "person", func(e Event) Person { return e.Person }, PersonCodec{})
}

// Auctions keeps the new auctions of a stream of events.
func Auctions(events runtime.Stream[Event]) runtime.Stream[Auction] {
	only := runtime.Filter(events, "auctions", func(e Event) bool { return e.Kind == KindAuction })
	return runtime.Map(only, "auction", func(e Event) Auction { return e.Auction }, AuctionCodec{})
}

// LocalItem is a result of q3: an auction of category 10 and its seller,
// who lives in Oregon, Idaho or California.
type LocalItem struct {
	Name, City, State string
	Auction           int64
}

// LocalItemCodec serialises q3's results.
type LocalItemCodec struct{}

func (LocalItemCodec) Append(dst []byte, l LocalItem) []byte {
	dst = appendString(dst, l.Name)
	dst = appendString(dst, l.City)
	dst = appendString(dst, l.State)
	return binary.AppendVarint(dst, l.Auction)
}

func (LocalItemCodec) Decode(src []byte) (LocalItem, error) {
	r := reader{runtime.NewReader(src)}
	l := LocalItem{Name: r.str(), City: r.str(), State: r.str(), Auction: r.Varint()}
	if err := r.Done(); err != nil {
		return LocalItem{}, fmt.Errorf("nexmark local item: %w", err)
	}
	return l, nil
}

// AppendLocalItemJSON appends l as one JSON object. The generator's
// strings need no escaping.
func AppendLocalItemJSON(dst []byte, l LocalItem) []byte {
	dst = append(dst, `{"name":"`...)
	dst = append(dst, l.Name...)
	dst = append(dst, `","city":"`...)
	dst = append(dst, l.City...)
	dst = append(dst, `","state":"`...)
	dst = append(dst, l.State...)
	dst = append(dst, `","auction":`...)
	dst = strconv.AppendInt(dst, l.Auction, 10)
	return append(dst, '}')
}

// Q3Category is the category q3 looks for.
const Q3Category = 10

// q3State reports whether a person's state is one q3 looks for.
func q3State(s string) bool { return s == "OR" || s == "ID" || s == "CA" }

// Q3 is local item suggestion: the auctions of category 10 whose sellers
// live in OR, ID or CA, with the seller's name and address. A regular join
// of persons and auctions on the seller, both sides kept in state, as
// Flink's streaming SQL join keeps them.
func Q3(events runtime.Stream[Event]) runtime.Stream[LocalItem] {
	persons := runtime.Filter(Persons(events), "q3-states", func(p Person) bool { return q3State(p.State) })
	auctions := runtime.Filter(Auctions(events), "q3-category", func(a Auction) bool { return a.Category == Q3Category })
	return join.Regular(
		runtime.KeyBy(persons, runtime.Int64Key, func(p Person) int64 { return p.ID }),
		runtime.KeyBy(auctions, runtime.Int64Key, func(a Auction) int64 { return a.Seller }),
		"q3-join", func(_ int64, p Person, a Auction, out runtime.Collector[LocalItem]) error {
			out.Collect(LocalItem{Name: p.Name, City: p.City, State: p.State, Auction: a.ID})
			return nil
		}, PersonCodec{}, AuctionCodec{}, LocalItemCodec{}).UID("q3-join")
}

// Q8Size is q8's window.
const Q8Size = 10 * time.Second

// NewUser is a result of q8: a person who created an auction in the
// tumbling window in which they joined, starting at WindowStart.
type NewUser struct {
	ID          int64
	Name        string
	WindowStart int64
}

// NewUserCodec serialises q8's results.
type NewUserCodec struct{}

func (NewUserCodec) Append(dst []byte, u NewUser) []byte {
	dst = binary.AppendVarint(dst, u.ID)
	dst = appendString(dst, u.Name)
	return binary.AppendVarint(dst, u.WindowStart)
}

func (NewUserCodec) Decode(src []byte) (NewUser, error) {
	r := reader{runtime.NewReader(src)}
	u := NewUser{ID: r.Varint(), Name: r.str(), WindowStart: r.Varint()}
	if err := r.Done(); err != nil {
		return NewUser{}, fmt.Errorf("nexmark new user: %w", err)
	}
	return u, nil
}

// AppendNewUserJSON appends u as one JSON object.
func AppendNewUserJSON(dst []byte, u NewUser) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendInt(dst, u.ID, 10)
	dst = append(dst, `,"name":"`...)
	dst = append(dst, u.Name...)
	dst = append(dst, `","windowStart":`...)
	dst = strconv.AppendInt(dst, u.WindowStart, 10)
	return append(dst, '}')
}

// Q8 monitors new users: the persons who joined and created an auction in
// the same tumbling window of 10 s, once per person and window (the suite
// groups both sides by window before joining them). A window join of
// persons and auctions on the seller.
func Q8(events runtime.Stream[Event]) runtime.Stream[NewUser] {
	return join.Window(
		runtime.KeyBy(Persons(events), runtime.Int64Key, func(p Person) int64 { return p.ID }),
		runtime.KeyBy(Auctions(events), runtime.Int64Key, func(a Auction) int64 { return a.Seller }),
		"q8-join", Q8Size, func(id int64, w window.Window, ps []Person, _ []Auction, out runtime.Collector[NewUser]) error {
			out.Collect(NewUser{ID: id, Name: ps[0].Name, WindowStart: w.Start})
			return nil
		}, PersonCodec{}, AuctionCodec{}, NewUserCodec{}).UID("q8-join")
}
