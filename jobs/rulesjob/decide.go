package rulesjob

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/runtime"
)

// Decisions: the alerts that rules with emit.priority raise on one event
// come from the evaluator subtasks of every rule key the event was copied
// to. Each sends them as a decisionPart keyed by the event (where it was
// read); the decider gathers an event's parts until the watermark passes
// its time (every evaluator has evaluated it by then: an evaluator sends
// its parts before it forwards that watermark) and writes one decision,
// rules.Decide's, to <output>/decisions/.

// decisionPart is one evaluator's candidates for one event.
type decisionPart struct {
	Source     string            `json:"source"`
	Line       int64             `json:"line"`
	Time       int64             `json:"time"`
	Candidates []rules.Candidate `json:"candidates"`
}

func (p decisionPart) key() string { return p.Source + "\x00" + strconv.FormatInt(p.Line, 10) }

// decisionPartCodec serialises parts as JSON: only events that rules with
// a priority fired on have them.
type decisionPartCodec struct{}

func (decisionPartCodec) Append(dst []byte, p decisionPart) []byte {
	b, _ := json.Marshal(p) // JSON values only: always encodes
	return append(dst, b...)
}

func (decisionPartCodec) Decode(src []byte) (decisionPart, error) {
	var p decisionPart
	if err := json.Unmarshal(src, &p); err != nil {
		return p, fmt.Errorf("decision part: %w", err)
	}
	return p, nil
}

var decisionParts = runtime.NewOutputTag[decisionPart]("decision-parts", decisionPartCodec{})

// decider writes one decision per event from the event's parts.
type decider struct {
	parts runtime.ListState[decisionPart]
}

func (d *decider) Open(ctx *runtime.KeyedContext[string]) (err error) {
	d.parts, err = runtime.GetListState(ctx, "parts", decisionPartCodec{})
	return err
}

func (d *decider) ProcessElement(p decisionPart, ctx *runtime.KeyedContext[string], _ runtime.Collector[string]) error {
	d.parts.Add(p)
	ctx.RegisterEventTimeTimer(p.Time)
	return nil
}

func (d *decider) OnTimer(t int64, _ *runtime.KeyedContext[string], out runtime.Collector[string]) error {
	ps := d.parts.Get()
	d.parts.Clear()
	if len(ps) == 0 {
		return nil
	}
	var cs []rules.Candidate
	for _, p := range ps {
		cs = append(cs, p.Candidates...)
	}
	b, err := json.Marshal(rules.Decide(t, ps[0].Source, ps[0].Line, cs))
	if err != nil {
		return fmt.Errorf("decision: %w", err)
	}
	out.Collect(string(b))
	return nil
}
