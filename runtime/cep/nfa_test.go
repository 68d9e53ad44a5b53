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

// Cases of Flink's GreedyITCase ("ax" is an a whose price is over 3, the
// until condition there).
func TestGreedyFlinkCases(t *testing.T) {
	cad := func(q func(*Pattern[string]) *Pattern[string], end bool) func() *Pattern[string] {
		return func() *Pattern[string] {
			mid := q(Begin[string]("start").Where(is("c")).FollowedBy("middle").Where(is("a")))
			if !end {
				return mid
			}
			return mid.FollowedBy("end").Where(is("d"))
		}
	}
	zeroOrMore := func(p *Pattern[string]) *Pattern[string] { return p.OneOrMore().Optional().Greedy() }
	oneOrMore := func(p *Pattern[string]) *Pattern[string] { return p.OneOrMore().Greedy() }
	until := func(q func(*Pattern[string]) *Pattern[string]) func(*Pattern[string]) *Pattern[string] {
		return func(p *Pattern[string]) *Pattern[string] { return q(p).Until(is("ax")) }
	}
	runDocCases(t, []docCase{
		{"zero or more", cad(zeroOrMore, true), "c a1 a2 a3 d", []string{"c a1 a2 a3 d"}, false},
		{"zero or more in between", cad(zeroOrMore, true), "c x a1 x a2 x a3 d", []string{"c a1 a2 a3 d"}, false},
		{"zero or more, dummy after", cad(zeroOrMore, true), "c a1 a2 x d", []string{"c a1 a2 d"}, false},
		{"zero or more, dummy before", cad(zeroOrMore, true), "c x d", []string{"c d"}, false},
		{"until zero or more, dummy after", cad(until(zeroOrMore), true), "c a1 a2 a3 ax d", []string{"c a1 a2 a3 d"}, false},
		{"until, dummy before", cad(until(zeroOrMore), true), "c ax a1 a2 a3 d", []string{"c d"}, false},
		{"one or more", cad(oneOrMore, true), "c a1 a2 a3 d", []string{"c a1 a2 a3 d"}, false},
		{"one or more in between", cad(oneOrMore, true), "c x a1 x a2 x a3 d", []string{"c a1 a2 a3 d"}, false},
		{"one or more, dummy after", cad(oneOrMore, true), "c a1 a2 x d", []string{"c a1 a2 d"}, false},
		{"one or more, dummy before", cad(oneOrMore, true), "c x d", nil, false},
		{"until one or more, dummy after", cad(until(oneOrMore), true), "c a1 a2 a3 ax d", []string{"c a1 a2 a3 d"}, false},
		{"until one or more, dummy before", cad(until(oneOrMore), true), "c ax a1 a2 a3 d", nil, false},
		{"ends with zero or more", cad(zeroOrMore, false), "c a1 a2 x a3", []string{"c", "c a1", "c a1 a2", "c a1 a2 a3"}, false},
		{"ends with zero or more consecutive", cad(func(p *Pattern[string]) *Pattern[string] {
			return p.OneOrMore().Optional().Consecutive().Greedy()
		}, false), "c a1 a2 x a3", []string{"c", "c a1", "c a1 a2"}, false},
		{"ends with times 2..5", cad(func(p *Pattern[string]) *Pattern[string] { return p.TimesRange(2, 5).Greedy() }, false),
			"c a1 a2 a3 a4 x", []string{"c a1 a2", "c a1 a2 a3", "c a1 a2 a3 a4"}, false},
		{"times 2..5", cad(func(p *Pattern[string]) *Pattern[string] { return p.TimesRange(2, 5).Greedy() }, true),
			"c a1 a2 a3 a4 d", []string{"c a1 a2 a3 a4 d"}, false},
	})
}

// Cases of Flink's NotPatternITCase.
func TestNotFlinkCases(t *testing.T) {
	a := func() *Pattern[string] { return Begin[string]("start").Where(is("a")) }
	runDocCases(t, []docCase{
		{"notNext", func() *Pattern[string] {
			return a().NotNext("not").Where(is("b")).FollowedByAny("middle").Where(is("c")).FollowedBy("end").Where(is("d"))
		}, "a1 c1 b1 c2 d", []string{"a1 c1 d", "a1 c2 d"}, false},
		{"notNext, no matches", func() *Pattern[string] {
			return a().NotNext("not").Where(is("b")).FollowedBy("middle").Where(is("c")).FollowedBy("end").Where(is("d"))
		}, "a1 b1 c1 c2 d", nil, false},
		{"notNext at the end, no matches", func() *Pattern[string] {
			return a().FollowedByAny("middle").Where(is("c")).FollowedByAny("end").Where(is("d")).NotNext("not").Where(is("b"))
		}, "a1 c1 c2 d b1", nil, false},
		{"notFollowedBy", func() *Pattern[string] {
			return a().NotFollowedBy("not").Where(is("b")).FollowedByAny("middle").Where(is("c")).FollowedBy("end").Where(is("d"))
		}, "a1 c1 b1 c2 d", []string{"a1 c1 d"}, false},
		{"notFollowedBy before optional", func() *Pattern[string] {
			return a().NotFollowedBy("not").Where(is("b")).FollowedByAny("middle").Where(is("c")).Optional().FollowedBy("end").Where(is("d"))
		}, "a1 c1 b1 c2 d", []string{"a1 c1 d"}, false},
		{"times with notFollowedBy", func() *Pattern[string] {
			return a().FollowedByAny("middle").Where(is("b")).Times(2).NotFollowedBy("not").Where(is("c")).FollowedBy("end").Where(is("d"))
		}, "a1 b1 c b2 d", nil, false},
		{"ignore state of times with notFollowedBy", func() *Pattern[string] {
			return a().NotFollowedBy("not").Where(is("b")).FollowedByAny("middle").Where(is("c")).Times(2).Optional().
				FollowedBy("end").Where(is("d"))
		}, "a1 d1 e b1 c1 c2 d2", []string{"a1 d1"}, false},
	})
}

func has(sub string) func(string) bool {
	return func(e string) bool { return strings.Contains(e, sub) }
}

// Cases of Flink's AfterMatchSkipITCase.
func TestSkipFlinkCases(t *testing.T) {
	runDocCases(t, []docCase{
		{"no skip, times 3", func() *Pattern[string] { return Begin[string]("start", NoSkip()).Where(is("a")).Times(3) },
			"a1 a2 a3 a4 a5 a6", []string{"a1 a2 a3", "a2 a3 a4", "a3 a4 a5", "a4 a5 a6"}, false},
		{"skip past last, times 3", func() *Pattern[string] { return Begin[string]("start", SkipPastLastEvent()).Where(is("a")).Times(3) },
			"a1 a2 a3 a4 a5 a6", []string{"a1 a2 a3", "a4 a5 a6"}, false},
		{"no skip, followedByAny", func() *Pattern[string] {
			return Begin[string]("start", NoSkip()).Where(is("a")).FollowedByAny("end").Where(is("b"))
		}, "a1 b1 a2 b2", []string{"a1 b1", "a1 b2", "a2 b2"}, false},
		{"skip to next, followedByAny", func() *Pattern[string] {
			return Begin[string]("start", SkipToNext()).Where(is("a")).FollowedByAny("end").Where(is("b"))
		}, "a1 b1 a2 b2", []string{"a1 b1", "a2 b2"}, false},
		{"no skip, quantifier at the end", func() *Pattern[string] {
			return Begin[string]("start", NoSkip()).Where(is("a")).Next("end").Where(is("b")).OneOrMore()
		}, "a1 b1 b2 b3", []string{"a1 b1 b2 b3", "a1 b1 b2", "a1 b1"}, false},
		{"skip to next, quantifier at the end", func() *Pattern[string] {
			return Begin[string]("start", SkipToNext()).Where(is("a")).Next("end").Where(is("b")).OneOrMore()
		}, "a1 b1 b2 b3", []string{"a1 b1"}, false},
		{"skip to first", func() *Pattern[string] {
			return Begin[string]("start", SkipToFirst("end")).Where(has("a")).Times(2).Next("end").Where(has("b")).Times(2)
		}, "ab1 ab2 ab3 ab4 ab5 ab6", []string{"ab1 ab2 ab3 ab4", "ab3 ab4 ab5 ab6"}, false},
		{"skip to last", func() *Pattern[string] {
			return Begin[string]("start", SkipToLast("end")).Where(has("a")).Times(2).Next("end").Where(has("b")).Times(2)
		}, "ab1 ab2 ab3 ab4 ab5 ab6 ab7", []string{"ab1 ab2 ab3 ab4", "ab4 ab5 ab6 ab7"}, false},
		{"skip past last 2", func() *Pattern[string] {
			return Begin[string]("a", SkipPastLastEvent()).Where(has("a")).FollowedByAny("b").Where(has("b")).
				FollowedByAny("c").Where(has("c")).FollowedBy("d").Where(has("d"))
		}, "a1 a2 b1 b2 c1 c2 d1@7 d2@7", []string{"a1 b1 c1 d1"}, false},
		{"skip past last 3", func() *Pattern[string] {
			return Begin[string]("a", SkipPastLastEvent()).Where(has("a")).Next("b").Where(has("b"))
		}, "a1 c a2 b2", []string{"a2 b2"}, false},
		{"skip to first with optional match", func() *Pattern[string] {
			return Begin[string]("x", SkipToFirst("b")).Where(has("x")).OneOrMore().Optional().
				Next("b").Where(has("b")).Next("c").Where(has("c"))
		}, "ab1 c1 ab2 c2", []string{"ab1 c1", "ab2 c2"}, false},
		{"skip to first at start position", func() *Pattern[string] {
			return Begin[string]("b", SkipToFirst("b")).Where(has("b")).Next("c").Where(has("c"))
		}, "ab1 c1 ab2 c2", []string{"ab1 c1", "ab2 c2"}, false},
		{"skip to first with one or more", func() *Pattern[string] {
			return Begin[string]("a", SkipToFirst("b")).Where(has("a")).Next("b").Where(has("b")).OneOrMore().Consecutive()
		}, "a1@1 b1@2 a2@3 b2@4 b3@5 a3@3 b4@4", []string{"a1 b1", "a2 b2", "a3 b4"}, false},
		{"skip to first, missing step", func() *Pattern[string] {
			return Begin[string]("a", SkipToFirst("b")).Where(has("a")).Next("b").Where(has("b")).OneOrMore().Optional().Consecutive().
				Next("c").Where(has("c"))
		}, "a c", []string{"a c"}, false},
	})

	errs := map[string]func() *Pattern[string]{
		"skip to the first element of the match": func() *Pattern[string] {
			return Begin[string]("a", SkipToFirst("a").ErrorOnMiss()).Where(has("a"))
		},
		"skip to first, missing step": func() *Pattern[string] {
			return Begin[string]("a", SkipToFirst("b").ErrorOnMiss()).Where(has("a")).Next("b").Where(has("b")).OneOrMore().Optional().Consecutive().
				Next("c").Where(has("c"))
		},
		"skip to last, missing step": func() *Pattern[string] {
			return Begin[string]("a", SkipToLast("b").ErrorOnMiss()).Where(has("a")).Next("b").Where(has("b")).OneOrMore().Optional().Consecutive().
				Next("c").Where(has("c"))
		},
	}
	for name, p := range errs {
		n, err := p().Compile()
		if err != nil {
			t.Fatal(err)
		}
		s := n.NewState()
		var failed error
		for i, ev := range []string{"a", "c"} {
			if s, _, err = n.Process(s, ev, int64(i)); err != nil {
				failed = err
				break
			}
		}
		if failed == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// Cases of Flink's UntilConditionITCase ("ax" is the a whose price is 5,
// the until and end condition there). Afterwards only the start state is
// left, as Flink's tests check.
func TestUntilFlinkCases(t *testing.T) {
	cae := func(q func(*Pattern[string]) *Pattern[string]) func() *Pattern[string] {
		return func() *Pattern[string] {
			return q(Begin[string]("start").Where(is("c")).FollowedBy("middle").Where(is("a")).OneOrMore()).
				Until(is("ax")).FollowedBy("end").Where(is("ax"))
		}
	}
	same := func(p *Pattern[string]) *Pattern[string] { return p }
	cases := []docCase{
		{"one or more", cae(same), "c a1 a2 ax a6", []string{"c a1 a2 ax", "c a1 ax"}, false},
		{"one or more, combinations", cae((*Pattern[string]).AllowCombinations), "c a1 a2 a3 ax a6",
			[]string{"c a1 a2 a3 ax", "c a1 a2 ax", "c a1 a3 ax", "c a1 ax"}, false},
		{"one or more, consecutive", cae((*Pattern[string]).Consecutive), "c a1 a2 ax a6", []string{"c a1 a2 ax", "c a1 ax"}, false},
		{"one or more, consecutive 2", cae((*Pattern[string]).Consecutive), "c a1 b a3 ax a6", []string{"c a1 ax"}, false},
	}
	runDocCases(t, cases)
	for _, c := range cases {
		n, _ := c.pattern().Compile()
		s := n.NewState()
		evs, tss := parseEvents(t, c.events)
		for i, ev := range evs {
			s, _, _ = n.Process(s, ev, tss[i])
		}
		if !n.Idle(s) {
			t.Errorf("%s: %d partial matches left, want only the start", c.name, len(s.runs))
		}
	}
}

// Cases of Flink's TimesOrMoreITCase.
func TestTimesOrMoreFlinkCases(t *testing.T) {
	cab := func(join func(*Pattern[string], string) *Pattern[string], q func(*Pattern[string]) *Pattern[string]) func() *Pattern[string] {
		return func() *Pattern[string] {
			return q(join(Begin[string]("start").Where(is("c")), "middle").Where(is("a"))).FollowedBy("end1").Where(is("b"))
		}
	}
	followedBy, followedByAny := (*Pattern[string]).FollowedBy, (*Pattern[string]).FollowedByAny
	runDocCases(t, []docCase{
		{"times or more 2, combinations", cab(followedBy, func(p *Pattern[string]) *Pattern[string] { return p.TimesOrMore(2).AllowCombinations() }),
			"c a1 a2 a3 b", []string{"c a1 a2 a3 b", "c a1 a2 b", "c a1 a3 b"}, false},
		{"times or more 2, non-strict", cab(followedByAny, func(p *Pattern[string]) *Pattern[string] { return p.TimesOrMore(2).AllowCombinations() }),
			"c f a1 f a2 a3 b", []string{"c a1 a2 a3 b", "c a1 a2 b", "c a1 a3 b", "c a2 a3 b"}, false},
		{"times 2, strict", cab(followedByAny, func(p *Pattern[string]) *Pattern[string] { return p.Times(2).Consecutive() }),
			"c f a1 f a2 a3 b", []string{"c a2 a3 b"}, false},
		{"times or more 2, strict, optional", cab(followedByAny, func(p *Pattern[string]) *Pattern[string] {
			return p.TimesOrMore(2).Consecutive().Optional()
		}), "c f a1 f a2 a3 b", []string{"c a2 a3 b", "c b"}, false},
	})
}

// Cases of Flink's TimesRangeITCase.
func TestTimesRangeFlinkCases(t *testing.T) {
	cab := func(join func(*Pattern[string], string) *Pattern[string], q func(*Pattern[string]) *Pattern[string]) func() *Pattern[string] {
		return func() *Pattern[string] {
			return q(join(Begin[string]("start").Where(is("c")), "middle").Where(is("a"))).FollowedBy("end1").Where(is("b"))
		}
	}
	next, followedBy, followedByAny := (*Pattern[string]).Next, (*Pattern[string]).FollowedBy, (*Pattern[string]).FollowedByAny
	q := func(from, to int, inner func(*Pattern[string]) *Pattern[string], optional bool) func(*Pattern[string]) *Pattern[string] {
		return func(p *Pattern[string]) *Pattern[string] {
			p = inner(p.TimesRange(from, to))
			if optional {
				p = p.Optional()
			}
			return p
		}
	}
	combinations, consecutive := (*Pattern[string]).AllowCombinations, (*Pattern[string]).Consecutive
	same := func(p *Pattern[string]) *Pattern[string] { return p }
	runDocCases(t, []docCase{
		{"1..3", cab(next, q(1, 3, combinations, false)), "c a1 a2 a3 b",
			[]string{"c a1 a2 a3 b", "c a1 a2 b", "c a1 a3 b", "c a1 b"}, false},
		{"0..2", cab(next, q(0, 2, combinations, false)), "c a1 a2 a3 b",
			[]string{"c a1 a2 b", "c a1 a3 b", "c a1 b", "c b"}, false},
		{"1..3 non-strict", cab(followedByAny, q(1, 3, combinations, false)), "c f a1 f a2 a3 b",
			[]string{"c a1 a2 a3 b", "c a1 a2 b", "c a1 a3 b", "c a2 a3 b", "c a1 b", "c a2 b", "c a3 b"}, false},
		{"0..3 strict", cab(followedByAny, q(0, 3, consecutive, false)), "c f a1 f a2 a3 b",
			[]string{"c a2 a3 b", "c a1 b", "c a2 b", "c a3 b", "c b"}, false},
		{"1..3 strict optional", cab(followedByAny, q(1, 3, consecutive, true)), "c f a1 f a2 a3 b",
			[]string{"c a2 a3 b", "c a1 b", "c a2 b", "c a3 b", "c b"}, false},
		{"1..3 strict optional 1", cab(next, q(1, 3, consecutive, true)), "c a1 a2 a3 b",
			[]string{"c a1 a2 a3 b", "c a1 a2 b", "c a1 b", "c b"}, false},
		{"1..3 non-strict optional 1", cab(followedBy, q(1, 3, same, true)), "c f b", []string{"c b"}, false},
	})
}

// Cases of Flink's NFAITCase about zero-or-more loops.
func TestZeroOrMoreFlinkCases(t *testing.T) {
	runDocCases(t, []docCase{
		{"zero or more", func() *Pattern[string] {
			return Begin[string]("start").Where(is("c")).FollowedByAny("middle").Where(is("a")).OneOrMore().AllowCombinations().Optional().
				FollowedBy("end1").Where(is("b"))
		}, "c a1 a2 b", []string{"c a1 a2 b", "c a1 b", "c a2 b", "c b"}, false},
		{"eager zero or more", func() *Pattern[string] {
			return Begin[string]("start").Where(is("c")).FollowedBy("middle").Where(is("a")).OneOrMore().Optional().
				FollowedBy("end1").Where(is("b"))
		}, "c a1 a2 d a3 b", []string{"c a1 a2 a3 b", "c a1 a2 b", "c a1 b", "c b"}, false},
		{"begin with zero or more", func() *Pattern[string] {
			return Begin[string]("middle").Where(is("a")).OneOrMore().Optional().FollowedBy("end").Where(is("b"))
		}, "a1 a2 a3 b", []string{"a1 a2 a3 b", "a1 a2 b", "a2 a3 b", "a1 b", "a2 b", "a3 b", "b"}, false},
		{"zero or more after zero or more", func() *Pattern[string] {
			return Begin[string]("start").Where(is("c")).
				FollowedByAny("middle-first").Where(is("a")).OneOrMore().AllowCombinations().Optional().
				FollowedBy("middle-second").Where(is("d")).OneOrMore().AllowCombinations().Optional().
				FollowedBy("end").Where(is("e"))
		}, "c a1 d1 d2 e", []string{"c a1 d1 d2 e", "c a1 d1 e", "c d1 d2 e", "c d1 e", "c a1 e", "c e"}, false},
		{"zero or more after branching", func() *Pattern[string] {
			return Begin[string]("start").Where(is("c")).FollowedByAny("branching").Where(is("a")).
				FollowedByAny("merging").Where(is("f")).
				FollowedByAny("kleene").Where(is("d")).OneOrMore().AllowCombinations().Optional().
				FollowedBy("end").Where(is("e"))
		}, "c a1 a2 f d1 d2 e", []string{"c a1 f e", "c a1 f d1 e", "c a1 f d2 e", "c a1 f d1 d2 e",
			"c a2 f e", "c a2 f d1 e", "c a2 f d2 e", "c a2 f d1 d2 e"}, false},
		{"strict contiguity, no results after zero or more", func() *Pattern[string] {
			return Begin[string]("start").Where(is("d")).FollowedBy("middle").Where(is("a")).OneOrMore().Optional().
				Next("end").Where(is("b"))
		}, "d a1 a2 c b", nil, false},
		{"strict contiguity, results after zero or more", func() *Pattern[string] {
			return Begin[string]("start").Where(is("d")).FollowedByAny("middle").Where(is("a")).OneOrMore().Optional().AllowCombinations().
				Next("end").Where(is("b"))
		}, "d a1 a2 b", []string{"d a1 a2 b", "d a2 b"}, false},
	})
}
