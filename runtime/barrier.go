package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// barrierVersion is the first byte of an encoded barrier, so the encoding
// can grow without confusing older TaskManagers.
const barrierVersion = 1

const (
	barrierSavepoint = 1 << iota
	barrierStop
	barrierDrain
)

// EncodeBarrier appends b's wire form to dst.
func EncodeBarrier(dst []byte, b Barrier) []byte {
	var flags byte
	if b.Savepoint {
		flags |= barrierSavepoint
	}
	if b.Stop {
		flags |= barrierStop
	}
	if b.Drain {
		flags |= barrierDrain
	}
	dst = append(dst, barrierVersion, flags)
	dst = binary.AppendVarint(dst, b.ID)
	dst = binary.AppendVarint(dst, b.TimestampMs)
	dst = binary.AppendVarint(dst, int64(len(b.Location)))
	return append(dst, b.Location...)
}

// DecodeBarrier decodes a barrier encoded by EncodeBarrier.
func DecodeBarrier(src []byte) (Barrier, error) {
	if len(src) < 2 || src[0] != barrierVersion {
		return Barrier{}, errors.New("barrier: unknown encoding")
	}
	var b Barrier
	flags := src[1]
	b.Savepoint, b.Stop, b.Drain = flags&barrierSavepoint != 0, flags&barrierStop != 0, flags&barrierDrain != 0
	r := NewReader(src[2:])
	b.ID = r.Varint()
	b.TimestampMs = r.Varint()
	b.Location = string(r.Bytes())
	if err := r.Done(); err != nil {
		return Barrier{}, fmt.Errorf("barrier: %w", err)
	}
	return b, nil
}

// aligner implements barrier alignment for a task with several input
// channels (Flink's aligned checkpoints): once a channel delivers barrier
// N, its later buffers are held back until every channel still open has
// delivered N too, so the snapshot reflects exactly the records before N
// on every input. Held buffers keep their credits, so a blocked channel
// backpressures its producer instead of growing memory.
type aligner struct {
	active  bool
	barrier Barrier
	start   int64 // Unix ns of the first barrier
	seen    []bool
	queued  [][]*Buffer
	lastID  int64 // the newest checkpoint aligned or given up
}

func (a *aligner) init(channels int) {
	a.seen = make([]bool, channels)
	a.queued = make([][]*Buffer, channels)
}

func (a *aligner) blocked(ch int) bool { return a.active && a.seen[ch] }

// takeQueued ends the alignment and hands back the held buffers.
func (a *aligner) takeQueued() [][]*Buffer {
	q := a.queued
	a.queued = make([][]*Buffer, len(q))
	a.active = false
	clear(a.seen)
	return q
}

// onBarrier handles a barrier from channel ch. It reports whether the task
// must go on reading (false when the input is done).
func (t *Task) onBarrier(ch int, b Barrier) bool {
	a := &t.align
	if b.ID <= a.lastID || (a.active && b.ID < a.barrier.ID) {
		return true // from a checkpoint already taken or given up
	}
	if a.active && b.ID > a.barrier.ID {
		// A newer checkpoint overtook the one being aligned (it was
		// aborted): give up the old one and let its held buffers through.
		t.log.Debug("checkpoint alignment abandoned", "checkpoint", a.barrier.ID, "newer", b.ID)
		a.lastID = a.barrier.ID
		if t.releaseQueued() {
			return false
		}
		if b.ID <= a.lastID || (a.active && b.ID < a.barrier.ID) {
			return true
		}
	}
	if !a.active {
		a.active, a.barrier, a.start = true, b, time.Now().UnixNano()
	}
	a.seen[ch] = true
	return t.maybeAligned()
}

// maybeAligned completes the alignment once every open channel delivered
// the barrier. It reports whether the task must go on reading.
func (t *Task) maybeAligned() bool {
	a := &t.align
	if !a.active {
		return true
	}
	for ch, s := range a.seen {
		if !s && !t.eopCh[ch] {
			return true
		}
	}
	b, alignNs := a.barrier, time.Now().UnixNano()-a.start
	a.lastID = b.ID
	t.checkpoint(b, alignNs)
	return !t.releaseQueued()
}

// releaseQueued ends the alignment and processes the held buffers in
// their channels' order. It reports whether the input is done.
func (t *Task) releaseQueued() bool {
	for _, q := range t.align.takeQueued() {
		for i, b := range q {
			if t.handle(b) {
				for _, rest := range q[i+1:] {
					t.io.Input.Recycle(rest)
				}
				return true
			}
		}
	}
	return false
}
