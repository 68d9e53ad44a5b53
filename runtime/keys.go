package runtime

import (
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/pebblestate"
)

// ForEachKey calls fn once for every key of this subtask (its key groups)
// that holds a value in the keyed state named state, with that key as the
// current key, so fn reads and writes the key's states through the usual
// handles (Flink's applyToAllKeys). The state must be registered (a
// Get*State call in Open); after a restore, in Open, it already holds the
// restored keys, of this subtask's key groups only, whatever the
// parallelism of the checkpoint. The first error of fn, or of reading the
// state, stops the iteration and is returned. Afterwards the current key is
// again the one before the call, so ForEachKey may be called in Open,
// ProcessElement, OnTimer or a broadcast function's ProcessBroadcastElement.
//
// Modification: the keys are visited key group by key group, and each key
// group's keys are copied when the iteration reaches it (on the Pebble
// backend, after writing its caches back). fn may therefore change any
// state of the current key, including clearing the state being iterated,
// and set or delete its timers; keys are visited once each. Since state
// handles reach only the current key, no other key can gain or lose a
// value in between. The order of keys within a key group is unspecified
// and differs between the backends.
//
// It costs a pass over the state (a scan of its part of the Pebble store),
// so it belongs in Open or in rare events such as a rule change, not in
// the processing of every record.
func ForEachKey[K comparable](ctx *KeyedContext[K], state string, fn func(key K) error) error {
	key, kg, hash := ctx.key, ctx.kg, ctx.hash
	defer func() { ctx.key, ctx.kg, ctx.hash = key, kg, hash }()
	r := ctx.backend.KeyGroups()
	var keys []K
	for g := r.First; g <= r.Last; g++ {
		var err error
		if ctx.lsm != nil {
			keys, err = pebblestate.AppendKeys(ctx.lsm, state, Codec[K](ctx.kt), g, keys[:0])
		} else {
			keys, err = statebackend.AppendKeys(ctx.backend, state, g, keys[:0])
		}
		if err != nil {
			return err
		}
		for _, k := range keys {
			ctx.key, ctx.kg, ctx.hash = k, g, ctx.kt.Hash(k)
			if err := fn(k); err != nil {
				return err
			}
		}
	}
	return nil
}
