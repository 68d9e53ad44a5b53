package rulesjob

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/rules/store"
	"github.com/weirstream/weir/runtime"
)

// How a live rule source's changes take effect. Every change carries an
// event time From, and the source's records double as its watermark
// (their timestamp is From): an evaluator sees events at t only once the
// source's watermark has passed t, that is, once no change at or before t
// can come any more, so every subtask evaluates every event under the
// same rule set. With rules-clock=wall the source's watermark is the wall
// clock minus rules-lag (ticks every tickEvery) and a change applies from
// the time it was put (`weir rules put --at` may name a later one); with
// rules-clock=marks it is the mark of `weir rules mark`, and a change
// applies exactly from its --at. A change that arrives behind the
// watermark (a put older than rules-lag, say) is applied from the
// watermark on, and logged.

// tickEvery is how often a wall-clock source moves its watermark.
const tickEvery = 10 * time.Millisecond

// etcdTimeout bounds one etcd call of the source.
const etcdTimeout = 3 * time.Second

// liveConfig is what the live source needs.
type liveConfig struct {
	endpoints []string
	cluster   string
	name      string // the rules' name in etcd; "" for the job's ID
	marks     bool
	lag       time.Duration
	file      []*rules.Spec // the rules parameter's documents
}

// rulesName is the name the job's rules are kept under.
func (c *liveConfig) rulesName(ctx *runtime.RuntimeContext) string {
	if c.name != "" {
		return c.name
	}
	return ctx.JobID()
}

// liveSource watches the job's rules in etcd and emits a Change for every
// change, and ticks (Changes without a set) that move the watermark.
type liveSource struct {
	cfg    liveConfig
	log    *slog.Logger
	job    string
	cli    *clientv3.Client
	st     *store.Store
	ctx    context.Context
	cancel context.CancelFunc

	last     int64 // From of the last record emitted (checkpointed)
	restored bool
	started  bool
	entries  map[string]store.Entry
	// encoded is each entry's JSON, for SnapshotState: a checkpoint
	// copies 10,000 entries rather than encoding them again.
	encoded map[string][]byte
	// set is the rule set last sent, nil until one is: the first set a
	// source sends (at start, on a restore) is whole, the later ones
	// deltas of it.
	set      *rules.Set
	mark     int64
	watch    clientv3.WatchChan
	rev      int64
	down     bool // etcd unreachable: keeping the rules, retrying
	retryAt  time.Time
	lastTick time.Time
	up       runtime.Gauge // 1 while etcd answers
	// For the job's status note while etcd is away: the set in force.
	rc              *runtime.RuntimeContext
	setRules        int
	setFrom, downAt int64

	// A watch stays silent while etcd is gone (the client retries), so a
	// probe goroutine asks etcd every probeEvery and says whether it
	// answered; the task never blocks on an etcd that is away.
	probeErr    atomic.Pointer[error]
	watchCancel context.CancelFunc
}

// probeEvery is how often the rule source checks that etcd answers.
const probeEvery = 500 * time.Millisecond

func (s *liveSource) probe() {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, probeEvery)
		_, err := s.cli.Get(ctx, s.st.MarkKey())
		cancel()
		if err != nil && s.ctx.Err() == nil {
			s.probeErr.Store(&err)
		} else {
			s.probeErr.Store(nil)
		}
	}
}

// InitializeState restores the time of the last record and the entries
// the source had applied: what the restored broadcast state holds.
func (s *liveSource) InitializeState(_ *runtime.RuntimeContext, entries [][]byte) error {
	s.entries, s.encoded = map[string]store.Entry{}, map[string][]byte{}
	if len(entries) == 0 {
		s.last = setTime
		return nil
	}
	if len(entries) != 2 {
		return fmt.Errorf("rule source state: %d entries, want 2: %w", len(entries), runtime.ErrCorrupt)
	}
	v, err := runtime.Int64Codec{}.Decode(entries[0])
	if err != nil {
		return fmt.Errorf("rule source state: %w", err)
	}
	var restored map[string]store.Entry
	if err := json.Unmarshal(entries[1], &restored); err != nil {
		return fmt.Errorf("rule source state: %w", err)
	}
	for _, e := range restored {
		if err := s.setEntry(e); err != nil {
			return fmt.Errorf("rule source state: %w", err)
		}
	}
	s.last, s.restored = v, true
	return nil
}

// SnapshotState writes the entries as one JSON object by ID, from each
// entry's JSON made when it changed.
func (s *liveSource) SnapshotState(int64) ([][]byte, error) {
	ids := slices.Sorted(maps.Keys(s.encoded))
	n := 2
	for _, id := range ids {
		n += len(id) + len(s.encoded[id]) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, id) // IDs are letters, digits and ._-
		b = append(b, ':')
		b = append(b, s.encoded[id]...)
	}
	b = append(b, '}')
	return [][]byte{runtime.Int64Codec{}.Append(nil, s.last), b}, nil
}

// setEntry makes e the entry of its ID.
func (s *liveSource) setEntry(e store.Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	s.entries[e.ID], s.encoded[e.ID] = e, b
	return nil
}

func (s *liveSource) Open(ctx *runtime.RuntimeContext) error {
	s.log = ctx.Logger().With("operator", ctx.OperatorName())
	s.rc = ctx
	s.job = s.cfg.rulesName(ctx)
	s.up = ctx.Metrics().Gauge("rules_etcd_up", "1 while the rule source reaches etcd, 0 while it keeps the current rules and retries")
	s.mark = store.NoMark
	s.ctx, s.cancel = context.WithCancel(context.Background())
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.cfg.endpoints, DialTimeout: etcdTimeout, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("rule source: etcd %v: %w", s.cfg.endpoints, err)
	}
	s.cli, s.st = cli, store.New(cli, s.cfg.cluster, s.job)
	go s.probe()
	return nil
}

func (s *liveSource) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	if s.cli != nil {
		return s.cli.Close()
	}
	return nil
}

// emit sends a change (a tick if it has no set or delta) from its event
// time From; set is the set it makes. The rule watermark is one below the
// last record's time, so a change may still apply from that time (two
// puts at one --at); one from before it is applied from it, and logged.
func (s *liveSource) emit(out runtime.Collector[Change], c Change, set *rules.Set) {
	tick := c.Set == nil && c.Delta == nil
	if tick && c.From <= s.last {
		return
	}
	if c.From < s.last {
		if !tick && s.started {
			s.log.Warn("rules: a change arrived behind the rule watermark; it applies from the watermark on",
				"at", c.From, "applies_from", s.last)
		}
		c.From = s.last
	}
	s.last = c.From
	if set != nil {
		s.set, s.setRules, s.setFrom = set, len(set.Rules), c.From
	}
	out.Collect(c)
}

// change sends the set of the entries from event time at: whole if no set
// was sent yet, else as the delta of the entries of ids (changed since the
// set last sent).
func (s *liveSource) change(out runtime.Collector[Change], at int64, ids []string) error {
	if s.set == nil {
		set, err := s.compile()
		if err != nil {
			return err
		}
		s.emit(out, Change{From: at, Set: set}, set)
		s.log.Info("rules: change", "applies_from", s.last, "rules", len(set.Rules), "sent", "set")
		return nil
	}
	var docs []rules.Doc
	var removed []string
	for _, id := range ids {
		e := s.entries[id]
		if e.State == store.Deleted {
			removed = append(removed, id)
			continue
		}
		docs = append(docs, rules.Doc{File: "etcd:" + e.ID, Source: []byte(e.Source), Version: e.Version, State: e.State})
	}
	next, err := s.set.With(docs, removed)
	if err != nil {
		return fmt.Errorf("rule source: %w", err)
	}
	d := s.set.Delta(next, docs, removed)
	s.emit(out, Change{From: at, Delta: &d}, next)
	s.log.Info("rules: change", "applies_from", s.last, "rules", len(next.Rules), "sent", "delta",
		"documents", len(docs), "removed", len(removed))
	return nil
}

func (s *liveSource) Poll(out runtime.Collector[Change]) (time.Duration, error) {
	if !s.started {
		s.started = true
		if !s.restored {
			// The rules of the parameter, before any event; etcd's
			// entries follow in the order of their times.
			if err := s.change(out, setTime, nil); err != nil { // s.set is nil: a whole set
				return 0, err
			}
		}
		if err := s.connect(out); err != nil {
			s.unreachable(err)
		}
	}
	if e := s.probeErr.Load(); e != nil && !s.down {
		s.unreachable(*e)
	}
	if s.down && s.probeErr.Load() == nil && time.Now().After(s.retryAt) {
		if err := s.connect(out); err != nil {
			s.unreachable(err)
		}
	}
	if !s.down {
		if err := s.drain(out); err != nil {
			s.unreachable(err)
		}
	}
	if !s.cfg.marks && time.Since(s.lastTick) >= tickEvery {
		s.lastTick = time.Now()
		if t := time.Now().Add(-s.cfg.lag).UnixMilli(); t > s.last {
			s.emit(out, Change{From: t}, nil)
		}
	}
	return tickEvery / 2, nil
}

// connect reads the stored rules (seeding those of the rules parameter
// that are not stored yet, so the CLI sees them), applies the entries that
// differ from the ones the source holds (restored from a checkpoint, or
// from before an outage) in the order of their times, one change per
// time, so each applies from its own time (or from the rule watermark, if
// that has passed it), and starts the watch.
func (s *liveSource) connect(out runtime.Collector[Change]) error {
	ctx, cancel := context.WithTimeout(s.ctx, etcdTimeout)
	defer cancel()
	es, _, err := s.st.List(ctx)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, e := range es {
		have[e.ID] = true
	}
	var seed []*rules.Spec
	for _, sp := range s.cfg.file {
		if !have[sp.ID] {
			seed = append(seed, sp)
		}
	}
	if len(seed) > 0 {
		_, err := s.st.Put(ctx, seed, store.Change{By: "job " + s.job + " (rules parameter)", At: setTime, IfVersion: 0})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	es, rev, err := s.st.List(ctx)
	if err != nil {
		return err
	}
	var changed []store.Entry
	for _, e := range es {
		if old, ok := s.entries[e.ID]; !ok || old.Version != e.Version {
			changed = append(changed, e)
		}
	}
	slices.SortStableFunc(changed, func(a, b store.Entry) int { return cmp.Compare(a.At, b.At) })
	// Entries of one time make one change (the rules parameter's, stored
	// at start, are thousands at the time before any event).
	for i := 0; i < len(changed); {
		var ids []string
		at := changed[i].At
		for ; i < len(changed) && changed[i].At == at; i++ {
			if err := s.setEntry(changed[i]); err != nil {
				return err
			}
			ids = append(ids, changed[i].ID)
		}
		if err := s.change(out, at, ids); err != nil {
			return err
		}
	}
	if m, err := s.st.Mark(ctx); err == nil {
		s.mark = m
	} else {
		return err
	}
	s.rev = rev
	if s.watchCancel != nil {
		s.watchCancel() // a reconnect's watch replaces the old one
	}
	var wctx context.Context
	wctx, s.watchCancel = context.WithCancel(s.ctx)
	key, end := s.st.WatchRange()
	s.watch = s.cli.Watch(clientv3.WithRequireLeader(wctx), key, clientv3.WithRange(end), clientv3.WithRev(rev+1))
	if s.down {
		s.log.Info("rules: etcd reachable again; following rule changes")
	}
	s.down = false
	s.up.Set(1)
	s.rc.SetNote("")
	return nil
}

func (s *liveSource) unreachable(err error) {
	if !s.down {
		s.log.Warn("rules: etcd unreachable; the job keeps its current rules and retries", "err", err)
		s.downAt = time.Now().UnixMilli()
	}
	s.down, s.retryAt = true, time.Now().Add(time.Second)
	s.up.Set(0)
	// The job's status says so until connect clears it.
	from := "those of the rules parameter"
	if s.setFrom != setTime {
		from = "the set in force from event time " + time.UnixMilli(s.setFrom).UTC().Format(time.RFC3339Nano)
	}
	s.rc.SetNote(fmt.Sprintf("rules: etcd %s unreachable since %s; keeping %d rules (%s, etcd revision %d), retrying",
		strings.Join(s.cfg.endpoints, ","), time.UnixMilli(s.downAt).UTC().Format(time.RFC3339), s.setRules, from, s.rev))
}

// drain applies the watch's pending responses, waiting briefly for more
// while a change is pending (gatherGap): consecutive responses whose
// changes apply from one time make one change, and a mark moves the
// watermark.
func (s *liveSource) drain(out runtime.Collector[Change]) error {
	// Consecutive responses whose changes apply from one time (a put of
	// many rules: one response per rule) make one change: the same set
	// from the same time as applying them one by one, compiled and
	// broadcast once rather than once per rule.
	pending, pendingAt := false, int64(setTime)
	var ids []string // the IDs changed since the last flush, once each
	seen := map[string]bool{}
	flush := func() {
		if !pending {
			return
		}
		pending = false
		if err := s.change(out, pendingAt, ids); err != nil {
			// Stored rules were checked; one that no longer compiles
			// (another release?) keeps the old set. The next change
			// sends a whole set, compiled from every entry.
			s.log.Error("rules: the stored rules do not compile; keeping the current set", "err", err)
			s.set, ids = nil, ids[:0]
			clear(seen)
			return
		}
		ids = ids[:0]
		clear(seen)
	}
	defer flush()
	var until time.Time // the latest time to wait for more of a change
	for {
		if !pending {
			until = time.Now().Add(gatherMax)
		}
		resp, ok, got := s.recv(pending, until)
		switch {
		case got:
			if !ok {
				return errors.New("the watch ended")
			}
			if err := resp.Err(); err != nil {
				return err
			}
			changed, at := false, int64(setTime)
			for _, ev := range resp.Events {
				key := string(ev.Kv.Key)
				if strings.HasPrefix(key, s.st.RulesPrefix()) && ev.Type == clientv3.EventTypePut {
					if e, err := store.Decode(ev.Kv.Value); err == nil {
						changed, at = true, max(at, e.At)
					}
				}
			}
			if changed && pending && at != pendingAt {
				flush()
			}
			for _, ev := range resp.Events {
				key := string(ev.Kv.Key)
				switch {
				case key == s.st.MarkKey():
					if m, err := strconv.ParseInt(string(ev.Kv.Value), 10, 64); err == nil && m > s.mark {
						s.mark = m
					}
				case strings.HasPrefix(key, s.st.RulesPrefix()) && ev.Type == clientv3.EventTypePut:
					e, err := store.Decode(ev.Kv.Value)
					if err != nil {
						s.log.Warn("rules: a stored entry does not decode; ignored", "key", key, "err", err)
						continue
					}
					if err := s.setEntry(e); err != nil {
						return err
					}
					if !seen[e.ID] {
						seen[e.ID] = true
						ids = append(ids, e.ID)
					}
				}
			}
			if changed {
				s.rev = resp.Header.Revision
				pending, pendingAt = true, at
			}
			if s.cfg.marks && s.mark > max(s.last, pendingAt) {
				flush()
				s.emit(out, Change{From: s.mark}, nil)
			}
		default:
			flush()
			if s.cfg.marks && s.mark > s.last {
				s.emit(out, Change{From: s.mark}, nil)
			}
			return nil
		}
	}
}

// A put of many rules is one etcd transaction, so one watch response,
// per rule: read without waiting, they made a change (a new set in every
// subtask's broadcast state, a rebuilt group in every evaluator) per
// response or two, 2,800 for a put of 10,000 rules. So while a change is
// pending, drain waits up to gatherGap for the next response, for at
// most gatherMax in all: a lone change waits gatherGap more, and the
// responses of a put that arrive closer together than that make one
// change (the same put: about 1,000).
const (
	gatherGap = 2 * time.Millisecond
	gatherMax = 100 * time.Millisecond
)

// recv is the watch's next response (got), waiting up to gatherGap for
// it if wait is set, but not past until.
func (s *liveSource) recv(wait bool, until time.Time) (resp clientv3.WatchResponse, ok, got bool) {
	select {
	case resp, ok = <-s.watch:
		return resp, ok, true
	default:
	}
	d := min(gatherGap, time.Until(until))
	if !wait || d <= 0 {
		return resp, false, false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case resp, ok = <-s.watch:
		return resp, ok, true
	case <-t.C:
		return resp, false, false
	}
}

// compile is the set of the stored entries, over the rules parameter's
// documents (a stored entry of the same ID wins; a tombstone removes it).
func (s *liveSource) compile() (*rules.Set, error) {
	// A fixed order, by ID, so every change lists the rules alike; the
	// stored documents compile through rules' cache, so a change compiles
	// the changed rule only.
	type idDoc struct {
		id  string
		doc rules.Doc
	}
	var docs []idDoc
	for _, e := range s.entries {
		if e.State != store.Deleted {
			docs = append(docs, idDoc{e.ID, rules.Doc{File: "etcd:" + e.ID, Source: []byte(e.Source), Version: e.Version, State: e.State}})
		}
	}
	for _, sp := range s.cfg.file {
		if _, stored := s.entries[sp.ID]; !stored {
			docs = append(docs, idDoc{sp.ID, rules.Doc{File: sp.File(), Source: sp.Source(), Version: sp.Version, State: sp.State}})
		}
	}
	slices.SortFunc(docs, func(a, b idDoc) int { return cmp.Compare(a.id, b.id) })
	ds := make([]rules.Doc, len(docs))
	for i := range docs {
		ds[i] = docs[i].doc
	}
	set, err := rules.CompileDocs(ds)
	if err != nil {
		return nil, fmt.Errorf("rule source: %w", err)
	}
	return set, nil
}
