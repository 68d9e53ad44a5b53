package connectors

import (
	"bufio"
	"fmt"
	"io"

	"github.com/weirstream/weir/runtime"
)

// Print is a sink that writes one line per record to the task's stdout,
// formatted by Format (fmt.Sprint when nil). It is at-least-once.
type Print[T any] struct {
	Format func(T) string
	w      *bufio.Writer
	out    io.Writer
}

// Open implements the sink's optional Open.
func (p *Print[T]) Open(ctx *runtime.RuntimeContext) error {
	p.out = ctx.Stdout()
	p.w = bufio.NewWriter(p.out)
	return nil
}

// Invoke writes one line. Lines are flushed at once: alerts are rare and
// must be seen when they happen.
func (p *Print[T]) Invoke(v T) error {
	if p.Format != nil {
		p.w.WriteString(p.Format(v))
	} else {
		fmt.Fprint(p.w, v)
	}
	p.w.WriteByte('\n')
	return p.w.Flush()
}

// Close flushes what is buffered.
func (p *Print[T]) Close() error {
	if p.w == nil {
		return nil
	}
	return p.w.Flush()
}
