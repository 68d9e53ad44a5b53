package cep

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
)

// patterns exercised by the property tests: every construct at least once.
var propertyPatterns = []func() *Pattern[string]{
	func() *Pattern[string] {
		return Begin[string]("a").Where(is("a")).FollowedByAny("b").Where(is("b")).OneOrMore().AllowCombinations().
			FollowedBy("c").Where(is("c")).Within(40 * time.Millisecond)
	},
	func() *Pattern[string] {
		return Begin[string]("a", SkipPastLastEvent()).Where(is("a")).NotFollowedBy("n").Where(is("c")).
			FollowedBy("b").Where(is("b")).TimesRange(1, 3).Greedy().Within(30 * time.Millisecond)
	},
	func() *Pattern[string] {
		return Begin[string]("a", SkipToFirst("b")).Where(is("a", "b")).Next("b").Where(is("b")).Optional().
			FollowedBy("c").Where(is("c", "a")).OneOrMore().Until(is("d")).Consecutive()
	},
	func() *Pattern[string] {
		return Begin[string]("a", SkipToLast("b")).Where(is("a")).FollowedBy("b").WhereCtx(func(e string, ctx Context[string]) bool {
			return strings.HasPrefix(e, "b") && len(ctx.Events("b")) < 2
		}).TimesOrMore(1).NotFollowedBy("n").Where(is("d")).Within(20 * time.Millisecond)
	},
	func() *Pattern[string] {
		return Begin[string]("a", SkipToNext()).Where(is("a")).NotNext("n").Where(is("d")).
			FollowedByAny("b").Where(is("b", "c")).Times(2).Optional().FollowedBy("c").Where(is("c"))
	},
}

// runTrace feeds events (with timestamps stepping by 0..9 ms and an
// occasional Advance) and renders everything that comes out. With
// roundTrip the state is encoded and decoded between every two calls.
func runTrace(t testing.TB, p *Pattern[string], seed []byte, roundTrip bool) []string {
	n, err := p.Compile()
	if err != nil {
		t.Fatal(err)
	}
	codec := n.StateCodec(runtime.StringCodec{})
	s := n.NewState()
	var out []string
	var ts int64
	apply := func(ns *State[string], res Result[string], err error) {
		if err != nil {
			out = append(out, "error "+err.Error())
			return
		}
		for _, m := range res.Matches {
			out = append(out, renderNamed(n, m))
		}
		for _, to := range res.TimedOut {
			out = append(out, fmt.Sprintf("timeout %s @%d", renderNamed(n, to.Match), to.Timestamp))
		}
		s = ns
		if roundTrip {
			b := codec.Append(nil, s)
			if s, err = codec.Decode(b); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if again := codec.Append(nil, s); string(again) != string(b) {
				t.Fatalf("re-encoding differs")
			}
		}
	}
	for i, b := range seed {
		ts += int64(b % 10)
		if b >= 240 {
			apply(n.Advance(s, ts))
			continue
		}
		ev := string(rune('a'+b%5)) + fmt.Sprint(i)
		apply(n.Process(s, ev, ts))
	}
	apply(n.Advance(s, ts+1000))
	return out
}

func TestStateRoundTripKeepsMatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for pi, p := range propertyPatterns {
		for trial := 0; trial < 40; trial++ {
			seed := make([]byte, 5+rng.IntN(40))
			for i := range seed {
				seed[i] = byte(rng.UintN(256))
			}
			plain := runTrace(t, p(), seed, false)
			rt := runTrace(t, p(), seed, true)
			if !slices.Equal(plain, rt) {
				t.Fatalf("pattern %d, seed %v:\nplain %q\nround trip %q", pi, seed, plain, rt)
			}
		}
	}
}

func FuzzStateRoundTrip(f *testing.F) {
	f.Add(uint8(0), []byte{0, 1, 2, 3, 250, 2})
	f.Add(uint8(3), []byte{0, 6, 11, 16, 3, 241})
	f.Fuzz(func(t *testing.T, which uint8, seed []byte) {
		limit := 64
		if which%uint8(len(propertyPatterns)) == 0 {
			limit = 16 // AllowCombinations: partial matches double with every b
		}
		if len(seed) > limit {
			seed = seed[:limit]
		}
		p := propertyPatterns[int(which)%len(propertyPatterns)]
		if plain, rt := runTrace(t, p(), seed, false), runTrace(t, p(), seed, true); !slices.Equal(plain, rt) {
			t.Fatalf("plain %q\nround trip %q", plain, rt)
		}
	})
}

// FuzzStateDecode: arbitrary bytes give an error or a state, never a panic.
func FuzzStateDecode(f *testing.F) {
	n, err := propertyPatterns[0]().Compile()
	if err != nil {
		f.Fatal(err)
	}
	codec := n.StateCodec(runtime.StringCodec{})
	s := n.NewState()
	for i, ev := range []string{"a1", "b2", "b3"} {
		s, _, _ = n.Process(s, ev, int64(i))
	}
	f.Add(codec.Append(nil, s))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := codec.Decode(b)
		if err != nil {
			return
		}
		// A decoded state must be usable.
		n.Process(s, "c9", 100)
		n.Advance(s, 1000)
	})
}

// FuzzBufferDecode: the event-time buffer's codec refuses what it did not
// write, never panics, and round-trips what it did.
func FuzzBufferDecode(f *testing.F) {
	c := bufferCodec[string]{runtime.StringCodec{}}
	f.Add(c.Append(nil, []pending[string]{{1, "a"}, {1, "b"}, {7, "c"}}))
	f.Add([]byte{2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := c.Decode(b)
		if err != nil {
			return
		}
		again, err := c.Decode(c.Append(nil, v))
		if err != nil || !slices.Equal(again, v) {
			t.Fatalf("round trip of %v: %v, %v", v, again, err)
		}
	})
}
