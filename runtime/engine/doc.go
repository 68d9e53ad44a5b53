// Package engine holds the parts of a task that know nothing of a job's
// types: the buffers records and in-band events travel in, the interfaces
// of input gates and output channels the TaskManager implements, the wire
// form of checkpoint barriers and their alignment over several inputs, the
// combination of input watermarks and idleness, the per-channel buffer
// writer, the task's control mailbox (trigger, complete, abort) and the
// processing-time clock.
//
// Package runtime, the job author's API, builds a task's typed operator
// chain and drives it with these parts; the TaskManager imports engine for
// the exchange (buffers, gates, channels) and injects the clock. Engine
// never imports runtime, so nothing here can reach into operators, codecs
// or state: what a record is stays runtime's business, and engine sees
// only length-prefixed bytes.
//
// Everything here is used from the task's own goroutine unless a comment
// says otherwise, so none of it locks on the record path.
package engine
