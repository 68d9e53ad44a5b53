package taskmanager

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/leader"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// outbox delivers what the JobManager leader must hear from this
// TaskManager (task states, checkpoint acknowledgements and declines,
// checkpoint requests) in the order it was posted, over the link of the
// current registration. While the TaskManager is not registered (the leader
// is lost, or not found yet) messages wait; once it has registered again
// they go to the new leader. A message is dropped only when the leader
// refuses it for good: the task or checkpoint is unknown to it or stale
// (NotFound, FailedPrecondition) or the message is malformed
// (InvalidArgument, Unimplemented). Anything else is retried, with backoff.
//
// One goroutine, run, delivers; it stops with its context. post, connect
// and disconnect never block on the JobManager.
type outbox struct {
	log *slog.Logger

	mu      sync.Mutex
	queue   []*outMessage
	link    *leaderLink   // nil while not registered
	changed chan struct{} // closed and replaced on every change of queue or link
}

// outMessage is one call the JobManager must receive.
type outMessage struct {
	what string // for logs: "task state RUNNING", "acknowledge checkpoint 7"
	task taskKey
	// final is set on a task's last state update: until it is delivered,
	// a registration lists the task in this state.
	final *weirv1.RunningTask
	call  func(context.Context, weirv1.JobManagerClient) error
}

// leaderLink is a registration with a leader: its client, and lost, which
// ends the registration when a call finds that the member is no longer the
// leader.
type leaderLink struct {
	addr string
	jm   weirv1.JobManagerClient
	lost func(error)
	gone chan struct{} // closed by disconnect
}

// Delivery timing: one attempt's deadline and the retry backoff.
const (
	callTimeout = 10 * time.Second
	retryMin    = 100 * time.Millisecond
	retryMax    = 5 * time.Second
)

func newOutbox(log *slog.Logger) *outbox {
	return &outbox{log: log, changed: make(chan struct{})}
}

// changedLocked wakes the waiters. o.mu must be held.
func (o *outbox) changedLocked() {
	close(o.changed)
	o.changed = make(chan struct{})
}

// post queues m behind every message posted before it.
func (o *outbox) post(m *outMessage) {
	o.mu.Lock()
	o.queue = append(o.queue, m)
	o.changedLocked()
	o.mu.Unlock()
}

// connect starts delivering over l: the TaskManager has registered.
func (o *outbox) connect(l *leaderLink) {
	l.gone = make(chan struct{})
	o.mu.Lock()
	if o.link != nil {
		close(o.link.gone)
	}
	o.link = l
	o.changedLocked()
	o.mu.Unlock()
}

// disconnect stops delivering over l, if it is still the link.
func (o *outbox) disconnect(l *leaderLink) {
	o.mu.Lock()
	if o.link == l {
		close(l.gone)
		o.link = nil
		o.changedLocked()
	}
	o.mu.Unlock()
}

// finals lists the tasks whose final state is not delivered yet.
func (o *outbox) finals() []*weirv1.RunningTask {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*weirv1.RunningTask
	for _, m := range o.queue {
		if m.final != nil {
			out = append(out, m.final)
		}
	}
	return out
}

// next waits for a message to deliver and a link to deliver it over.
func (o *outbox) next(ctx context.Context) (*outMessage, *leaderLink, bool) {
	for {
		o.mu.Lock()
		if len(o.queue) > 0 && o.link != nil {
			m, l := o.queue[0], o.link
			o.mu.Unlock()
			return m, l, true
		}
		changed := o.changed
		o.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, nil, false
		}
	}
}

// done removes the delivered (or dropped) head message m.
func (o *outbox) done(m *outMessage) {
	o.mu.Lock()
	if len(o.queue) > 0 && o.queue[0] == m {
		o.queue[0] = nil
		o.queue = o.queue[1:]
		o.changedLocked()
	}
	o.mu.Unlock()
}

// flush waits until every message is delivered, the link is lost or ctx
// ends. It returns how many messages are left.
func (o *outbox) flush(ctx context.Context) int {
	for {
		o.mu.Lock()
		n, linked, changed := len(o.queue), o.link != nil, o.changed
		o.mu.Unlock()
		if n == 0 || !linked {
			return n
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return n
		}
	}
}

// run delivers messages until ctx ends.
func (o *outbox) run(ctx context.Context) {
	backoff := retryMin
	var prev *leaderLink
	for {
		m, l, ok := o.next(ctx)
		if !ok {
			return
		}
		if l != prev {
			prev, backoff = l, retryMin
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := m.call(cctx, l.jm)
		cancel()
		if ctx.Err() != nil {
			return
		}
		log := o.log.With("job_id", m.task.job, "vertex_id", m.task.vertex, "subtask", m.task.subtask,
			"attempt", m.task.attempt, "jobmanager_address", l.addr)
		if _, redirected := leader.Redirect(err); redirected {
			// The member is no longer the leader: register anew, with the
			// leader, and deliver there.
			log.Debug("the JobManager is not the leader; registering with the leader", "message", m.what, "err", err)
			o.disconnect(l)
			l.lost(fmt.Errorf("%s: %w", m.what, err))
			continue
		}
		switch status.Code(err) {
		case codes.OK:
			o.done(m)
			backoff = retryMin
			continue
		case codes.NotFound, codes.FailedPrecondition, codes.InvalidArgument, codes.Unimplemented:
			log.Info("the JobManager leader refused a message; dropped", "message", m.what, "err", err)
			o.done(m)
			continue
		}
		log.Debug("delivering to the JobManager failed; retrying", "message", m.what, "in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-l.gone: // a new registration: try there at once
		case <-ctx.Done():
		}
		t.Stop()
		backoff = min(2*backoff, retryMax)
	}
}
