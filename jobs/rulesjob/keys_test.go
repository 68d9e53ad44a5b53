package rulesjob

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/engine"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// evalGate is the evaluator task's input: first the router's channels,
// which carry the routed events, then the rule source's, the changes.
type evalGate struct {
	n    int
	ch   chan *engine.Buffer
	errs chan error
}

func (g *evalGate) NumChannels() int               { return g.n }
func (g *evalGate) Buffers() <-chan *engine.Buffer { return g.ch }
func (g *evalGate) Recycle(*engine.Buffer)         {}
func (g *evalGate) Err() <-chan error              { return g.errs }

// stamped frames records with their event time, as an event-time job's
// writers do.
func stamped[T any](ch int, c runtime.Codec[T], ts func(T) int64, vs ...T) *engine.Buffer {
	b := &engine.Buffer{Kind: engine.BufferData, Channel: ch}
	for _, v := range vs {
		enc := c.Append(binary.AppendVarint(nil, ts(v)), v)
		b.Data = append(binary.AppendUvarint(b.Data, uint64(len(enc))), enc...)
		b.Records++
	}
	return b
}

// partsChannel decodes the StatParts the evaluator sends.
type partsChannel struct {
	mu    sync.Mutex
	parts []StatPart
	err   error
}

func (c *partsChannel) Send(_ context.Context, b *engine.Buffer) error {
	defer engine.PutBuffer(b)
	if b.Kind != engine.BufferData {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d := b.Data
	for len(d) > 0 {
		n, w := binary.Uvarint(d)
		rec := d[w : w+int(n)]
		d = d[w+int(n):]
		_, tw := binary.Varint(rec)
		p, err := StatPartCodec{}.Decode(rec[tw:])
		if err != nil {
			c.err = err
			return nil
		}
		c.parts = append(c.parts, p)
	}
	return nil
}
func (c *partsChannel) Close() error { return nil }

type discardChannel struct{}

func (discardChannel) Send(_ context.Context, b *engine.Buffer) error {
	engine.PutBuffer(b)
	return nil
}
func (discardChannel) Close() error { return nil }

type ackList struct {
	mu    sync.Mutex
	acked []engine.CheckpointAck
	done  chan struct{}
}

func (a *ackList) Acknowledge(ack engine.CheckpointAck) {
	a.mu.Lock()
	a.acked = append(a.acked, ack)
	a.mu.Unlock()
	a.done <- struct{}{}
}
func (a *ackList) Decline(_ int64, err error) { panic(err) }
func (a *ackList) EndOfInput()                {}

// evalTask runs the rules job's evaluator vertex (parallelism 1) as a
// real task, fed by the test.
type evalTask struct {
	t       *testing.T
	g       *runtime.JobGraph
	v       *runtime.Vertex
	subtask int
	kgs     runtime.KeyGroupRange
	set     *rules.Set
	sigs    []sigFields
	gate    *evalGate
	task    *runtime.Task
	parts   *partsChannel
	acks    *ackList
	done    chan error
}

const keysRules = `id: win
key: [user]
kind: aggregate
window: {type: tumbling, size: 20s}
aggregates: {n: {fn: count}}
condition: 'agg.n > 100'
---
id: base
key: [user]
kind: baseline
profile: {horizon: 20s, stats: [amount]}
condition: 'e.amount > 1000'
---
id: seq
key: [user]
kind: sequence
pattern:
  within: {size: 5s}
  steps:
    - {name: a, where: 'e.type == "A"'}
    - {name: b, after: followedBy, where: 'e.type == "B"'}
`

// startEvalTask starts subtask of the evaluator of the job at parallelism
// p, restored from restore (its key groups' part) if set.
func startEvalTask(t *testing.T, dir string, p, subtask int, restore *statebackend.StateFile, backend runtime.StateBackend) *evalTask {
	t.Helper()
	ruleFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(ruleFile, []byte(keysRules), 0o644); err != nil {
		t.Fatal(err)
	}
	// A live job (etcd set; its rule source is not run here), as only a
	// live job's evaluator takes the changes the test broadcasts.
	g, err := jobs.Build(Name, p, map[string]string{"rules": ruleFile, "input": ruleFile, "output": filepath.Join(dir, "out"),
		"stats-interval": "10s", "etcd": "127.0.0.1:9"})
	if err != nil {
		t.Fatal(err)
	}
	e := &evalTask{t: t, g: g, subtask: subtask, gate: &evalGate{ch: make(chan *engine.Buffer, 64), errs: make(chan error)},
		parts: &partsChannel{}, acks: &ackList{done: make(chan struct{}, 4)}, done: make(chan error, 1)}
	for _, v := range g.Vertices {
		if strings.HasPrefix(v.Name, "evaluate-rules") {
			e.v = v
		}
	}
	for _, in := range e.v.Inputs {
		e.gate.n += len(g.InputChannels(in, subtask))
	}
	e.kgs = runtime.KeyGroupRangeForSubtask(g.MaxParallelism, e.v.Parallelism, subtask)
	specs, err := rules.Parse("rules.yaml", []byte(keysRules))
	if err != nil {
		t.Fatal(err)
	}
	if e.set, err = rules.Compile(specs); err != nil {
		t.Fatal(err)
	}
	e.sigs = keySigs(e.set)
	var outs [][]engine.OutputChannel
	for _, oe := range e.v.Outputs {
		var chs []engine.OutputChannel
		for range g.OutputChannels(oe, subtask) {
			if g.Vertices[oe.Target].Name == "rebalance" {
				chs = append(chs, e.parts)
			} else {
				chs = append(chs, discardChannel{})
			}
		}
		outs = append(outs, chs)
	}
	tio := runtime.TaskIO{Input: e.gate, Outputs: outs, Stdout: io.Discard, LatencyInterval: -1, Checkpoints: e.acks, StateBackend: backend,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if restore != nil {
		ks, err := restore.ReadKeyGroups(context.Background(), e.kgs)
		if err != nil {
			t.Fatal(err)
		}
		tio.Restore = &runtime.TaskRestore{CheckpointID: 1, Operators: map[string]*runtime.OperatorRestore{EvaluatorUID: {Keyed: []*statebackend.KeyedState{ks}}}}
	}
	if e.task, err = runtime.NewTask(g, e.v.ID, subtask, tio); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	go func() { e.done <- e.task.Run(ctx) }()
	return e
}

func (e *evalTask) change(from int64, set *rules.Set) {
	e.gate.ch <- stamped(e.gate.n-1, ChangeCodec{}, func(c Change) int64 { return c.From }, Change{From: from, Set: set})
}

// event routes an event of user at ts, as the router would.
func (e *evalTask) event(ts int64, user, typ string, amount float64) {
	rec := Record{Fields: map[string]any{"user": user, "type": typ, "amount": amount}, TS: ts, Source: "test", Line: ts}
	key := string(appendKey(nil, e.sigs[0].sig, e.sigs[0].fields, rec))
	if !e.kgs.Contains(runtime.KeyGroupForHash(runtime.StringHash(key), e.g.MaxParallelism)) {
		return // another subtask's
	}
	e.gate.ch <- stamped(0, RoutedCodec{}, func(r Routed) int64 { return r.Rec.TS }, Routed{Key: key, Rec: rec})
}

func (e *evalTask) watermark(wm int64) {
	for ch := range e.gate.n {
		e.gate.ch <- &engine.Buffer{Kind: engine.BufferWatermark, Channel: ch, Value: wm}
	}
}

// checkpoint takes checkpoint id into dir and returns the evaluator's
// state file.
func (e *evalTask) checkpoint(id int64, dir string) *statebackend.StateFile {
	e.t.Helper()
	b := engine.Barrier{ID: id, Location: dir}
	for ch := range e.gate.n {
		e.gate.ch <- &engine.Buffer{Kind: engine.BufferBarrier, Channel: ch, Value: id, Data: engine.EncodeBarrier(nil, b)}
	}
	<-e.acks.done
	e.acks.mu.Lock()
	ack := e.acks.acked[len(e.acks.acked)-1]
	e.acks.mu.Unlock()
	for _, s := range ack.States {
		if s.UID != EvaluatorUID {
			continue
		}
		st, err := storage.Open(dir, storage.Options{})
		if err != nil {
			e.t.Fatal(err)
		}
		ctx := context.Background()
		sf, err := statebackend.OpenStateFile(ctx, s.File, s.Size, func(ctx context.Context, off, n int64) ([]byte, error) {
			return st.GetRange(ctx, s.File, off, n)
		})
		if err != nil {
			e.t.Fatal(err)
		}
		return sf
	}
	e.t.Fatal("no state of the evaluator in the checkpoint")
	return nil
}

// end ends the input and waits for the task.
func (e *evalTask) end() {
	e.t.Helper()
	e.watermark(runtime.MaxWatermark)
	for ch := range e.gate.n {
		e.gate.ch <- &engine.Buffer{Kind: engine.BufferEndOfPartition, Channel: ch}
	}
	if err := <-e.done; err != nil {
		e.t.Fatal(err)
	}
	if e.parts.err != nil {
		e.t.Fatal(e.parts.err)
	}
}

// keysAt sums the parts' key changes: each rule's keys in state at the
// end of each interval that changed any, as "rule@start=n".
func (e *evalTask) keysAt() []string {
	e.parts.mu.Lock()
	defer e.parts.mu.Unlock()
	delta := map[int64]map[string]int64{}
	for _, p := range e.parts.parts {
		if p.Keys != 0 {
			if delta[p.Start] == nil {
				delta[p.Start] = map[string]int64{}
			}
			delta[p.Start][p.Rule] += p.Keys
		}
	}
	starts := slices.Sorted(maps.Keys(delta))
	total := map[string]int64{}
	var out []string
	for _, s := range starts {
		for _, r := range []string{"win", "base", "seq"} {
			if d, ok := delta[s][r]; ok {
				total[r] += d
				out = append(out, fmt.Sprintf("%s@%d=%d", r, s, total[r]))
			}
		}
	}
	return out
}

// gauges is the task's rule_state_keys gauges, by rule.
func gauges(task *runtime.Task) map[string]float64 {
	out := map[string]float64{}
	for _, m := range task.UserMetrics() {
		if m.Name == "rule_state_keys" {
			out[fmt.Sprint(m.Labels)] += m.Value
		}
	}
	return out
}

// waitGauges waits for the tasks' rule_state_keys gauges to sum to want:
// they are set as the evaluator opens, on the task's goroutine.
func waitGauges(t *testing.T, want map[string]float64, tasks ...*evalTask) {
	t.Helper()
	var got map[string]float64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		got = map[string]float64{}
		for _, e := range tasks {
			for k, v := range gauges(e.task) {
				got[k] += v
			}
		}
		if maps.Equal(got, want) {
			return
		}
	}
	t.Fatalf("rule_state_keys %v, want %v", got, want)
}

// TestKeysInStatePerRule runs the evaluator as a real task with an
// aggregate, a baseline and a sequence rule: the rule_stats parts count
// each rule's keys in state exactly at every interval's end, as windows
// fire, histories expire, partial matches time out or complete, and a
// deleted rule's state goes key by key; the gauges end at zero. A
// checkpoint taken midway restored at parallelism 1 (memory) and 2
// (pebble) recounts the keys from the restored state.
func TestKeysInStatePerRule(t *testing.T) {
	dir := t.TempDir()
	e := startEvalTask(t, dir, 1, 0, nil, runtime.StateBackend{})
	e.change(setTime, e.set)
	e.event(1000, "u1", "A", 1)
	e.event(2000, "u2", "X", 1)
	e.event(3000, "u3", "A", 1)
	e.event(4000, "u4", "B", 1)
	e.event(5000, "u3", "B", 1) // completes u3's match: its state goes
	e.event(8000, "u2", "A", 1) // u1's partial match timed out at 6000
	e.watermark(10000)
	ck := e.checkpoint(1, filepath.Join(dir, "chk-1"))
	e.event(26000, "u1", "X", 1)
	e.event(27000, "u2", "X", 1)
	e.watermark(29999)
	// base is deleted from 30000: u1's state of it goes with u1's next
	// event, u2's with its window's timer at 39999.
	var kept []*rules.Rule
	for _, r := range e.set.Rules {
		if r.ID != "base" {
			kept = append(kept, r)
		}
	}
	e.change(30000, &rules.Set{Rules: kept, Lists: e.set.Lists})
	e.event(31000, "u1", "X", 1)
	e.end()
	want := []string{
		"win@0=4", "base@0=4", "seq@0=1",
		"win@10000=0", "seq@10000=0", // the window fires at 19999; u2's match times out at 13000
		"win@20000=2", "base@20000=2", // histories expire at 21000..25000; u1 and u2 come back
		"win@30000=0", "base@30000=0", // u1 drops base at 31000, u2 at its window timer
	}
	if got := e.keysAt(); !slices.Equal(got, want) {
		t.Errorf("keys in state per interval:\n%v\nwant\n%v", got, want)
	}
	waitGauges(t, map[string]float64{"[rule win]": 0, "[rule base]": 0, "[rule seq]": 0}, e)

	// The checkpoint at 10000 holds 4 keys' window and history and one
	// partial match.
	atCk := map[string]float64{"[rule win]": 4, "[rule base]": 4, "[rule seq]": 1}
	one := startEvalTask(t, t.TempDir(), 1, 0, ck, runtime.StateBackend{})
	waitGauges(t, atCk, one)
	one.end()
	peb := runtime.StateBackend{Kind: runtime.StateBackendPebble, Dir: t.TempDir()}
	two := []*evalTask{startEvalTask(t, t.TempDir(), 2, 0, ck, peb), startEvalTask(t, t.TempDir(), 2, 1, ck, peb)}
	waitGauges(t, atCk, two...)
	for _, e := range two {
		if n := gauges(e.task)["[rule win]"]; n == 0 || n == 4 {
			t.Errorf("subtask %d of 2 holds %g of the 4 keys: the test does not split them", e.subtask, n)
		}
	}
	for _, e := range two {
		e.end()
	}
}
