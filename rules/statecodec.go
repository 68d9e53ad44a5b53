package rules

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/weirstream/weir/runtime/cep"
)

// The state codec writes one rule's State for one key as bytes, so that a
// keyed operator can keep rule state in keyed state (checkpoints,
// savepoints, restores and rescales carry it) without sharing mutable
// structures with a snapshot being written.
//
// The encoding is deterministic: maps are written in the order of their
// encoded keys, so equal states give equal bytes. Running values that
// floating point makes path dependent (a look-back's sum after entries
// left it) are written as they are, not recomputed, so a restored rule
// raises exactly the alerts the uninterrupted one would have.

// stateFormat is the first byte of an encoded State.
const stateFormat = 1

// ErrCorruptState is wrapped by DecodeState on input it cannot read.
var ErrCorruptState = errors.New("rules: corrupt rule state encoding")

// The kinds of state body, one per state shape family.
const (
	bodyPlain    = iota // filter (dedupe only)
	bodyLookback        // aggregate, look-back window
	bodyWindows         // aggregate, tumbling or sliding windows
	bodySession         // aggregate, session window
	bodyProfile         // baseline
	bodySequence        // sequence
)

func (r *Rule) stateBody() byte {
	switch {
	case r.Kind == KindAggregate && r.window.typ == Lookback:
		return bodyLookback
	case r.Kind == KindAggregate && r.window.typ == Session:
		return bodySession
	case r.Kind == KindAggregate:
		return bodyWindows
	case r.Kind == KindBaseline:
		return bodyProfile
	case r.Kind == KindSequence:
		return bodySequence
	}
	return bodyPlain
}

// AppendState appends the encoding of st, a state of r, to dst. It fails
// only on a value no event decoded from JSON holds (a field of a type
// other than null, boolean, number, string, list or object).
func (rn *Runner) AppendState(dst []byte, r *Rule, st *State) ([]byte, error) {
	w := stateWriter{b: dst}
	w.b = append(w.b, stateFormat, r.stateBody())
	w.bool(st.alerted)
	w.varint(st.lastAlert)
	w.varint(st.cleanup)
	switch r.stateBody() {
	case bodyLookback:
		w.lookback(st.look)
	case bodyWindows:
		starts := make([]int64, 0, len(st.wins))
		for s := range st.wins {
			starts = append(starts, s)
		}
		slices.Sort(starts)
		w.uvarint(uint64(len(starts)))
		for _, s := range starts {
			w.varint(s)
			w.accs(*st.wins[s])
		}
	case bodySession:
		w.bool(st.session != nil)
		if s := st.session; s != nil {
			w.varint(s.start)
			w.varint(s.last)
			w.accs(s.a)
		}
	case bodyProfile:
		w.profile(st.prof)
	case bodySequence:
		w.bool(st.seq != nil)
		if st.seq != nil {
			codec, err := rn.seqCodec(r)
			if err != nil {
				return dst, err
			}
			w.bool(st.seqIdle)
			w.bytes(codec.Append(nil, st.seq))
		}
	}
	if w.err != nil {
		return dst, fmt.Errorf("rule %s: state: %w", r.ID, w.err)
	}
	return w.b, nil
}

// DecodeState reads a state of r written by AppendState; key is the key's
// field values (the State's alerts carry it). A state written for another
// shape of rule is refused.
func (rn *Runner) DecodeState(r *Rule, key map[string]any, src []byte) (*State, error) {
	d := &stateReader{b: src}
	if len(src) < 2 || src[0] != stateFormat {
		return nil, fmt.Errorf("%w: unknown format", ErrCorruptState)
	}
	if src[1] != r.stateBody() {
		return nil, fmt.Errorf("%w: a state of another kind of rule", ErrCorruptState)
	}
	d.b = src[2:]
	st := r.NewState(key)
	st.alerted = d.bool()
	st.lastAlert = d.varint()
	st.cleanup = d.varint()
	switch r.stateBody() {
	case bodyLookback:
		d.lookback(st.look)
	case bodyWindows:
		n := d.count()
		prev := int64(math.MinInt64)
		for i := 0; d.err == nil && i < n; i++ {
			s := d.varint()
			if i > 0 && s <= prev {
				d.fail()
			}
			prev = s
			a := accs(d.accs(len(r.aggs)))
			st.wins[s] = &a
		}
	case bodySession:
		if d.bool() {
			s := &sessionWindow{start: d.varint(), last: d.varint()}
			s.a = d.accs(len(r.aggs))
			st.session = s
		}
	case bodyProfile:
		d.profile(st.prof, &r.profile)
	case bodySequence:
		if d.bool() {
			st.seqIdle = d.bool()
			b := d.bytes()
			if d.err == nil {
				codec, err := rn.seqCodec(r)
				if err != nil {
					return nil, err
				}
				seq, err := codec.Decode(b)
				if err != nil {
					return nil, fmt.Errorf("%w: %w", ErrCorruptState, err)
				}
				st.seq = seq
			}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	if d.err != nil {
		return nil, fmt.Errorf("rule %s: %w", r.ID, d.err)
	}
	return st, nil
}

// seqCodec is the codec of r's automaton states on this Runner.
func (rn *Runner) seqCodec(r *Rule) (interface {
	Append([]byte, *cep.State[*Event]) []byte
	Decode([]byte) (*cep.State[*Event], error)
}, error) {
	n, err := rn.nfa(r)
	if err != nil {
		return nil, wrap(r, "pattern", err)
	}
	return n.StateCodec(eventCodec{}), nil
}

// eventCodec writes the events a partial match holds.
type eventCodec struct{}

func (eventCodec) Append(dst []byte, ev *Event) []byte {
	w := stateWriter{b: dst}
	w.varint(ev.TS)
	w.varint(int64(ev.Line))
	w.value(ev.Fields)
	if w.err != nil {
		// The event was taken by the automaton from decoded input, so
		// it holds JSON values; mark the impossible case rather than
		// write something that would decode as another event.
		return append(dst, 0xff)
	}
	return w.b
}

func (eventCodec) Decode(src []byte) (*Event, error) {
	d := &stateReader{b: src}
	ev := &Event{TS: d.varint(), Line: int(d.varint())}
	f, _ := d.value().(map[string]any)
	if d.err == nil && (f == nil || len(d.b) != 0) {
		d.fail()
	}
	if d.err != nil {
		return nil, d.err
	}
	ev.Fields = f
	return ev, nil
}

type stateWriter struct {
	b   []byte
	err error
}

func (w *stateWriter) uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *stateWriter) varint(v int64)   { w.b = binary.AppendVarint(w.b, v) }
func (w *stateWriter) float(f float64) {
	w.b = binary.LittleEndian.AppendUint64(w.b, math.Float64bits(f))
}
func (w *stateWriter) bool(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}
func (w *stateWriter) bytes(b []byte) {
	w.uvarint(uint64(len(b)))
	w.b = append(w.b, b...)
}

// The tags of values.
const (
	tagNil = iota
	tagFalse
	tagTrue
	tagNumber
	tagString
	tagList
	tagObject
)

// value writes a JSON value. Integers (events written in YAML hold them)
// become numbers, as they would have through JSON.
func (w *stateWriter) value(v any) {
	switch x := v.(type) {
	case nil:
		w.b = append(w.b, tagNil)
	case bool:
		w.bool(x)
		w.b[len(w.b)-1] += tagFalse
	case string:
		w.b = append(w.b, tagString)
		w.bytes([]byte(x))
	case []any:
		w.b = append(w.b, tagList)
		w.uvarint(uint64(len(x)))
		for _, e := range x {
			w.value(e)
		}
	case map[string]any:
		w.b = append(w.b, tagObject)
		w.uvarint(uint64(len(x)))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			w.bytes([]byte(k))
			w.value(x[k])
		}
	default:
		f, ok := number(v)
		if !ok {
			if w.err == nil {
				w.err = fmt.Errorf("a value of type %T has no encoding (want JSON values)", v)
			}
			w.b = append(w.b, tagNil)
			return
		}
		w.b = append(w.b, tagNumber)
		w.float(f)
	}
}

// sortedValues writes the values of a set or a map's keys in the order
// of their encodings, each followed by what each(v) writes.
func (w *stateWriter) sortedValues(vals []any, each func(v any)) {
	encs := make([][]byte, len(vals))
	idx := make([]int, len(vals))
	for i, v := range vals {
		sw := stateWriter{}
		sw.value(v)
		if sw.err != nil && w.err == nil {
			w.err = sw.err
		}
		encs[i], idx[i] = sw.b, i
	}
	sort.Slice(idx, func(a, b int) bool { return bytes.Compare(encs[idx[a]], encs[idx[b]]) < 0 })
	w.uvarint(uint64(len(vals)))
	for _, i := range idx {
		w.b = append(w.b, encs[i]...)
		if each != nil {
			each(vals[i])
		}
	}
}

func (w *stateWriter) accs(a []acc) {
	w.uvarint(uint64(len(a)))
	for i := range a {
		c := &a[i]
		w.float(c.count)
		w.float(c.sum)
		w.float(c.min)
		w.float(c.max)
		vals := make([]any, 0, len(c.distinct))
		for v := range c.distinct {
			vals = append(vals, v)
		}
		w.sortedValues(vals, nil)
	}
}

// lookback writes the live entries and each column's running sums; the
// queues and value counts follow from the entries and are rebuilt.
func (w *stateWriter) lookback(l *lookback) {
	n := len(l.cols)
	w.uvarint(uint64(n))
	w.varint(l.base + int64(l.head))
	w.uvarint(uint64(l.len()))
	for i := l.head; i < len(l.ts); i++ {
		w.varint(l.ts[i])
		for _, in := range l.in[i*n : (i+1)*n] {
			switch {
			case !in.ok:
				w.b = append(w.b, 0)
			case in.v != nil:
				w.b = append(w.b, 2)
				w.value(in.v)
			default:
				w.b = append(w.b, 1)
				w.float(in.f)
			}
		}
	}
	for j := range l.cols {
		c := &l.cols[j]
		w.float(c.count)
		w.float(c.sum)
		w.float(c.sumsq)
	}
}

func (w *stateWriter) profile(ps *profileState) {
	w.bool(ps.stats != nil)
	if ps.stats != nil {
		w.lookback(ps.stats)
	}
	w.uvarint(uint64(len(ps.hist)))
	for i := range ps.hist {
		h := &ps.hist[i]
		w.uvarint(uint64(len(h.ts) - h.head))
		for j := h.head; j < len(h.ts); j++ {
			w.varint(h.ts[j])
			w.value(h.vals[j])
		}
	}
	w.uvarint(uint64(len(ps.seen)))
	for _, m := range ps.seen {
		vals := make([]any, 0, len(m))
		for v := range m {
			vals = append(vals, v)
		}
		w.sortedValues(vals, func(v any) { w.varint(m[v]) })
	}
	w.bool(ps.prev != nil)
	if ps.prev != nil {
		w.value(ps.prev)
	}
	w.varint(ps.prevTS)
	// Only a rule with global statistics has them, so the encoding of
	// the others is what it was before they existed.
	if ps.global != nil {
		w.lookback(ps.global)
	}
}

// stateReader reads what stateWriter wrote; every count is checked
// against the bytes left, so corrupt input fails instead of allocating.
type stateReader struct {
	b     []byte
	err   error
	depth int
}

func (d *stateReader) fail() {
	if d.err == nil {
		d.err = ErrCorruptState
	}
}

func (d *stateReader) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *stateReader) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items that take at least a byte each.
func (d *stateReader) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *stateReader) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *stateReader) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail()
	return false
}

func (d *stateReader) float() float64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail()
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return f
}

func (d *stateReader) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// maxDepth bounds the nesting of decoded values.
const maxDepth = 64

func (d *stateReader) value() any {
	tag := d.byte()
	switch tag {
	case tagNil:
		return nil
	case tagFalse:
		return false
	case tagTrue:
		return true
	case tagNumber:
		return d.float()
	case tagString:
		return string(d.bytes())
	case tagList, tagObject:
		if d.depth++; d.depth > maxDepth {
			d.fail()
			return nil
		}
		defer func() { d.depth-- }()
		n := d.count()
		if tag == tagList {
			l := make([]any, 0, n)
			for i := 0; d.err == nil && i < n; i++ {
				l = append(l, d.value())
			}
			return l
		}
		m := make(map[string]any, n)
		for i := 0; d.err == nil && i < n; i++ {
			k := string(d.bytes())
			m[k] = d.value()
		}
		return m
	}
	d.fail()
	return nil
}

func (d *stateReader) accs(n int) []acc {
	if m := d.uvarint(); d.err == nil && m != uint64(n) {
		d.fail()
	}
	a := make([]acc, n)
	for i := 0; d.err == nil && i < n; i++ {
		c := &a[i]
		c.count, c.sum, c.min, c.max = d.float(), d.float(), d.float(), d.float()
		m := d.count()
		for j := 0; d.err == nil && j < m; j++ {
			v := d.value()
			if !setKey(v) {
				d.fail()
				break
			}
			if c.distinct == nil {
				c.distinct = map[any]struct{}{}
			}
			c.distinct[v] = struct{}{}
		}
	}
	return a
}

// setKey reports whether v may be a key of a value set: lists and
// objects are not comparable.
func setKey(v any) bool {
	switch v.(type) {
	case nil, bool, float64, string:
		return true
	}
	return false
}

// lookback refills l (empty, with the rule's columns) with the entries.
func (d *stateReader) lookback(l *lookback) {
	n := len(l.cols)
	if m := d.uvarint(); d.err == nil && m != uint64(n) {
		d.fail()
		return
	}
	l.base = d.varint()
	entries := d.count()
	// Room for the entries and for a few more: the event that follows a
	// decode appends one.
	if d.err == nil {
		c := entries + entries/4 + 4
		l.ts, l.in = make([]int64, 0, c), make([]aggInput, 0, c*n)
	}
	ins := make([]aggInput, n)
	for i := 0; d.err == nil && i < entries; i++ {
		t := d.varint()
		for j := range ins {
			ins[j] = aggInput{}
			switch d.byte() {
			case 0:
			case 1:
				ins[j] = aggInput{ok: true, f: d.float()}
			case 2:
				v := d.value()
				if v == nil || !setKey(v) {
					d.fail()
				}
				ins[j] = aggInput{ok: true, v: v}
			default:
				d.fail()
			}
		}
		if d.err == nil {
			l.add(t, ins)
		}
	}
	for j := range l.cols {
		c := &l.cols[j]
		count, sum, sumsq := d.float(), d.float(), d.float()
		if d.err == nil && count != c.count {
			d.fail()
		}
		c.sum, c.sumsq = sum, sumsq
	}
}

func (d *stateReader) profile(ps *profileState, p *profile) {
	if has := d.bool(); has != (ps.stats != nil) {
		d.fail()
		return
	}
	if ps.stats != nil {
		d.lookback(ps.stats)
	}
	if n := d.uvarint(); d.err == nil && n != uint64(len(ps.hist)) {
		d.fail()
		return
	}
	for i := 0; d.err == nil && i < len(ps.hist); i++ {
		h := &ps.hist[i]
		m := d.count()
		if m > h.n {
			d.fail()
		}
		for j := 0; d.err == nil && j < m; j++ {
			h.ts = append(h.ts, d.varint())
			h.vals = append(h.vals, d.value())
		}
	}
	if n := d.uvarint(); d.err == nil && n != uint64(len(ps.seen)) {
		d.fail()
		return
	}
	for i := 0; d.err == nil && i < len(ps.seen); i++ {
		m := d.count()
		for j := 0; d.err == nil && j < m; j++ {
			v := d.value()
			if !setKey(v) {
				d.fail()
				break
			}
			ps.seen[i][v] = d.varint()
		}
	}
	if d.bool() {
		prev, ok := d.value().(map[string]any)
		if !ok {
			d.fail()
		}
		ps.prev = prev
	}
	ps.prevTS = d.varint()
	if ps.global != nil {
		d.lookback(ps.global)
	}
}
