package runtime

import (
	"encoding/binary"

	"github.com/weirstream/weir/runtime/engine"
)

// recordWriter serialises records of type T and routes them by the edge's
// partitioning onto the engine's writer, which frames them into buffers.
// It runs on the task's goroutine and allocates nothing per record.
type recordWriter[T any] struct {
	w       *engine.Writer
	codec   Codec[T]
	mode    Partitioning
	kgOf    func(T) int
	maxP    int
	n       int // channels
	next    int // rebalance cursor
	scratch []byte
	count   *int64 // records out of the chain's tail, or nil
	// ts, when the job has event time, is the task's current record
	// timestamp, written before each record.
	ts *int64
}

func newRecordWriter[T any](t *Task, codec Codec[T], chs []engine.OutputChannel, e *Edge, consumer *node, subtask int) *recordWriter[T] {
	w := &recordWriter[T]{w: t.eng.NewWriter(chs, subtask), codec: codec, mode: e.Partitioning, maxP: t.graph.MaxParallelism,
		n: len(chs), next: subtask % len(chs), scratch: make([]byte, 0, 256)}
	if t.graph.EventTime {
		w.ts = &t.chain.ts
	}
	if w.mode == Hash {
		w.kgOf = consumer.keyGroupOf(w.maxP).(func(T) int)
	}
	return w
}

func (w *recordWriter[T]) Collect(v T) {
	if w.count != nil {
		*w.count++
	}
	ch := 0
	switch w.mode {
	case Hash:
		ch = w.kgOf(v) * w.n / w.maxP
	case Rebalance:
		ch = w.next
		if w.next++; w.next == w.n {
			w.next = 0
		}
	}
	w.scratch = w.scratch[:0]
	if w.ts != nil {
		w.scratch = binary.AppendVarint(w.scratch, *w.ts)
	}
	w.scratch = w.codec.Append(w.scratch, v)
	if w.mode == BroadcastEdge {
		for ch := range w.n {
			w.w.Append(ch, w.scratch)
		}
		return
	}
	w.w.Append(ch, w.scratch)
}

// fanOut hands every record to several writers (a stream with several
// consumers).
type fanOut[T any] []Collector[T]

func (f fanOut[T]) Collect(v T) {
	for _, c := range f {
		c.Collect(v)
	}
}
