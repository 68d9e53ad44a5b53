package nexmark

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/weirstream/weir/runtime"
)

// Kind tells which of an Event's parts is set.
type Kind uint8

// The three kinds of Nexmark events.
const (
	KindPerson Kind = iota
	KindAuction
	KindBid
)

// Person is a new user of the auction site.
type Person struct {
	ID                                   int64
	Name, Email, CreditCard, City, State string
	DateTime                             int64 // event time, Unix ms
}

// Auction is an item put up for sale by Seller.
type Auction struct {
	ID                    int64
	ItemName, Description string
	InitialBid, Reserve   int64 // cents
	DateTime, Expires     int64 // Unix ms
	Seller, Category      int64
}

// Bid is a bid of Bidder on Auction.
type Bid struct {
	Auction, Bidder, Price int64 // Price in cents
	Channel, URL           string
	DateTime               int64 // Unix ms
}

// Event is one generated event: a flat value with the part Kind names
// set, so that the source allocates nothing per event.
type Event struct {
	Kind    Kind
	Person  Person
	Auction Auction
	Bid     Bid
}

// Time is the event's event time (Unix ms).
func (e *Event) Time() int64 {
	switch e.Kind {
	case KindPerson:
		return e.Person.DateTime
	case KindAuction:
		return e.Auction.DateTime
	default:
		return e.Bid.DateTime
	}
}

// interned maps the generator's strings to themselves, so decoding them
// allocates nothing (a map lookup with a converted []byte does not).
var interned = map[string]string{}

func intern(b []byte) string {
	if s, ok := interned[string(b)]; ok {
		return s
	}
	return string(b)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendVarint(dst, int64(len(s)))
	return append(dst, s...)
}

// EventCodec serialises events: the kind, then the part's fields as
// varints and length-prefixed strings.
type EventCodec struct{}

func (EventCodec) Append(dst []byte, e Event) []byte {
	dst = append(dst, byte(e.Kind))
	switch e.Kind {
	case KindPerson:
		p := &e.Person
		dst = binary.AppendVarint(dst, p.ID)
		dst = appendString(dst, p.Name)
		dst = appendString(dst, p.Email)
		dst = appendString(dst, p.CreditCard)
		dst = appendString(dst, p.City)
		dst = appendString(dst, p.State)
		dst = binary.AppendVarint(dst, p.DateTime)
	case KindAuction:
		a := &e.Auction
		dst = binary.AppendVarint(dst, a.ID)
		dst = appendString(dst, a.ItemName)
		dst = appendString(dst, a.Description)
		dst = binary.AppendVarint(dst, a.InitialBid)
		dst = binary.AppendVarint(dst, a.Reserve)
		dst = binary.AppendVarint(dst, a.DateTime)
		dst = binary.AppendVarint(dst, a.Expires)
		dst = binary.AppendVarint(dst, a.Seller)
		dst = binary.AppendVarint(dst, a.Category)
	default:
		dst = BidCodec{}.Append(dst, e.Bid)
	}
	return dst
}

func (EventCodec) Decode(src []byte) (Event, error) {
	if len(src) == 0 {
		return Event{}, fmt.Errorf("nexmark event: empty: %w", runtime.ErrCorrupt)
	}
	e := Event{Kind: Kind(src[0])}
	r := reader{runtime.NewReader(src[1:])}
	switch e.Kind {
	case KindPerson:
		e.Person = Person{ID: r.Varint(), Name: r.str(), Email: r.str(), CreditCard: r.str(), City: r.str(), State: r.str(), DateTime: r.Varint()}
	case KindAuction:
		e.Auction = Auction{ID: r.Varint(), ItemName: r.str(), Description: r.str(), InitialBid: r.Varint(), Reserve: r.Varint(),
			DateTime: r.Varint(), Expires: r.Varint(), Seller: r.Varint(), Category: r.Varint()}
	case KindBid:
		b, err := BidCodec{}.Decode(src[1:])
		if err != nil {
			return Event{}, err
		}
		e.Bid = b
		return e, nil
	default:
		return Event{}, fmt.Errorf("nexmark event: kind %d: %w", src[0], runtime.ErrCorrupt)
	}
	if err := r.Done(); err != nil {
		return Event{}, fmt.Errorf("nexmark event: %w", err)
	}
	return e, nil
}

// BidCodec serialises bids.
type BidCodec struct{}

func (BidCodec) Append(dst []byte, b Bid) []byte {
	dst = binary.AppendVarint(dst, b.Auction)
	dst = binary.AppendVarint(dst, b.Bidder)
	dst = binary.AppendVarint(dst, b.Price)
	dst = appendString(dst, b.Channel)
	dst = appendString(dst, b.URL)
	return binary.AppendVarint(dst, b.DateTime)
}

func (BidCodec) Decode(src []byte) (Bid, error) {
	r := reader{runtime.NewReader(src)}
	b := Bid{Auction: r.Varint(), Bidder: r.Varint(), Price: r.Varint(), Channel: r.str(), URL: r.str(), DateTime: r.Varint()}
	if err := r.Done(); err != nil {
		return Bid{}, fmt.Errorf("nexmark bid: %w", err)
	}
	return b, nil
}

// reader adds interned strings to runtime.Reader.
type reader struct{ runtime.Reader }

func (r *reader) str() string { return intern(r.Bytes()) }

// AppendBidJSON appends b as one JSON object.
func AppendBidJSON(dst []byte, b Bid) []byte {
	dst = append(dst, `{"auction":`...)
	dst = strconv.AppendInt(dst, b.Auction, 10)
	dst = append(dst, `,"bidder":`...)
	dst = strconv.AppendInt(dst, b.Bidder, 10)
	dst = append(dst, `,"price":`...)
	dst = strconv.AppendInt(dst, b.Price, 10)
	dst = append(dst, `,"dateTime":`...)
	dst = strconv.AppendInt(dst, b.DateTime, 10)
	return append(dst, '}')
}
