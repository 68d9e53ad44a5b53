package cep

import (
	"encoding/binary"
	"fmt"

	"github.com/weirstream/weir/runtime"
)

const stateVersion = 1

// StateCodec serialises a State for keyed state snapshots. Events shared by
// several partial matches are written once. A state written under another
// pattern is refused on decode: state indices would mean something else.
func (n *NFA[T]) StateCodec(events runtime.Codec[T]) runtime.Codec[*State[T]] {
	return stateCodec[T]{n: n, ev: events}
}

type stateCodec[T any] struct {
	n  *NFA[T]
	ev runtime.Codec[T]
}

// Layout: version, fingerprint, seq; the nodes, each after its
// predecessor (prev as index+1, 0 for none; step; ts; seq; event bytes);
// then the runs and the held-back matches (state; node index+1; start ts
// and seq).
func (c stateCodec[T]) Append(dst []byte, s *State[T]) []byte {
	dst = binary.AppendUvarint(dst, stateVersion)
	dst = binary.LittleEndian.AppendUint64(dst, c.n.fingerprint)
	dst = binary.AppendVarint(dst, s.seq)
	index := map[*node[T]]int{}
	var order []*node[T]
	var chain []*node[T]
	add := func(p *node[T]) {
		chain = chain[:0]
		for x := p; x != nil; x = x.prev {
			if _, ok := index[x]; ok {
				break
			}
			chain = append(chain, x)
		}
		for i := len(chain) - 1; i >= 0; i-- {
			index[chain[i]] = len(order)
			order = append(order, chain[i])
		}
	}
	for _, r := range s.runs {
		add(r.path)
	}
	for _, r := range s.done {
		add(r.path)
	}
	dst = binary.AppendUvarint(dst, uint64(len(order)))
	var ev []byte
	for _, x := range order {
		prev := 0
		if x.prev != nil {
			prev = index[x.prev] + 1
		}
		dst = binary.AppendUvarint(dst, uint64(prev))
		dst = binary.AppendUvarint(dst, uint64(x.step))
		dst = binary.AppendVarint(dst, x.ts)
		dst = binary.AppendVarint(dst, x.seq)
		ev = c.ev.Append(ev[:0], x.ev)
		dst = binary.AppendUvarint(dst, uint64(len(ev)))
		dst = append(dst, ev...)
	}
	appendRuns := func(rs []run[T]) {
		dst = binary.AppendUvarint(dst, uint64(len(rs)))
		for _, r := range rs {
			ref := 0
			if r.path != nil {
				ref = index[r.path] + 1
			}
			dst = binary.AppendUvarint(dst, uint64(r.state))
			dst = binary.AppendUvarint(dst, uint64(ref))
			dst = binary.AppendVarint(dst, r.start.ts)
			dst = binary.AppendVarint(dst, r.start.seq)
		}
	}
	appendRuns(s.runs)
	appendRuns(s.done)
	return dst
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = runtime.ErrCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = runtime.ErrCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bounded reads a uvarint that must be below limit.
func (d *decoder) bounded(limit int) int {
	v := d.uvarint()
	if d.err == nil && v >= uint64(limit) {
		d.err = runtime.ErrCorrupt
		return 0
	}
	return int(v)
}

func (c stateCodec[T]) Decode(src []byte) (*State[T], error) {
	d := &decoder{b: src}
	if v := d.uvarint(); d.err == nil && v != stateVersion {
		return nil, fmt.Errorf("cep state: version %d unknown: %w", v, runtime.ErrCorrupt)
	}
	if d.err != nil || len(d.b) < 8 {
		return nil, fmt.Errorf("cep state: %w", runtime.ErrCorrupt)
	}
	if fp := binary.LittleEndian.Uint64(d.b); fp != c.n.fingerprint {
		return nil, fmt.Errorf("cep state was written by another pattern (fingerprint %x, this pattern %x): %w", fp, c.n.fingerprint, runtime.ErrUnrecoverable)
	}
	d.b = d.b[8:]
	s := &State[T]{seq: d.varint()}
	count := d.uvarint()
	if d.err == nil && count > uint64(len(d.b)) { // every node takes bytes
		d.err = runtime.ErrCorrupt
	}
	nodes := make([]*node[T], 0, int(min(count, 1<<16)))
	for i := 0; d.err == nil && i < int(count); i++ {
		x := &node[T]{}
		if prev := d.bounded(len(nodes) + 1); prev > 0 {
			x.prev = nodes[prev-1]
		}
		x.step = int32(d.bounded(len(c.n.stepNames)))
		x.ts = d.varint()
		x.seq = d.varint()
		l := d.uvarint()
		if d.err != nil {
			break
		}
		if l > uint64(len(d.b)) {
			d.err = runtime.ErrCorrupt
			break
		}
		ev, err := c.ev.Decode(d.b[:l])
		if err != nil {
			return nil, fmt.Errorf("cep state: event: %w", err)
		}
		d.b = d.b[l:]
		x.ev = ev
		nodes = append(nodes, x)
	}
	readRuns := func() []run[T] {
		n := d.uvarint()
		if d.err != nil || n > uint64(len(d.b)) {
			d.err = runtime.ErrCorrupt
			return nil
		}
		var rs []run[T]
		for i := 0; d.err == nil && i < int(n); i++ {
			var r run[T]
			r.state = int32(d.bounded(len(c.n.states)))
			if ref := d.bounded(len(nodes) + 1); ref > 0 {
				r.path = nodes[ref-1]
			}
			r.start.ts = d.varint()
			r.start.seq = d.varint()
			rs = append(rs, r)
		}
		return rs
	}
	s.runs = readRuns()
	s.done = readRuns()
	if d.err == nil && len(d.b) != 0 {
		d.err = runtime.ErrCorrupt
	}
	if d.err != nil {
		return nil, fmt.Errorf("cep state: %w", d.err)
	}
	return s, nil
}
