package rules

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// APIVersion is the only apiVersion a document may declare (or omit).
const APIVersion = "weir.rules/v1"

// Spec is one rule document as written. Its zero values are the defaults.
type Spec struct {
	APIVersion  string            `yaml:"apiVersion"`
	ID          string            `yaml:"id"`
	Version     int64             `yaml:"version"`
	State       string            `yaml:"state"`
	Description string            `yaml:"description"`
	Labels      map[string]string `yaml:"labels"`
	Input       string            `yaml:"input"`
	Time        string            `yaml:"time"`
	When        Expr              `yaml:"when"`
	Key         []string          `yaml:"key"`
	Params      map[string]Param  `yaml:"params"`
	Kind        string            `yaml:"kind"`
	Condition   Expr              `yaml:"condition"`

	// kind: aggregate
	Window      *WindowSpec              `yaml:"window"`
	Aggregates  map[string]AggregateSpec `yaml:"aggregates"`
	Derived     map[string]Expr          `yaml:"derived"`
	Evaluate    string                   `yaml:"evaluate"`
	ResetOnFire bool                     `yaml:"resetOnFire"`
	// Lateness is how long after a tumbling or sliding window's end an
	// event behind the watermark still joins it (and fires it again).
	Lateness *Duration `yaml:"lateness"`

	// kind: baseline
	Profile *ProfileSpec `yaml:"profile"`
	Global  *GlobalSpec  `yaml:"global"`

	// kind: sequence
	Pattern *PatternSpec `yaml:"pattern"`

	// kind: list
	Items []yaml.Node `yaml:"items"`

	Emit  EmitSpec   `yaml:"emit"`
	Tests []TestSpec `yaml:"tests"`

	// Drift overrides, for this rule, the rules job's drift parameters
	// (drift-factor, drift-window, drift-min-evaluations); a zero field
	// keeps the job's.
	Drift *DriftSpec `yaml:"drift"`

	// Fields of the draft format that are not implemented yet: decoded
	// only to be refused with a message that says so.
	History any `yaml:"history"`
	Serve   any `yaml:"serve"`

	file   string     // where the document came from
	node   *yaml.Node // the document, for the lines of its parts
	source []byte     // the document re-encoded, for storage
}

// WindowSpec is an aggregate rule's window.
type WindowSpec struct {
	Type   string   `yaml:"type"`
	Size   Duration `yaml:"size"`
	Slide  Duration `yaml:"slide"`
	Gap    Duration `yaml:"gap"`
	Offset Duration `yaml:"offset"`
}

// AggregateSpec is one named aggregate: fn over the values of `of`,
// counting only events for which `where` holds.
type AggregateSpec struct {
	Fn    string `yaml:"fn"`
	Of    Expr   `yaml:"of"`
	Where Expr   `yaml:"where"`
}

// ProfileSpec is a baseline rule's per-key history.
type ProfileSpec struct {
	Horizon Duration       `yaml:"horizon"`
	Stats   []string       `yaml:"stats"`
	LastN   map[string]int `yaml:"lastN"`
	Seen    []string       `yaml:"seen"`
}

// GlobalSpec is a baseline rule's statistics over every key's events:
// global.<field>.count/sum/mean/min/max/stddev over the horizon.
type GlobalSpec struct {
	Horizon Duration `yaml:"horizon"`
	Stats   []string `yaml:"stats"`
}

// DriftSpec is a rule's drift monitoring: a rule-drift alert when its hit
// rate in a stats interval is Factor times its baseline (the rate over
// its previous Window intervals) or 1/Factor of it, both over at least
// MinEvaluations evaluations.
type DriftSpec struct {
	Factor         float64 `yaml:"factor"`
	Window         int     `yaml:"window"`
	MinEvaluations int64   `yaml:"minEvaluations"`
}

// EmitSpec says what a hit produces.
type EmitSpec struct {
	Action string          `yaml:"action"`
	Fields map[string]Expr `yaml:"fields"`
	Dedupe *struct {
		For Duration `yaml:"for"`
	} `yaml:"dedupe"`
	Priority *int `yaml:"priority"`
	Format   any  `yaml:"format"`
	Sinks    any  `yaml:"sinks"`
}

// TestSpec is an inline test: the events, in order, and the alerts they
// must produce (each expectation a subset of an alert: key fields,
// evidence fields, action or time).
type TestSpec struct {
	Name   string           `yaml:"name"`
	Events []map[string]any `yaml:"events"`
	Expect []map[string]any `yaml:"expect"`
}

// Expr is an expression's source and the line it is on.
type Expr struct {
	Src  string
	Line int
}

// UnmarshalYAML keeps the line, so compile errors can point at it.
func (e *Expr) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want an expression (a string), got a %s", n.Line, kindName(n))
	}
	e.Src, e.Line = n.Value, n.Line
	return nil
}

// Duration is a YAML duration: Go's units (ms, s, m, h) and d for days.
type Duration struct {
	D    time.Duration
	Line int
}

// UnmarshalYAML parses the duration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: %q is not a duration: want a number with a unit (500ms, 10s, 1m, 2h, 30d)", n.Line, n.Value)
	}
	d.D, d.Line = v, n.Line
	return nil
}

// parseDuration is time.ParseDuration plus whole days ("30d").
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > 100_000 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	// A bare number is refused: "10" might mean seconds or minutes.
	if strings.TrimLeft(s, "0123456789.") == "" && s != "0" {
		return 0, fmt.Errorf("bad duration %q: no unit", s)
	}
	return d, nil
}

// Param is one params value: a number, a string, a boolean, or a
// duration (a string that parses as one), which becomes a number of
// milliseconds so it compares with event times.
type Param struct {
	V    any
	Line int
}

// UnmarshalYAML types the value.
func (p *Param) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a param must be a number, string, boolean or duration, got a %s", n.Line, kindName(n))
	}
	p.Line = n.Line
	switch n.Tag {
	case "!!int", "!!float":
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil {
			return fmt.Errorf("line %d: bad number %q", n.Line, n.Value)
		}
		p.V = f
	case "!!bool":
		p.V = n.Value == "true"
	default:
		if d, err := parseDuration(n.Value); err == nil {
			p.V = float64(d.Milliseconds())
		} else {
			p.V = n.Value
		}
	}
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	}
	return "scalar"
}
