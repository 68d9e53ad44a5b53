// Package sequence is the CEP sequence detector: per user, an event of type
// A followed by one of type B within a window (10 s by default) with no C
// between them. It runs in event time on runtime/cep, Weir's Flink-CEP
// library:
//
//	Begin("a").Where(type A).NotFollowedBy("c").Where(type C).
//	    FollowedBy("b").Where(type B).Within(window)
//
// The source generates events for users 1..users with types drawn from a
// hash of (subtask, index), about a quarter each of A, B, C and D, and
// synthetic event times `spacing` apart, so a run is reproducible (a
// source subtask that a rescale adds starts again at time 0, behind the
// watermark, so its events are late and dropped: rescale this job's
// source only for experiments). Each
// match prints one Match{user=…, a=…, b=…} line with the two timestamps;
// partial matches the window discards go to a side output that prints
// Timeout{user=…, a=…}.
package sequence

import (
	"fmt"
	"strconv"
	"time"

	"github.com/weirstream/weir/connectors"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/cep"
)

// Name is the job's registered name.
const Name = "sequence"

func init() {
	jobs.Register(jobs.Job{
		Name:        Name,
		Description: "CEP: per user, an event of type A followed by one of type B within `window` with no C in between (event time)",
		Params: []jobs.Param{
			{Name: "users", Type: jobs.Int, Default: "1000", Description: "number of users the source draws from"},
			{Name: "count", Type: jobs.Int, Default: "0", Description: "events per source subtask before it finishes (0 = unbounded)"},
			{Name: "rate", Type: jobs.Float, Default: "100", Description: "events per second per source subtask (0 = as fast as possible)"},
			{Name: "spacing", Type: jobs.Duration, Default: "100ms", Description: "event time between consecutive events of a source subtask"},
			{Name: "window", Type: jobs.Duration, Default: "10s", Description: "longest time from A to B"},
			{Name: "out-of-orderness", Type: jobs.Duration, Default: "0s", Description: "how late events may arrive (the watermark lags the largest timestamp by this)"},
		},
		Build: Build,
	})
}

// Event is one user event; Type is 'A', 'B', 'C' or 'D'.
type Event struct {
	User int64
	Type byte
	Time int64 // Unix ms
}

// EventCodec serialises events.
type EventCodec struct{}

func (EventCodec) Append(dst []byte, e Event) []byte {
	dst = runtime.Int64Codec{}.Append(dst, e.User)
	dst = runtime.Int64Codec{}.Append(dst, int64(e.Type))
	return runtime.Int64Codec{}.Append(dst, e.Time)
}

func (EventCodec) Decode(src []byte) (Event, error) {
	r := runtime.NewReader(src)
	e := Event{User: r.Varint()}
	typ := r.Varint()
	e.Type = byte(typ)
	e.Time = r.Varint()
	if err := r.Done(); err != nil || typ < 0 || typ > 255 {
		return Event{}, fmt.Errorf("event: %w", runtime.ErrCorrupt)
	}
	return e, nil
}

// Config is the job's parameters.
type Config struct {
	Users, Count    int64
	Rate            float64
	Spacing, Window time.Duration
	OutOfOrderness  time.Duration
}

func parseConfig(p *runtime.Params) Config {
	c := Config{
		Users:          p.Int("users", 1000),
		Count:          p.Int("count", 0),
		Rate:           p.Float("rate", 100),
		Spacing:        p.Duration("spacing", 100*time.Millisecond),
		Window:         p.Duration("window", 10*time.Second),
		OutOfOrderness: p.Duration("out-of-orderness", 0),
	}
	if c.Users < 1 {
		p.Errorf("users", "%d must be at least 1", c.Users)
	}
	if c.Count < 0 {
		p.Errorf("count", "%d must be 0 (unbounded) or positive", c.Count)
	}
	if err := connectors.ValidateRate(c.Rate); err != nil {
		p.Errorf("rate", "%v", err)
	}
	if c.Spacing < time.Millisecond {
		p.Errorf("spacing", "%v must be at least 1ms", c.Spacing)
	}
	if c.Window < time.Millisecond {
		p.Errorf("window", "%v must be at least 1ms", c.Window)
	}
	if c.OutOfOrderness < 0 {
		p.Errorf("out-of-orderness", "%v must not be negative", c.OutOfOrderness)
	}
	return c
}

// Pattern is the detector's pattern.
func Pattern(window time.Duration) *cep.Pattern[Event] {
	is := func(t byte) func(Event) bool { return func(e Event) bool { return e.Type == t } }
	return cep.Begin[Event]("a").Where(is('A')).
		NotFollowedBy("c").Where(is('C')).
		FollowedBy("b").Where(is('B')).
		Within(window)
}

// FormatMatch is how a match prints.
func FormatMatch(user int64, m cep.Match[Event]) string {
	return "Match{user=" + strconv.FormatInt(user, 10) + ", a=" + strconv.FormatInt(m["a"][0].Time, 10) +
		", b=" + strconv.FormatInt(m["b"][0].Time, 10) + "}"
}

// Build defines the job: events -> timestamps -> keyBy(user) -> sequence
// (CEP) -> matches, with the timed-out side output printed too.
func Build(env *runtime.Env, p *runtime.Params) error {
	c := parseConfig(p)
	env.SetMaxParallelism(128)
	events := runtime.FromSource(env, "events", func() runtime.SourceFunction[Event] {
		return &source{Generator: connectors.Generator[Event]{Rate: c.Rate, Count: c.Count}, users: uint64(c.Users), spacing: c.Spacing.Milliseconds()}
	}, runtime.Codec[Event](EventCodec{})).UID("events")
	events = runtime.AssignTimestampsAndWatermarks(events, runtime.ForBoundedOutOfOrderness(c.OutOfOrderness, func(e Event) int64 { return e.Time }))
	timeouts := runtime.NewOutputTag[string]("timed-out", runtime.StringCodec{})
	matches, err := cep.Detect(runtime.KeyBy(events, runtime.Int64Key, func(e Event) int64 { return e.User }), "sequence",
		Pattern(c.Window), EventCodec{}, FormatMatch, runtime.StringCodec{},
		cep.TimedOutTo(timeouts, func(m cep.Match[Event], _ int64) string {
			a := m["a"][0]
			return "Timeout{user=" + strconv.FormatInt(a.User, 10) + ", a=" + strconv.FormatInt(a.Time, 10) + "}"
		}))
	if err != nil {
		return err
	}
	matches = matches.UID("sequence")
	runtime.SinkTo(matches, "matches", func() runtime.SinkFunction[string] {
		return &connectors.Print[string]{Format: func(s string) string { return s }}
	}).UID("matches")
	runtime.SinkTo(runtime.SideOutput(matches, timeouts), "timeouts", func() runtime.SinkFunction[string] {
		return &connectors.Print[string]{Format: func(s string) string { return s }}
	}).UID("timeouts")
	return nil
}

// source generates event i of its subtask as a pure function of (subtask,
// i), so a restored source goes on with the events it would have made.
type source struct {
	connectors.Generator[Event]
	users   uint64
	spacing int64
	seed    uint64
}

func (s *source) Open(ctx *runtime.RuntimeContext) error {
	s.seed = (uint64(ctx.SubtaskIndex()) + 1) * 0x9e3779b97f4a7c15
	s.Next = func(i int64, _ time.Time) Event { return GenerateEvent(s.seed, i, s.users, s.spacing) }
	return nil
}

// GenerateEvent is event i of the subtask whose seed is seed.
func GenerateEvent(seed uint64, i int64, users uint64, spacing int64) Event {
	x := splitmix64(seed + uint64(i))
	return Event{User: int64(x%users) + 1, Type: "ABCD"[(x>>40)%4], Time: i * spacing}
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
