// Package nexmark is the Nexmark benchmark on Weir: the suite's generator
// of persons, auctions and bids, and its queries as the registered job
// "nexmark" (query=q0, q1, ...), with the output going to a blackhole sink
// for throughput or to exactly-once part files for checking.
//
// The generator (Generate, Source) follows the suite's model: of every 50
// events 1 is a new person, 3 are new auctions and 46 are bids; most bids
// go to a hot auction and come from a hot bidder, most auctions from a hot
// seller, the rest to and from recent ones; event times advance at a
// configured rate. Each event is a pure function of the seed and its
// number, drawn with SplitMix64, so subtask i of p generates events i,
// i+p, ... and the whole sequence is the same at any parallelism: the
// tests compute each query's expected output from the same events with a
// plain single-threaded reference. Strings come from fixed tables and
// decode interned, so neither generating nor shipping an event allocates.
//
// Windowed queries aggregate in two steps, as Flink's two-phase
// aggregation: per auction and window in parallel (runtime/window), then
// per window (keyed by the window's end) once the watermark passes it.
package nexmark

import (
	"math"
	"strconv"

	"github.com/weirstream/weir/connectors/filesink"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/jobs/connect"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/statebackend/storage"
)

// Name is the job's registered name.
const Name = "nexmark"

// Queries lists the queries the job runs.
var Queries = []string{"q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8"}

func init() {
	jobs.Register(jobs.Job{
		Name:        Name,
		Description: "The Nexmark benchmark: the suite's person/auction/bid generator and a query over it",
		Params: []jobs.Param{
			{Name: "query", Type: jobs.String, Default: "q0", Description: "q0 (pass-through), q1 (currency conversion), q2 (selection), q3 (local item suggestion, regular join), q4 (average price per category), q5 (hot items), q7 (highest bid), q8 (monitor new users, window join)"},
			{Name: "count", Type: jobs.Int, Default: "10000000", Description: "events to generate, over all source subtasks; the job then finishes"},
			{Name: "event-rate", Type: jobs.Int, Default: "100000", Description: "events per second of event time (how fast event time advances, not a wall-clock rate)"},
			{Name: "rate", Type: jobs.Float, Default: "0", Description: "events per second of wall-clock time per source subtask (0 = as fast as possible)"},
			{Name: "seed", Type: jobs.Int, Default: "1", Description: "the generator's seed"},
			{Name: "sink", Type: jobs.String, Default: "blackhole", Description: "blackhole (discard, for throughput) or files (exactly-once JSON-lines part files under output)"},
			{Name: "output", Type: jobs.Path, Description: "sink=files: the directory or s3://bucket/prefix of the part files"},
		},
		Build: Build,
	})
}

// Config is the job's parameters.
type Config struct {
	Query  string
	Count  int64
	Rate   float64
	Gen    GenConfig
	Sink   string
	Output string
}

func parseConfig(p *runtime.Params) Config {
	c := Config{
		Query:  p.String("query", "q0"),
		Count:  p.Int("count", 10_000_000),
		Rate:   p.Float("rate", 0),
		Gen:    GenConfig{EventRate: p.Int("event-rate", 100_000), Seed: uint64(p.Int("seed", 1))},
		Sink:   connect.Choice(p, "sink", "blackhole"),
		Output: p.String("output", ""),
	}
	known := false
	for _, q := range Queries {
		known = known || q == c.Query
	}
	if !known {
		p.Errorf("query", "%q: use one of %v", c.Query, Queries)
	}
	if c.Count < 0 {
		p.Errorf("count", "%d must not be negative", c.Count)
	}
	if c.Rate < 0 || math.IsInf(c.Rate, 0) || math.IsNaN(c.Rate) {
		p.Errorf("rate", "%g must be 0 (unlimited) or a positive number", c.Rate)
	}
	if c.Gen.EventRate < 1 || c.Gen.EventRate > 1_000_000_000 {
		p.Errorf("event-rate", "%d must be between 1 and 1000000000", c.Gen.EventRate)
	}
	switch c.Sink {
	case "blackhole":
	case "files":
		if c.Output == "" {
			p.Errorf("output", "must not be empty with sink=files: the directory or s3://bucket/prefix URL the part files go to")
		} else if _, err := storage.Open(c.Output, storage.Options{}); err != nil {
			p.Errorf("output", "%v", err)
		}
	default:
		p.Errorf("sink", "%q: use blackhole or files", c.Sink)
	}
	return c
}

// SourceUID is the generator's stable identifier.
const SourceUID = "nexmark-source"

// Build defines the job: the generator (timestamps and watermarks chained
// to it), the query, the sink.
func Build(env *runtime.Env, p *runtime.Params) error {
	c := parseConfig(p)
	env.SetMaxParallelism(128)
	src := runtime.FromSource(env, "nexmark-source", func() runtime.SourceFunction[Event] {
		return &Source{Config: c.Gen, Count: c.Count, Rate: c.Rate}
	}, EventCodec{}).UID(SourceUID)
	events := runtime.AssignTimestampsAndWatermarks(src, runtime.ForMonotonousTimestamps(func(e Event) int64 { return e.Time() }))
	switch c.Query {
	case "q0":
		sink(c, Q0(events), AppendBidJSON)
	case "q1":
		sink(c, Q1(events), AppendBidJSON)
	case "q2":
		sink(c, Q2(events), AppendAuctionPriceJSON)
	case "q3":
		sink(c, Q3(events), AppendLocalItemJSON)
	case "q4":
		sink(c, Q4(events), AppendCategoryAverageJSON)
	case "q5":
		sink(c, Q5(events), AppendHotItemJSON)
	case "q7":
		sink(c, Q7(events), AppendTopBidJSON)
	case "q8":
		sink(c, Q8(events), AppendNewUserJSON)
	}
	return nil
}

func sink[T any](c Config, s runtime.Stream[T], enc func([]byte, T) []byte) {
	runtime.SinkTo(s, "nexmark-sink", func() runtime.SinkFunction[T] {
		if c.Sink == "files" {
			return &filesink.Sink[T]{Dir: c.Output, Encode: enc}
		}
		return blackhole[T]{}
	}).UID("nexmark-sink")
}

// blackhole discards records, so a throughput run measures the query.
type blackhole[T any] struct{}

func (blackhole[T]) Invoke(T) error { return nil }

// AppendAuctionPriceJSON appends q2's columns of b as one JSON object.
func AppendAuctionPriceJSON(dst []byte, b Bid) []byte {
	dst = append(dst, `{"auction":`...)
	dst = strconv.AppendInt(dst, b.Auction, 10)
	dst = append(dst, `,"price":`...)
	dst = strconv.AppendInt(dst, b.Price, 10)
	return append(dst, '}')
}
