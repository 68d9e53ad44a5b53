// Package statefill is a verification job for large keyed state: every
// key holds a value of `bytes` bytes whose content is a function of the
// key and of how often the key was seen, and each record checks its key's
// value before it replaces it. A value lost, stale or corrupted by the
// state backend fails the job, naming the key. With many keys and large
// values its state outgrows memory, which the pebble state backend must
// carry (see README, State backends).
//
// The source emits rounds: round r (from 1) sends (k, r) for every key k
// of its subtask (k ≡ subtask mod parallelism), so after round r every
// key holds payload(k, r). Its position is checkpointed, so a restored
// job continues where its state is; it does not support rescaling (a
// restore at another parallelism fails with a clear error).
package statefill

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
)

// Name is the job's registered name.
const Name = "state-fill"

func init() {
	jobs.Register(jobs.Job{
		Name:        Name,
		Description: "Verification job for large keyed state: each key holds `bytes` bytes that every record checks before it rewrites them",
		Params: []jobs.Param{
			{Name: "keys", Type: jobs.Int, Default: "100000", Description: "number of keys"},
			{Name: "bytes", Type: jobs.Int, Default: "100", Description: "size of each key's value"},
			{Name: "rounds", Type: jobs.Int, Default: "2", Description: "times each key is written; the source then finishes (0 = unbounded)"},
			{Name: "rate", Type: jobs.Float, Default: "0", Description: "records per second per source subtask (0 = as fast as possible)"},
			{Name: "timers", Type: jobs.Int, Default: "0", Description: "processing-time timers per key, far in the future: each record deletes its key's timers of the round before and registers this round's"},
		},
		Build: Build,
	})
}

// Record is one update of a key.
type Record struct{ Key, Round int64 }

// RecordCodec encodes a Record as two varints.
type RecordCodec struct{}

func (RecordCodec) Append(dst []byte, r Record) []byte {
	return binary.AppendVarint(binary.AppendVarint(dst, r.Key), r.Round)
}

func (RecordCodec) Decode(src []byte) (Record, error) {
	k, n := binary.Varint(src)
	if n <= 0 {
		return Record{}, runtime.ErrCorrupt
	}
	r, m := binary.Varint(src[n:])
	if m <= 0 || n+m != len(src) {
		return Record{}, runtime.ErrCorrupt
	}
	return Record{Key: k, Round: r}, nil
}

// bytesCodec stores a value as its bytes; Decode copies.
type bytesCodec struct{}

func (bytesCodec) Append(dst []byte, v []byte) []byte { return append(dst, v...) }
func (bytesCodec) Decode(src []byte) ([]byte, error)  { return append([]byte(nil), src...), nil }

// DecodeCopies: Decode copies (pebblestate.CopyingDecoder).
func (bytesCodec) DecodeCopies() {}

// payload is key k's value after round r: (k, r) and then a pattern of
// both, n bytes in all.
func payload(dst []byte, k, r int64, n int) []byte {
	dst = dst[:0]
	x := uint64(k)*0x9e3779b97f4a7c15 ^ uint64(r)
	for len(dst) < n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		dst = binary.LittleEndian.AppendUint64(dst, x)
	}
	return dst[:n]
}

// Build makes source -> keyBy -> checker -> discard.
func Build(env *runtime.Env, p *runtime.Params) error {
	keys, size, rounds, rate := p.Int("keys", 100000), p.Int("bytes", 100), p.Int("rounds", 2), p.Float("rate", 0)
	timers := p.Int("timers", 0)
	if keys < 1 || size < 16 || rounds < 0 || rate < 0 || timers < 0 || timers > 1000 {
		return fmt.Errorf("keys must be at least 1, bytes at least 16, rounds and rate not negative, timers 0 to 1000")
	}
	env.SetMaxParallelism(128)
	src := runtime.FromSource(env, "fill-source", func() runtime.SourceFunction[Record] {
		return &source{keys: keys, rounds: rounds, rate: rate}
	}, RecordCodec{}).UID("fill-source").Parallelism(env.Parallelism())
	keyed := runtime.KeyBy(src, runtime.Int64Key, func(r Record) int64 { return r.Key })
	checked := runtime.Process(keyed, "fill-checker", func() runtime.KeyedProcessFunction[int64, Record, int64] {
		return &checker{size: int(size), timers: timers}
	}, runtime.Int64Codec{}).UID("fill-checker")
	runtime.SinkTo(checked, "discard", func() runtime.SinkFunction[int64] { return discard{} }).UID("fill-discard")
	return nil
}

type discard struct{}

func (discard) Invoke(int64) error { return nil }

// checker checks and rewrites each key's value.
type checker struct {
	size      int
	timers    int64
	val       runtime.ValueState[[]byte]
	want, buf []byte
}

func (c *checker) Open(ctx *runtime.KeyedContext[int64]) error {
	var err error
	c.val, err = runtime.GetValueState(ctx, "payload", runtime.Codec[[]byte](bytesCodec{}))
	return err
}

// timerBase is the time of the state-fill's timers: far in the future,
// so they never fire; they only take room in the state backend.
const timerBase = int64(1) << 52

func (c *checker) ProcessElement(r Record, ctx *runtime.KeyedContext[int64], out runtime.Collector[int64]) error {
	for i := range c.timers {
		ctx.DeleteProcessingTimeTimer(timerBase + (r.Round-1)*c.timers + i)
		ctx.RegisterProcessingTimeTimer(timerBase + r.Round*c.timers + i)
	}
	got, ok := c.val.Value()
	switch {
	case r.Round == 1 && ok:
		return fmt.Errorf("key %d: round 1 found a value already", r.Key)
	case r.Round > 1 && !ok:
		return fmt.Errorf("key %d: round %d found no value: state lost", r.Key, r.Round)
	case r.Round > 1:
		c.want = payload(c.want, r.Key, r.Round-1, c.size)
		if string(got) != string(c.want) {
			return fmt.Errorf("key %d: round %d found a value other than round %d's", r.Key, r.Round, r.Round-1)
		}
	}
	// A new slice per update: stored values must not change afterwards.
	c.val.Update(payload(make([]byte, 0, c.size+8), r.Key, r.Round, c.size))
	out.Collect(r.Key)
	return nil
}

func (c *checker) OnTimer(ts int64, ctx *runtime.KeyedContext[int64], _ runtime.Collector[int64]) error {
	return fmt.Errorf("key %d: timer %d fired, decades early", ctx.CurrentKey(), ts)
}

// source emits the rounds of the keys of its subtask.
type source struct {
	keys, rounds int64
	rate         float64

	subtask, parallelism int
	// next is the index of the next record: round next/owned + 1, key
	// subtask + (next % owned) × parallelism.
	next, owned int64
	emitted     int64
	start       time.Time
	ready       bool
}

var _ runtime.CheckpointedFunction = (*source)(nil)

func (s *source) own(ctx *runtime.RuntimeContext) {
	s.subtask, s.parallelism = ctx.SubtaskIndex(), ctx.Parallelism()
	s.owned = (s.keys - int64(s.subtask) + int64(s.parallelism) - 1) / int64(s.parallelism)
	s.ready = true
}

// InitializeState restores the position of this subtask's entry.
func (s *source) InitializeState(ctx *runtime.RuntimeContext, entries [][]byte) error {
	s.own(ctx)
	for _, e := range entries {
		var v [3]int64
		b := e
		for i := range v {
			x, n := binary.Varint(b)
			if n <= 0 {
				return fmt.Errorf("state-fill source: %w", runtime.ErrCorrupt)
			}
			v[i], b = x, b[n:]
		}
		if v[1] != int64(s.parallelism) {
			return errors.New("state-fill does not rescale: restore it at the parallelism it had")
		}
		if v[0] == int64(s.subtask) {
			s.next = v[2]
		}
	}
	return nil
}

func (s *source) Open(ctx *runtime.RuntimeContext) error {
	if !s.ready {
		s.own(ctx)
	}
	return nil
}

// SnapshotState is one entry: subtask, parallelism, position.
func (s *source) SnapshotState(int64) ([][]byte, error) {
	e := binary.AppendVarint(nil, int64(s.subtask))
	e = binary.AppendVarint(e, int64(s.parallelism))
	return [][]byte{binary.AppendVarint(e, s.next)}, nil
}

func (s *source) Poll(out runtime.Collector[Record]) (time.Duration, error) {
	if s.owned == 0 || s.rounds > 0 && s.next >= s.rounds*s.owned {
		if s.rounds > 0 {
			return 0, runtime.ErrEndOfInput
		}
		return time.Second, nil
	}
	n := int64(512)
	if s.rate > 0 {
		now := time.Now()
		if s.start.IsZero() {
			s.start = now
		}
		due := int64(now.Sub(s.start).Seconds() * s.rate)
		if due <= s.emitted {
			return time.Millisecond, nil
		}
		n = min(n, due-s.emitted)
	}
	for ; n > 0 && (s.rounds == 0 || s.next < s.rounds*s.owned); n-- {
		out.Collect(Record{Key: int64(s.subtask) + (s.next%s.owned)*int64(s.parallelism), Round: s.next/s.owned + 1})
		s.next++
		s.emitted++
	}
	return 0, nil
}
