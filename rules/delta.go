package rules

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Rule set deltas.
//
// A live rule set changes a rule or two at a time, but a set travels as
// its documents' sources: megabytes at 10,000 rules, decoded by every
// subtask that holds it. A Delta carries only the documents added or
// replaced and the IDs removed, with the digest of the set it applies to
// (Base) and of the set it makes (Result). Set.Apply checks both, so a
// holder whose set is not the delta's base (it missed a change, say)
// gets an error rather than a wrong set. Applying a delta reuses the
// base's compiled rules: only the documents it carries are parsed and
// compiled (through the cache of CompileDocs), and a delta that touches
// no list costs what its own rules cost, whatever the set's size.
//
// The rules of a set that deltas apply to are kept in ID order, as the
// live rule source compiles them, so a set built by deltas is the one
// CompileDocs makes of the same documents sorted by ID, whatever the
// order and grouping of the deltas.

// Delta is a change from the set whose digest is Base to the one whose
// digest is Result: the documents (rules or lists) added or replaced,
// by ID, and the IDs of those removed.
type Delta struct {
	Base, Result uint64
	Docs         []Doc
	Removed      []string
}

// ErrDeltaBase is wrapped by Set.Apply when the set is not the delta's
// base, or applying the delta does not make its result.
var ErrDeltaBase = errors.New("rules: a rule set delta does not apply to this set")

// Digest is a 64-bit summary of the set's rules (ID, version, state,
// source) and lists, the same for the same documents whatever way the
// set was built. It is defined for the sets of CompileDocs, SetCodec and
// With (0 for a set with a rule compiled otherwise). It costs an addition
// per rule.
func (set *Set) Digest() uint64 {
	d := binary.LittleEndian.Uint64(set.listsKey[:8])
	for _, r := range set.Rules {
		if r.digest == 0 {
			return 0
		}
		d += r.digest
	}
	return d
}

// Apply is the set d makes of set, if set is d's base; the result is
// checked against d.Result.
func (set *Set) Apply(d Delta) (*Set, error) {
	if got := set.Digest(); got == 0 || got != d.Base {
		return nil, fmt.Errorf("%w: the set's digest is %016x, the delta's base %016x", ErrDeltaBase, got, d.Base)
	}
	out, err := set.With(d.Docs, d.Removed)
	if err != nil {
		return nil, err
	}
	if got := out.Digest(); got != d.Result {
		return nil, fmt.Errorf("%w: applied, it makes %016x, the delta says %016x", ErrDeltaBase, got, d.Result)
	}
	return out, nil
}

// Delta is the delta from set to next made by docs and removed (as With
// made next of set).
func (set *Set) Delta(next *Set, docs []Doc, removed []string) Delta {
	return Delta{Base: set.Digest(), Result: next.Digest(), Docs: docs, Removed: removed}
}

// With is set with the stored documents docs added or replacing the
// document of their ID, and the documents of the IDs removed left out
// (an ID the set does not have is ignored). The documents were checked
// when they were stored; their tests are not run. Unless a list changes
// (then every rule is compiled again, through the cache), set's compiled
// rules are reused and only docs' rules compiled.
func (set *Set) With(docs []Doc, removed []string) (*Set, error) {
	specs := make([]*Spec, len(docs))
	keys := make([]parseKey, len(docs))
	drop := make(map[string]bool, len(docs)+len(removed))
	lists := false
	for i, d := range docs {
		s, k, err := parseDoc(d)
		if err != nil {
			return nil, err
		}
		if drop[s.ID] {
			return nil, fmt.Errorf("rules: a rule set change has id %s twice", s.ID)
		}
		specs[i], keys[i], drop[s.ID] = s, k, true
		lists = lists || s.Kind == "list"
	}
	for _, id := range removed {
		drop[id] = true
		_, isList := set.Lists[id]
		lists = lists || isList
	}
	byID := func(a, b *Rule) int { return strings.Compare(a.ID, b.ID) }
	if lists || set.Digest() == 0 || !slices.IsSortedFunc(set.Rules, byID) {
		return set.recompile(docs, specs, drop)
	}
	next := &Set{Lists: set.Lists, lists: set.lists, listsKey: set.listsKey}
	var added []*Rule
	var errs []error
	for i, s := range specs {
		if _, dup := set.Lists[s.ID]; dup {
			errs = append(errs, s.errorf(s.lineOf("id"), "id %s is also the id of a list", s.ID))
			continue
		}
		r, err := compileStored(s, keys[i], docs[i], set.listsKey, set.Lists)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		added = append(added, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("rules: a rule set change does not compile: %w", err)
	}
	slices.SortFunc(added, byID)
	// Merge the kept rules and the added ones, both in ID order.
	next.Rules = make([]*Rule, 0, len(set.Rules)+len(added))
	for _, r := range set.Rules {
		if drop[r.ID] {
			continue
		}
		for len(added) > 0 && added[0].ID < r.ID {
			next.Rules, added = append(next.Rules, added[0]), added[1:]
		}
		next.Rules = append(next.Rules, r)
	}
	next.Rules = append(next.Rules, added...)
	return next, nil
}

// recompile is With by CompileDocs: every kept document and docs, in ID
// order.
func (set *Set) recompile(docs []Doc, specs []*Spec, drop map[string]bool) (*Set, error) {
	type idDoc struct {
		id  string
		doc Doc
	}
	all := make([]idDoc, 0, len(set.lists)+len(set.Rules)+len(docs))
	for _, s := range set.lists {
		if !drop[s.ID] {
			all = append(all, idDoc{s.ID, Doc{File: s.file, Source: s.source}})
		}
	}
	for _, r := range set.Rules {
		if !drop[r.ID] {
			all = append(all, idDoc{r.ID, Doc{File: r.spec.file, Source: r.spec.source, Version: r.Version, State: r.State}})
		}
	}
	for i, d := range docs {
		all = append(all, idDoc{specs[i].ID, d})
	}
	slices.SortStableFunc(all, func(a, b idDoc) int { return cmp.Compare(a.id, b.id) })
	ds := make([]Doc, len(all))
	for i := range all {
		ds[i] = all[i].doc
	}
	return CompileDocs(ds)
}

// deltaFormat is the first byte of an encoded Delta, unlike setFormat.
const deltaFormat = 0xd1

// IsDelta says whether b is a Delta's encoding (rather than a Set's).
func IsDelta(b []byte) bool { return len(b) > 0 && b[0] == deltaFormat }

// DeltaCodec encodes a Delta: its digests, documents and removed IDs. It
// has the shape of runtime.Codec[Delta].
type DeltaCodec struct{}

// Append appends the encoding of d to dst.
func (DeltaCodec) Append(dst []byte, d Delta) []byte {
	dst = append(dst, deltaFormat)
	dst = binary.LittleEndian.AppendUint64(dst, d.Base)
	dst = binary.LittleEndian.AppendUint64(dst, d.Result)
	dst = binary.AppendUvarint(dst, uint64(len(d.Docs)))
	for _, doc := range d.Docs {
		dst = appendDoc(dst, doc.File, doc.Version, doc.State, doc.Source)
	}
	dst = binary.AppendUvarint(dst, uint64(len(d.Removed)))
	for _, id := range d.Removed {
		dst = binary.AppendUvarint(dst, uint64(len(id)))
		dst = append(dst, id...)
	}
	return dst
}

// Decode reads a Delta; its documents are copies, not views of src.
func (DeltaCodec) Decode(src []byte) (Delta, error) {
	if !IsDelta(src) || len(src) < 17 {
		return Delta{}, fmt.Errorf("%w: not a delta", ErrCorruptSet)
	}
	d := Delta{Base: binary.LittleEndian.Uint64(src[1:]), Result: binary.LittleEndian.Uint64(src[9:])}
	rd := &docReader{b: src[17:]}
	n := rd.uvarint()
	if rd.err == nil && n > uint64(len(rd.b)) {
		return Delta{}, fmt.Errorf("%w: %d documents in %d bytes", ErrCorruptSet, n, len(rd.b))
	}
	for range n {
		doc := Doc{File: string(rd.bytes()), Version: rd.varint(), State: string(rd.bytes()), Source: slices.Clone(rd.bytes())}
		if rd.err != nil {
			return Delta{}, rd.err
		}
		d.Docs = append(d.Docs, doc)
	}
	n = rd.uvarint()
	if rd.err == nil && n > uint64(len(rd.b)) {
		return Delta{}, fmt.Errorf("%w: %d removed ids in %d bytes", ErrCorruptSet, n, len(rd.b))
	}
	for range n {
		id := string(rd.bytes())
		if rd.err != nil {
			return Delta{}, rd.err
		}
		d.Removed = append(d.Removed, id)
	}
	if rd.err != nil {
		return Delta{}, rd.err
	}
	if len(rd.b) != 0 {
		return Delta{}, fmt.Errorf("%w: %d trailing bytes", ErrCorruptSet, len(rd.b))
	}
	return d, nil
}
