package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/connectors/kafka/kafkatest"
	"github.com/weirstream/weir/runtime"
)

func encodeText(r *kgo.Record, v string) {
	r.Key = append(r.Key, v[:1]...)
	r.Value = append(r.Value, v...)
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: "src", Value: []byte("test")})
}

func newSink(t *testing.T, addrs []string, g Guarantee, sub, par int, entries [][]byte) *Sink[string] {
	t.Helper()
	s := &Sink[string]{Client: ClientConfig{Brokers: addrs}, Topic: "out", Encode: encodeText, Guarantee: g}
	ctx := runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "job1", UID: "sink", Subtask: sub, Parallelism: par, Restored: entries != nil})
	if err := s.InitializeState(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func write(t *testing.T, s *Sink[string], prefix string, n int) {
	t.Helper()
	for i := range n {
		if err := s.Invoke(prefix + strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func committed(t *testing.T, addrs []string, parts int32) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, r := range kafkatest.ReadCommitted(t, addrs, "out", parts, 20*time.Second) {
		m[string(r.Value)]++
		if string(r.Key) != string(r.Value[:1]) || len(r.Headers) != 1 || r.Headers[0].Key != "src" {
			t.Fatalf("record %q has key %q headers %v", r.Value, r.Key, r.Headers)
		}
	}
	return m
}

func expectOnce(t *testing.T, m map[string]int, prefix string, n int) {
	t.Helper()
	for i := range n {
		if c := m[prefix+strconv.Itoa(i)]; c != 1 {
			t.Fatalf("record %s%d committed %d times, want once", prefix, i, c)
		}
	}
}

func TestSinkCommitsWhenTheCheckpointCompletes(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"out": 3})
	addrs := c.ListenAddrs()
	s := newSink(t, addrs, ExactlyOnce, 0, 1, nil)
	defer s.Close()
	write(t, s, "a", 100)
	if _, err := s.SnapshotState(1); err != nil {
		t.Fatal(err)
	}
	write(t, s, "b", 10) // after the barrier: the next transaction
	// Pre-committed only: a read-committed reader is held at the open
	// transaction and sees nothing yet.
	if _, err := readCommittedErr(addrs, 3, time.Second); err == nil {
		t.Fatal("records visible before their checkpoint completed")
	}
	if err := s.NotifyCheckpointComplete(1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SnapshotState(2); err != nil {
		t.Fatal(err)
	}
	if err := s.NotifyCheckpointComplete(2); err != nil {
		t.Fatal(err)
	}
	m := committed(t, addrs, 3)
	expectOnce(t, m, "a", 100)
	expectOnce(t, m, "b", 10)
	if len(m) != 110 {
		t.Fatalf("%d records, want 110", len(m))
	}
}

func readCommittedErr(addrs []string, parts int32, within time.Duration) (int, error) {
	rs, err := kafkatest.ReadCommittedErr(addrs, "out", parts, within)
	return len(rs), err
}

// TestSinkRestoreCommitsPreCommittedAndAbortsTheRest kills a sink after a
// checkpoint's pre-commit but before its completion notice, with records
// of later transactions open, and restores a new one from the checkpoint:
// the checkpoint's records are committed once, the others never, and the
// old producer is fenced.
func TestSinkRestoreCommitsPreCommittedAndAbortsTheRest(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"out": 2})
	addrs := c.ListenAddrs()
	old := newSink(t, addrs, ExactlyOnce, 0, 1, nil)
	write(t, old, "a", 50)
	entries, err := old.SnapshotState(1)
	if err != nil {
		t.Fatal(err)
	}
	write(t, old, "lost", 20)
	if _, err := old.SnapshotState(2); err != nil { // a checkpoint that never completes
		t.Fatal(err)
	}
	write(t, old, "lost-too", 20)
	if err := old.cur.cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The old attempt is gone without a word (its producers stay open,
	// as a SIGKILLed process's transactions do).

	restored := newSink(t, addrs, ExactlyOnce, 0, 1, entries)
	defer restored.Close()
	write(t, restored, "b", 30)
	if _, err := restored.SnapshotState(3); err != nil {
		t.Fatal(err)
	}
	if err := restored.NotifyCheckpointComplete(3); err != nil {
		t.Fatal(err)
	}
	m := committed(t, addrs, 2)
	expectOnce(t, m, "a", 50)
	expectOnce(t, m, "b", 30)
	if len(m) != 80 {
		t.Fatalf("%d distinct records committed, want 80 (nothing of the failed attempt's open transactions)", len(m))
	}
	// The zombie cannot commit what it had pre-committed for checkpoint 2.
	if err := old.NotifyCheckpointComplete(2); err == nil {
		t.Fatal("the failed attempt's producer committed after the restore")
	}

	// Restoring again from the same checkpoint commits nothing twice.
	again := newSink(t, addrs, ExactlyOnce, 0, 1, entries)
	again.Close()
	if m := committed(t, addrs, 2); len(m) != 80 || m["a0"] != 1 {
		t.Fatalf("after a second restore: %d records, a0 %d times", len(m), m["a0"])
	}
}

func TestSinkRescalesItsTransactions(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"out": 4})
	addrs := c.ListenAddrs()
	var union [][]byte
	for i := range 3 {
		s := newSink(t, addrs, ExactlyOnce, i, 3, nil)
		write(t, s, "s"+strconv.Itoa(i)+"-", 10)
		e, err := s.SnapshotState(7)
		if err != nil {
			t.Fatal(err)
		}
		union = append(union, e...)
		write(t, s, "open"+strconv.Itoa(i)+"-", 5)
		if err := s.cur.cl.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// One subtask takes over all three: commits their checkpoint-7
	// transactions and aborts their open ones.
	s := newSink(t, addrs, ExactlyOnce, 0, 1, union)
	defer s.Close()
	m := committed(t, addrs, 4)
	for i := range 3 {
		expectOnce(t, m, "s"+strconv.Itoa(i)+"-", 10)
	}
	if len(m) != 30 {
		t.Fatalf("%d records, want 30", len(m))
	}
}

func TestSinkTransactionTimeoutFailsTheRestore(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"out": 1})
	addrs := c.ListenAddrs()
	s := &Sink[string]{Client: ClientConfig{Brokers: addrs}, Topic: "out", Encode: encodeText, TransactionTimeout: 300 * time.Millisecond}
	ctx := runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "job2", UID: "sink"})
	if err := s.InitializeState(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write(t, s, "x", 5)
	entries, err := s.SnapshotState(1)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the broker aborts the transaction
	kafkatest.Produce(t, addrs, &kgo.Record{Topic: "out", Value: []byte("tick")})
	if err := s.NotifyCheckpointComplete(1); err == nil {
		t.Fatal("committed a transaction the broker had aborted")
	}
	r := &Sink[string]{Client: ClientConfig{Brokers: addrs}, Topic: "out", Encode: encodeText, TransactionTimeout: 300 * time.Millisecond}
	err = r.InitializeState(runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "job2", UID: "sink", Restored: true}), entries)
	if !errors.Is(err, runtime.ErrUnrecoverable) {
		t.Fatalf("restore over an aborted transaction: %v, want an unrecoverable error", err)
	}
	r.SkipLostTransactions = true
	if err := r.InitializeState(runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "job2", UID: "sink", Restored: true}), entries); err != nil {
		t.Fatalf("restore skipping lost transactions: %v", err)
	}
	r.Close()
}

func TestSinkAtLeastOnceFlushesAtTheBarrier(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"out": 2})
	addrs := c.ListenAddrs()
	for _, g := range []Guarantee{AtLeastOnce, None} {
		s := newSink(t, addrs, g, 0, 1, nil)
		write(t, s, g.String(), 40)
		if _, err := s.SnapshotState(1); err != nil {
			t.Fatal(err)
		}
		if g == None {
			if err := s.EndInput(); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
	}
	m := committed(t, addrs, 2)
	expectOnce(t, m, "at-least-once", 40)
	expectOnce(t, m, "none", 40)
}

func TestSinkEndInputCommitsEverything(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"out": 1})
	addrs := c.ListenAddrs()
	s := newSink(t, addrs, ExactlyOnce, 0, 1, nil)
	write(t, s, "p", 10)
	if _, err := s.SnapshotState(1); err != nil {
		t.Fatal(err)
	}
	write(t, s, "q", 10)
	if err := s.EndInput(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	m := committed(t, addrs, 1)
	expectOnce(t, m, "p", 10)
	expectOnce(t, m, "q", 10)
}

func TestSinkCreatesAMissingTopicWhenAsked(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"other": 1})
	addrs := c.ListenAddrs()
	s := &Sink[string]{Client: ClientConfig{Brokers: addrs, StartupTimeout: time.Second}, Topic: "out", Encode: encodeText}
	ctx := runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "j", UID: "u"})
	if err := s.InitializeState(ctx, nil); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("missing topic: %v", err)
	}
	s.CreateTopicPartitions = 2
	if err := s.InitializeState(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	write(t, s, "c", 3)
	if err := s.EndInput(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	expectOnce(t, committed(t, addrs, 2), "c", 3)
}

// TestSinkOverlappingCheckpoints runs a later checkpoint's asynchronous
// part before an earlier one's has finished: its state must still carry
// the earlier transaction's producer ID, so a restore from it commits both.
func TestSinkOverlappingCheckpoints(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"out": 1})
	addrs := c.ListenAddrs()
	s := newSink(t, addrs, ExactlyOnce, 0, 1, nil)
	write(t, s, "one", 5)
	first, err := s.SnapshotStateAsync(1)
	if err != nil {
		t.Fatal(err)
	}
	write(t, s, "two", 5)
	second, err := s.SnapshotStateAsync(2)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan [][]byte)
	go func() {
		e, err := second(context.Background())
		if err != nil {
			t.Error(err)
		}
		done <- e
	}()
	if _, err := first(context.Background()); err != nil {
		t.Fatal(err)
	}
	entries := <-done
	// The first attempt dies; a restore from checkpoint 2 commits both.
	r := newSink(t, addrs, ExactlyOnce, 0, 1, entries)
	defer r.Close()
	m := committed(t, addrs, 1)
	expectOnce(t, m, "one", 5)
	expectOnce(t, m, "two", 5)
}

// TestSinkScaleDownAndUpKeepsPositions takes two sink subtasks down to one
// and back to two: the second resumes after the IDs it used before instead
// of probing all of them again, and the output stays exactly once.
func TestSinkScaleDownAndUpKeepsPositions(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"out": 2})
	addrs := c.ListenAddrs()
	var union [][]byte
	for i := range 2 {
		s := newSink(t, addrs, ExactlyOnce, i, 2, nil)
		for cp := int64(1); cp <= 4; cp++ {
			write(t, s, fmt.Sprintf("p2-%d-%d-", i, cp), 3)
			e, err := s.SnapshotState(cp)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.NotifyCheckpointComplete(cp); err != nil {
				t.Fatal(err)
			}
			if cp == 4 {
				union = append(union, e...)
			}
		}
		s.Close()
	}
	one := newSink(t, addrs, ExactlyOnce, 0, 1, union)
	write(t, one, "p1-", 3)
	e, err := one.SnapshotState(5)
	if err != nil {
		t.Fatal(err)
	}
	if err := one.NotifyCheckpointComplete(5); err != nil {
		t.Fatal(err)
	}
	one.Close()
	second := newSink(t, addrs, ExactlyOnce, 1, 2, e)
	defer second.Close()
	if second.nextSeq < 4 || second.fenced > 1 {
		t.Fatalf("subtask 1 resumes at transaction %d after probing %d used IDs; want at 4 or later, probing at most 1", second.nextSeq, second.fenced)
	}
	m := committed(t, addrs, 2)
	if len(m) != 27 {
		t.Fatalf("%d records committed, want 27", len(m))
	}
}
