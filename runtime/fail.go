package runtime

// Fail records err as a problem of the job being built, so that Graph
// returns it: for packages that add operators on top of this one (such as
// runtime/window) and find their configuration invalid. The first error
// wins.
func (e *Env) Fail(err error) { e.fail(err) }

// Env is the job environment the stream belongs to.
func (s Stream[T]) Env() *Env { return s.env }

// Env is the job environment the keyed stream belongs to.
func (ks KeyedStream[T, K]) Env() *Env { return ks.s.env }
