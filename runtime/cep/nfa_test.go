package cep

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
)

// Events in these tests are strings such as "b1": the letters say which
// steps they can match, the digits tell occurrences apart, as in Flink's
// documentation. An optional "@ms" suffix gives the timestamp; otherwise
// the i-th event has timestamp i+1.

func is(prefixes ...string) func(string) bool {
	return func(e string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(e, p) {
				return true
			}
		}
		return false
	}
}

func parseEvents(t *testing.T, in string) (evs []string, tss []int64) {
	t.Helper()
	for i, f := range strings.Fields(in) {
		ts := int64(i + 1)
		if name, at, ok := strings.Cut(f, "@"); ok {
			v, err := strconv.ParseInt(at, 10, 64)
			if err != nil {
				t.Fatalf("bad event %q", f)
			}
			f, ts = name, v
		}
		evs = append(evs, f)
		tss = append(tss, ts)
	}
	return evs, tss
}

// render writes a match as its events in step order ("a b1 b2 c").
func render(n *NFA[string], m Match[string]) string {
	var parts []string
	for _, name := range n.stepNames {
		parts = append(parts, m[name]...)
	}
	return strings.Join(parts, " ")
}

// renderNamed also says which step took each event ("a:a b:b1,b2").
func renderNamed(n *NFA[string], m Match[string]) string {
	var parts []string
	for _, name := range n.stepNames {
		if evs, ok := m[name]; ok {
			parts = append(parts, name+":"+strings.Join(evs, ","))
		}
	}
	return strings.Join(parts, " ")
}

type outcome struct {
	matches  []string
	timedOut []string // "match@ts"
}

// feed runs the events through p; with roundTrip it encodes and decodes the
// state after every event, as a checkpoint and restore would.
func feed(t *testing.T, p *Pattern[string], in string, finalWatermark int64, named, roundTrip bool) outcome {
	t.Helper()
	n, err := p.Compile()
	if err != nil {
		t.Fatal(err)
	}
	r := render
	if named {
		r = renderNamed
	}
	codec := n.StateCodec(runtime.StringCodec{})
	var out outcome
	collect := func(res Result[string]) {
		for _, m := range res.Matches {
			out.matches = append(out.matches, r(n, m))
		}
		for _, to := range res.TimedOut {
			out.timedOut = append(out.timedOut, r(n, to.Match)+"@"+strconv.FormatInt(to.Timestamp, 10))
		}
	}
	s := n.NewState()
	evs, tss := parseEvents(t, in)
	for i, ev := range evs {
		var res Result[string]
		s, res, err = n.Process(s, ev, tss[i])
		if err != nil {
			t.Fatal(err)
		}
		collect(res)
		if roundTrip {
			b := codec.Append(nil, s)
			if s, err = codec.Decode(b); err != nil {
				t.Fatalf("decoding state after %s: %v", ev, err)
			}
		}
	}
	if finalWatermark != 0 {
		var res Result[string]
		s, res, err = n.Advance(s, finalWatermark)
		if err != nil {
			t.Fatal(err)
		}
		collect(res)
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

type docCase struct {
	name    string
	pattern func() *Pattern[string]
	events  string
	want    []string // as a set, as the documentation lists them
	named   bool
}

func runDocCases(t *testing.T, cases []docCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := feed(t, c.pattern(), c.events, 0, c.named, false).matches
			if !slices.Equal(sorted(got), sorted(c.want)) {
				t.Errorf("matches\n got %q\nwant %q", sorted(got), sorted(c.want))
			}
			again := feed(t, c.pattern(), c.events, 0, c.named, true).matches
			if !slices.Equal(again, got) {
				t.Errorf("with a state round trip after every event\n got %q\nwant %q", again, got)
			}
		})
	}
}

// "a b" over "a c b1 b2" (Flink docs, Combining Patterns).
func TestContiguityBetweenSteps(t *testing.T) {
	ab := func(join func(*Pattern[string], string) *Pattern[string]) func() *Pattern[string] {
		return func() *Pattern[string] {
			return join(Begin[string]("a").Where(is("a")), "b").Where(is("b"))
		}
	}
	runDocCases(t, []docCase{
		{"strict", ab((*Pattern[string]).Next), "a c b1 b2", nil, false},
		{"relaxed", ab((*Pattern[string]).FollowedBy), "a c b1 b2", []string{"a b1"}, false},
		{"non-deterministic relaxed", ab((*Pattern[string]).FollowedByAny), "a c b1 b2", []string{"a b1", "a b2"}, false},
	})
}

// "a b+ c", a followed by any sequence of b's, over "a b1 d1 b2 d2 b3 c"
// (Flink docs, Contiguity within looping patterns).
func TestContiguityWithinLoops(t *testing.T) {
	abc := func(inner func(*Pattern[string]) *Pattern[string], last func(*Pattern[string], string) *Pattern[string]) func() *Pattern[string] {
		return func() *Pattern[string] {
			b := inner(Begin[string]("a").Where(is("a")).FollowedByAny("b").Where(is("b")).OneOrMore())
			return last(b, "c").Where(is("c"))
		}
	}
	same := func(p *Pattern[string]) *Pattern[string] { return p }
	const in = "a b1 d1 b2 d2 b3 c"
	runDocCases(t, []docCase{
		// The docs give {a b3 c} for strict contiguity, which is what a c
		// that must directly follow the loop gives.
		{"strict, c next", abc((*Pattern[string]).Consecutive, (*Pattern[string]).Next), in, []string{"a b3 c"}, false},
		// With c followed-by, every b that a d cut off still reaches c.
		{"strict, c followed by", abc((*Pattern[string]).Consecutive, (*Pattern[string]).FollowedBy), in,
			[]string{"a b1 c", "a b2 c", "a b3 c"}, false},
		{"relaxed", abc(same, (*Pattern[string]).FollowedBy), in,
			[]string{"a b1 c", "a b1 b2 c", "a b1 b2 b3 c", "a b2 c", "a b2 b3 c", "a b3 c"}, false},
		{"non-deterministic relaxed", abc((*Pattern[string]).AllowCombinations, (*Pattern[string]).FollowedBy), in,
			[]string{"a b1 c", "a b1 b2 c", "a b1 b3 c", "a b1 b2 b3 c", "a b2 c", "a b2 b3 c", "a b3 c"}, false},
	})
}

// Consecutive and AllowCombinations over "C D A1 A2 A3 D A4 B" (Flink docs).
func TestConsecutiveAndCombinations(t *testing.T) {
	cab := func(join func(*Pattern[string], string) *Pattern[string], inner func(*Pattern[string]) *Pattern[string]) func() *Pattern[string] {
		return func() *Pattern[string] {
			mid := inner(join(Begin[string]("start").Where(is("c")), "middle").Where(is("a")).OneOrMore())
			return mid.FollowedBy("end1").Where(is("b"))
		}
	}
	same := func(p *Pattern[string]) *Pattern[string] { return p }
	followedBy, followedByAny := (*Pattern[string]).FollowedBy, (*Pattern[string]).FollowedByAny
	const in = "c d a1 a2 a3 d a4 b"
	runDocCases(t, []docCase{
		{"consecutive", cab(followedBy, (*Pattern[string]).Consecutive), in,
			[]string{"c a1 b", "c a1 a2 b", "c a1 a2 a3 b"}, false},
		{"default", cab(followedBy, same), in,
			[]string{"c a1 b", "c a1 a2 b", "c a1 a2 a3 b", "c a1 a2 a3 a4 b"}, false},
		{"combinations", cab(followedBy, (*Pattern[string]).AllowCombinations), in,
			[]string{"c a1 b", "c a1 a2 b", "c a1 a3 b", "c a1 a4 b", "c a1 a2 a3 b", "c a1 a2 a4 b", "c a1 a3 a4 b", "c a1 a2 a3 a4 b"}, false},
		// Newer docs list all 15 combinations; those need the loop's first
		// event to be non-deterministic too, i.e. followedByAny("middle").
		{"combinations after followedByAny", cab(followedByAny, (*Pattern[string]).AllowCombinations), in,
			[]string{"c a1 b", "c a1 a2 b", "c a1 a3 b", "c a1 a4 b", "c a1 a2 a3 b", "c a1 a2 a4 b", "c a1 a3 a4 b", "c a1 a2 a3 a4 b",
				"c a2 b", "c a2 a3 b", "c a2 a4 b", "c a2 a3 a4 b", "c a3 b", "c a3 a4 b", "c a4 b"}, false},
	})
}

func TestQuantifiers(t *testing.T) {
	ab := func(q func(*Pattern[string]) *Pattern[string]) func() *Pattern[string] {
		return func() *Pattern[string] {
			return q(Begin[string]("a").Where(is("a")).FollowedBy("b").Where(is("b"))).FollowedBy("c").Where(is("c"))
		}
	}
	runDocCases(t, []docCase{
		{"times 2", ab(func(p *Pattern[string]) *Pattern[string] { return p.Times(2) }), "a b1 b2 b3 c",
			[]string{"a b1 b2 c"}, false},
		{"times 2..4", ab(func(p *Pattern[string]) *Pattern[string] { return p.TimesRange(2, 4) }), "a b1 b2 b3 c",
			[]string{"a b1 b2 c", "a b1 b2 b3 c"}, false},
		{"times 2..4 greedy", ab(func(p *Pattern[string]) *Pattern[string] { return p.TimesRange(2, 4).Greedy() }), "a b1 b2 b3 c",
			[]string{"a b1 b2 b3 c"}, false},
		{"times 0..2", ab(func(p *Pattern[string]) *Pattern[string] { return p.TimesRange(0, 2) }), "a b1 b2 b3 c",
			[]string{"a c", "a b1 c", "a b1 b2 c"}, false},
		{"times or more 2", ab(func(p *Pattern[string]) *Pattern[string] { return p.TimesOrMore(2) }), "a b1 b2 b3 c",
			[]string{"a b1 b2 c", "a b1 b2 b3 c"}, false},
		{"times 2 optional", ab(func(p *Pattern[string]) *Pattern[string] { return p.Times(2).Optional() }), "a b1 x b2 c",
			[]string{"a c", "a b1 b2 c"}, false},
		{"times 2 consecutive", ab(func(p *Pattern[string]) *Pattern[string] { return p.Times(2).Consecutive() }), "a x b1 b2 y c",
			[]string{"a b1 b2 c"}, false},
		// FollowedBy takes the first b; Consecutive then forbids the x.
		{"times 2 consecutive broken", ab(func(p *Pattern[string]) *Pattern[string] { return p.Times(2).Consecutive() }), "a b1 x b2 b3 c",
			nil, false},
		{"optional", ab((*Pattern[string]).Optional), "a b1 c",
			[]string{"a c", "a b1 c"}, false},
		{"optional absent", ab((*Pattern[string]).Optional), "a x c",
			[]string{"a c"}, false},
		// Flink's testEagerZeroOrMore: c, three a's, b.
		{"zero or more", func() *Pattern[string] {
			return Begin[string]("start").Where(is("c")).FollowedBy("middle").Where(is("a")).OneOrMore().Optional().
				FollowedBy("end").Where(is("b"))
		}, "c a1 a2 a3 b", []string{"c a1 a2 a3 b", "c a1 a2 b", "c a1 b", "c b"}, false},
	})
}

// Greedy: the loop keeps events the next step could also take.
func TestGreedy(t *testing.T) {
	p := func(greedy bool) func() *Pattern[string] {
		return func() *Pattern[string] {
			b := Begin[string]("a").Where(is("a")).FollowedBy("b").Where(is("b")).OneOrMore()
			if greedy {
				b = b.Greedy()
			}
			return b.FollowedBy("c").Where(is("b", "c"))
		}
	}
	runDocCases(t, []docCase{
		{"not greedy", p(false), "a b1 b2 c1", []string{"a:a b:b1 c:b2", "a:a b:b1,b2 c:c1"}, true},
		{"greedy", p(true), "a b1 b2 c1", []string{"a:a b:b1,b2 c:c1"}, true},
	})
}

// "(a+ until b)" over "a1 c a2 b a3" (Flink docs, Stop condition).
func TestUntil(t *testing.T) {
	runDocCases(t, []docCase{{"a+ until b", func() *Pattern[string] {
		return Begin[string]("a").Where(is("a")).OneOrMore().Until(is("b"))
	}, "a1 c a2 b a3", []string{"a1 a2", "a1", "a2", "a3"}, false}})
}

// The iterative condition of Flink's docs: accept "foo" events into middle
// while their prices (here the digits) sum to less than 5.
func TestIterativeCondition(t *testing.T) {
	price := func(e string) int { v, _ := strconv.Atoi(strings.TrimLeft(e, "abcdefghijklmnopqrstuvwxyz")); return v }
	runDocCases(t, []docCase{{"sum below 5", func() *Pattern[string] {
		return Begin[string]("start").Where(is("s")).
			FollowedBy("middle").WhereCtx(func(e string, ctx Context[string]) bool {
			if !strings.HasPrefix(e, "foo") {
				return false
			}
			sum := price(e)
			for _, prev := range ctx.Events("middle") {
				sum += price(prev)
			}
			return sum < 5
		}).OneOrMore().
			FollowedBy("end").Where(is("e"))
	}, "s foo1 foo2 foo3 e", []string{"s foo1 e", "s foo1 foo2 e"}, false}})
}

func TestOr(t *testing.T) {
	runDocCases(t, []docCase{{"where or", func() *Pattern[string] {
		return Begin[string]("a").Where(is("a")).Or(is("x")).Next("b").Where(is("b")).Where(func(e string) bool { return e != "b2" })
	}, "a b1 x b2 x b3", []string{"a b1", "x b3"}, false}})
}

func TestNotPatterns(t *testing.T) {
	runDocCases(t, []docCase{
		{"notNext discards", func() *Pattern[string] {
			return Begin[string]("a").Where(is("a")).NotNext("not").Where(is("x")).FollowedBy("b").Where(is("b"))
		}, "a x b", nil, false},
		{"notNext passes", func() *Pattern[string] {
			return Begin[string]("a").Where(is("a")).NotNext("not").Where(is("x")).FollowedBy("b").Where(is("b"))
		}, "a y x b", []string{"a b"}, false},
		{"trailing notNext", func() *Pattern[string] {
			return Begin[string]("a").Where(is("a")).NotNext("not").Where(is("x"))
		}, "a1 x a2 y", []string{"a2"}, false},
		{"notFollowedBy discards", func() *Pattern[string] {
			return Begin[string]("a").Where(is("a")).NotFollowedBy("not").Where(is("x")).FollowedBy("b").Where(is("b"))
		}, "a y x b", nil, false},
		{"notFollowedBy passes", func() *Pattern[string] {
			return Begin[string]("a").Where(is("a")).NotFollowedBy("not").Where(is("x")).FollowedBy("b").Where(is("b"))
		}, "a y b x", []string{"a b"}, false},
		// NOT before an optional step: taking the optional event ends it
		// (Flink's NFACompiler example: a c b d matches, a b d does not).
		{"notFollowedBy then optional, taken", func() *Pattern[string] {
			return Begin[string]("a").Where(is("a")).NotFollowedBy("not").Where(is("b")).
				FollowedByAny("c").Where(is("c")).Optional().FollowedByAny("d").Where(is("d"))
		}, "a c b d", []string{"a c d"}, false},
		{"notFollowedBy then optional, skipped", func() *Pattern[string] {
			return Begin[string]("a").Where(is("a")).NotFollowedBy("not").Where(is("b")).
				FollowedByAny("c").Where(is("c")).Optional().FollowedByAny("d").Where(is("d"))
		}, "a b d", nil, false},
		{"notFollowedBy after a loop", func() *Pattern[string] {
			return Begin[string]("a").Where(is("a")).FollowedBy("b").Where(is("b")).OneOrMore().
				NotFollowedBy("not").Where(is("x")).FollowedBy("c").Where(is("c"))
		}, "a b1 b2 x c", nil, false},
	})
}

// A trailing NotFollowedBy completes when the window closes without the
// negative event (Flink docs: "a" notFollowedBy "b" within 10 s).
func TestTrailingNotFollowedBy(t *testing.T) {
	p := func() *Pattern[string] {
		return Begin[string]("start").Where(is("a")).NotFollowedBy("end").Where(is("b")).Within(10 * time.Second)
	}
	// b@15000 discards a2 (and would have discarded a1 within its window).
	got := feed(t, p(), "a1@1000 c@2000 a2@12000 b@15000 a3@30000", math.MaxInt64, false, false)
	if want := []string{"a1", "a3"}; !slices.Equal(got.matches, want) || len(got.timedOut) != 0 {
		t.Errorf("got %+v, want matches %q and no timeouts", got, want)
	}
	// Matches come when the window closes, not before.
	n, _ := p().Compile()
	s := n.NewState()
	s, res, _ := n.Process(s, "a1", 1000)
	if len(res.Matches) != 0 {
		t.Fatalf("matched at once: %v", res.Matches)
	}
	s, res, _ = n.Advance(s, 10999)
	if len(res.Matches) != 0 {
		t.Fatalf("matched before the window closed: %v", res.Matches)
	}
	_, res, _ = n.Advance(s, 11000)
	if len(res.Matches) != 1 {
		t.Fatalf("no match when the window closed: %v", res)
	}

	if _, err := Begin[string]("start").Where(is("a")).NotFollowedBy("end").Where(is("b")).Compile(); !errors.Is(err, ErrMalformedPattern) {
		t.Errorf("trailing NotFollowedBy without Within compiled: %v", err)
	}
}

// Flink docs example: start, next middle "error", followed by end
// "critical", within 10 s.
func TestWithinTimesOut(t *testing.T) {
	p := func() *Pattern[string] {
		return Begin[string]("start").Next("middle").Where(is("error")).
			FollowedBy("end").Where(is("critical")).Within(10 * time.Second)
	}
	got := feed(t, p(), "x@0 error@1000 critical@5000", 0, false, false)
	if want := []string{"x error critical"}; !slices.Equal(got.matches, want) {
		t.Errorf("in time: matches %q, want %q", got.matches, want)
	}
	for _, rt := range []bool{false, true} {
		got = feed(t, p(), "x@0 error@1000 critical@12000", math.MaxInt64, false, rt)
		if len(got.matches) != 0 {
			t.Errorf("late critical matched: %q", got.matches)
		}
		want := []string{"x error@10000", "error@11000", "critical@22000"}
		if !slices.Equal(got.timedOut, want) {
			t.Errorf("timed out %q, want %q", got.timedOut, want)
		}
	}
	// An event exactly one window after the start no longer completes it.
	got = feed(t, p(), "x@0 error@1000 critical@10000", 0, false, false)
	if len(got.matches) != 0 || !slices.Contains(got.timedOut, "x error@10000") {
		t.Errorf("at the window's end: %+v", got)
	}
	n, _ := p().Compile()
	s, _, _ := n.Process(n.NewState(), "x", 0)
	if ts, ok := n.NextTimeout(s); !ok || ts != 10000 {
		t.Errorf("NextTimeout = %d, %v; want 10000", ts, ok)
	}
}

// The skip strategy tables of Flink's docs.
func TestSkipStrategies(t *testing.T) {
	bc := func(s SkipStrategy) func() *Pattern[string] {
		return func() *Pattern[string] {
			// Consecutive, so that the loop's partial matches end at c: a
			// skip strategy holds a completed match back while a partial
			// match that started earlier lives (see the test below).
			return Begin[string]("b", s).Where(is("b")).OneOrMore().Consecutive().Next("c").Where(is("c"))
		}
	}
	abcd := func(s SkipStrategy) func() *Pattern[string] {
		return func() *Pattern[string] {
			return Begin[string]("a", s).Where(is("a", "b", "c")).Next("b").Where(is("b", "c")).
				Next("c").Where(is("c")).OneOrMore().Greedy().Next("d").Where(is("d"))
		}
	}
	ab := func(s SkipStrategy) func() *Pattern[string] {
		return func() *Pattern[string] {
			return Begin[string]("a", s).Where(is("a")).FollowedBy("b").Where(is("b")).OneOrMore()
		}
	}
	all := []string{"b1 b2 b3 c", "b2 b3 c", "b3 c"}
	runDocCases(t, []docCase{
		{"b+ c NO_SKIP", bc(NoSkip()), "b1 b2 b3 c", all, false},
		{"b+ c SKIP_TO_NEXT", bc(SkipToNext()), "b1 b2 b3 c", all, false},
		{"b+ c SKIP_PAST_LAST_EVENT", bc(SkipPastLastEvent()), "b1 b2 b3 c", []string{"b1 b2 b3 c"}, false},
		{"b+ c SKIP_TO_FIRST[b]", bc(SkipToFirst("b")), "b1 b2 b3 c", all, false},
		{"b+ c SKIP_TO_LAST[b]", bc(SkipToLast("b")), "b1 b2 b3 c", []string{"b1 b2 b3 c", "b3 c"}, false},
		{"(a|b|c) (b|c) c+ d NO_SKIP", abcd(NoSkip()), "a b c1 c2 c3 d",
			[]string{"a b c1 c2 c3 d", "b c1 c2 c3 d", "c1 c2 c3 d"}, false},
		{"(a|b|c) (b|c) c+ d SKIP_TO_FIRST[c]", abcd(SkipToFirst("c")), "a b c1 c2 c3 d",
			[]string{"a b c1 c2 c3 d", "c1 c2 c3 d"}, false},
		{"a b+ NO_SKIP", ab(NoSkip()), "a b1 b2 b3", []string{"a b1", "a b1 b2", "a b1 b2 b3"}, false},
		{"a b+ SKIP_TO_NEXT", ab(SkipToNext()), "a b1 b2 b3", []string{"a b1"}, false},
	})

	// Held back: without Consecutive, b1's loop outlives c and keeps the
	// later matches back until it times out.
	held := func() *Pattern[string] {
		return Begin[string]("b", SkipToFirst("b")).Where(is("b")).OneOrMore().Next("c").Where(is("c")).Within(time.Second)
	}
	if got := feed(t, held(), "b1 b2 b3 c", 0, false, false).matches; !slices.Equal(got, []string{"b1 b2 b3 c"}) {
		t.Errorf("before the window closes: %q", got)
	}
	if got := feed(t, held(), "b1 b2 b3 c", 5000, false, true).matches; !slices.Equal(got, all) {
		t.Errorf("after the window closes: %q, want %q", got, all)
	}

	// ErrorOnMiss: a match without the named step's event fails.
	n, err := Begin[string]("a", SkipToFirst("b").ErrorOnMiss()).Where(is("a")).FollowedBy("b").Where(is("b")).Optional().
		FollowedBy("c").Where(is("c")).Compile()
	if err != nil {
		t.Fatal(err)
	}
	s, _, _ := n.Process(n.NewState(), "a", 1)
	if _, _, err := n.Process(s, "c", 2); err == nil {
		t.Error("SkipToFirst(b).ErrorOnMiss() accepted a match without b")
	}
}

// Matches of one event come out in a fixed order: by their first event.
func TestMatchOrderIsDeterministic(t *testing.T) {
	p := func() *Pattern[string] {
		return Begin[string]("a").Where(is("a")).FollowedByAny("b").Where(is("b"))
	}
	got := feed(t, p(), "a1 a2 a3 b", 0, false, false).matches
	if want := []string{"a1 b", "a2 b", "a3 b"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMalformedPatterns(t *testing.T) {
	cases := map[string]*Pattern[string]{
		"duplicate name":              Begin[string]("a").FollowedBy("a"),
		"until on singleton":          Begin[string]("a").Until(is("b")),
		"quantifier on NOT":           Begin[string]("a").NotFollowedBy("n").OneOrMore().FollowedBy("b"),
		"optional NOT":                Begin[string]("a").NotNext("n").Optional().FollowedBy("b"),
		"NOT after optional":          Begin[string]("a").FollowedBy("b").Optional().NotNext("n").FollowedBy("c"),
		"two quantifiers":             Begin[string]("a").OneOrMore().Times(2),
		"consecutive on singleton":    Begin[string]("a").Consecutive(),
		"greedy on singleton":         Begin[string]("a").Greedy(),
		"greedy with combinations":    Begin[string]("a").OneOrMore().AllowCombinations().Greedy(),
		"skip to unknown step":        Begin[string]("a", SkipToLast("zz")).FollowedBy("b"),
		"trailing NotFollowedBy":      Begin[string]("a").NotFollowedBy("n"),
		"bad times":                   Begin[string]("a").Times(0),
		"bad range":                   Begin[string]("a").TimesRange(3, 2),
		"negative window":             Begin[string]("a").Within(-time.Second),
		"optional after greedy":       Begin[string]("a").OneOrMore().Greedy().FollowedBy("b").Optional(),
		"consecutive and combination": Begin[string]("a").OneOrMore().Consecutive().AllowCombinations(),
	}
	for name, p := range cases {
		if _, err := p.Compile(); !errors.Is(err, ErrMalformedPattern) {
			t.Errorf("%s: Compile() = %v, want ErrMalformedPattern", name, err)
		}
	}
}
