package nexmark

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// Reference computes a query's output lines (JSON, sorted) on the first
// count events of cfg the plain way, for checking a run of the job: one
// loop over the events, maps for the windows and joins, nothing shared
// with the job's operators but the generator and the JSON encoders.
func Reference(query string, cfg GenConfig, count int64) []string {
	var lines []string
	emit := func(b []byte) { lines = append(lines, string(b)) }
	type aw struct{ auction, end int64 }
	counts := map[aw]int64{}
	top := map[int64]maxSet[Bid]{}
	size5, slide5, size7 := Q5Size.Milliseconds(), Q5Slide.Milliseconds(), Q7Size.Milliseconds()
	auctions := map[int64]Auction{}
	winning := map[int64]int64{}
	persons := map[int64]Person{}
	type pw struct{ person, start int64 }
	joined, sold := map[pw]bool{}, map[pw]bool{}
	var e Event
	for n := range count {
		Generate(cfg, n, &e)
		switch e.Kind {
		case KindPerson:
			persons[e.Person.ID] = e.Person
			joined[pw{e.Person.ID, e.Person.DateTime / Q8Size.Milliseconds() * Q8Size.Milliseconds()}] = true
			continue
		case KindAuction:
			a := e.Auction
			if p, ok := persons[a.Seller]; ok && query == "q3" && a.Category == 10 && (p.State == "OR" || p.State == "ID" || p.State == "CA") {
				emit(AppendLocalItemJSON(nil, LocalItem{Name: p.Name, City: p.City, State: p.State, Auction: a.ID}))
			}
			auctions[a.ID] = a
			sold[pw{a.Seller, a.DateTime / Q8Size.Milliseconds() * Q8Size.Milliseconds()}] = true
			continue
		}
		b := e.Bid
		if a := auctions[b.Auction]; b.DateTime >= a.DateTime && b.DateTime <= a.Expires {
			winning[b.Auction] = max(winning[b.Auction], b.Price)
		}
		switch query {
		case "q0":
			emit(AppendBidJSON(nil, b))
		case "q1":
			b.Price = int64(float64(b.Price) * DollarToEuro)
			emit(AppendBidJSON(nil, b))
		case "q2":
			if b.Auction%123 == 0 {
				emit(AppendAuctionPriceJSON(nil, b))
			}
		case "q5":
			// Every window [s, s+size) with s a multiple of the slide
			// holding the bid.
			last := b.DateTime - b.DateTime%slide5
			for s := last; s > b.DateTime-size5; s -= slide5 {
				counts[aw{b.Auction, s + size5}]++
			}
		case "q7":
			end := b.DateTime - b.DateTime%size7 + size7
			top[end] = top[end].add(b, b.Price)
		}
	}
	best := map[int64]int64{}
	for k, c := range counts {
		best[k.end] = max(best[k.end], c)
	}
	for _, k := range slices.SortedFunc(maps.Keys(counts), func(a, b aw) int { return int(a.end - b.end) }) {
		if counts[k] == best[k.end] {
			emit(AppendHotItemJSON(nil, HotItem{Auction: k.auction, Num: counts[k], WindowEnd: k.end}))
		}
	}
	if query == "q4" {
		sum, n := map[int64]int64{}, map[int64]int64{}
		for id, p := range winning {
			c := auctions[id].Category
			sum[c] += p
			n[c]++
		}
		for c := range n {
			emit(AppendCategoryAverageJSON(nil, CategoryAverage{Category: c, Avg: sum[c] / n[c], Auctions: n[c]}))
		}
	}
	if query == "q8" {
		for k := range joined {
			if sold[k] {
				emit(AppendNewUserJSON(nil, NewUser{ID: k.person, Name: persons[k.person].Name, WindowStart: k.start}))
			}
		}
	}
	for end, s := range top {
		for _, b := range s.Items {
			emit(AppendTopBidJSON(nil, TopBid{Bid: b, WindowEnd: end}))
		}
	}
	slices.Sort(lines)
	return lines
}

// Q4Final checks that q4's output lines hold, per category, one update
// for each of the category's closed auctions (auctions 1, 2, ... n), and
// returns the last update of each category (the one with n), sorted: what
// Reference returns for q4.
func Q4Final(lines []string) ([]string, error) {
	seen := map[int64]map[int64]string{}
	for _, l := range lines {
		var c CategoryAverage
		if _, err := fmt.Sscanf(l, `{"category":%d,"avg":%d,"auctions":%d}`, &c.Category, &c.Avg, &c.Auctions); err != nil {
			return nil, fmt.Errorf("q4 line %q: %w", l, err)
		}
		if seen[c.Category] == nil {
			seen[c.Category] = map[int64]string{}
		}
		if _, dup := seen[c.Category][c.Auctions]; dup {
			return nil, fmt.Errorf("category %d: two updates with %d auctions", c.Category, c.Auctions)
		}
		seen[c.Category][c.Auctions] = l
	}
	var final []string
	for c, updates := range seen {
		n := int64(len(updates))
		for i := int64(1); i <= n; i++ {
			if _, ok := updates[i]; !ok {
				return nil, fmt.Errorf("category %d: %d updates, but none with %d auctions", c, n, i)
			}
		}
		final = append(final, updates[n])
	}
	slices.Sort(final)
	return final, nil
}

// ReadOutput reads the committed part files under dir, lines sorted.
func ReadOutput(dir string) ([]string, error) {
	parts, err := filepath.Glob(filepath.Join(dir, "part-*"))
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, p := range parts {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	slices.Sort(lines)
	return lines, nil
}
