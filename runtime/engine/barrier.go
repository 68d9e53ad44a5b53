package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Barrier is a checkpoint barrier as it travels in-band with the records.
type Barrier struct {
	ID          int64
	TimestampMs int64
	// Location is the URL of the checkpoint's directory; the task's state
	// files are written under it.
	Location string
	// Savepoint marks a savepoint; Stop additionally stops the sources
	// once the savepoint is complete, and Drain fires every pending timer
	// before the snapshot (the processing-time analogue of Flink's
	// MAX_WATERMARK on stop --drain).
	Savepoint, Stop, Drain bool
	// BaseID is the job's latest completed checkpoint (not savepoint)
	// when the job's checkpoints are incremental, else 0: an incremental
	// snapshot may build only on it, because it is retained, and so are
	// the files it refers to, until this checkpoint completes.
	BaseID int64
}

// barrierVersion is the first byte of an encoded barrier, so the encoding
// can grow without confusing older TaskManagers. Version 2 adds BaseID;
// a barrier without one is still written as version 1.
const (
	barrierVersion     = 1
	barrierVersionBase = 2
)

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
	version := byte(barrierVersion)
	if b.BaseID != 0 {
		version = barrierVersionBase
	}
	dst = append(dst, version, flags)
	dst = binary.AppendVarint(dst, b.ID)
	dst = binary.AppendVarint(dst, b.TimestampMs)
	if b.BaseID != 0 {
		dst = binary.AppendVarint(dst, b.BaseID)
	}
	dst = binary.AppendVarint(dst, int64(len(b.Location)))
	return append(dst, b.Location...)
}

var errBarrierTruncated = errors.New("truncated")

// DecodeBarrier decodes a barrier encoded by EncodeBarrier.
func DecodeBarrier(src []byte) (Barrier, error) {
	if len(src) < 2 || (src[0] != barrierVersion && src[0] != barrierVersionBase) {
		return Barrier{}, errors.New("barrier: unknown encoding")
	}
	var b Barrier
	flags := src[1]
	b.Savepoint, b.Stop, b.Drain = flags&barrierSavepoint != 0, flags&barrierStop != 0, flags&barrierDrain != 0
	rest := src[2:]
	vals := make([]int64, 3, 4)
	if src[0] == barrierVersionBase {
		vals = vals[:4]
	}
	for i := range vals {
		v, n := binary.Varint(rest)
		if n <= 0 {
			return Barrier{}, fmt.Errorf("barrier: %w", errBarrierTruncated)
		}
		vals[i], rest = v, rest[n:]
	}
	b.ID, b.TimestampMs = vals[0], vals[1]
	if len(vals) == 4 {
		b.BaseID, vals[2] = vals[2], vals[3]
	}
	if l := vals[2]; l < 0 || l > int64(len(rest)) {
		return Barrier{}, fmt.Errorf("barrier: location of %d bytes: %w", l, errBarrierTruncated)
	} else if l < int64(len(rest)) {
		return Barrier{}, fmt.Errorf("barrier: %d bytes after the location", int64(len(rest))-l)
	}
	b.Location = string(rest)
	return b, nil
}

// Aligner implements barrier alignment for a task with several input
// channels (Flink's aligned checkpoints): once a channel delivers barrier
// N, its later buffers are held back until every channel still open has
// delivered N too, so the snapshot reflects exactly the records before N
// on every input. Held buffers keep their credits, so a blocked channel
// backpressures its producer instead of growing memory.
//
// The Aligner only keeps the state; the task decides what to do with the
// buffers it hands back, since processing them may meet further barriers.
type Aligner struct {
	active  bool
	barrier Barrier
	start   int64 // clock time of the first barrier
	seen    []bool
	ended   []bool
	queued  [][]*Buffer
	lastID  int64 // the newest checkpoint aligned or given up
}

// NewAligner returns an aligner over the given number of channels.
func NewAligner(channels int) *Aligner {
	return &Aligner{seen: make([]bool, channels), ended: make([]bool, channels), queued: make([][]*Buffer, channels)}
}

// Blocked reports whether buffers of channel ch are held back now.
func (a *Aligner) Blocked(ch int) bool { return a.active && a.seen[ch] }

// Hold queues b, from a blocked channel, until the alignment ends.
func (a *Aligner) Hold(b *Buffer) { a.queued[b.Channel] = append(a.queued[b.Channel], b) }

// BarrierStep is what the task does with a barrier it received.
type BarrierStep uint8

const (
	// BarrierIgnore: the barrier belongs to a checkpoint already taken or
	// given up.
	BarrierIgnore BarrierStep = iota
	// BarrierOvertaken: a newer checkpoint overtook the one being aligned
	// (that one was aborted). The task takes the held buffers with
	// Release, processes them, and offers the barrier again.
	BarrierOvertaken
	// BarrierAccepted: the barrier counts; the task asks Aligned whether
	// the alignment is complete.
	BarrierAccepted
)

// OnBarrier records barrier b of channel ch, received at now (clock time).
func (a *Aligner) OnBarrier(ch int, b Barrier, now int64) BarrierStep {
	if b.ID <= a.lastID || (a.active && b.ID < a.barrier.ID) {
		return BarrierIgnore
	}
	if a.active && b.ID > a.barrier.ID {
		a.lastID = a.barrier.ID
		return BarrierOvertaken
	}
	if !a.active {
		a.active, a.barrier, a.start = true, b, now
	}
	a.seen[ch] = true
	return BarrierAccepted
}

// Pending is the checkpoint being aligned, if any.
func (a *Aligner) Pending() (Barrier, bool) { return a.barrier, a.active }

// EndOfPartition marks channel ch ended: the alignment stops waiting for
// it.
func (a *Aligner) EndOfPartition(ch int) { a.ended[ch] = true }

// Aligned reports whether every open channel delivered the pending
// barrier; if so it returns the barrier and how long the alignment took,
// and the task snapshots, then calls Release.
func (a *Aligner) Aligned(now int64) (Barrier, int64, bool) {
	if !a.active {
		return Barrier{}, 0, false
	}
	for ch, s := range a.seen {
		if !s && !a.ended[ch] {
			return Barrier{}, 0, false
		}
	}
	a.lastID = a.barrier.ID
	return a.barrier, now - a.start, true
}

// Release ends the alignment and hands back the held buffers, per channel
// in arrival order.
func (a *Aligner) Release() [][]*Buffer {
	q := a.queued
	a.queued = make([][]*Buffer, len(q))
	a.active = false
	clear(a.seen)
	return q
}
