package rules

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"weak"
)

// Incremental compilation.
//
// A live rule set changes one rule at a time, and every change used to
// recompile the whole set in the rule source and again in every subtask
// that decodes the broadcast set: seconds at 10,000 rules. CompileDocs
// compiles stored documents through a process-wide cache instead: a
// document is parsed once per (file, source), and a rule compiled once per
// (file, source, version, state, lists), so a change to one rule parses
// and compiles that rule only, whoever compiles the new set.
//
// Compiled rules are immutable and shared; the cache holds them weakly,
// so a rule stays cached exactly as long as some set (a broadcast state,
// an engine, the rule source) still uses it, and memory is bounded by the
// sets in use rather than by their history.

// Doc is a stored document: what a store of rules (etcd, broadcast state,
// a checkpoint) keeps of a rule or a list.
type Doc struct {
	File   string
	Source []byte
	// Version and State, when set, override the document's own: the
	// store's version and state of the rule.
	Version int64
	State   string
}

type parseKey struct {
	file string
	src  [sha256.Size]byte
}

type ruleKey struct {
	parseKey
	version int64
	state   string
	lists   [sha256.Size]byte
}

var docCache = struct {
	mu    sync.Mutex
	specs map[parseKey]weak.Pointer[Spec]
	rules map[ruleKey]weak.Pointer[Rule]
}{specs: map[parseKey]weak.Pointer[Spec]{}, rules: map[ruleKey]weak.Pointer[Rule]{}}

// cacheGet returns the live value of k in m, if any.
func cacheGet[K comparable, V any](m map[K]weak.Pointer[V], k K) *V {
	docCache.mu.Lock()
	defer docCache.mu.Unlock()
	return m[k].Value()
}

// cachePut keeps v under k until v is garbage.
func cachePut[K comparable, V any](m map[K]weak.Pointer[V], k K, v *V) {
	wp := weak.Make(v)
	docCache.mu.Lock()
	m[k] = wp
	docCache.mu.Unlock()
	runtime.AddCleanup(v, func(k K) {
		docCache.mu.Lock()
		if m[k] == wp {
			delete(m, k)
		}
		docCache.mu.Unlock()
	}, k)
}

// parseDoc parses one stored document, or returns the Spec parsed from
// the same file name and source before. Specs are not modified after
// Parse, so they can be shared. The key returned is that of the Spec's
// own source (as SetCodec writes it, which may differ from the text
// given), under which the Spec is cached too, so that the rule source and
// the subtasks decoding its sets share the Spec and its rule.
func parseDoc(d Doc) (*Spec, parseKey, error) {
	k := parseKey{file: d.File, src: sha256.Sum256(d.Source)}
	if s := cacheGet(docCache.specs, k); s != nil {
		return s, parseKey{file: s.file, src: sha256.Sum256(s.source)}, nil
	}
	docs, err := Parse(d.File, d.Source)
	if err != nil || len(docs) != 1 {
		return nil, k, fmt.Errorf("%w: a stored document does not parse: %v (%d documents)", ErrCorruptSet, err, len(docs))
	}
	s := docs[0]
	own := parseKey{file: s.file, src: sha256.Sum256(s.source)}
	if prev := cacheGet(docCache.specs, own); prev != nil {
		s = prev
	} else {
		cachePut(docCache.specs, own, s)
	}
	if own != k {
		cachePut(docCache.specs, k, s)
	}
	return s, own, nil
}

// CompileDocs compiles stored documents, which were checked (their inline
// tests included) when they were stored: lists first, then the rules in
// the order given, each with its Doc's version and state. A rule whose
// document, version, state and lists are those of a rule compiled before
// and still in use anywhere in the process is that rule.
func CompileDocs(docs []Doc) (*Set, error) {
	specs := make([]*Spec, len(docs))
	keys := make([]parseKey, len(docs))
	for i, d := range docs {
		s, k, err := parseDoc(d)
		if err != nil {
			return nil, err
		}
		specs[i], keys[i] = s, k
	}
	set := &Set{Lists: map[string]List{}}
	ids := map[string]string{}
	lh := sha256.New()
	errs := set.addLists(specs, ids, func(i int, s *Spec) {
		lh.Write(binary.AppendUvarint(nil, uint64(len(s.ID))))
		lh.Write([]byte(s.ID))
		lh.Write(keys[i].src[:])
	})
	var lists [sha256.Size]byte
	lh.Sum(lists[:0])
	for i, s := range specs {
		if s.Kind == "list" {
			continue
		}
		if where, dup := ids[s.ID]; dup {
			errs = append(errs, s.errorf(s.lineOf("id"), "id %s is also used at %s", s.ID, where))
			continue
		}
		ids[s.ID] = fmt.Sprintf("%s:%d", s.file, s.lineOf())
		r, err := compileStored(s, keys[i], docs[i], lists, set.Lists)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		set.Rules = append(set.Rules, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("rules: a stored rule set does not compile: %w", err)
	}
	set.listsKey = lists
	return set, nil
}

// compileStored is the rule of stored document d (parsed as s, whose own
// source has key) with the lists whose hash is listsKey: the one compiled
// before, while it is in use, or a new one.
func compileStored(s *Spec, key parseKey, d Doc, listsKey [sha256.Size]byte, lists map[string]List) (*Rule, error) {
	// The version and state in force: the Doc's, else the document's,
	// else compileRule's defaults.
	version, state := cmp.Or(d.Version, s.Version, 1), cmp.Or(d.State, s.State, "active")
	k := ruleKey{parseKey: key, version: version, state: state, lists: listsKey}
	if r := cacheGet(docCache.rules, k); r != nil {
		return r, nil
	}
	r, err := compileRule(s, lists)
	if err != nil {
		return nil, err
	}
	// Not shared yet: the overrides may still be written.
	r.Version, r.State = version, state
	r.digest = k.digest()
	// A group of 10,000 rules is built at every change of one of them:
	// its rules' StateIDs are made once, not at every build.
	r.stateID = r.StateID()
	cachePut(docCache.rules, k, r)
	return r, nil
}

// digest is a 64-bit summary of everything that makes the rule what it
// is: two rules with one digest behave alike (see Set.Digest).
func (k ruleKey) digest() uint64 {
	h := sha256.New()
	h.Write(binary.AppendUvarint(nil, uint64(len(k.file))))
	h.Write([]byte(k.file))
	h.Write(k.src[:])
	h.Write(binary.AppendVarint(nil, k.version))
	h.Write(binary.AppendUvarint(nil, uint64(len(k.state))))
	h.Write([]byte(k.state))
	h.Write(k.lists[:])
	return binary.LittleEndian.Uint64(h.Sum(nil))
}

// cachedRules is how many compiled rules the cache holds, for tests.
func cachedRules() int {
	docCache.mu.Lock()
	defer docCache.mu.Unlock()
	return len(docCache.rules)
}

// docsOf are set's documents as SetCodec keeps them.
func docsOf(set *Set) []Doc {
	docs := make([]Doc, 0, len(set.lists)+len(set.Rules))
	for _, s := range set.lists {
		docs = append(docs, Doc{File: s.file, Source: s.source})
	}
	for _, r := range set.Rules {
		docs = append(docs, Doc{File: r.spec.file, Source: r.spec.source, Version: r.Version, State: r.State})
	}
	return slices.Clip(docs)
}
