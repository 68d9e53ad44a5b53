package window

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/weirstream/weir/runtime"
)

// mapped is one session window of a key and the window under which its
// accumulator is stored. The state window stays put when sessions merge,
// so merging moves the smaller accumulators into it instead of rewriting
// every one under a new name (Flink's MergingWindowSet).
type mapped struct {
	w, state Window
}

// mergeOp is one merge caused by adding a window: the windows in merged
// (the new window left out) became result, whose state lives in state; the
// accumulators under mergedState are to be merged into it and dropped.
type mergeOp struct {
	result      Window
	merged      []Window
	state       Window
	mergedState []Window
}

// mergingSet is the set of session windows of one key while an element is
// being added. Its buffers are reused from element to element.
type mergingSet struct {
	set    []mapped
	sorted []Window
	ops    []mergeOp
	// wins backs the ops' window lists; a list stays valid when a later
	// append moves the buffer, since nothing writes to it in place.
	wins []Window
}

func (s *mergingSet) find(w Window) int {
	for i, m := range s.set {
		if m.w == w {
			return i
		}
	}
	return -1
}

// add adds nw to the set, merging it with every window it transitively
// overlaps or touches, and returns the window nw ended up in. The merges
// the caller must carry out on state and timers are left in s.ops.
func (s *mergingSet) add(nw Window) Window {
	s.ops = s.ops[:0]
	s.wins = s.wins[:0]
	s.sorted = s.sorted[:0]
	for _, m := range s.set {
		s.sorted = append(s.sorted, m.w)
	}
	s.sorted = append(s.sorted, nw)
	slices.SortFunc(s.sorted, func(a, b Window) int {
		if a.Start != b.Start {
			if a.Start < b.Start {
				return -1
			}
			return 1
		}
		switch {
		case a.End < b.End:
			return -1
		case a.End > b.End:
			return 1
		}
		return 0
	})
	result, mergedNew := nw, false
	for i := 0; i < len(s.sorted); {
		cover, j := s.sorted[i], i+1
		for j < len(s.sorted) && cover.intersects(s.sorted[j]) {
			cover = cover.cover(s.sorted[j])
			j++
		}
		if j-i > 1 {
			if s.mergeGroup(s.sorted[i:j], cover, nw) {
				result, mergedNew = cover, true
			}
		}
		i = j
	}
	if !mergedNew {
		s.set = append(s.set, mapped{w: nw, state: nw})
	}
	return result
}

// mergeGroup replaces the windows of group (sorted, at least two) by
// cover. It reports whether nw was among them.
func (s *mergingSet) mergeGroup(group []Window, cover, nw Window) bool {
	op := mergeOp{result: cover}
	hadNew := false
	from := len(s.wins)
	for _, w := range group {
		if w == nw && !hadNew {
			hadNew = true // the new window has no state of its own
			continue
		}
		s.wins = append(s.wins, w)
	}
	op.merged = s.wins[from:len(s.wins):len(s.wins)]
	from = len(s.wins)
	for k, w := range op.merged {
		i := s.find(w)
		if i < 0 {
			continue
		}
		if k == 0 {
			op.state = s.set[i].state
		} else {
			s.wins = append(s.wins, s.set[i].state)
		}
		s.set = slices.Delete(s.set, i, i+1)
	}
	op.mergedState = s.wins[from:len(s.wins):len(s.wins)]
	s.set = append(s.set, mapped{w: cover, state: op.state})
	// A window that only absorbed the new element without growing needs
	// no merge of state or timers.
	if !(len(op.merged) == 1 && op.merged[0] == cover) {
		s.ops = append(s.ops, op)
	}
	return hadNew
}

// stateOf returns the state window of session window w.
func (s *mergingSet) stateOf(w Window) (Window, bool) {
	if i := s.find(w); i >= 0 {
		return s.set[i].state, true
	}
	return Window{}, false
}

// retire drops w from the set.
func (s *mergingSet) retire(w Window) {
	if i := s.find(w); i >= 0 {
		s.set = slices.Delete(s.set, i, i+1)
	}
}

// sessionsCodec serialises a key's session windows and their state
// windows: a count, then four varints each.
type sessionsCodec struct{}

func (sessionsCodec) Append(dst []byte, set []mapped) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(set)))
	for _, m := range set {
		dst = Codec{}.Append(dst, m.w)
		dst = Codec{}.Append(dst, m.state)
	}
	return dst
}

func (sessionsCodec) Decode(src []byte) ([]mapped, error) {
	n, k := binary.Uvarint(src)
	if k <= 0 || n > uint64(len(src))/4 { // each window pair takes at least 4 bytes
		return nil, fmt.Errorf("session windows: %w", runtime.ErrCorrupt)
	}
	r := runtime.NewReader(src[k:])
	set := make([]mapped, 0, n)
	for range n {
		set = append(set, mapped{w: Window{Start: r.Varint(), End: r.Varint()}, state: Window{Start: r.Varint(), End: r.Varint()}})
	}
	if err := r.Done(); err != nil {
		return nil, fmt.Errorf("session windows: %w", err)
	}
	return set, nil
}
