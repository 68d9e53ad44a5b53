package runtime

// The API for packages that build operators on top of this one, such as
// runtime/window.

// Fail records err as a problem of the job being built, so that Graph
// returns it: for packages that add operators on top of this one (such as
// runtime/window) and find their configuration invalid. The first error
// wins.
func (e *Env) Fail(err error) { e.fail(err) }

// Env is the job environment the stream belongs to.
func (s Stream[T]) Env() *Env { return s.env }

// Env is the job environment the keyed stream belongs to.
func (ks KeyedStream[T, K]) Env() *Env { return ks.s.env }

// AtTimestamp runs emit with ts as the event timestamp of everything it
// emits, instead of the timestamp of the record (or timer) being
// processed, as Flink's TimestampedCollector does for window results: a
// window's late firing happens on a record, but its result belongs to the
// window's end. ctx is the emitting operator's context.
func AtTimestamp(ctx *RuntimeContext, ts int64, emit func() error) error {
	if ctx.ts == nil {
		return emit() // a context made outside a task
	}
	saved := *ctx.ts
	*ctx.ts = ts
	err := emit()
	*ctx.ts = saved
	return err
}
