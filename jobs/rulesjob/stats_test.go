package rulesjob

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/rules"
)

func TestStatPartCodecRoundTrip(t *testing.T) {
	p := StatPart{Rule: "r", Version: 3, Start: -60000, Evaluations: 100, Hits: 20, Errors: 1, EvalNanos: 12345,
		Drift: rules.DriftSpec{Factor: 2.5, Window: 4, MinEvaluations: 7}, Keys: -3}
	enc := StatPartCodec{}.Append(nil, p)
	back, err := StatPartCodec{}.Decode(enc)
	if err != nil || back != p {
		t.Fatalf("%+v, %v", back, err)
	}
	// A part written before keys were counted (a savepoint's) has no
	// Keys field: it decodes with none.
	old := p
	old.Keys = 0
	if back, err := (StatPartCodec{}).Decode(enc[:len(enc)-1]); err != nil || back != old {
		t.Fatalf("a part without keys: %+v, %v", back, err)
	}
	if _, err := (StatPartCodec{}).Decode(StatPartCodec{}.Append(nil, p)[:4]); err == nil {
		t.Errorf("a truncated part decoded")
	}
	// A shadow rule's part says so; a part without the flag (as written
	// before it existed) is not shadow.
	p.Shadow = true
	b := StatPartCodec{}.Append(nil, p)
	if back, err = (StatPartCodec{}).Decode(b); err != nil || back != p {
		t.Fatalf("%+v, %v", back, err)
	}
	p.Shadow = false
	if back, err = (StatPartCodec{}).Decode(b[:len(b)-1]); err != nil || back != p {
		t.Fatalf("without the shadow flag: %+v, %v", back, err)
	}
	for _, l := range []alertLine{{Text: `{"rule":"r"}`}, {Text: `{"rule":"s","shadow":true}`, Shadow: true}} {
		if back, err := (alertLineCodec{}).Decode(alertLineCodec{}.Append(nil, l)); err != nil || back != l {
			t.Errorf("%+v: %+v, %v", l, back, err)
		}
	}
	bs := []baselineEntry{{0, 100, 20}, {10000, 50, 1}}
	got, err := baselineCodec{}.Decode(baselineCodec{}.Append(nil, bs))
	if err != nil || !reflect.DeepEqual(got, bs) {
		t.Fatalf("%+v, %v", got, err)
	}
}

func TestIntervalStart(t *testing.T) {
	c := StatsConfig{Interval: 10000}
	for in, want := range map[int64]int64{0: 0, 9999: 0, 10000: 10000, -1: -10000, -10000: -10000, -10001: -20000} {
		if got := c.intervalStart(in); got != want {
			t.Errorf("intervalStart(%d) = %d, want %d", in, got, want)
		}
	}
}

// TestDrift: the seed's hit rate falling from 20 % to 5 % is a factor of
// 0.25, beyond a drift factor of 2; too few evaluations, a zero baseline
// and a rate within the factor raise nothing.
func TestDrift(t *testing.T) {
	c := StatsConfig{Interval: 10000, DriftFactor: 2, DriftWindow: 3, DriftMinEvaluations: 50}
	base := []baselineEntry{{0, 100, 20}, {10000, 100, 20}, {20000, 100, 20}}
	f := c.drift(100, 5, base)
	if f == nil || f["factor"] != 0.25 || f["hitRate"] != 0.05 || f["baselineRate"] != 0.2 || f["baselineEvaluations"] != int64(300) {
		t.Fatalf("20%% to 5%%: %v", f)
	}
	if f := c.drift(100, 40, base); f == nil || f["factor"] != 2.0 {
		t.Errorf("20%% to 40%%: %v", f)
	}
	for _, x := range []struct {
		name        string
		evals, hits int64
		base        []baselineEntry
	}{
		{"within the factor", 100, 11, base},
		{"too few evaluations", 49, 0, base},
		{"too small a baseline", 100, 5, []baselineEntry{{0, 49, 10}}},
		{"no baseline", 100, 5, nil},
		{"a zero baseline rate", 100, 5, []baselineEntry{{0, 100, 0}}},
	} {
		if f := c.drift(x.evals, x.hits, x.base); f != nil {
			t.Errorf("%s: %v", x.name, f)
		}
	}
	c.DriftFactor = 0
	if f := c.drift(100, 5, base); f != nil {
		t.Errorf("drift-factor 0: %v", f)
	}
	// A rule's own factor of 5 holds 0.25 within; its own minimum of 200
	// evaluations holds back its factor of 3.
	if f := c.forRule(rules.DriftSpec{Factor: 5}).drift(100, 5, base); f != nil {
		t.Errorf("a rule's factor 5: %v", f)
	}
	if rc := c.forRule(rules.DriftSpec{Factor: 3, MinEvaluations: 200}); rc.DriftWindow != 3 || rc.drift(100, 5, base) != nil {
		t.Errorf("a rule's minimum: %+v", rc)
	}
	if f := c.forRule(rules.DriftSpec{Factor: 3}).drift(100, 5, base); f == nil {
		t.Errorf("a rule's factor 3 with the job's drift off: no alert")
	}
}

func TestStatsParamsAreChecked(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("id: x\nkey: [a]\nkind: filter\ncondition: 'e.a > 1'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ps := map[string]string{"rules": good, "input": good, "output": dir, "stats-interval": "10s", "drift-factor": "2", "drift-window": "3", "drift-min-evaluations": "50"}
	if _, err := jobs.Build(Name, 2, ps); err != nil {
		t.Fatalf("build: %v", err)
	}
	for param, bad := range map[string]string{"stats-interval": "0s", "drift-factor": "1", "drift-window": "0", "drift-min-evaluations": "0"} {
		bps := maps.Clone(ps)
		bps[param] = bad
		if _, err := jobs.Build(Name, 2, bps); err == nil || !strings.Contains(err.Error(), param) {
			t.Errorf("%s=%s: %v", param, bad, err)
		}
	}
}
