package statebackend

import (
	"reflect"
	"unsafe"
)

// diffView appends what changed in one key group between two snapshots
// of one copy-on-write table, pv taken before cv: the entries of cv new or
// changed since pv to up, and the keys of pv's entries gone from cv to
// del, in the delta file's formats (see delta.go). As for value tables,
// pages the two snapshots share are skipped, and only slots that differ
// are looked up in the other snapshot. has says whether a slot's value
// holds an entry of this section (a word table's entry may hold other
// words only), same whether two held values are equal, and encode appends
// an entry.
func diffView[K comparable, V any](cv, pv cowView[K, V], kc Codec[K], has func(*V) bool, same func(a, b *V) bool,
	encode func(dst []byte, k K, v *V) []byte, up, del []byte) ([]byte, int, []byte, int) {
	ct, pt := viewTable(cv), viewTable(pv)
	nUp, nDel := 0, 0
	var kb []byte
	upsert := func(e *slot[K, V]) {
		if !has(&e.val) {
			return
		}
		if o := pt.find(e.hash, e.key); o >= 0 {
			if ov := &pt.at(uint32(o)).val; has(ov) && same(ov, &e.val) {
				return // moved by a delete's shift, not changed
			}
		}
		up = encode(up, e.key, &e.val)
		nUp++
	}
	deleted := func(e *slot[K, V]) {
		if !has(&e.val) {
			return
		}
		if o := ct.find(e.hash, e.key); o >= 0 && has(&ct.at(uint32(o)).val) {
			return
		}
		kb = kc.Append(kb[:0], e.key)
		del = appendDeleted(del, kb)
		nDel++
	}
	cp, pp := cv.pages, pv.pages
	if len(cp) != len(pp) {
		// After a growth (or the first entries) every page is new.
		for _, pg := range cp {
			for k := range pg {
				if pg[k].full {
					upsert(&pg[k])
				}
			}
		}
		for _, pg := range pp {
			for k := range pg {
				if pg[k].full {
					deleted(&pg[k])
				}
			}
		}
		return up, nUp, del, nDel
	}
	for j, pg := range cp {
		old := pp[j]
		if samePage(pg, old) {
			continue
		}
		for k := range pg {
			n, o := &pg[k], &old[k]
			if n.full && o.full && n.key == o.key {
				nh, oh := has(&n.val), has(&o.val)
				if nh == oh && (!nh || same(&n.val, &o.val)) {
					continue
				}
			}
			if n.full {
				upsert(n)
			}
			if o.full {
				deleted(o)
			}
		}
	}
	return up, nUp, del, nDel
}

func (s *wordSection[K, V]) appendDiff(prev Section, kg int, up, del []byte) ([]byte, int, []byte, int, bool) {
	p, ok := prev.(*wordSection[K, V])
	if !ok || p.bit != s.bit || p.view.s.first != s.view.s.first || len(p.view.s.views) != len(s.view.s.views) {
		return up, 0, del, 0, false
	}
	i := kg - s.view.s.first
	if i < 0 || i >= len(s.view.s.views) {
		return up, 0, del, 0, true
	}
	has := func(e *Entry) bool { return e.has(s.bit) }
	same := func(a, b *Entry) bool { return a.words[s.bit] == b.words[s.bit] }
	encode := func(dst []byte, k K, e *Entry) []byte { d, _ := s.encode(dst, k, e); return d }
	up, nUp, del, nDel := diffView(s.view.s.views[i], p.view.s.views[i], s.kc, has, same, encode, up, del)
	return up, nUp, del, nDel, true
}

func (s *mapSection[K, UK, V]) appendDiff(prev Section, kg int, up, del []byte) ([]byte, int, []byte, int, bool) {
	p, ok := prev.(*mapSection[K, UK, V])
	if !ok || p.first != s.first || len(p.views) != len(s.views) {
		return up, 0, del, 0, false
	}
	i := kg - s.first
	if i < 0 || i >= len(s.views) {
		return up, 0, del, 0, true
	}
	// A map the table wrote after the earlier snapshot is a clone, so
	// the same map is the same content. Map identity needs reflect; this
	// runs on the upload goroutine.
	same := func(a, b *userMap[UK, V]) bool {
		return reflect.ValueOf(a.m).UnsafePointer() == reflect.ValueOf(b.m).UnsafePointer()
	}
	up, nUp, del, nDel := diffView(s.views[i], p.views[i], s.kc, func(*userMap[UK, V]) bool { return true }, same, s.appendEntry, up, del)
	return up, nUp, del, nDel, true
}

func (s *listSection[K, V]) appendDiff(prev Section, kg int, up, del []byte) ([]byte, int, []byte, int, bool) {
	p, ok := prev.(*listSection[K, V])
	if !ok || p.first != s.first || len(p.views) != len(s.views) {
		return up, 0, del, 0, false
	}
	i := kg - s.first
	if i < 0 || i >= len(s.views) {
		return up, 0, del, 0, true
	}
	// Lists only grow in place (see ListTable), so the same array and
	// length are the same content.
	same := func(a, b *[]V) bool {
		return len(*a) == len(*b) && unsafe.SliceData(*a) == unsafe.SliceData(*b)
	}
	up, nUp, del, nDel := diffView(s.views[i], p.views[i], s.kc, func(*[]V) bool { return true }, same, s.appendEntry, up, del)
	return up, nUp, del, nDel, true
}
