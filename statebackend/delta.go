package statebackend

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Delta files: what changed in a subtask's keyed state between two
// snapshots of its tables, written in the state file format so that ranged
// reads, per-block CRCs and the index work unchanged.
//
// Why entries and not key groups: a job has at most a few hundred key
// groups per subtask, and 1 % of the keys written at random touch nearly
// all of them, so re-uploading changed key groups would re-upload nearly
// everything. A delta holds, per section and key group, the entries that
// are new or changed (under the section's own name) and the keys that went
// away (under DeletedPrefix + the name, with empty values; for timers the
// whole entry, since a key may have several). Restores apply the deltas of
// a chain in order over its full file (MergeChain).
//
// Finding the changes costs nothing on the write path: it compares the
// copy-on-write snapshots of the two checkpoints on the upload goroutine.
// A value table's snapshot shares every page not written since the
// earlier snapshot, so only the pages that differ are compared, slot by
// slot, and only the slots that differ are looked up in the other
// snapshot (an entry that a backward-shift delete moved is found there and
// not reported; after a growth every entry is looked up).
// Map, list and word tables (entrydiff.go) compare their pages the same
// way, an entry by identity of its map or list, or by its word. Timer
// sections have no such sharing and are compared group by group in full.

// DeletedPrefix starts the name of the section of a delta file that lists
// the keys a section lost.
const DeletedPrefix = "_deleted:"

// groupDiffer is implemented by sections that find their changes since an
// earlier snapshot of the same table without encoding unchanged entries.
// ok is false when prev is not a snapshot of the same table.
type groupDiffer interface {
	appendDiff(prev Section, kg int, up, del []byte) (up2 []byte, nUp int, del2 []byte, nDel int, ok bool)
}

// groupSharer is implemented by sections whose unchanged key groups are
// shared with earlier snapshots of the same table.
type groupSharer interface {
	sameGroup(prev Section, kg int) bool
}

// WriteDeltaFile writes the changes from the snapshot prev to the snapshot
// cur of the same tables (both from Backend.Snapshot, prev taken first,
// plus the runtime's timer sections) for the key groups in r, with the
// operator state in full. Applied by MergeChain over the state prev was
// written as, it gives the state of cur.
func WriteDeltaFile(r KeyGroupRange, prev, cur []Section, operatorState [][]byte) ([]byte, error) {
	byName := make(map[string]Section, len(prev))
	for _, p := range prev {
		byName[p.Name()] = p
	}
	sections := make([]Section, 0, 2*len(cur))
	for _, c := range cur {
		if strings.HasPrefix(c.Name(), DeletedPrefix) {
			return nil, fmt.Errorf("state section %q: the prefix %q is reserved", c.Name(), DeletedPrefix)
		}
		d := &deltaPair{cur: c}
		if p := byName[c.Name()]; p != nil && p.Kind() == c.Kind() {
			d.prev = p
		}
		sections = append(sections, (*deltaUpserts)(d), (*deltaDeletes)(d))
	}
	return WriteStateFile(r, sections, operatorState)
}

// deltaPair computes one section's changes group by group; WriteStateFile
// asks for the upserts of a group and then for its deletions, so the pair
// computes both at the first call and hands out the second at the next.
type deltaPair struct {
	prev, cur Section
	kg        int
	up, del   []byte
	nUp, nDel int
	ready     bool
}

type deltaUpserts deltaPair
type deltaDeletes deltaPair

func (d *deltaUpserts) Name() string { return d.cur.Name() }
func (d *deltaUpserts) Kind() Kind   { return d.cur.Kind() }
func (d *deltaDeletes) Name() string { return DeletedPrefix + d.cur.Name() }
func (d *deltaDeletes) Kind() Kind   { return d.cur.Kind() }

func (d *deltaUpserts) AppendGroup(dst []byte, kg int) ([]byte, int) {
	p := (*deltaPair)(d)
	p.compute(kg)
	return append(dst, p.up...), p.nUp
}

func (d *deltaDeletes) AppendGroup(dst []byte, kg int) ([]byte, int) {
	p := (*deltaPair)(d)
	p.compute(kg)
	return append(dst, p.del...), p.nDel
}

func (p *deltaPair) compute(kg int) {
	if p.ready && p.kg == kg {
		return
	}
	p.kg, p.ready = kg, true
	p.up, p.del, p.nUp, p.nDel = p.up[:0], p.del[:0], 0, 0
	if p.prev == nil {
		p.up, p.nUp = p.cur.AppendGroup(p.up, kg)
		return
	}
	if g, ok := p.cur.(groupDiffer); ok {
		var done bool
		if p.up, p.nUp, p.del, p.nDel, done = g.appendDiff(p.prev, kg, p.up, p.del); done {
			return
		}
		p.up, p.del, p.nUp, p.nDel = p.up[:0], p.del[:0], 0, 0
	}
	if s, ok := p.cur.(groupSharer); ok && s.sameGroup(p.prev, kg) {
		return
	}
	p.up, p.nUp, p.del, p.nDel = diffEncoded(p.prev, p.cur, kg, p.up, p.del)
}

// diffEncoded compares key group kg of two sections by their encoded
// entries: by key, or for timers (several entries per key) by the whole
// entry, counted.
func diffEncoded(prev, cur Section, kg int, up, del []byte) ([]byte, int, []byte, int) {
	pb, _ := prev.AppendGroup(nil, kg)
	cb, _ := cur.AppendGroup(nil, kg)
	if bytes.Equal(pb, cb) {
		return up, 0, del, 0
	}
	nUp, nDel := 0, 0
	if cur.Kind() == KindTimers {
		count := map[string]int{}
		eachRaw(pb, func(raw, _, _ []byte) { count[string(raw)]++ })
		eachRaw(cb, func(raw, _, _ []byte) {
			if count[string(raw)] > 0 {
				count[string(raw)]--
				return
			}
			up = append(up, raw...)
			nUp++
		})
		eachRaw(pb, func(raw, _, _ []byte) {
			if count[string(raw)] > 0 {
				count[string(raw)]--
				del = append(del, raw...)
				nDel++
			}
		})
		return up, nUp, del, nDel
	}
	old := map[string][]byte{}
	eachRaw(pb, func(_, k, v []byte) { old[string(k)] = v })
	eachRaw(cb, func(raw, k, v []byte) {
		ov, ok := old[string(k)]
		if ok {
			delete(old, string(k))
			if bytes.Equal(ov, v) {
				return
			}
		}
		up = append(up, raw...)
		nUp++
	})
	for k := range old {
		del = appendDeleted(del, []byte(k))
		nDel++
	}
	return up, nUp, del, nDel
}

// eachRaw calls f for every entry of an encoded group (which a section
// produced, so it is well formed) with its raw bytes, key and value.
func eachRaw(b []byte, f func(raw, k, v []byte)) {
	for len(b) > 0 {
		k, v, rest, ok := nextEntry(b)
		if !ok {
			panic("statebackend: a section encoded a malformed entry")
		}
		f(b[:len(b)-len(rest)], k, v)
		b = rest
	}
}

// appendDeleted appends a deletion entry: the key and an empty value.
func appendDeleted(dst, k []byte) []byte {
	dst = appendField(dst, k)
	return append(dst, 0)
}

func appendField(dst, f []byte) []byte {
	p := len(dst)
	dst = append(append(dst, 0), f...)
	return fixLen(dst, p)
}

// samePage tells a page shared by two snapshots from a copy.
func samePage[K comparable, V any](a, b *page[K, V]) bool { return a == b }

func (s *valueSection[K, V]) appendDiff(prev Section, kg int, up, del []byte) ([]byte, int, []byte, int, bool) {
	p, ok := prev.(*valueSection[K, V])
	if !ok || p.first != s.first || len(p.views) != len(s.views) {
		return up, 0, del, 0, false
	}
	i := kg - s.first
	if i < 0 || i >= len(s.views) {
		return up, 0, del, 0, true
	}
	cv, pv := s.views[i].pages, p.views[i].pages
	ct, pt := viewTable(s.views[i]), viewTable(p.views[i])
	// After a growth (or the first entries) every page is new.
	all := len(cv) != len(pv)
	var a, b []byte
	equal := func(x, y V) bool {
		a, b = s.vc.Append(a[:0], x), s.vc.Append(b[:0], y)
		return bytes.Equal(a, b)
	}
	nUp, nDel := 0, 0
	upsert := func(e *slot[K, V]) {
		if o := pt.find(e.hash, e.key); o >= 0 && equal(pt.at(uint32(o)).val, e.val) {
			return // moved by a delete's shift, not changed
		}
		q := len(up)
		up = s.kc.Append(append(up, 0), e.key)
		up = fixLen(up, q)
		q = len(up)
		up = s.vc.Append(append(up, 0), e.val)
		up = fixLen(up, q)
		nUp++
	}
	deleted := func(e *slot[K, V]) {
		if ct.find(e.hash, e.key) < 0 {
			a = s.kc.Append(a[:0], e.key)
			del = appendDeleted(del, a)
			nDel++
		}
	}
	if all {
		for _, pg := range cv {
			for k := range pg {
				if pg[k].full {
					upsert(&pg[k])
				}
			}
		}
		for _, pg := range pv {
			for k := range pg {
				if pg[k].full {
					deleted(&pg[k])
				}
			}
		}
		return up, nUp, del, nDel, true
	}
	for j, pg := range cv {
		old := pv[j]
		if samePage(pg, old) {
			continue
		}
		// Most slots of a copied page are as they were: only those that
		// differ need a lookup in the other snapshot.
		for k := range pg {
			n, o := &pg[k], &old[k]
			if n.full && o.full && n.hash == o.hash && n.key == o.key && equal(o.val, n.val) {
				continue
			}
			if n.full {
				upsert(n)
			}
			if o.full && (!n.full || n.key != o.key) {
				deleted(o)
			}
		}
	}
	return up, nUp, del, nDel, true
}

// viewTable wraps a snapshot's pages as a read-only cowTable, for its
// lookups; the capacity is the pages' slots, as cowTable.grow sizes it.
func viewTable[K comparable, V any](v cowView[K, V]) *cowTable[K, V] {
	if len(v.pages) == 0 {
		return &cowTable[K, V]{}
	}
	c := uint32(len(v.pages) * pageSlots)
	return &cowTable[K, V]{pages: v.pages, mask: c - 1, shift: uint8(32 - bitsLen(c-1)), n: v.n}
}

// MergeChain applies the deltas of a chain to its full file: chain[0] is
// read from the full state file, each later one from a delta file written
// by WriteDeltaFile against the state before it, all for the same key
// groups. The result is the state of the last file, as if it had been
// written in full. A deletion of a key the state does not hold means the
// chain is broken (a delta applied to the wrong base): an error wrapping
// ErrCorrupt that names the delta file.
func MergeChain(chain []*KeyedState) (*KeyedState, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("statebackend: merging an empty chain")
	}
	base := chain[0]
	if len(chain) == 1 {
		return base, nil
	}
	out := &KeyedState{file: fmt.Sprintf("%s (+%d deltas)", base.file, len(chain)-1), keyGroups: base.keyGroups}
	for _, s := range base.sections {
		if strings.HasPrefix(s.name, DeletedPrefix) {
			return nil, corrupt(base.file, "state %q: a delta's deletions in the full file of a chain", s.name)
		}
		c := *s
		c.file = out.file
		c.groups = slices.Clone(s.groups)
		out.sections = append(out.sections, &c)
	}
	for _, d := range chain[1:] {
		if !d.keyGroups.Empty() && (d.keyGroups.First < out.keyGroups.First || d.keyGroups.Last > out.keyGroups.Last) && !out.keyGroups.Empty() {
			return nil, corrupt(d.file, "delta covers key groups %v, the chain's full file %v", d.keyGroups, out.keyGroups)
		}
		if out.keyGroups.Empty() {
			out.keyGroups = d.keyGroups
		}
		seen := map[string]bool{}
		for _, sec := range d.sections {
			name := strings.TrimPrefix(sec.name, DeletedPrefix)
			if seen[name] {
				continue
			}
			seen[name] = true
			// A delta written by WriteDeltaFile has both sections of every
			// name; one with deletions only is applied all the same.
			s := d.section(name)
			if s == nil {
				s = &restoredSection{file: d.file, name: name, kind: sec.kind}
			}
			target := out.section(s.name)
			if target == nil {
				target = &restoredSection{file: out.file, name: s.name, kind: s.kind}
				out.sections = append(out.sections, target)
			} else if target.kind != s.kind {
				return nil, corrupt(d.file, "state %q is %s state in the delta, %s before", s.name, s.kind, target.kind)
			}
			if err := applyDelta(target, s, d.section(DeletedPrefix+s.name), d.file); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// liveGroup is one key group of a section being merged: value by key, or
// for timers the count of each whole entry.
type liveGroup struct {
	vals  map[string][]byte
	count map[string]int
}

func applyDelta(target, up, del *restoredSection, file string) error {
	touched := map[int]bool{}
	for _, g := range up.groups {
		touched[g.kg] = true
	}
	if del != nil {
		for _, g := range del.groups {
			touched[g.kg] = true
		}
	}
	if len(touched) == 0 {
		return nil
	}
	timers := target.kind == KindTimers
	live := map[int]*liveGroup{}
	kept := target.groups[:0:0]
	for _, g := range target.groups {
		if !touched[g.kg] {
			kept = append(kept, g)
			continue
		}
		lg := &liveGroup{vals: map[string][]byte{}, count: map[string]int{}}
		bad := false
		eachEntry(g.data, &bad, func(raw, k, v []byte) {
			if timers {
				lg.count[string(raw)]++
			} else {
				lg.vals[string(k)] = v
			}
		})
		if bad {
			return corrupt(target.file, "state %q, key group %d: truncated entry", target.name, g.kg)
		}
		live[g.kg] = lg
	}
	get := func(kg int) *liveGroup {
		lg := live[kg]
		if lg == nil {
			lg = &liveGroup{vals: map[string][]byte{}, count: map[string]int{}}
			live[kg] = lg
		}
		return lg
	}
	if del != nil {
		for _, g := range del.groups {
			lg, bad, missing := get(g.kg), false, false
			eachEntry(g.data, &bad, func(raw, k, _ []byte) {
				if timers {
					if lg.count[string(raw)] == 0 {
						missing = true
					}
					lg.count[string(raw)]--
					return
				}
				if _, ok := lg.vals[string(k)]; !ok {
					missing = true
				}
				delete(lg.vals, string(k))
			})
			switch {
			case bad:
				return corrupt(file, "state %q, key group %d: truncated deletion", up.name, g.kg)
			case missing:
				return corrupt(file, "state %q, key group %d: the delta deletes an entry the state before it lacks (broken chain)", up.name, g.kg)
			}
		}
	}
	for _, g := range up.groups {
		lg, bad := get(g.kg), false
		eachEntry(g.data, &bad, func(raw, k, v []byte) {
			if timers {
				lg.count[string(raw)]++
			} else {
				lg.vals[string(k)] = v
			}
		})
		if bad {
			return corrupt(file, "state %q, key group %d: truncated entry", up.name, g.kg)
		}
	}
	for kg, lg := range live {
		var data []byte
		n := 0
		if timers {
			for raw, c := range lg.count {
				for range c {
					data = append(data, raw...)
					n++
				}
			}
		} else {
			for k, v := range lg.vals {
				data = appendField(appendField(data, []byte(k)), v)
				n++
			}
		}
		if n > 0 {
			kept = append(kept, groupEntries{kg: kg, count: n, data: data})
		}
	}
	slices.SortFunc(kept, func(a, b groupEntries) int { return a.kg - b.kg })
	target.groups = kept
	return nil
}

// eachEntry walks encoded entries read from a file; *bad reports a
// malformed one (the walk stops there).
func eachEntry(b []byte, bad *bool, f func(raw, k, v []byte)) {
	for len(b) > 0 {
		k, v, rest, ok := nextEntry(b)
		if !ok {
			*bad = true
			return
		}
		f(b[:len(b)-len(rest)], k, v)
		b = rest
	}
}
