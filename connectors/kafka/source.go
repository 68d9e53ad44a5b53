package kafka

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/runtime"
)

// StartFrom says where a source reads partitions it has no checkpointed
// offset for, on a fresh start. Partitions discovered later, while the job
// runs, always start at their earliest offset (all of their records are
// new).
type StartFrom int

const (
	// Earliest reads from the first retained record.
	Earliest StartFrom = iota
	// Latest reads only records produced after the start (the last
	// stable offset under read-committed isolation).
	Latest
	// Timestamp reads from the first record at or after StartMs.
	Timestamp
	// Committed reads from the consumer group's committed offsets, and
	// from the earliest offset where the group has none.
	Committed
)

// ParseStartFrom reads "earliest", "latest", "committed" or
// "timestamp:<unix ms>".
func ParseStartFrom(s string) (StartFrom, int64, error) {
	switch s {
	case "earliest":
		return Earliest, 0, nil
	case "latest":
		return Latest, 0, nil
	case "committed":
		return Committed, 0, nil
	}
	var ms int64
	if _, err := fmt.Sscanf(s, "timestamp:%d", &ms); err == nil && ms >= 0 {
		return Timestamp, ms, nil
	}
	return 0, 0, fmt.Errorf("start %q: use earliest, latest, committed or timestamp:<unix ms>", s)
}

// Source reads topics into a stream. See the package documentation for
// how partitions, offsets and restores work.
type Source[T any] struct {
	Client ClientConfig
	// Topics lists the topics to read; TopicRegex instead matches topic
	// names (anchored), re-evaluated at every discovery.
	Topics     []string
	TopicRegex string
	// Group is the consumer group whose offsets Start=Committed reads and
	// to which completed checkpoints' offsets are reported for
	// monitoring; empty for none.
	Group   string
	Start   StartFrom
	StartMs int64 // with Start = Timestamp
	Decode  Decoder[T]
	// Discovery is how often new partitions and topics are looked for
	// (default 10s; negative disables).
	Discovery time.Duration
	// MaxPollRecords bounds the records one Poll emits (default 500).
	MaxPollRecords int
	// Bounded ends the source once it has read every partition up to
	// its last stable offset at the start (a backfill, or a test); no
	// partitions are discovered then.
	Bounded bool

	rc       *runtime.RuntimeContext
	cl       *kgo.Client
	adm      *kadm.Client
	re       *regexp.Regexp
	dead     runtime.Collector[DeadLetter]
	restored map[tp]int64 // offsets from the checkpoint for partitions this subtask owns
	parts    map[tp]*partition
	order    []*partition // parts in assignment order, for snapshots
	// discovered is the assignment found by the background discovery.
	discovered chan map[tp]int64
	stop       context.CancelFunc
	wg         sync.WaitGroup
	// pending checkpoints' offsets, reported to the group once complete.
	pending   []checkpointOffsets
	reporting chan struct{}
	badCount  int64
	stopAt    map[tp]int64 // Bounded: the end offsets
	// mu guards parts against the discovery goroutine's copy.
	mu sync.Mutex
}

type tp struct {
	topic     string
	partition int32
}

type partition struct {
	tp
	next int64 // the offset of the next record to emit
	// The partition's watermark generator (EventTime): the newest event
	// timestamp read and when the partition last had a record (Unix ns).
	// Not checkpointed: a restored or reassigned partition starts afresh.
	maxTs, activeAt int64
}

type checkpointOffsets struct {
	id      int64
	offsets map[tp]int64
}

// entryVersion starts every state entry.
const sourceEntryVersion = 1

// Owner returns the source subtask (0..parallelism-1) that reads a
// partition: the partitions of one topic are spread round-robin starting
// at a subtask given by the topic's hash, so the assignment is the same in
// every process and for every restart at the same parallelism.
func Owner(topic string, partition int32, parallelism int) int {
	h := fnv.New32a()
	h.Write([]byte(topic))
	start := int(h.Sum32() % uint32(parallelism))
	return (start + int(partition)) % parallelism
}

// InitializeState keeps the restored offsets of the partitions this
// subtask owns at its current parallelism (the entries of all old
// subtasks arrive: union redistribution).
func (s *Source[T]) InitializeState(ctx *runtime.RuntimeContext, entries [][]byte) error {
	s.restored = map[tp]int64{}
	for _, e := range entries {
		r := runtime.NewReader(e)
		if len(e) == 0 || e[0] != sourceEntryVersion {
			return fmt.Errorf("kafka source: state entry of version %d: %w", firstByte(e), runtime.ErrCorrupt)
		}
		r = runtime.NewReader(e[1:])
		topic, part, next := string(r.Bytes()), r.Varint(), r.Varint()
		if err := r.Done(); err != nil || next < 0 || part < 0 || part > 1<<31-1 {
			return fmt.Errorf("kafka source: state entry: %w", runtime.ErrCorrupt)
		}
		if Owner(topic, int32(part), ctx.Parallelism()) == ctx.SubtaskIndex() {
			s.restored[tp{topic, int32(part)}] = next
		}
	}
	return nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// Open checks the brokers and topics, resolves start offsets and starts
// fetching.
func (s *Source[T]) Open(ctx *runtime.RuntimeContext) error {
	s.rc = ctx
	if s.Decode == nil {
		return fmt.Errorf("kafka source: no decoder")
	}
	if len(s.Topics) == 0 && s.TopicRegex == "" {
		return fmt.Errorf("kafka source: no topics and no topic regex")
	}
	if s.TopicRegex != "" {
		re, err := regexp.Compile("^(?:" + s.TopicRegex + ")$")
		if err != nil {
			return fmt.Errorf("kafka source: topic regex: %w", err)
		}
		s.re = re
	}
	if s.Start == Committed && s.Group == "" {
		return fmt.Errorf("kafka source: start from committed offsets needs a group")
	}
	if s.MaxPollRecords <= 0 {
		s.MaxPollRecords = 500
	}
	if s.Discovery == 0 {
		s.Discovery = 10 * time.Second
	}
	if s.Bounded {
		s.Discovery = -1
	}
	s.dead = &deadLetters{out: runtime.SideCollector(ctx, DeadLetterTag), rc: ctx}
	opts, err := s.Client.options()
	if err != nil {
		return err
	}
	s.parts = map[tp]*partition{}
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka source: %w", err)
	}
	s.adm = kadm.NewClient(admCl)
	first := !ctx.IsRestored()
	assign, err := s.assignment(ctx.Context(), first, true, nil)
	if err != nil {
		s.adm.Close()
		return fmt.Errorf("kafka source: %w", err)
	}
	start := map[string]map[int32]kgo.Offset{}
	s.add(assign, start)
	if s.Bounded {
		if err := s.endOffsets(ctx.Context()); err != nil {
			s.adm.Close()
			return fmt.Errorf("kafka source: %w", err)
		}
	}
	opts = append(opts,
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers advance the position too, so a checkpoint
		// (and a bounded source's end) is exact after a transaction.
		kgo.KeepControlRecords(),
		kgo.ConsumePartitions(start),
		// Bounded reads: what one fetch and one partition may return (a
		// single larger record still comes whole, up to the broker limit).
		kgo.FetchMaxBytes(16<<20),
		kgo.FetchMaxPartitionBytes(1<<20),
		kgo.BrokerMaxReadBytes(64<<20),
		// No incremental fetch sessions (KIP-227): franz-go v1.22.3's
		// Close kills a source's session while its last fetch may still be
		// updating it (a data race the race detector reports). A subtask
		// reads few partitions, so full fetch requests cost little.
		kgo.DisableFetchSessions(),
	)
	if s.cl, err = kgo.NewClient(opts...); err != nil {
		s.adm.Close()
		return fmt.Errorf("kafka source: %w", err)
	}
	s.discovered = make(chan map[tp]int64, 1)
	s.reporting = make(chan struct{}, 1)
	bg, cancel := context.WithCancel(ctx.Context())
	s.stop = cancel
	if s.Discovery > 0 {
		s.wg.Add(1)
		go s.discover(bg)
	}
	ctx.Logger().Info("kafka source reading", "partitions", len(s.order), "brokers", s.Client.Brokers)
	return nil
}

// endOffsets fixes where a bounded source stops.
func (s *Source[T]) endOffsets(ctx context.Context) error {
	s.stopAt = map[tp]int64{}
	var topics []string
	for _, p := range s.order {
		if !slices.Contains(topics, p.topic) {
			topics = append(topics, p.topic)
		}
	}
	if len(topics) == 0 {
		return nil
	}
	lo, err := s.adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("listing end offsets: %w", err)
	}
	for _, p := range s.order {
		l, ok := lo.Lookup(p.topic, p.partition)
		if !ok || l.Err != nil {
			return fmt.Errorf("no end offset for %s/%d: %v", p.topic, p.partition, l.Err)
		}
		s.stopAt[p.tp] = l.Offset
	}
	return nil
}

// atEnd reports whether a bounded source has read all it should.
func (s *Source[T]) atEnd() bool {
	for _, p := range s.order {
		if p.next < s.stopAt[p.tp] {
			return false
		}
	}
	return true
}

// add registers newly assigned partitions and their start offsets.
func (s *Source[T]) add(assign map[tp]int64, start map[string]map[int32]kgo.Offset) {
	keys := make([]tp, 0, len(assign))
	for k := range assign {
		if s.parts[k] == nil {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b tp) int {
		if a.topic != b.topic {
			if a.topic < b.topic {
				return -1
			}
			return 1
		}
		return int(a.partition - b.partition)
	})
	now := time.Now().UnixNano()
	for _, k := range keys {
		p := &partition{tp: k, next: assign[k], maxTs: runtime.NoTimestamp, activeAt: now}
		s.parts[k] = p
		s.order = append(s.order, p)
		if start[k.topic] == nil {
			start[k.topic] = map[int32]kgo.Offset{}
		}
		start[k.topic][k.partition] = kgo.NewOffset().At(p.next)
	}
}

// assignment lists the partitions this subtask owns and resolves the
// start offset of those not in known (the partitions read already).
// initial says whether the configured start position applies (the first
// discovery of a fresh start) or the earliest offset (partitions that
// appeared later). It reads only immutable fields of s and the
// thread-safe admin client, so the discovery goroutine may call it.
func (s *Source[T]) assignment(ctx context.Context, initial, startup bool, known map[tp]bool) (map[tp]int64, error) {
	var (
		td  kadm.TopicDetails
		err error
	)
	if startup {
		td, err = s.Client.checkTopics(ctx, s.adm, s.Topics...)
	} else {
		td, err = s.adm.ListTopics(ctx, s.Topics...)
	}
	if err != nil {
		return nil, err
	}
	sub, par := s.rc.SubtaskIndex(), s.rc.Parallelism()
	owned := map[string][]int32{}
	for name, d := range td {
		if d.Err != nil || d.IsInternal || (s.re != nil && !s.re.MatchString(name)) {
			continue
		}
		for p := range d.Partitions {
			if Owner(name, p, par) == sub {
				owned[name] = append(owned[name], p)
			}
		}
	}
	out := map[tp]int64{}
	var missing []string
	seen := map[string]bool{}
	for topic, ps := range owned {
		for _, p := range ps {
			k := tp{topic, p}
			if known[k] {
				continue
			}
			if off, ok := s.restored[k]; ok {
				out[k] = off
				continue
			}
			out[k] = -1
			if !seen[topic] {
				seen[topic] = true
				missing = append(missing, topic)
			}
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	mode := Earliest
	if initial {
		mode = s.Start
	}
	var lo kadm.ListedOffsets
	switch mode {
	case Latest:
		lo, err = s.adm.ListCommittedOffsets(ctx, missing...)
	case Timestamp:
		lo, err = s.adm.ListOffsetsAfterMilli(ctx, s.StartMs, missing...)
	default:
		lo, err = s.adm.ListStartOffsets(ctx, missing...)
	}
	if err != nil {
		return nil, fmt.Errorf("listing offsets: %w", err)
	}
	var committed kadm.OffsetResponses
	if mode == Committed {
		if committed, err = s.adm.FetchOffsets(ctx, s.Group); err != nil {
			return nil, fmt.Errorf("fetching the offsets of group %s: %w", s.Group, err)
		}
	}
	for k, off := range out {
		if off >= 0 {
			continue
		}
		if c, ok := committed.Lookup(k.topic, k.partition); ok && c.Err == nil && c.At >= 0 {
			out[k] = c.At
			continue
		}
		l, ok := lo.Lookup(k.topic, k.partition)
		if !ok || l.Err != nil || l.Offset < 0 {
			return nil, fmt.Errorf("no start offset for %s/%d: %v", k.topic, k.partition, l.Err)
		}
		out[k] = l.Offset
	}
	return out, nil
}

// discover looks for new partitions in the background; Poll adds them.
func (s *Source[T]) discover(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.Discovery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		assign, err := s.assignment(ctx, false, false, s.knownCopy())
		if err != nil {
			s.rc.Logger().Warn("kafka source: partition discovery failed", "err", err)
			continue
		}
		if len(assign) == 0 {
			continue
		}
		select {
		case s.discovered <- assign:
		case <-ctx.Done():
			return
		}
	}
}

// knownCopy is the set of partitions read, for the discovery goroutine.
func (s *Source[T]) knownCopy() map[tp]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[tp]bool, len(s.parts))
	for k := range s.parts {
		m[k] = true
	}
	return m
}

// Poll emits the records fetched so far (never blocking) and adds newly
// discovered partitions.
func (s *Source[T]) Poll(out runtime.Collector[T]) (time.Duration, error) {
	return s.poll(func(_ *partition, _ *kgo.Record, v T) { out.Collect(v) })
}

// poll hands every new decoded record to emit with its partition.
func (s *Source[T]) poll(emit func(p *partition, r *kgo.Record, v T)) (time.Duration, error) {
	select {
	case assign := <-s.discovered:
		start := map[string]map[int32]kgo.Offset{}
		s.mu.Lock()
		s.add(assign, start)
		s.mu.Unlock()
		if len(start) > 0 {
			s.rc.Logger().Info("kafka source: new partitions", "count", len(assign))
			s.cl.AddConsumePartitions(start)
		}
	default:
	}
	if s.Bounded && s.atEnd() {
		return 0, runtime.ErrEndOfInput
	}
	fs := s.cl.PollRecords(nil, s.MaxPollRecords) //nolint:staticcheck // nil: return what is buffered
	if fs.Empty() {
		return 5 * time.Millisecond, nil
	}
	var err error
	fs.EachError(func(t string, p int32, e error) {
		if err == nil {
			err = fmt.Errorf("kafka source: fetching %s/%d: %w", t, p, e)
		}
	})
	if err != nil {
		return 0, err
	}
	fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
		p := s.parts[tp{ftp.Topic, ftp.Partition}]
		if p == nil {
			return
		}
		for _, r := range ftp.Records {
			if r.Offset < p.next {
				continue // a re-fetch of records already emitted
			}
			if s.Bounded && r.Offset >= s.stopAt[p.tp] {
				p.next = max(p.next, s.stopAt[p.tp]) // past the end: not ours to read
				break
			}
			p.next = r.Offset + 1
			if r.Attrs.IsControl() {
				continue
			}
			v, derr := s.Decode(r)
			if derr != nil {
				s.badCount++
				val := r.Value
				if len(val) > MaxDeadLetterValue {
					val = val[:MaxDeadLetterValue]
				}
				s.dead.Collect(DeadLetter{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
					Reason: derr.Error(), Value: append([]byte(nil), val...)})
				continue
			}
			emit(p, r, v)
		}
	})
	return 0, nil
}

// SnapshotState records the next offset of every partition this subtask
// reads.
func (s *Source[T]) SnapshotState(checkpointID int64) ([][]byte, error) {
	entries := make([][]byte, 0, len(s.order))
	offs := make(map[tp]int64, len(s.order))
	for _, p := range s.order {
		e := []byte{sourceEntryVersion}
		e = binary.AppendVarint(e, int64(len(p.topic)))
		e = append(e, p.topic...)
		e = binary.AppendVarint(e, int64(p.partition))
		e = binary.AppendVarint(e, p.next)
		entries = append(entries, e)
		offs[p.tp] = p.next
	}
	if s.Group != "" {
		s.pending = append(s.pending, checkpointOffsets{id: checkpointID, offsets: offs})
		if len(s.pending) > 16 { // notifications may be skipped; keep a few
			s.pending = s.pending[len(s.pending)-16:]
		}
	}
	return entries, nil
}

// NotifyCheckpointComplete reports the completed checkpoint's offsets to
// the consumer group, for lag monitoring only: the job never reads them
// back except to start a fresh job with Start = Committed.
func (s *Source[T]) NotifyCheckpointComplete(id int64) error {
	var done *checkpointOffsets
	for i := range s.pending {
		if s.pending[i].id <= id {
			done = &s.pending[i]
		}
	}
	if done == nil {
		return nil
	}
	offs := done.offsets
	s.pending = slices.DeleteFunc(s.pending, func(c checkpointOffsets) bool { return c.id <= id })
	select {
	case s.reporting <- struct{}{}: // one report in flight at a time
	default:
		return nil
	}
	o := kadm.Offsets{}
	for k, next := range offs {
		o.AddOffset(k.topic, k.partition, next, -1)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.reporting }()
		ctx, cancel := context.WithTimeout(s.rc.Context(), 10*time.Second)
		defer cancel()
		if _, err := s.adm.CommitOffsets(ctx, s.Group, o); err != nil && ctx.Err() == nil {
			s.rc.Logger().Warn("kafka source: reporting offsets to the group failed", "group", s.Group, "err", err)
		}
	}()
	return nil
}

// DeadLetters counts the records the decoder rejected.
func (s *Source[T]) DeadLetters() int64 { return s.badCount }

// Close stops fetching. Calling it again does nothing.
func (s *Source[T]) Close() error {
	if s.stop != nil {
		s.stop()
	}
	s.wg.Wait()
	if s.cl != nil {
		s.cl.Close()
		s.cl = nil
	}
	if s.adm != nil {
		s.adm.Close()
		s.adm = nil
	}
	return nil
}
