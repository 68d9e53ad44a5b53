// Package store keeps the live rules of a running job in etcd, under
// /weir/<cluster-id>/jobs/<job>/:
//
//	rules/<id>                   the rule's current entry (JSON)
//	rules-history/<id>/<version> every entry the rule ever had
//	rules-mark                   with rules-clock=marks, the event time up
//	                             to which no change can come any more
//	rules-lists                  the IDs stored as lists (JSON), so a change
//	                             of a rule reads the lists, not every rule
//	rule-stats/<subtask>         the per-rule counts of an evaluator subtask
//
// An entry is one version of a rule: its YAML source, its state (active,
// shadow, paused, or deleted, a tombstone), the event time from which it
// applies (At), who made it and when. Every change writes the new current
// entry and its history entry in one transaction that compares the
// current entry's version with the one the writer read, so two writers
// cannot both build on the same version (compare-and-swap). A rule is
// compiled, with the job's other stored rules and its inline tests, before
// it is stored: a bad rule never reaches a task.
//
// A change of rules touches only their keys, whatever the number of rules
// stored: a rule compiles against the lists alone, so a put (or rollback)
// of rules reads their current entries, the rules-lists index and the
// lists it names, and a pause, resume, shadow or delete of a rule reads
// the rule alone. A change of a list (which every rule may read) reads
// and compiles every stored rule, and brings rules-lists up to date; so
// does a put refused on the narrow read (a refusal is always confirmed
// against every stored entry, so a stale index can slow a put down but
// never refuse a good rule).
//
// The job's rule source (package rulesjob) reads the entries and watches
// the prefix; see there for how a change takes effect.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weirstream/weir/rules"
)

// The states of an entry.
const (
	Active  = "active"
	Shadow  = "shadow"
	Paused  = "paused"
	Deleted = "deleted"
)

// Entry is one version of a rule.
type Entry struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
	State   string `json:"state"`
	// Source is the rule's YAML document (also for a tombstone: the last
	// one, so a rollback can find it).
	Source string `json:"source"`
	// At is the event time (Unix ms) from which this version applies.
	At int64 `json:"at_time_ms"`
	// By and Time say who made the change and when (wall clock, Unix ms).
	By   string `json:"by"`
	Time int64  `json:"changed_time_ms"`
	// Kind is the document's kind (list documents are stored as rules).
	Kind string `json:"kind"`
}

// ErrConflict is wrapped by a change whose expected version is not the
// current one.
var ErrConflict = errors.New("version conflict")

// ErrRefused is wrapped by a change whose rules do not compile or fail
// their tests; the rest of the error says where and why.
var ErrRefused = errors.New("refused")

// ErrNotFound is wrapped when a rule or version does not exist.
var ErrNotFound = errors.New("not found")

// Store is the rules of one job in etcd.
type Store struct {
	cli    *clientv3.Client
	prefix string // /weir/<cluster>/jobs/<job>/
}

// New is the store of job's rules under cluster.
func New(cli *clientv3.Client, cluster, job string) *Store {
	return &Store{cli: cli, prefix: Prefix(cluster, job)}
}

// Prefix is the etcd prefix of a job's keys.
func Prefix(cluster, job string) string { return "/weir/" + cluster + "/jobs/" + job + "/" }

// RulesPrefix is the prefix of the current entries, the one to watch.
func (s *Store) RulesPrefix() string { return s.prefix + "rules/" }

// MarkKey is the key of the event-time mark.
func (s *Store) MarkKey() string { return s.prefix + "rules-mark" }

// WatchRange is the key range [key, end) a rule source watches: the mark
// and the current entries, in one watch so that their changes arrive in
// the order they were made, and not the history, the index of lists or
// the stats, which sort outside it.
func (s *Store) WatchRange() (key, end string) {
	return s.MarkKey(), strings.TrimSuffix(s.RulesPrefix(), "/") + "0" // '0' follows '/'
}

func (s *Store) ruleKey(id string) string { return s.RulesPrefix() + id }

// listsKey is the key of the index of lists.
func (s *Store) listsKey() string { return s.prefix + "rules-lists" }

func (s *Store) historyKey(id string, v int64) string {
	return s.prefix + "rules-history/" + id + "/" + fmt.Sprintf("%020d", v)
}

// Decode reads an entry's JSON.
func Decode(b []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("a stored rule entry: %w", err)
	}
	return e, nil
}

// Get is a rule's current entry.
func (s *Store) Get(ctx context.Context, id string) (Entry, error) {
	r, err := s.cli.Get(ctx, s.ruleKey(id))
	if err != nil {
		return Entry{}, fmt.Errorf("etcd: %w", err)
	}
	if len(r.Kvs) == 0 {
		return Entry{}, fmt.Errorf("rule %s: %w", id, ErrNotFound)
	}
	return Decode(r.Kvs[0].Value)
}

// List is every current entry (tombstones included), by ID, and the etcd
// revision they were read at (to watch from the next one).
func (s *Store) List(ctx context.Context) ([]Entry, int64, error) {
	r, err := s.cli.Get(ctx, s.RulesPrefix(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("etcd: %w", err)
	}
	out := make([]Entry, 0, len(r.Kvs))
	for _, kv := range r.Kvs {
		e, err := Decode(kv.Value)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", kv.Key, err)
		}
		out = append(out, e)
	}
	return out, r.Header.Revision, nil
}

// History is every version of a rule, oldest first.
func (s *Store) History(ctx context.Context, id string) ([]Entry, error) {
	r, err := s.cli.Get(ctx, s.prefix+"rules-history/"+id+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if len(r.Kvs) == 0 {
		return nil, fmt.Errorf("rule %s: %w", id, ErrNotFound)
	}
	out := make([]Entry, 0, len(r.Kvs))
	for _, kv := range r.Kvs {
		e, err := Decode(kv.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Mark is the event-time mark (rules-clock=marks), NoMark if none.
func (s *Store) Mark(ctx context.Context) (int64, error) {
	r, err := s.cli.Get(ctx, s.MarkKey())
	if err != nil {
		return 0, fmt.Errorf("etcd: %w", err)
	}
	if len(r.Kvs) == 0 {
		return NoMark, nil
	}
	return strconv.ParseInt(string(r.Kvs[0].Value), 10, 64)
}

// NoMark is the mark before any.
const NoMark = math.MinInt64

// SetMark moves the mark forward to at; a mark never goes back (events up
// to it may have been evaluated).
func (s *Store) SetMark(ctx context.Context, at int64) error {
	for {
		r, err := s.cli.Get(ctx, s.MarkKey())
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		cmp := clientv3.Compare(clientv3.CreateRevision(s.MarkKey()), "=", 0)
		if len(r.Kvs) > 0 {
			cur, _ := strconv.ParseInt(string(r.Kvs[0].Value), 10, 64)
			if at < cur {
				return fmt.Errorf("the mark is at %d already; it never goes back", cur)
			}
			cmp = clientv3.Compare(clientv3.ModRevision(s.MarkKey()), "=", r.Kvs[0].ModRevision)
		}
		t, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(s.MarkKey(), strconv.FormatInt(at, 10))).Commit()
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		if t.Succeeded {
			return nil
		}
	}
}

// Change says who changes a rule, when it applies, and the version the
// writer read: the change is refused (ErrConflict) unless it is still the
// current one. IfVersion 0 means the rule must not exist; Any skips the
// check.
type Change struct {
	By        string
	At        int64
	IfVersion int64
}

// Any is the IfVersion that accepts whatever the current version is.
const Any = -1

// Put stores the documents of a rule file (or several) as new versions,
// each after its current one, once they compile with the job's other
// stored rules and pass their inline tests. ch.IfVersion applies to each
// document. A refused document stores nothing of the file.
func (s *Store) Put(ctx context.Context, specs []*rules.Spec, ch Change) ([]Entry, error) {
	if len(specs) == 0 {
		return nil, errors.New("no documents to put")
	}
	byID, err := s.checked(ctx, specs)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, sp := range specs {
		state := sp.State
		if state == "" {
			state = Active
		}
		e := Entry{ID: sp.ID, State: state, Source: string(sp.Source()), Kind: sp.Kind}
		if e.Kind == "" {
			e.Kind = "rule"
		}
		got, err := s.write(ctx, byID[sp.ID], e, ch)
		if err != nil {
			return out, err
		}
		out = append(out, got)
	}
	return out, nil
}

// checked checks specs against the stored entries (see check) and
// returns the current entries of their IDs. Without a list among specs it
// reads only those entries and the stored lists (see the package doc);
// a refusal, and a change of lists, is checked against every entry.
func (s *Store) checked(ctx context.Context, specs []*rules.Spec) (map[string]Entry, error) {
	if !slices.ContainsFunc(specs, func(sp *rules.Spec) bool { return sp.Kind == "list" }) {
		cur, ok, err := s.narrow(ctx, specs)
		if err != nil {
			return nil, err
		}
		if ok && check(cur, specs) == nil {
			return byID(cur), nil
		}
	}
	cur, _, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	if err := check(cur, specs); err != nil {
		return nil, err
	}
	if err := s.indexLists(ctx, cur, specs); err != nil {
		return nil, err
	}
	return byID(cur), nil
}

func byID(es []Entry) map[string]Entry {
	m := make(map[string]Entry, len(es))
	for _, e := range es {
		m[e.ID] = e
	}
	return m
}

// narrow reads the current entries of specs' IDs and of the lists in the
// index, in one etcd transaction; ok is false if there is no index yet.
func (s *Store) narrow(ctx context.Context, specs []*rules.Spec) ([]Entry, bool, error) {
	r, err := s.cli.Get(ctx, s.listsKey())
	if err != nil {
		return nil, false, fmt.Errorf("etcd: %w", err)
	}
	if len(r.Kvs) == 0 {
		return nil, false, nil
	}
	var lists []string
	if err := json.Unmarshal(r.Kvs[0].Value, &lists); err != nil {
		return nil, false, nil // the full read rewrites it
	}
	ids := append([]string(nil), lists...)
	for _, sp := range specs {
		if !slices.Contains(lists, sp.ID) {
			ids = append(ids, sp.ID)
		}
	}
	if len(ids) > narrowMax {
		return nil, false, nil // a put of many rules reads them all anyway
	}
	ops := make([]clientv3.Op, len(ids))
	for i, id := range ids {
		ops[i] = clientv3.OpGet(s.ruleKey(id))
	}
	t, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, false, fmt.Errorf("etcd: %w", err)
	}
	var cur []Entry
	for _, resp := range t.Responses {
		for _, kv := range resp.GetResponseRange().Kvs {
			e, err := Decode(kv.Value)
			if err != nil {
				return nil, false, fmt.Errorf("%s: %w", kv.Key, err)
			}
			cur = append(cur, e)
		}
	}
	return cur, true, nil
}

// narrowMax bounds the keys of a narrow read: etcd takes at most 128
// operations in a transaction (its --max-txn-ops).
const narrowMax = 100

// indexLists makes the index of lists name every list of cur and specs,
// keeping IDs another writer added meanwhile (the index may name more
// IDs than are lists: narrow reads them and check skips rules).
func (s *Store) indexLists(ctx context.Context, cur []Entry, specs []*rules.Spec) error {
	var want []string
	for _, e := range cur {
		if e.Kind == "list" {
			want = append(want, e.ID)
		}
	}
	for _, sp := range specs {
		if sp.Kind == "list" {
			want = append(want, sp.ID)
		}
	}
	for {
		r, err := s.cli.Get(ctx, s.listsKey())
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		var have []string
		cmp := clientv3.Compare(clientv3.CreateRevision(s.listsKey()), "=", 0)
		if len(r.Kvs) > 0 {
			_ = json.Unmarshal(r.Kvs[0].Value, &have) // unreadable: rewritten
			cmp = clientv3.Compare(clientv3.ModRevision(s.listsKey()), "=", r.Kvs[0].ModRevision)
		}
		all := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(have), want...))))
		if len(r.Kvs) > 0 && slices.Equal(all, have) {
			return nil
		}
		b, err := json.Marshal(all)
		if err != nil {
			return err
		}
		t, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(s.listsKey(), string(b))).Commit()
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		if t.Succeeded {
			return nil
		}
	}
}

// check compiles the current rules with specs in place of their IDs, so
// a rule naming a list that is not stored, or failing a test, is refused.
func check(cur []Entry, specs []*rules.Spec) error {
	replaced := map[string]bool{}
	for _, sp := range specs {
		if sp.ID == "" {
			return errors.New("a document without an id cannot be stored")
		}
		if replaced[sp.ID] {
			return fmt.Errorf("rule %s appears twice", sp.ID)
		}
		replaced[sp.ID] = true
	}
	// A rule compiles against the lists alone, so when specs hold no list
	// the stored rules need not be compiled again (seconds at 10,000
	// rules): the new ones are, with their tests, against the stored lists.
	lists := slices.ContainsFunc(specs, func(sp *rules.Spec) bool { return sp.Kind == "list" })
	all := append([]*rules.Spec(nil), specs...)
	for _, e := range cur {
		if replaced[e.ID] || e.State == Deleted || (!lists && e.Kind != "list" && e.Kind != "") {
			continue
		}
		docs, err := rules.Parse("etcd:"+e.ID, []byte(e.Source))
		if err != nil || len(docs) != 1 {
			return fmt.Errorf("stored rule %s does not parse: %v", e.ID, err)
		}
		all = append(all, docs...)
	}
	if _, err := rules.Compile(all); err != nil {
		return fmt.Errorf("%w:\n%w", ErrRefused, err)
	}
	return nil
}

// write stores e as the version after prev, if prev is still current and
// is the one ch expects.
func (s *Store) write(ctx context.Context, prev, e Entry, ch Change) (Entry, error) {
	if ch.IfVersion != Any && ch.IfVersion != prev.Version {
		if prev.Version == 0 {
			return Entry{}, fmt.Errorf("rule %s: %w: expected version %d, the rule does not exist", e.ID, ErrConflict, ch.IfVersion)
		}
		return Entry{}, fmt.Errorf("rule %s: %w: expected version %d, the current one is %d", e.ID, ErrConflict, ch.IfVersion, prev.Version)
	}
	mark, err := s.Mark(ctx)
	if err != nil {
		return Entry{}, err
	}
	if mark != NoMark && ch.At <= mark {
		return Entry{}, fmt.Errorf("rule %s: %w: --at %d is not after the job's mark %d (events up to the mark may have been evaluated)",
			e.ID, ErrRefused, ch.At, mark)
	}
	e.Version = prev.Version + 1
	e.By, e.At, e.Time = ch.By, ch.At, time.Now().UnixMilli()
	b, err := json.Marshal(e)
	if err != nil {
		return Entry{}, err
	}
	key := s.ruleKey(e.ID)
	// The stored version is compared through the value: a rule whose
	// current entry changed since prev was read fails the transaction.
	cond := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	if prev.Version > 0 {
		pb, _ := json.Marshal(prev)
		cond = clientv3.Compare(clientv3.Value(key), "=", string(pb))
	}
	t, err := s.cli.Txn(ctx).If(cond).
		Then(clientv3.OpPut(key, string(b)), clientv3.OpPut(s.historyKey(e.ID, e.Version), string(b))).Commit()
	if err != nil {
		return Entry{}, fmt.Errorf("etcd: %w", err)
	}
	if !t.Succeeded {
		return Entry{}, fmt.Errorf("rule %s: %w: it changed while this change was being made; read it again", e.ID, ErrConflict)
	}
	return e, nil
}

// SetState makes a new version of a rule with the same source in state
// (active, shadow, paused, or deleted).
func (s *Store) SetState(ctx context.Context, id, state string, ch Change) (Entry, error) {
	switch state {
	case Active, Shadow, Paused, Deleted:
	default:
		return Entry{}, fmt.Errorf("state %q: want active, shadow, paused or deleted", state)
	}
	prev, err := s.Get(ctx, id)
	if err != nil {
		return Entry{}, err
	}
	if prev.State == Deleted && state != Deleted {
		return Entry{}, fmt.Errorf("rule %s is deleted: put it again, or roll it back to a version", id)
	}
	// Rules read lists, not other rules: only a list's deletion needs the
	// others compiled without it.
	if state == Deleted && (prev.Kind == "list" || prev.Kind == "") {
		cur, _, err := s.List(ctx)
		if err != nil {
			return Entry{}, err
		}
		if err := checkWithout(cur, id); err != nil {
			return Entry{}, err
		}
	}
	e := prev
	e.State = state
	return s.write(ctx, prev, e, ch)
}

// checkWithout compiles the current rules without id, so deleting a list
// that a rule reads is refused.
func checkWithout(cur []Entry, id string) error {
	var all []*rules.Spec
	for _, e := range cur {
		if e.ID == id || e.State == Deleted {
			continue
		}
		docs, err := rules.Parse("etcd:"+e.ID, []byte(e.Source))
		if err != nil {
			return err
		}
		all = append(all, docs...)
	}
	if _, err := rules.CompileStored(all); err != nil {
		return fmt.Errorf("%w: the other rules need %s: %w", ErrRefused, id, err)
	}
	return nil
}

// Rollback makes a new version of a rule with the source and state of
// version to.
func (s *Store) Rollback(ctx context.Context, id string, to int64, ch Change) (Entry, error) {
	hist, err := s.History(ctx, id)
	if err != nil {
		return Entry{}, err
	}
	var old *Entry
	for i := range hist {
		if hist[i].Version == to {
			old = &hist[i]
		}
	}
	if old == nil {
		return Entry{}, fmt.Errorf("rule %s version %d: %w (versions 1 to %d)", id, to, ErrNotFound, hist[len(hist)-1].Version)
	}
	if old.State == Deleted {
		return Entry{}, fmt.Errorf("rule %s version %d is a deletion; roll back to a version before it", id, to)
	}
	prev, err := s.Get(ctx, id)
	if err != nil {
		return Entry{}, err
	}
	docs, err := rules.Parse("etcd:"+id, []byte(old.Source))
	if err != nil {
		return Entry{}, err
	}
	if _, err := s.checked(ctx, docs); err != nil {
		return Entry{}, err
	}
	e := *old
	return s.write(ctx, prev, e, ch)
}

// Specs turns entries into the documents of a rule set with each rule's
// stored version and state: tombstones are left out.
func Specs(entries []Entry) ([]*rules.Spec, map[string]Entry, error) {
	var specs []*rules.Spec
	live := map[string]Entry{}
	for _, e := range entries {
		if e.State == Deleted {
			continue
		}
		docs, err := rules.Parse("etcd:"+e.ID, []byte(e.Source))
		if err != nil || len(docs) != 1 {
			return nil, nil, fmt.Errorf("stored rule %s does not parse: %v", e.ID, err)
		}
		specs = append(specs, docs[0])
		live[e.ID] = e
	}
	return specs, live, nil
}

// Describe is a one-line summary of an entry, for the CLI.
func (e Entry) Describe() string {
	return fmt.Sprintf("%s version %d %s (at %d, by %s, %s)", e.ID, e.Version, e.State, e.At,
		cmpOr(e.By, "?"), time.UnixMilli(e.Time).UTC().Format(time.RFC3339))
}

func cmpOr(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}

// RuleStat is one rule version's counts in one subtask of a job, as the
// job publishes them under rule-stats/ and `weir rules stats` sums them.
type RuleStat struct {
	Rule        string `json:"rule"`
	Version     int64  `json:"version"`
	Evaluations int64  `json:"evaluations"`
	Alerts      int64  `json:"alerts"`
	Errors      int64  `json:"errors"`
	EvalNanos   int64  `json:"eval_ns"`
}

// StatsKey is where a subtask of the job publishes its rule counts.
func (s *Store) StatsKey(subtask int) string {
	// Outside WatchRange: the rule source does not receive the stats.
	return s.prefix + "rule-stats/" + strconv.Itoa(subtask)
}

// PublishStats writes a subtask's counts with a lease of ttl seconds, so
// the counts of a subtask that is gone expire.
func (s *Store) PublishStats(ctx context.Context, subtask int, stats []RuleStat, ttl int64) error {
	b, err := json.Marshal(stats)
	if err != nil {
		return err
	}
	l, err := s.cli.Grant(ctx, ttl)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	if _, err := s.cli.Put(ctx, s.StatsKey(subtask), string(b), clientv3.WithLease(l.ID)); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	return nil
}

// Stats sums the counts every subtask published, by rule and version, in
// (rule, version) order.
func (s *Store) Stats(ctx context.Context) ([]RuleStat, error) {
	r, err := s.cli.Get(ctx, s.prefix+"rule-stats/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	sum := map[[2]string]*RuleStat{}
	var order [][2]string
	for _, kv := range r.Kvs {
		var part []RuleStat
		if err := json.Unmarshal(kv.Value, &part); err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		for _, p := range part {
			k := [2]string{p.Rule, fmt.Sprintf("%020d", p.Version)}
			t := sum[k]
			if t == nil {
				t = &RuleStat{Rule: p.Rule, Version: p.Version}
				sum[k] = t
				order = append(order, k)
			}
			t.Evaluations += p.Evaluations
			t.Alerts += p.Alerts
			t.Errors += p.Errors
			t.EvalNanos += p.EvalNanos
		}
	}
	slices.SortFunc(order, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
	out := make([]RuleStat, 0, len(order))
	for _, k := range order {
		out = append(out, *sum[k])
	}
	return out, nil
}
