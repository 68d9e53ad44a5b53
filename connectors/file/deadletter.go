package file

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/weirstream/weir/runtime"
)

// DeadLetter is an input line that did not parse: where it came from, the
// line itself and why it was refused.
type DeadLetter struct {
	Source string // the file
	Line   int64  // the line's number in the file
	Text   string
	Reason string
}

// String renders d as "file:line: reason: text".
func (d DeadLetter) String() string {
	return d.Source + ":" + strconv.FormatInt(d.Line, 10) + ": " + d.Reason + ": " + d.Text
}

// AppendJSON appends d as one JSON object without a newline:
// {"source":"...","line":N,"reason":"...","text":"..."}.
func (d DeadLetter) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"source":`...)
	dst = AppendJSONString(dst, d.Source)
	dst = append(dst, `,"line":`...)
	dst = strconv.AppendInt(dst, d.Line, 10)
	dst = append(dst, `,"reason":`...)
	dst = AppendJSONString(dst, d.Reason)
	dst = append(dst, `,"text":`...)
	dst = AppendJSONString(dst, d.Text)
	return append(dst, '}')
}

// DeadLetterCodec serialises dead letters for the exchange.
type DeadLetterCodec struct{}

func (DeadLetterCodec) Append(dst []byte, d DeadLetter) []byte {
	dst = appendString(dst, d.Source)
	dst = binary.AppendVarint(dst, d.Line)
	dst = appendString(dst, d.Text)
	return appendString(dst, d.Reason)
}

func (DeadLetterCodec) Decode(src []byte) (DeadLetter, error) {
	r := runtime.NewReader(src)
	d := DeadLetter{Source: string(r.Bytes()), Line: r.Varint(), Text: string(r.Bytes()), Reason: string(r.Bytes())}
	if err := r.Done(); err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter: %w", err)
	}
	return d, nil
}

// DeadLetters is the side output Parse sends the lines that do not parse
// to; take it with runtime.SideOutput(parsed, file.DeadLetters).
var DeadLetters = runtime.NewOutputTag[DeadLetter]("dead-letters", DeadLetterCodec{})

// Parse turns lines into records with a parser made per subtask by
// newParser. Lines that do not parse become DeadLetter records on the
// DeadLetters side output: they neither fail the job nor vanish (with no
// consumer of the side output they are discarded, so connect one).
func Parse[T any](lines runtime.Stream[Line], name string, newParser func() Parser[T], codec runtime.Codec[T]) runtime.Stream[T] {
	return runtime.ProcessStream(lines, name, func() runtime.ProcessFunction[Line, T] {
		return &parseFunction[T]{parser: newParser()}
	}, codec)
}

type parseFunction[T any] struct {
	parser Parser[T]
	dead   runtime.Collector[DeadLetter]
	ctx    *runtime.ProcessContext
	warned bool
}

func (f *parseFunction[T]) Open(ctx *runtime.ProcessContext) error {
	f.ctx = ctx
	f.dead = runtime.SideCollector(ctx.RuntimeContext, DeadLetters)
	return nil
}

func (f *parseFunction[T]) ProcessElement(l Line, _ *runtime.ProcessContext, out runtime.Collector[T]) error {
	v, err := f.parser.Parse(l)
	if err != nil {
		d := DeadLetter{Source: l.Path, Line: l.Number, Text: l.Text, Reason: err.Error()}
		if !f.warned {
			// Once per subtask: the dead-letter output has the rest.
			f.warned = true
			f.ctx.Logger().Warn("a line did not parse; it and any others go to the dead-letter output",
				"operator", f.ctx.OperatorName(), "file", d.Source, "line", d.Line, "reason", d.Reason)
		}
		f.dead.Collect(d)
		return nil
	}
	out.Collect(v)
	return nil
}
