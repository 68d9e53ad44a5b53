package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/connectors/kafka/kafkatest"
	"github.com/weirstream/weir/runtime"
)

type collect[T any] struct{ got []T }

func (c *collect[T]) Collect(v T) { c.got = append(c.got, v) }

// seqRecord is "key:seq" text, decoded by a Raw decoder.
func decodeText(_, v []byte) (string, error) {
	if len(v) == 0 || v[0] == '!' {
		return "", errors.New("bad record")
	}
	return string(v), nil
}

func produceN(t *testing.T, addrs []string, topic string, parts int32, n int, prefix string) {
	t.Helper()
	var rs []*kgo.Record
	for i := range n {
		rs = append(rs, &kgo.Record{Topic: topic, Partition: int32(i) % parts, Value: []byte(prefix + strconv.Itoa(i))})
	}
	kafkatest.Produce(t, addrs, rs...)
}

func newSource(addrs []string, topic string) *Source[string] {
	return &Source[string]{Client: ClientConfig{Brokers: addrs, StartupTimeout: 5 * time.Second}, Topics: []string{topic},
		Decode: Raw(decodeText), Discovery: 50 * time.Millisecond}
}

func openSource(t *testing.T, s *Source[string], sub, par int, entries [][]byte) {
	t.Helper()
	ctx := runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "j", UID: "src", Subtask: sub, Parallelism: par, Restored: entries != nil})
	if err := s.InitializeState(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
}

// pollUntil polls the sources until want records arrived in total.
func pollUntil(t *testing.T, want int, srcs []*Source[string], outs []*collect[string]) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		total := 0
		for i, s := range srcs {
			if _, err := s.Poll(outs[i]); err != nil {
				t.Fatal(err)
			}
			total += len(outs[i].got)
		}
		if total >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d of %d records", total, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestSourceSpreadsPartitionsAndRestoresAtAnotherParallelism(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"in": 8})
	addrs := c.ListenAddrs()
	produceN(t, addrs, "in", 8, 400, "a")

	// Two subtasks read the first 400, then checkpoint.
	var srcs []*Source[string]
	var outs []*collect[string]
	for i := range 2 {
		s := newSource(addrs, "in")
		openSource(t, s, i, 2, nil)
		srcs, outs = append(srcs, s), append(outs, &collect[string]{})
	}
	pollUntil(t, 400, srcs, outs)
	for i, s := range srcs {
		for _, p := range s.order {
			if Owner(p.topic, p.partition, 2) != i {
				t.Errorf("subtask %d reads %s/%d owned by %d", i, p.topic, p.partition, Owner(p.topic, p.partition, 2))
			}
		}
		if len(s.order) != 4 {
			t.Errorf("subtask %d reads %d partitions, want 4", i, len(s.order))
		}
	}
	var union [][]byte
	for _, s := range srcs {
		e, err := s.SnapshotState(1)
		if err != nil {
			t.Fatal(err)
		}
		union = append(union, e...)
		s.Close()
	}
	produceN(t, addrs, "in", 8, 400, "b")

	// Four subtasks restore from the union and read only the new ones.
	seen := map[string]int{}
	for _, o := range outs {
		for _, v := range o.got {
			seen[v]++
		}
	}
	srcs, outs = nil, nil
	for i := range 4 {
		s := newSource(addrs, "in")
		openSource(t, s, i, 4, union)
		srcs, outs = append(srcs, s), append(outs, &collect[string]{})
	}
	pollUntil(t, 400, srcs, outs)
	for _, o := range outs {
		for _, v := range o.got {
			seen[v]++
		}
	}
	for _, p := range []string{"a", "b"} {
		for i := range 400 {
			if n := seen[p+strconv.Itoa(i)]; n != 1 {
				t.Fatalf("record %s%d seen %d times", p, i, n)
			}
		}
	}
	if len(seen) != 800 {
		t.Fatalf("%d distinct records, want 800", len(seen))
	}
}

func TestSourceDiscoversNewPartitionsFromTheirStart(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"grow": 2})
	addrs := c.ListenAddrs()
	s := newSource(addrs, "grow")
	s.Start = Latest
	produceN(t, addrs, "grow", 2, 10, "old") // before the start: not read
	openSource(t, s, 0, 1, nil)
	adm := kadm.NewClient(mustClient(t, addrs))
	if _, err := adm.CreatePartitions(context.Background(), 2, "grow"); err != nil {
		t.Fatal(err)
	}
	// The new partitions 2 and 3 are read from their first record.
	produceN(t, addrs, "grow", 4, 8, "new")
	out := &collect[string]{}
	pollUntil(t, 8, []*Source[string]{s}, []*collect[string]{out})
	for _, v := range out.got {
		if v[:3] != "new" {
			t.Fatalf("read %q from before the start", v)
		}
	}
	if len(s.order) != 4 {
		t.Fatalf("reads %d partitions, want 4", len(s.order))
	}
}

func mustClient(t *testing.T, addrs []string) *kgo.Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func TestSourceStartPositions(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"pos": 1})
	addrs := c.ListenAddrs()
	early := time.Now().Add(-time.Hour).UnixMilli()
	late := time.Now().Add(time.Hour).UnixMilli()
	kafkatest.Produce(t, addrs,
		&kgo.Record{Topic: "pos", Value: []byte("r0"), Timestamp: time.UnixMilli(early)},
		&kgo.Record{Topic: "pos", Value: []byte("r1"), Timestamp: time.UnixMilli(late)},
		&kgo.Record{Topic: "pos", Value: []byte("r2"), Timestamp: time.UnixMilli(late + 1)})
	adm := kadm.NewClient(mustClient(t, addrs))
	o := kadm.Offsets{}
	o.AddOffset("pos", 0, 2, -1)
	if _, err := adm.CommitOffsets(context.Background(), "g", o); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		start StartFrom
		ms    int64
		want  int64 // first offset read
	}{{Earliest, 0, 0}, {Timestamp, late, 1}, {Committed, 0, 2}, {Latest, 0, 3}} {
		s := newSource(addrs, "pos")
		s.Start, s.StartMs, s.Group = tc.start, tc.ms, "g"
		openSource(t, s, 0, 1, nil)
		if got := s.order[0].next; got != tc.want {
			t.Errorf("start %d: first offset %d, want %d", tc.start, got, tc.want)
		}
		s.Close()
	}
}

func TestSourceReadsOnlyCommittedAndDeadLettersBadRecords(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"tx": 1})
	addrs := c.ListenAddrs()
	ctx := context.Background()
	for i, commit := range []kgo.TransactionEndTry{kgo.TryAbort, kgo.TryCommit} {
		p, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.TransactionalID("t"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			v := fmt.Sprintf("txn%d-%d", i, j)
			if j == 1 {
				v = "!bad"
			}
			if err := p.ProduceSync(ctx, &kgo.Record{Topic: "tx", Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
		p.Close()
	}
	produceN(t, addrs, "tx", 1, 1, "last")
	s := newSource(addrs, "tx")
	s.Bounded = true
	openSource(t, s, 0, 1, nil)
	produceN(t, addrs, "tx", 1, 1, "after-the-end")
	out := &collect[string]{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.Poll(out)
		if errors.Is(err, runtime.ErrEndOfInput) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("bounded source: %v after %v", err, out.got)
		}
		time.Sleep(time.Millisecond)
	}
	want := []string{"txn1-0", "txn1-2", "last0"}
	if fmt.Sprint(out.got) != fmt.Sprint(want) {
		t.Fatalf("read %v, want %v (aborted records must not appear)", out.got, want)
	}
	if s.DeadLetters() != 1 {
		t.Fatalf("%d dead letters, want 1 (the committed bad record)", s.DeadLetters())
	}
}

func TestSourceErrorsNameBrokersAndTopics(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	s := newSource([]string{dead}, "in")
	s.Client.StartupTimeout = 500 * time.Millisecond
	s.Client.DialTimeout = 200 * time.Millisecond
	ctx := runtime.NewRuntimeContext(runtime.ContextConfig{})
	s.InitializeState(ctx, nil)
	err = s.Open(ctx)
	if !errors.Is(err, ErrBrokersUnreachable) || !strings.Contains(err.Error(), dead) {
		t.Fatalf("open with no broker: %v, want ErrBrokersUnreachable naming %s", err, dead)
	}
	c := kafkatest.Start(t, map[string]int32{"in": 1})
	s = newSource(c.ListenAddrs(), "nope")
	s.InitializeState(ctx, nil)
	if err := s.Open(ctx); !errors.Is(err, ErrUnknownTopic) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("open on a missing topic: %v", err)
	}
}

func TestParseStartFromAndGuarantee(t *testing.T) {
	if k, ms, err := ParseStartFrom("timestamp:1700000000000"); err != nil || k != Timestamp || ms != 1700000000000 {
		t.Fatalf("timestamp: %v %v %v", k, ms, err)
	}
	for _, bad := range []string{"", "first", "timestamp:", "timestamp:-5"} {
		if _, _, err := ParseStartFrom(bad); err == nil {
			t.Errorf("ParseStartFrom(%q) accepted", bad)
		}
	}
	for _, g := range []Guarantee{ExactlyOnce, AtLeastOnce, None} {
		if got, err := ParseGuarantee(g.String()); err != nil || got != g {
			t.Errorf("guarantee %v round trip: %v %v", g, got, err)
		}
	}
	if _, err := ParseGuarantee("twice"); err == nil {
		t.Error("ParseGuarantee(twice) accepted")
	}
}

func TestSourceTopicRegexFindsNewTopicsAndReportsOffsets(t *testing.T) {
	c := kafkatest.Start(t, map[string]int32{"ev-a": 1, "other": 1})
	addrs := c.ListenAddrs()
	produceN(t, addrs, "ev-a", 1, 3, "a")
	produceN(t, addrs, "other", 1, 3, "o")
	s := newSource(addrs, "")
	s.Topics, s.TopicRegex, s.Group = nil, "ev-.*", "monitor"
	openSource(t, s, 0, 1, nil)
	adm := kadm.NewClient(mustClient(t, addrs))
	if _, err := adm.CreateTopic(context.Background(), 2, -1, nil, "ev-b"); err != nil {
		t.Fatal(err)
	}
	produceN(t, addrs, "ev-b", 2, 4, "b")
	out := &collect[string]{}
	pollUntil(t, 7, []*Source[string]{s}, []*collect[string]{out})
	for _, v := range out.got {
		if v[0] == 'o' {
			t.Fatalf("read %q from a topic the regex does not match", v)
		}
	}
	// Offsets reach the group only once a checkpoint completes.
	if _, err := s.SnapshotState(1); err != nil {
		t.Fatal(err)
	}
	if g, err := adm.FetchOffsets(context.Background(), "monitor"); err == nil {
		if o, ok := g.Lookup("ev-a", 0); ok && o.At >= 0 {
			t.Fatalf("offset %d committed before the checkpoint completed", o.At)
		}
	}
	if err := s.NotifyCheckpointComplete(1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		g, err := adm.FetchOffsets(context.Background(), "monitor")
		if err == nil {
			a, _ := g.Lookup("ev-a", 0)
			b1, _ := g.Lookup("ev-b", 1)
			if a.At == 3 && b1.At == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("group offsets after the checkpoint: %v %v", g, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDecoders(t *testing.T) {
	type tx struct {
		ID     int64   `json:"id"`
		Amount float64 `json:"amount"`
	}
	v, err := JSON[tx]()(&kgo.Record{Value: []byte(`{"id":7,"amount":1.5}`)})
	if err != nil || v != (tx{7, 1.5}) {
		t.Fatalf("json: %+v %v", v, err)
	}
	if _, err := JSON[tx]()(&kgo.Record{Value: []byte(`{"id":`)}); err == nil {
		t.Fatal("truncated JSON decoded")
	}
	parse := CSV(func(f [][]byte) (tx, error) {
		id, err := CSVInt(f, 0, "id")
		if err != nil {
			return tx{}, err
		}
		amt, err := CSVFloat(f, 2, "amount")
		return tx{id, amt}, err
	})
	for in, want := range map[string]tx{"7,x,1.5\n": {7, 1.5}, `8,"a, b",2.25`: {8, 2.25}} {
		if v, err := parse(&kgo.Record{Value: []byte(in)}); err != nil || v != want {
			t.Errorf("csv %q: %+v %v", in, v, err)
		}
	}
	if _, err := parse(&kgo.Record{Value: []byte("7,x")}); err == nil || !strings.Contains(err.Error(), "amount") {
		t.Errorf("short csv row: %v", err)
	}
	d := DeadLetter{Topic: "t", Partition: 3, Offset: 9, Reason: "bad \"json\"", Value: []byte("x\n")}
	got, err := DeadLetterCodec{}.Decode(DeadLetterCodec{}.Append(nil, d))
	if err != nil || got.Topic != "t" || got.Partition != 3 || got.Offset != 9 || got.Reason != d.Reason || string(got.Value) != "x\n" {
		t.Fatalf("dead letter round trip: %+v %v", got, err)
	}
	if j := string(d.AppendJSON(nil)); j != `{"topic":"t","partition":3,"offset":9,"reason":"bad \"json\"","value":"x\n"}` {
		t.Fatalf("dead letter JSON %s", j)
	}
}
