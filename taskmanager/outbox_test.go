package taskmanager

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/leader"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// scriptedJobManager answers UpdateTaskState for subtask i with answers[i]
// in turn (OK once they run out) and records the subtasks it was called
// for.
type scriptedJobManager struct {
	weirv1.JobManagerClient // nil: other methods are not called
	mu                      sync.Mutex
	answers                 map[int][]error
	calls                   []int
}

func (s *scriptedJobManager) UpdateTaskState(_ context.Context, u *weirv1.TaskStateUpdate, _ ...grpc.CallOption) (*weirv1.TaskStateAck, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := int(u.GetTask().GetSubtask())
	s.calls = append(s.calls, i)
	if a := s.answers[i]; len(a) > 0 {
		s.answers[i] = a[1:]
		return nil, a[0]
	}
	return &weirv1.TaskStateAck{}, nil
}

func (s *scriptedJobManager) called() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func update(subtask int) *outMessage {
	key := taskKey{job: "j", subtask: subtask}
	return &outMessage{what: "task state", task: key, call: func(ctx context.Context, jm weirv1.JobManagerClient) error {
		_, err := jm.UpdateTaskState(ctx, &weirv1.TaskStateUpdate{Task: key.proto()})
		return err
	}}
}

// Messages wait for a registration, go in order, the head is retried while
// the leader is unavailable and dropped when it is refused for good; a
// NOT_LEADER answer ends the registration and waits for the next.
func TestOutboxDeliversInOrderToTheRegisteredLeader(t *testing.T) {
	o := newOutbox(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.run(ctx) }()
	defer func() { cancel(); <-done }()

	for i := range 4 {
		o.post(update(i))
	}
	unavailable := status.Error(codes.Unavailable, "connection refused")
	jm := &scriptedJobManager{answers: map[int][]error{
		0: {unavailable, unavailable},
		1: {status.Error(codes.NotFound, "no such task")},
		2: {leader.NotLeaderError("jm-1", "jm-2", "127.0.0.1:2")},
	}}
	lost := make(chan error, 1)
	l := &leaderLink{addr: "jm-1", jm: jm, lost: func(err error) { lost <- err }}
	if got := jm.called(); len(got) != 0 {
		t.Fatalf("delivered %v before a registration", got)
	}
	o.connect(l)
	var err error
	select {
	case err = <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the NOT_LEADER answer did not end the registration")
	}
	if _, ok := leader.Redirect(err); !ok {
		t.Errorf("the link was lost with %v, want the NOT_LEADER answer", err)
	}
	if got, want := jm.called(), []int{0, 0, 0, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	if n := o.flush(ctx); n != 2 {
		t.Fatalf("after NOT_LEADER, flush left %d messages, want 2 waiting for a registration", n)
	}

	next := &scriptedJobManager{}
	o.connect(&leaderLink{addr: "jm-2", jm: next, lost: func(error) {}})
	if n := o.flush(ctx); n != 0 {
		t.Fatalf("flush left %d messages", n)
	}
	if got, want := next.called(), []int{2, 3}; !slices.Equal(got, want) {
		t.Errorf("the next leader got %v, want %v", got, want)
	}
}
