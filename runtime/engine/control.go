package engine

import (
	"errors"
	"sync"
)

// ControlKind says what a Control asks of a task.
type ControlKind uint8

const (
	// ControlTrigger asks a source task to take a checkpoint and emit its
	// barrier.
	ControlTrigger ControlKind = iota
	// ControlComplete tells the task a checkpoint is complete.
	ControlComplete
	// ControlAbort tells the task a checkpoint was aborted.
	ControlAbort
)

// Control is a request from outside the task goroutine, handled between
// batches like every other mailbox action.
type Control struct {
	Kind    ControlKind
	Barrier Barrier // ControlTrigger
	ID      int64   // ControlComplete, ControlAbort
}

// ErrMailboxClosed is returned by Trigger once the task's loop has ended.
var ErrMailboxClosed = errors.New("has ended")

// ErrMailboxFull is returned by Trigger when requests pile up unhandled.
var ErrMailboxFull = errors.New("has too many pending requests")

// Mailbox carries control requests to a task's goroutine. Its methods
// are safe for concurrent use; the task reads C.
type Mailbox struct {
	c chan Control
	// mu orders Trigger against Close: once closed, triggers are refused,
	// and those queued before are handed back to be declined, so no
	// checkpoint waits for a task that is gone.
	mu     sync.Mutex
	closed bool
}

// NewMailbox returns a mailbox holding up to size pending requests.
func NewMailbox(size int) *Mailbox { return &Mailbox{c: make(chan Control, size)} }

// C delivers the requests to the task.
func (m *Mailbox) C() <-chan Control { return m.c }

// Trigger queues a checkpoint trigger, or fails with ErrMailboxClosed or
// ErrMailboxFull; it never blocks.
func (m *Mailbox) Trigger(b Barrier) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrMailboxClosed
	}
	select {
	case m.c <- Control{Kind: ControlTrigger, Barrier: b}:
		return nil
	default:
		return ErrMailboxFull
	}
}

// Notify queues a completion or abort notice. When the mailbox is full it
// is dropped: a later notification implies this one.
func (m *Mailbox) Notify(kind ControlKind, id int64) {
	select {
	case m.c <- Control{Kind: kind, ID: id}:
	default:
	}
}

// Close refuses later triggers and returns the triggers still queued, for
// the task to decline.
func (m *Mailbox) Close() []Barrier {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	var pending []Barrier
	for {
		select {
		case c := <-m.c:
			if c.Kind == ControlTrigger {
				pending = append(pending, c.Barrier)
			}
		default:
			return pending
		}
	}
}
