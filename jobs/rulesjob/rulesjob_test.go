package rulesjob

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/rules/store"
)

func TestSchemaChecksJSONEvents(t *testing.T) {
	s, err := ParseSchema("user:string, amount:number, vip:bool?, at:time?", "ts")
	if err != nil {
		t.Fatal(err)
	}
	p := jsonParser{schema: s}
	for _, c := range []struct{ line, err string }{
		{`{"ts":1,"user":"u","amount":2}`, ""},
		{`{"ts":"2026-11-30T07:00:00Z","user":"u","amount":2,"vip":true,"at":5}`, ""},
		{`{"ts":1,"amount":2}`, `field "user" is missing`},
		{`{"ts":1,"user":"u","amount":"2"}`, `field "amount" is a string, the schema says number`},
		{`{"ts":1,"user":"u","amount":2,"vip":"yes"}`, `field "vip" is a string, the schema says bool`},
		{`{"ts":1,"user":"u","amount":2,"at":"soon"}`, `field "at" is a string, the schema says time`},
		{`{"user":"u","amount":2}`, `no time field "ts"`},
		{`[1]`, "must be a JSON object"},
	} {
		r, err := p.Parse(file.Line{Path: "f", Number: 3, Text: c.line})
		if c.err == "" {
			if err != nil || r.Line != 3 || r.Source != "f" {
				t.Errorf("%s: %+v, %v", c.line, r, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: error %v, want %q", c.line, err, c.err)
		}
	}
	for _, bad := range []string{"user", "user:text", "user:string,user:number", ":string"} {
		if _, err := ParseSchema(bad, "ts"); err == nil {
			t.Errorf("schema %q accepted", bad)
		}
	}
}

func TestCSVWithSchema(t *testing.T) {
	s, err := ParseSchema("user:string,amount:number,vip:bool?", "ts")
	if err != nil {
		t.Fatal(err)
	}
	p := newCSVParser(s)
	header := "ts,amount,user,vip"
	r, err := p.Parse(file.Line{Path: "f.csv", Number: 2, Header: header, Text: "1000,12.5,u1,true"})
	want := map[string]any{"ts": 1000.0, "amount": 12.5, "user": "u1", "vip": true}
	if err != nil || !reflect.DeepEqual(r.Fields, want) || r.TS != 1000 {
		t.Fatalf("%+v, %v", r, err)
	}
	r, err = p.Parse(file.Line{Path: "f.csv", Number: 3, Header: header, Text: "2026-11-30T07:00:00Z,1,u2,"})
	if err != nil || r.TS != 1796022000000 || len(r.Fields) != 3 {
		t.Fatalf("%+v, %v", r, err)
	}
	if _, err = p.Parse(file.Line{Header: header, Text: "1,x,u,"}); err == nil || !strings.Contains(err.Error(), `"x" is not a finite number`) {
		t.Errorf("bad number: %v", err)
	}
	if _, err = p.Parse(file.Line{Header: "amount,user", Text: "1,u"}); err == nil {
		t.Errorf("a header without the time column was accepted")
	}
}

func TestCodecsRoundTrip(t *testing.T) {
	r := Record{Fields: map[string]any{"a": "x", "n": 1.5, "b": true, "l": []any{1.0, "y"}}, TS: -3, Source: "s", Line: 9}
	back, err := RoutedCodec{}.Decode(RoutedCodec{}.Append(nil, Routed{Key: "k\x00v", Rec: r}))
	if err != nil || back.Key != "k\x00v" || !reflect.DeepEqual(back.Rec, r) {
		t.Fatalf("%+v, %v", back, err)
	}
	rs, err := recordsCodec{}.Decode(recordsCodec{}.Append(nil, []Record{r, r}))
	if err != nil || len(rs) != 2 || !reflect.DeepEqual(rs[1], r) {
		t.Fatalf("%+v, %v", rs, err)
	}
	specs, err := rules.Parse("r.yaml", []byte("id: f\nkey: [a]\nkind: filter\ncondition: 'e.n > 1'\n"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.Compile(specs)
	if err != nil {
		t.Fatal(err)
	}
	if tick, err := (ChangeCodec{}).Decode(ChangeCodec{}.Append(nil, Change{From: 7})); err != nil || tick.From != 7 || tick.Set != nil {
		t.Fatalf("tick: %+v, %v", tick, err)
	}
	c, err := ChangeCodec{}.Decode(ChangeCodec{}.Append(nil, Change{From: math.MinInt64 / 2, Set: set}))
	if err != nil || c.From != math.MinInt64/2 || len(c.Set.Rules) != 1 || c.Set.Rules[0].ID != "f" {
		t.Fatalf("%+v, %v", c, err)
	}
	bads := [][]byte{nil, {1}, RoutedCodec{}.Append(nil, Routed{Key: "k", Rec: r})[:5]}
	for _, bad := range bads {
		if _, err := (RoutedCodec{}).Decode(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

// TestRoutingKeys: one copy per distinct rule key; the key holds the
// values' types, so the string "1" and the number 1 are different keys.
func TestRoutingKeys(t *testing.T) {
	specs, err := rules.Parse("r.yaml", []byte(`id: a
key: [user]
kind: filter
condition: 'true'
---
id: b
key: [user]
kind: filter
condition: 'false'
---
id: c
key: [ip, user]
kind: filter
condition: 'true'
`))
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.Compile(specs)
	if err != nil {
		t.Fatal(err)
	}
	sigs := keySigs(set)
	if len(sigs) != 2 {
		t.Fatalf("%d rule keys, want 2: %+v", len(sigs), sigs)
	}
	k1 := string(appendKey(nil, sigs[0].sig, sigs[0].fields, Record{Fields: map[string]any{"user": "1"}}))
	k2 := string(appendKey(nil, sigs[0].sig, sigs[0].fields, Record{Fields: map[string]any{"user": 1.0}}))
	if k1 == k2 || sigOf(k1) != "user" || sigOf(k2) != "user" {
		t.Errorf("keys %q %q", k1, k2)
	}
	if k := string(appendKey(nil, sigs[1].sig, sigs[1].fields, Record{Fields: map[string]any{"user": "u", "ip": "h"}})); sigOf(k) != "ip\x1fuser" {
		t.Errorf("key %q", k)
	}
}

// TestBadRulesFailTheBuild: a refused rule fails the job's build with the
// file, the line and the reason, so a submission never starts it.
func TestBadRulesFailTheBuild(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("id: x\nkey: [a]\nkind: filter\ncondition: 'e.a > p.mx'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := jobs.Build(Name, 2, map[string]string{"rules": bad, "input": bad, "output": dir})
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:4") || !strings.Contains(err.Error(), "p.mx") {
		t.Errorf("build: %v", err)
	}
	_, err = jobs.Build(Name, 2, map[string]string{"rules": bad, "source": "nope", "output": dir, "format": "csv"})
	if err == nil || !strings.Contains(err.Error(), `"nope" is not a source`) {
		t.Errorf("build: %v", err)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("id: x\nkey: [a]\nkind: filter\ncondition: 'e.a > 1'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.Build(Name, 2, map[string]string{"rules": good, "input": good, "output": dir}); err != nil {
		t.Errorf("build: %v", err)
	}
	// With etcd the rules may all come from there.
	if _, err := jobs.Build(Name, 2, map[string]string{"etcd": "127.0.0.1:2379", "input": good, "output": dir}); err != nil {
		t.Errorf("build with etcd and no rules file: %v", err)
	}
	if _, err := jobs.Build(Name, 2, map[string]string{"input": good, "output": dir}); err == nil || !strings.Contains(err.Error(), "without etcd") {
		t.Errorf("build without rules: %v", err)
	}
	if _, err := jobs.Build(Name, 2, map[string]string{"etcd": "x", "rules-clock": "sundial", "rules-name": "a/b", "input": good, "output": dir}); err == nil ||
		!strings.Contains(err.Error(), "sundial") || !strings.Contains(err.Error(), "must not contain /") {
		t.Errorf("build with a bad clock and name: %v", err)
	}
	if _, err := jobs.Build(Name, 2, map[string]string{"rules": good, "input": good, "output": dir, "format": "csv"}); err == nil ||
		!strings.Contains(err.Error(), "format=csv needs a schema") {
		t.Errorf("build: %v", err)
	}
}

func TestKafkaDecoder(t *testing.T) {
	s, err := ParseSchema("user:string,amount:number", "ts")
	if err != nil {
		t.Fatal(err)
	}
	dec := kafkaDecoder(Config{Format: "json", Schema: s})
	r, err := dec(&kgo.Record{Topic: "events", Partition: 2, Offset: 7, Value: []byte(`{"ts":5,"user":"u","amount":3}`)})
	if err != nil || r.TS != 5 || r.Source != "events/2" || r.Line != 7 || r.Fields["user"] != "u" {
		t.Fatalf("json: %+v, %v", r, err)
	}
	if _, err := dec(&kgo.Record{Value: []byte(`{"ts":5,"amount":3}`)}); err == nil || !strings.Contains(err.Error(), `"user" is missing`) {
		t.Errorf("json without user: %v", err)
	}
	csv := kafkaDecoder(Config{Format: "csv", Schema: s})
	r, err = csv(&kgo.Record{Topic: "events", Value: []byte("u,3,9")})
	if err != nil || r.TS != 9 || r.Fields["amount"] != 3.0 {
		t.Fatalf("csv: %+v, %v", r, err)
	}
	if _, err := csv(&kgo.Record{Value: []byte("u,x,9")}); err == nil {
		t.Errorf("csv with a bad number decoded")
	}
}

// mapSets is broadcast state in a map, for applyChange.
type mapSets map[int64]*rules.Set

func (m mapSets) Get(k int64) (*rules.Set, bool)    { v, ok := m[k]; return v, ok }
func (m mapSets) Put(k int64, v *rules.Set)         { m[k] = v }
func (m mapSets) Remove(k int64)                    { delete(m, k) }
func (m mapSets) Contains(k int64) bool             { _, ok := m[k]; return ok }
func (m mapSets) Len() int                          { return len(m) }
func (m mapSets) All() iter.Seq2[int64, *rules.Set] { return maps.All(m) }
func (m mapSets) Clear()                            { clear(m) }

// TestLiveSourceSendsDeltas: the live rule source sends its first set
// whole and then deltas, which a subtask's applyChange turns into the set
// the source holds, through the codec; a subtask that missed a change
// fails rather than evaluating under another set.
func TestLiveSourceSendsDeltas(t *testing.T) {
	s := &liveSource{log: slog.New(slog.DiscardHandler), last: setTime}
	if err := s.InitializeState(nil, nil); err != nil {
		t.Fatal(err)
	}
	entry := func(id string, version int64, state string, max int) store.Entry {
		return store.Entry{ID: id, Version: version, State: state, Kind: "rule",
			Source: fmt.Sprintf("id: %s\nkey: [user]\nkind: filter\nparams: {max: %d}\ncondition: 'e.amount > p.max'\n", id, max)}
	}
	var sent []Change
	out := collectorFunc(func(c Change) {
		b := ChangeCodec{}.Append(nil, c)
		d, err := ChangeCodec{}.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, d)
	})
	sets, missed := mapSets{}, mapSets{}
	step := func(at int64, es ...store.Entry) {
		t.Helper()
		var ids []string
		for _, e := range es {
			if err := s.setEntry(e); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, e.ID)
		}
		if err := s.change(out, at, ids); err != nil {
			t.Fatal(err)
		}
		c := sent[len(sent)-1]
		if err := applyChange(sets, c, at-1); err != nil {
			t.Fatalf("at %d: %v", at, err)
		}
		want, err := s.compile()
		if err != nil {
			t.Fatal(err)
		}
		if got := sets[c.From]; got.Digest() != want.Digest() || !bytes.Equal(rules.SetCodec{}.Append(nil, got), rules.SetCodec{}.Append(nil, want)) {
			t.Fatalf("at %d: the subtask's set is not the source's", at)
		}
	}
	step(10, entry("a", 1, store.Active, 1), entry("b", 1, store.Active, 2))
	if sent[0].Set == nil || sent[0].Delta != nil {
		t.Fatalf("the first change is not a whole set: %+v", sent[0])
	}
	if err := applyChange(missed, sent[0], 9); err != nil {
		t.Fatal(err)
	}
	step(20, entry("a", 2, store.Paused, 1))
	step(30, entry("c", 1, store.Shadow, 3), entry("b", 2, store.Deleted, 2))
	step(30, entry("a", 3, store.Active, 5)) // a second change at one time
	for _, c := range sent[1:] {
		if c.Delta == nil || c.Set != nil {
			t.Fatalf("a later change is not a delta: %+v", c)
		}
		if n := len(c.Delta.Docs) + len(c.Delta.Removed); n > 2 {
			t.Errorf("a delta carries %d documents", n)
		}
	}
	if len(sets) != 2 {
		t.Errorf("%d sets held, want the one in force at 29 and the one from 30", len(sets))
	}
	// A subtask that missed the change at 20 refuses the one at 30.
	if err := applyChange(missed, sent[2], 25); !errors.Is(err, rules.ErrDeltaBase) {
		t.Errorf("a delta applied to a set that is not its base: %v", err)
	}
	if err := applyChange(mapSets{}, sent[2], 25); !errors.Is(err, rules.ErrDeltaBase) {
		t.Errorf("a delta applied to no set: %v", err)
	}
	// The source's state restores its entries; its first change is whole.
	st, err := s.SnapshotState(1)
	if err != nil {
		t.Fatal(err)
	}
	r := &liveSource{log: s.log}
	if err := r.InitializeState(nil, st); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(r.entries, s.entries) || r.last != s.last {
		t.Fatalf("restored %v at %d, want %v at %d", r.entries, r.last, s.entries, s.last)
	}
	sent = nil
	if err := r.setEntry(entry("d", 1, store.Active, 4)); err != nil {
		t.Fatal(err)
	}
	if err := r.change(out, 40, []string{"d"}); err != nil || sent[0].Set == nil || len(sent[0].Set.Rules) != 3 {
		t.Fatalf("the first change after a restore: %+v, %v", sent, err)
	}
}

type collectorFunc func(Change)

func (f collectorFunc) Collect(c Change) { f(c) }
