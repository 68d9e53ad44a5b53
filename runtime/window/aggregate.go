package window

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/weirstream/weir/runtime"
)

// AggregateFunction aggregates a window's elements incrementally, as
// Flink's AggregateFunction: the window keeps only the accumulator.
// Accumulators are stored in keyed state as returned: Add and Merge must
// return a new value rather than modify one they were given in place
// (value types such as numbers and small structs do this naturally), or a
// checkpoint taken earlier would see the change. One value serves every
// subtask of the operator, on their own goroutines: keep it stateless.
type AggregateFunction[IN, ACC, OUT any] interface {
	CreateAccumulator() ACC
	Add(v IN, acc ACC) ACC
	// Merge combines two accumulators: of session windows that merge,
	// and of the panes a sliding window is made of when it fires.
	Merge(a, b ACC) ACC
	Result(acc ACC) OUT
}

// AccumulatorCoder is implemented by aggregate functions that know how to
// serialise their accumulator, such as the ready-made ones of this
// package; Aggregate then needs no accumulator codec.
type AccumulatorCoder[ACC any] interface {
	AccumulatorCodec() runtime.Codec[ACC]
}

// Number is the element type of the ready-made numeric aggregates.
type Number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 |
		~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~uintptr |
		~float32 | ~float64
}

// isFloat tells float types from integer ones: a non-constant 1.5
// converts to 1 in the latter.
func isFloat[N Number]() bool {
	x := 1.5
	return N(x) != N(1)
}

// NumberCodec serialises a Number: integers as zig-zag varints (unsigned
// ones above MaxInt64 round-trip through their two's complement), floats
// as 8 bytes.
type NumberCodec[N Number] struct{}

func (NumberCodec[N]) Append(dst []byte, v N) []byte {
	if isFloat[N]() {
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(float64(v)))
	}
	return binary.AppendVarint(dst, int64(v))
}

func (NumberCodec[N]) Decode(src []byte) (N, error) {
	if isFloat[N]() {
		f, err := runtime.Float64Codec{}.Decode(src)
		return N(f), err
	}
	v, err := runtime.Int64Codec{}.Decode(src)
	return N(v), err
}

// count is Count's aggregate.
type count[IN any] struct{}

// Count counts a window's elements.
func Count[IN any]() AggregateFunction[IN, int64, int64] { return count[IN]{} }

func (count[IN]) CreateAccumulator() int64               { return 0 }
func (count[IN]) Add(_ IN, acc int64) int64              { return acc + 1 }
func (count[IN]) Merge(a, b int64) int64                 { return a + b }
func (count[IN]) Result(acc int64) int64                 { return acc }
func (count[IN]) AccumulatorCodec() runtime.Codec[int64] { return runtime.Int64Codec{} }

type sum[IN any, N Number] struct{ field func(IN) N }

// Sum adds up field(element) over a window.
func Sum[IN any, N Number](field func(IN) N) AggregateFunction[IN, N, N] { return sum[IN, N]{field} }

func (sum[IN, N]) CreateAccumulator() N               { return 0 }
func (s sum[IN, N]) Add(v IN, acc N) N                { return acc + s.field(v) }
func (sum[IN, N]) Merge(a, b N) N                     { return a + b }
func (sum[IN, N]) Result(acc N) N                     { return acc }
func (sum[IN, N]) AccumulatorCodec() runtime.Codec[N] { return NumberCodec[N]{} }

// Extreme is the accumulator of Min and Max: the value so far, once there
// is one.
type Extreme[N Number] struct {
	V   N
	Set bool
}

// ExtremeCodec serialises an Extreme.
type ExtremeCodec[N Number] struct{}

func (ExtremeCodec[N]) Append(dst []byte, e Extreme[N]) []byte {
	if !e.Set {
		return append(dst, 0)
	}
	return NumberCodec[N]{}.Append(append(dst, 1), e.V)
}

func (ExtremeCodec[N]) Decode(src []byte) (Extreme[N], error) {
	if len(src) == 1 && src[0] == 0 {
		return Extreme[N]{}, nil
	}
	if len(src) < 2 || src[0] != 1 {
		return Extreme[N]{}, fmt.Errorf("extreme: %w", runtime.ErrCorrupt)
	}
	v, err := NumberCodec[N]{}.Decode(src[1:])
	return Extreme[N]{V: v, Set: true}, err
}

type extreme[IN any, N Number] struct {
	field func(IN) N
	max   bool
}

// Min is the smallest field(element) of a window.
func Min[IN any, N Number](field func(IN) N) AggregateFunction[IN, Extreme[N], N] {
	return extreme[IN, N]{field: field}
}

// Max is the largest field(element) of a window.
func Max[IN any, N Number](field func(IN) N) AggregateFunction[IN, Extreme[N], N] {
	return extreme[IN, N]{field: field, max: true}
}

func (extreme[IN, N]) CreateAccumulator() Extreme[N] { return Extreme[N]{} }
func (e extreme[IN, N]) Add(v IN, acc Extreme[N]) Extreme[N] {
	return e.Merge(acc, Extreme[N]{V: e.field(v), Set: true})
}
func (e extreme[IN, N]) Merge(a, b Extreme[N]) Extreme[N] {
	switch {
	case !a.Set:
		return b
	case !b.Set:
		return a
	case e.max == (b.V > a.V):
		return b
	}
	return a
}
func (extreme[IN, N]) Result(acc Extreme[N]) N                     { return acc.V }
func (extreme[IN, N]) AccumulatorCodec() runtime.Codec[Extreme[N]] { return ExtremeCodec[N]{} }

// Mean is the accumulator of Avg.
type Mean struct {
	Sum   float64
	Count int64
}

// MeanCodec serialises a Mean.
type MeanCodec struct{}

func (MeanCodec) Append(dst []byte, m Mean) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(m.Sum))
	return binary.AppendVarint(dst, m.Count)
}

func (MeanCodec) Decode(src []byte) (Mean, error) {
	r := runtime.NewReader(src)
	m := Mean{Sum: r.Float64(), Count: r.Varint()}
	if err := r.Done(); err != nil {
		return Mean{}, fmt.Errorf("mean: %w", err)
	}
	return m, nil
}

type avg[IN any, N Number] struct{ field func(IN) N }

// Avg is the mean of field(element) over a window, as a float64.
func Avg[IN any, N Number](field func(IN) N) AggregateFunction[IN, Mean, float64] {
	return avg[IN, N]{field}
}

func (avg[IN, N]) CreateAccumulator() Mean { return Mean{} }
func (a avg[IN, N]) Add(v IN, acc Mean) Mean {
	return Mean{Sum: acc.Sum + float64(a.field(v)), Count: acc.Count + 1}
}
func (avg[IN, N]) Merge(a, b Mean) Mean { return Mean{Sum: a.Sum + b.Sum, Count: a.Count + b.Count} }
func (avg[IN, N]) Result(acc Mean) float64 {
	if acc.Count == 0 {
		return math.NaN()
	}
	return acc.Sum / float64(acc.Count)
}
func (avg[IN, N]) AccumulatorCodec() runtime.Codec[Mean] { return MeanCodec{} }

// SliceCodec serialises a list of elements, as a process window keeps
// them: a count, then each element length-prefixed.
type SliceCodec[T any] struct{ Elem runtime.Codec[T] }

func (c SliceCodec[T]) Append(dst []byte, l []T) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(l)))
	var scratch []byte
	for _, v := range l {
		scratch = c.Elem.Append(scratch[:0], v)
		dst = binary.AppendUvarint(dst, uint64(len(scratch)))
		dst = append(dst, scratch...)
	}
	return dst
}

func (c SliceCodec[T]) Decode(src []byte) ([]T, error) {
	n, k := binary.Uvarint(src)
	if k <= 0 || n > uint64(len(src)) { // each element takes at least a byte
		return nil, fmt.Errorf("element list: %w", runtime.ErrCorrupt)
	}
	src = src[k:]
	l := make([]T, 0, n)
	for range n {
		m, k := binary.Uvarint(src)
		if k <= 0 || m > uint64(len(src)-k) {
			return nil, fmt.Errorf("element list: %w", runtime.ErrCorrupt)
		}
		v, err := c.Elem.Decode(src[k : k+int(m)])
		if err != nil {
			return nil, fmt.Errorf("element list: %w", err)
		}
		l = append(l, v)
		src = src[k+int(m):]
	}
	if len(src) != 0 {
		return nil, fmt.Errorf("element list: %w", runtime.ErrCorrupt)
	}
	return l, nil
}
