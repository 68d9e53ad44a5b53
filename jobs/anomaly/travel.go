package anomaly

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
)

// ImpossibleTravel is the registered name of the card-travel job.
const ImpossibleTravel = "impossible-travel"

// Its detectors.
const (
	Travel    = "impossible-travel"
	Blacklist = "blacklist"
)

func init() {
	jobs.Register(jobs.Job{
		Name: ImpossibleTravel,
		Description: "per card, two uses from cities too far apart for the time between them, and uses of a blacklisted " +
			"card or device (JSON lines with time, card, city, device; event time)",
		Params: withIO(CardUsesTopic,
			jobs.Param{Name: "max-speed", Type: jobs.Float, Default: "900", Description: "km/h: two uses of a card whose distance over the time between them is faster alert"},
			jobs.Param{Name: "blacklist", Type: jobs.Path, Description: "a file (or directory of files) of blacklisted card and device IDs, one per line; # starts a comment; none if empty"},
		),
		Build: buildTravel,
	})
}

func buildTravel(env *runtime.Env, p *runtime.Params) error {
	c := parseIO(p, CardUsesTopic)
	maxSpeed := p.Float("max-speed", 900)
	if !(maxSpeed > 0) || math.IsInf(maxSpeed, 0) {
		p.Errorf("max-speed", "%g must be a positive number of km/h", maxSpeed)
	}
	blacklist := p.String("blacklist", "")
	if blacklist != "" {
		if b, err := file.LocalPath(blacklist); err != nil {
			p.Errorf("blacklist", "%v", err)
		} else {
			blacklist = b
		}
	}
	env.SetMaxParallelism(128)
	uses := readEvents(env, c, "card-uses", fCard|fCity)
	byCard := func() runtime.KeyedStream[Event, string] {
		return runtime.KeyBy(uses, runtime.StringKey, func(e Event) string { return e.Card })
	}

	travel := runtime.Process(byCard(), Travel, func() runtime.KeyedProcessFunction[string, Event, Alert] {
		return newTravelDetector(maxSpeed)
	}, AlertCodec{}).UID(Travel)
	writeDeadLetters(c, runtime.SideOutput(travel, Late), "late-"+Travel, "late/"+Travel)
	writeAlerts(c, travel, Travel)

	if blacklist == "" {
		return nil
	}
	// The blacklist is broadcast state. Its entries are stamped with time
	// 0, so the checks, which wait for the watermark, see the whole list
	// before any card use; the list file's end lets event time go on.
	lines := runtime.FromSource(env, "blacklist", func() runtime.SourceFunction[file.Line] {
		return &file.Source{Path: blacklist, Monitor: c.monitor}
	}, file.LineCodec{}).UID("blacklist-file")
	ids := runtime.FlatMap(lines, "blacklist-ids", func(l file.Line, out runtime.Collector[string]) {
		id, _, _ := strings.Cut(l.Text, "#")
		if id = strings.TrimSpace(id); id != "" {
			out.Collect(id)
		}
	}, runtime.StringCodec{})
	ws := runtime.ForMonotonousTimestamps(func(string) int64 { return 0 })
	if c.monitor > 0 {
		// A watched list is idle between changes and must not hold the
		// card uses back.
		ws = ws.WithIdleness(c.monitor + time.Second)
	}
	listed := runtime.AssignTimestampsAndWatermarks(ids, ws)
	checks := runtime.ConnectBroadcast(byCard(), runtime.Broadcast(listed), Blacklist,
		func() runtime.KeyedBroadcastProcessFunction[string, Event, string, Alert] { return newBlacklistCheck() }, AlertCodec{}).
		UID(Blacklist)
	writeDeadLetters(c, runtime.SideOutput(checks, Late), "late-"+Blacklist, "late/"+Blacklist)
	writeAlerts(c, checks, Blacklist)
	return nil
}

// travelDetector compares each card use with the card's previous one.
type travelDetector struct {
	inOrder[string]
	maxSpeed float64
	last     runtime.ValueState[Event]
}

func newTravelDetector(maxSpeed float64) *travelDetector {
	d := &travelDetector{maxSpeed: maxSpeed}
	d.open = func(ctx *runtime.KeyedContext[string]) (err error) {
		d.last, err = runtime.GetValueState(ctx, "last-use", EventCodec{})
		return err
	}
	d.judge = d.judgeUse
	return d
}

func (d *travelDetector) judgeUse(e Event, ctx *runtime.KeyedContext[string], out runtime.Collector[Alert]) error {
	to, ok := cityOf(e.City)
	if !ok {
		return nil // the parser let it through only if known; see knownCity
	}
	prev, had := d.last.Value()
	d.last.Update(e)
	if !had || strings.EqualFold(prev.City, e.City) {
		return nil
	}
	from, _ := cityOf(prev.City)
	km := distanceKm(from, to)
	hours := float64(e.Time-prev.Time) / float64(time.Hour/time.Millisecond)
	speed := math.Inf(1)
	if hours > 0 {
		speed = km / hours
	}
	if speed > d.maxSpeed {
		ev := evidence(nil).str("from_city", prev.City).str("to_city", e.City).num("distance_km", math.Round(km)).
			num("minutes", math.Round(hours*60*10)/10)
		if !math.IsInf(speed, 0) {
			ev = ev.num("speed_kmh", math.Round(speed))
		}
		ev = ev.num("max_speed_kmh", d.maxSpeed).int("previous_time_ms", prev.Time).str("source", e.Source).int("line", e.Line)
		out.Collect(Alert{Detector: Travel, Key: ctx.CurrentKey(), Time: e.Time, Evidence: string(ev)})
	}
	return nil
}

// blacklistCheck matches each card use's card and device against the
// broadcast blacklist.
type blacklistCheck struct {
	inOrder[string]
	list runtime.BroadcastState[string, bool]
}

var blacklistState = runtime.BroadcastStateDescriptor[string, bool]{Name: "blacklist", Key: runtime.StringCodec{}, Value: runtime.BoolCodec{}}

func newBlacklistCheck() *blacklistCheck {
	b := &blacklistCheck{}
	b.open = func(ctx *runtime.KeyedContext[string]) (err error) {
		b.list, err = runtime.GetBroadcastState(ctx.RuntimeContext, blacklistState)
		return err
	}
	b.judge = func(e Event, ctx *runtime.KeyedContext[string], out runtime.Collector[Alert]) error {
		for _, id := range [2]struct{ kind, v string }{{"card", e.Card}, {"device", e.Device}} {
			if id.v != "" && b.list.Contains(id.v) {
				out.Collect(Alert{Detector: Blacklist, Key: ctx.CurrentKey(), Time: e.Time, Evidence: string(evidence(nil).
					str("matched", id.kind).str("id", id.v).str("city", e.City).str("source", e.Source).int("line", e.Line))})
			}
		}
		return nil
	}
	return b
}

func (b *blacklistCheck) ProcessBroadcastElement(id string, _ *runtime.BroadcastContext, _ runtime.Collector[Alert]) error {
	b.list.Put(id, true)
	return nil
}

// city is a place with coordinates in degrees.
type city struct{ lat, lon float64 }

// cities is the built-in table impossible-travel knows, by lower-case name.
var cities = map[string]city{
	"hangzhou": {30.27, 120.16}, "beijing": {39.90, 116.41}, "shanghai": {31.23, 121.47},
	"shenzhen": {22.54, 114.06}, "guangzhou": {23.13, 113.26}, "chengdu": {30.57, 104.07},
	"hong kong": {22.32, 114.17}, "singapore": {1.35, 103.82}, "tokyo": {35.68, 139.69},
	"seoul": {37.57, 126.98}, "sydney": {-33.87, 151.21}, "mumbai": {19.08, 72.88},
	"dubai": {25.20, 55.27}, "moscow": {55.76, 37.62}, "istanbul": {41.01, 28.98},
	"london": {51.51, -0.13}, "paris": {48.86, 2.35}, "berlin": {52.52, 13.40},
	"amsterdam": {52.37, 4.90}, "madrid": {40.42, -3.70}, "rome": {41.90, 12.50},
	"new york": {40.71, -74.01}, "chicago": {41.88, -87.63}, "san francisco": {37.77, -122.42},
	"los angeles": {34.05, -118.24}, "toronto": {43.65, -79.38}, "mexico city": {19.43, -99.13},
	"sao paulo": {-23.55, -46.63}, "buenos aires": {-34.60, -58.38}, "johannesburg": {-26.20, 28.05},
	"lagos": {6.52, 3.38}, "cairo": {30.04, 31.24},
}

func cityOf(name string) (city, bool) {
	c, ok := cities[strings.ToLower(strings.TrimSpace(name))]
	return c, ok
}

// knownCity checks a card use's city against the table, so an unknown
// city is a dead letter naming the cities there are.
func knownCity(e Event) error {
	if _, ok := cityOf(e.City); ok {
		return nil
	}
	names := make([]string, 0, len(cities))
	for n := range cities {
		names = append(names, n)
	}
	sort.Strings(names)
	return fmt.Errorf("unknown city %q (known: %s)", e.City, strings.Join(names, ", "))
}

// distanceKm is the great-circle distance (haversine, mean Earth radius).
func distanceKm(a, b city) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dLat, dLon := (b.lat-a.lat)*rad, (b.lon-a.lon)*rad
	h := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(a.lat*rad)*math.Cos(b.lat*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * r * math.Asin(math.Sqrt(h))
}
