package rules

// Env is the one environment every expression is compiled against and run
// in. Its fields are typed so the compiler checks what it can (stats.x.mean
// is a number, agg.x is a number); which names a rule may use depends on
// its kind and is checked at compile time (compile.go). An evaluator
// reuses one Env and resets only the fields its kind fills, so a run
// allocates nothing for the environment.
type Env struct {
	E     map[string]any     `expr:"e"`     // the event; its time field as Unix ms
	TS    int64              `expr:"ts"`    // the event time, Unix ms
	P     map[string]any     `expr:"p"`     // params; durations as ms
	Agg   map[string]float64 `expr:"agg"`   // aggregates and derived values
	Stats map[string]*Stats  `expr:"stats"` // baseline: running statistics
	// Global is a baseline's statistics over every key's events.
	Global map[string]*Stats           `expr:"global"`
	Hist   map[string][]any            `expr:"hist"`  // baseline: last-N values, oldest first
	Seen   map[string]map[any]int64    `expr:"seen"`  // baseline: values seen (value -> last time)
	Prev   map[string]any              `expr:"prev"`  // baseline: the key's previous event, or nil
	Lists  map[string]List             `expr:"lists"` // managed sets, for `x in lists.name`
	M      map[string][]map[string]any `expr:"m"`     // sequence: the events each step accepted
}

// Stats are running statistics of one field over a baseline's horizon,
// before the current event is added.
type Stats struct {
	Count  float64 `expr:"count"`
	Sum    float64 `expr:"sum"`
	Mean   float64 `expr:"mean"`
	Min    float64 `expr:"min"`
	Max    float64 `expr:"max"`
	Stddev float64 `expr:"stddev"`
}

// List is a managed set of values. Numbers are held as float64, as JSON
// events carry them, so `e.userId in lists.blacklist` matches 7 and 7.0.
type List map[any]struct{}

// normValue maps the numbers YAML decoding produces onto float64, the
// type JSON events have, so equal numbers are equal map keys.
func normValue(v any) any {
	switch x := v.(type) {
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case float32:
		return float64(x)
	case map[string]any:
		for k, e := range x {
			x[k] = normValue(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normValue(e)
		}
	}
	return v
}
