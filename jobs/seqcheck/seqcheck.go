// Package seqcheck is the verification job "sequence-check", in the spirit
// of Flink's DataStreamAllroundTestProgram: it proves end to end that
// checkpoints, restores and rescaling neither lose nor duplicate records.
//
// The source emits, per key, the sequence numbers 1, 2, 3, ... and keeps
// each key's next number as operator state, so its position is exact
// across failures and rescaling (Flink's SequenceGeneratorSource). The
// records are keyed by key to the checker, whose keyed ValueState holds the
// last number seen per key: a record that is not last+1 is flagged (Flink's
// SemanticsCheckMapper). Every record, flagged or not, goes to the
// exactly-once file sink as one JSON line, so the committed output of a
// bounded run must hold every (key, seq) exactly once, which ReadOutput and
// Verify check from outside the job.
//
// Everything on the record path is hand-written: varint codecs, JSON lines
// built with strconv.AppendInt, no reflection, no allocation per record.
package seqcheck

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/weirstream/weir/connectors"
	"github.com/weirstream/weir/connectors/filesink"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/jobs/connect"
	"github.com/weirstream/weir/runtime"
)

// Name is the job's registered name.
const Name = "sequence-check"

func init() {
	jobs.Register(jobs.Job{
		Name:        Name,
		Description: "Verification job: per-key sequence numbers through keyed state to the exactly-once file sink; the output holds every (key, seq) once",
		Params: append([]jobs.Param{
			{Name: "keys", Type: jobs.Int, Default: "100", Description: "number of keys"},
			{Name: "count", Type: jobs.Int, Default: "0", Description: "sequence numbers per key; the source then finishes (0 = unbounded)"},
			{Name: "rate", Type: jobs.Float, Default: "1000", Description: "records per second per source subtask (0 = as fast as possible)"},
			{Name: "output", Type: jobs.Path, Description: "sink=files (required): directory or s3://bucket/prefix URL the part files go to"},
			{Name: "append", Type: jobs.Bool, Default: "false", Description: "add to a directory holding another job's part files (a fresh job refuses one otherwise)"},
			{Name: "source", Type: jobs.String, Default: "generator", Description: "generator: the built-in sequence source; kafka: CSV records key,seq from source-topic (each key's numbers in order in one partition)"},
			{Name: "sink", Type: jobs.String, Default: "files", Description: "files: exactly-once part files under output; kafka: JSON lines as records keyed by key to sink-topic"},
		}, kafkaParams()...),
		Build: Build,
	})
}

// The operators' stable identifiers, under which their state is stored.
const (
	SourceUID  = "sequence-source"
	CheckerUID = "sequence-checker"
	SinkUID    = "sequence-sink"
)

// MaxKeys bounds the keys parameter: the source keeps two int64 per owned
// key, and every restored subtask decodes the state of all keys.
const MaxKeys = 1 << 22

// Record is one sequence number of one key.
type Record struct {
	Key, Seq int64
}

// RecordCodec serialises records as two zig-zag varints.
type RecordCodec struct{}

func (RecordCodec) Append(dst []byte, r Record) []byte {
	dst = binary.AppendVarint(dst, r.Key)
	return binary.AppendVarint(dst, r.Seq)
}

func (RecordCodec) Decode(src []byte) (Record, error) {
	rd := runtime.NewReader(src)
	r := Record{Key: rd.Varint(), Seq: rd.Varint()}
	if err := rd.Done(); err != nil {
		return Record{}, fmt.Errorf("sequence record: %w", err)
	}
	return r, nil
}

// Output is a checked record. Expected is 0 when Seq followed the key's
// previous number, and otherwise the number that should have come.
type Output struct {
	Key, Seq, Expected int64
}

// OutputCodec serialises outputs as three zig-zag varints.
type OutputCodec struct{}

func (OutputCodec) Append(dst []byte, o Output) []byte {
	dst = binary.AppendVarint(dst, o.Key)
	dst = binary.AppendVarint(dst, o.Seq)
	return binary.AppendVarint(dst, o.Expected)
}

func (OutputCodec) Decode(src []byte) (Output, error) {
	rd := runtime.NewReader(src)
	o := Output{Key: rd.Varint(), Seq: rd.Varint(), Expected: rd.Varint()}
	if err := rd.Done(); err != nil {
		return Output{}, fmt.Errorf("sequence output: %w", err)
	}
	return o, nil
}

// AppendJSON appends o as one JSON object without a newline:
// {"key":K,"seq":S}, or {"key":K,"seq":S,"expected":E} for a flagged record.
func AppendJSON(dst []byte, o Output) []byte {
	dst = append(dst, `{"key":`...)
	dst = strconv.AppendInt(dst, o.Key, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, o.Seq, 10)
	if o.Expected != 0 {
		dst = append(dst, `,"expected":`...)
		dst = strconv.AppendInt(dst, o.Expected, 10)
	}
	return append(dst, '}')
}

// Config is the job's parameters.
type Config struct {
	Keys   int64   // keys 0..Keys-1
	Count  int64   // sequence numbers per key; 0 = unbounded
	Rate   float64 // records per second per source subtask; 0 = unlimited
	Output string  // directory, file:// or s3:// URL of the part files
	Append bool    // write into a directory holding another job's parts
	Source string  // generator or kafka
	Sink   string  // files or kafka
	IO     kafkaConfig
}

func parseConfig(p *runtime.Params) Config {
	c := Config{
		Keys:   p.Int("keys", 100),
		Count:  p.Int("count", 0),
		Rate:   p.Float("rate", 1000),
		Output: p.String("output", ""),
		Append: p.Bool("append", false),
		Source: p.String("source", "generator"),
		Sink:   connect.Choice(p, "sink", connect.Files),
	}
	c.IO = parseKafka(p)
	if c.Source != "generator" && c.Source != "kafka" {
		p.Errorf("source", "%q: use generator or kafka", c.Source)
	}
	if c.Sink != "files" && c.Sink != "kafka" {
		p.Errorf("sink", "%q: use files or kafka", c.Sink)
	}
	if c.Keys < 1 || c.Keys > MaxKeys {
		p.Errorf("keys", "%d must be between 1 and %d", c.Keys, MaxKeys)
	}
	if c.Count < 0 {
		p.Errorf("count", "%d must be 0 (unbounded) or positive", c.Count)
	}
	if err := connectors.ValidateRate(c.Rate); err != nil {
		p.Errorf("rate", "%v", err)
	} else if math.IsInf(c.Rate, 0) || math.IsNaN(c.Rate) {
		p.Errorf("rate", "%g must be a finite number (0 means unlimited)", c.Rate)
	}
	if c.Sink == "kafka" {
		return c
	}
	connect.CheckOutput(p, c.Output, "the part files")
	return c
}

// Build defines the job: sequence-source -> keyBy(key) -> sequence-checker
// -> sequence-sink (exactly-once part files under output).
func Build(env *runtime.Env, p *runtime.Params) error {
	c := parseConfig(p)
	// Fixed, not derived from the parallelism, so the checker's keyed
	// state survives rescaling.
	env.SetMaxParallelism(128)
	src := runtime.FromSource(env, "sequence-source", func() runtime.SourceFunction[Record] {
		if c.Source == "kafka" {
			return c.IO.newSource()
		}
		return &Source{Keys: c.Keys, Count: c.Count, Rate: c.Rate}
	}, RecordCodec{}).UID(SourceUID).Parallelism(env.Parallelism())
	keyed := runtime.KeyBy(src, runtime.Int64Key, func(r Record) int64 { return r.Key })
	checked := runtime.Process(keyed, "sequence-checker", func() runtime.KeyedProcessFunction[int64, Record, Output] {
		return &Checker{}
	}, OutputCodec{}).UID(CheckerUID)
	runtime.SinkTo(checked, "sequence-sink", func() runtime.SinkFunction[Output] {
		if c.Sink == "kafka" {
			return c.IO.newSink()
		}
		return &filesink.Sink[Output]{Dir: c.Output, Encode: AppendJSON, Append: c.Append}
	}).UID(SinkUID)
	return nil
}

// sourceBatch bounds how many records one Poll emits, so the task gets
// back control often enough for barriers, timers and cancellation.
const sourceBatch = 512

// idleWait is how long a subtask that owns no key (parallelism > keys)
// sleeps between polls of an unbounded run.
const idleWait = time.Second

// stateVersion is the first byte of the source's state entry.
const stateVersion = 1

// Source emits (key, 1), (key, 2), ... for the keys k with
// k % parallelism == subtask, round-robin over its keys, at Rate records
// per second. With Count > 0 it ends once every key it owns has emitted
// Count numbers. Its operator state is each owned key's next number.
type Source struct {
	Keys  int64
	Count int64
	Rate  float64

	subtask, parallelism int
	keys                 []int64 // owned keys, ascending
	next                 []int64 // next sequence number of keys[i]
	active               []int32 // indexes into keys still below Count, in emission order
	pos                  int     // next index into active
	emitted              int64   // since start, for the rate limit
	start                time.Time
	ready                bool
}

var _ runtime.CheckpointedFunction = (*Source)(nil)

// own sets up the keys subtask i of p owns, each starting at 1.
func (s *Source) own(subtask, parallelism int) {
	s.subtask, s.parallelism = subtask, max(parallelism, 1)
	s.keys, s.next = s.keys[:0], s.next[:0]
	for k := int64(subtask); k < s.Keys; k += int64(s.parallelism) {
		s.keys = append(s.keys, k)
		s.next = append(s.next, 1)
	}
	s.ready = true
}

// activate lists the keys with numbers left to emit.
func (s *Source) activate() {
	s.active, s.pos = s.active[:0], 0
	for i := range s.keys {
		if s.Count == 0 || s.next[i] <= s.Count {
			s.active = append(s.active, int32(i))
		}
	}
}

// InitializeState takes each owned key's next number from the union of the
// old subtasks' entries. Keys of other subtasks and keys at or above Keys
// are ignored; owned keys missing from the state (only possible when the
// job is restored with more keys than before) start at 1.
func (s *Source) InitializeState(ctx *runtime.RuntimeContext, entries [][]byte) error {
	s.own(ctx.SubtaskIndex(), ctx.Parallelism())
	seen := make([]bool, len(s.keys))
	p := int64(s.parallelism)
	for _, e := range entries {
		if len(e) == 0 || e[0] != stateVersion {
			return fmt.Errorf("sequence source: unknown state entry format: %w", runtime.ErrCorrupt)
		}
		b := e[1:]
		for len(b) > 0 {
			k, n := binary.Varint(b)
			if n <= 0 {
				return fmt.Errorf("sequence source: state entry: %w", runtime.ErrCorrupt)
			}
			b = b[n:]
			next, n := binary.Varint(b)
			if n <= 0 || next < 1 {
				return fmt.Errorf("sequence source: state entry for key %d: %w", k, runtime.ErrCorrupt)
			}
			b = b[n:]
			if k < 0 || k >= s.Keys || k%p != int64(s.subtask) {
				continue
			}
			i := k / p // keys holds subtask, subtask+p, ...
			if seen[i] {
				return fmt.Errorf("sequence source: restored state holds key %d twice: %w", k, runtime.ErrCorrupt)
			}
			seen[i] = true
			s.next[i] = next
		}
	}
	s.activate()
	return nil
}

// Open sets up a fresh source if InitializeState was not called.
func (s *Source) Open(ctx *runtime.RuntimeContext) error {
	if !s.ready {
		s.own(ctx.SubtaskIndex(), ctx.Parallelism())
		s.activate()
	}
	return nil
}

// SnapshotState returns one entry: a version byte, then (key, next) varint
// pairs for every owned key, finished ones included.
func (s *Source) SnapshotState(int64) ([][]byte, error) {
	e := make([]byte, 1, 1+len(s.keys)*4)
	e[0] = stateVersion
	for i, k := range s.keys {
		e = binary.AppendVarint(e, k)
		e = binary.AppendVarint(e, s.next[i])
	}
	return [][]byte{e}, nil
}

// Poll emits the records that are due, at most sourceBatch of them. Record
// n of this instance is due (n+1)/Rate seconds after its first poll.
func (s *Source) Poll(out runtime.Collector[Record]) (time.Duration, error) {
	if len(s.active) == 0 {
		if s.Count > 0 {
			return 0, runtime.ErrEndOfInput
		}
		return idleWait, nil
	}
	now := time.Now()
	if s.start.IsZero() {
		s.start = now
	}
	n := int64(sourceBatch)
	if s.Rate > 0 {
		due := int64(now.Sub(s.start).Seconds() * s.Rate)
		if due <= s.emitted {
			next := s.start.Add(time.Duration(float64(s.emitted+1) / s.Rate * float64(time.Second)))
			return max(next.Sub(now), time.Microsecond), nil
		}
		n = min(n, due-s.emitted)
	}
	for ; n > 0 && len(s.active) > 0; n-- {
		if s.pos >= len(s.active) {
			s.pos = 0
		}
		i := s.active[s.pos]
		seq := s.next[i]
		s.next[i] = seq + 1
		s.emitted++
		out.Collect(Record{Key: s.keys[i], Seq: seq})
		if s.Count > 0 && seq >= s.Count {
			// Each key finishes once, so the order-keeping delete is cheap
			// overall; pos now points at the key after it.
			s.active = slices.Delete(s.active, s.pos, s.pos+1)
		} else {
			s.pos++
		}
	}
	return 0, nil
}

// warnFirst and warnEvery bound the checker's warnings: the first few
// flagged records are logged, then one in warnEvery, so a systematic fault
// cannot flood the log. Every flagged record is in the output regardless.
const (
	warnFirst = 10
	warnEvery = 10_000
)

// Checker flags records whose sequence number does not follow the last one
// of their key. After a flagged record it continues from that record's
// number, as Flink's SequenceNumberValidator does, so one fault is flagged
// once instead of on every later record; duplicates still show in the
// output's counts.
type Checker struct {
	last    runtime.ValueState[int64]
	log     *slog.Logger
	flagged int64
}

// Open registers the keyed state "last-seq".
func (c *Checker) Open(ctx *runtime.KeyedContext[int64]) error {
	c.log = ctx.Logger()
	var err error
	c.last, err = runtime.GetValueState(ctx, "last-seq", runtime.Int64Codec{})
	return err
}

// ProcessElement checks r against its key's last number and emits it.
func (c *Checker) ProcessElement(r Record, _ *runtime.KeyedContext[int64], out runtime.Collector[Output]) error {
	last, _ := c.last.Value() // 0 for a key not seen yet: it starts at 1
	o := check(last, r)
	if o.Expected != 0 {
		c.flagged++
		if c.flagged <= warnFirst || c.flagged%warnEvery == 0 {
			c.log.Warn("sequence gap or duplicate", "key", r.Key, "seq", r.Seq, "expected", o.Expected, "flagged", c.flagged)
		}
	}
	if r.Seq != last {
		c.last.Update(r.Seq)
	}
	out.Collect(o)
	return nil
}

// OnTimer is unused: the checker registers no timers.
func (c *Checker) OnTimer(int64, *runtime.KeyedContext[int64], runtime.Collector[Output]) error {
	return nil
}

// check is the checker's rule: r must carry last+1.
func check(last int64, r Record) Output {
	o := Output{Key: r.Key, Seq: r.Seq}
	if r.Seq != last+1 {
		o.Expected = last + 1
	}
	return o
}
