package statebackend

import "sync"

// MaxChainDeltas bounds the deltas of a chain: the checkpoint after a
// chain of this many deltas writes a full file again, so a restore reads
// at most 1 + MaxChainDeltas files per subtask, and an old full file stops
// being referenced once the retained checkpoints have all moved past it.
const MaxChainDeltas = 8

// Incremental is one operator subtask's memory of its checkpoints for
// incremental checkpointing: the snapshot and file chain of the latest
// completed checkpoint, which the next delta is computed against, and
// those of checkpoints stored but not yet known to be complete.
//
// A delta always builds on a completed checkpoint, never merely on the
// previous one: a checkpoint that is aborted after its upload never
// becomes a base, so no later checkpoint refers to files of an aborted
// one. Its methods may be called from the task and upload goroutines.
type Incremental struct {
	mu      sync.Mutex
	base    *chainState
	pending map[int64]*chainState
}

type chainState struct {
	id       int64
	sections []Section
	chain    []FileRef
}

// Base returns what a delta against checkpoint id builds on: that
// checkpoint's sections and chain, if this subtask stored it. The caller
// names the checkpoint (the JobManager's latest completed one, which stays
// retained with the files it refers to until the new checkpoint
// completes), because a base this subtask merely believes complete may
// already be retired. ok is false when a full file is due: the subtask did
// not store checkpoint id (it started after it: a restored subtask starts
// its own chain), the chain has MaxChainDeltas deltas, or its deltas
// together outgrew its full file.
func (c *Incremental) Base(id int64) (sections []Section, chain []FileRef, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pending[id]; p != nil {
		c.promote(id)
	}
	b := c.base
	if id <= 0 || b == nil || b.id != id || len(b.chain) == 0 || len(b.chain) > MaxChainDeltas {
		return nil, nil, false
	}
	var deltas int64
	for _, f := range b.chain[1:] {
		deltas += f.Size
	}
	if deltas > b.chain[0].Size {
		return nil, nil, false
	}
	return b.sections, b.chain, true
}

// Stored records that checkpoint id's state, the snapshot sections, is
// stored as chain; it becomes the base when id completes.
func (c *Incremental) Stored(id int64, sections []Section, chain []FileRef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		c.pending = map[int64]*chainState{}
	}
	c.pending[id] = &chainState{id: id, sections: sections, chain: chain}
	// Checkpoints that never complete (declined elsewhere, timed out)
	// must not pin their snapshots' pages forever: only the newest few
	// can still become a base.
	for len(c.pending) > maxPending {
		oldest := id
		for k := range c.pending {
			oldest = min(oldest, k)
		}
		delete(c.pending, oldest)
	}
}

// maxPending is how many stored but not completed checkpoints a subtask
// remembers.
const maxPending = 4

// Completed makes checkpoint id the base if it was stored, and forgets
// the stored checkpoints up to it (the older ones can no longer complete).
func (c *Incremental) Completed(id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.promote(id)
}

func (c *Incremental) promote(id int64) {
	if p := c.pending[id]; p != nil && (c.base == nil || p.id > c.base.id) {
		c.base = p
	}
	for k := range c.pending {
		if k <= id {
			delete(c.pending, k)
		}
	}
}

// NativeUploads is one operator subtask's memory of the native files (a
// Pebble store's SSTs) its checkpoints uploaded to the shared directory,
// after Flink's RocksDB incremental checkpoints: a checkpoint uploads the
// SSTs that the base checkpoint did not, and refers to the base's copies
// of the others. As with Incremental, only the checkpoint the JobManager
// names as the base is reused, never an aborted or unconfirmed one, so a
// reference always points at a file a retained checkpoint holds. Its
// methods may be called from the task and upload goroutines.
type NativeUploads struct {
	mu      sync.Mutex
	baseID  int64
	base    map[string]FileRef
	pending map[int64]map[string]FileRef
}

// Base returns the shared native files checkpoint id stored, by local
// name; nil if this subtask did not store it (it started after it).
func (u *NativeUploads) Base(id int64) map[string]FileRef {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.promote(id)
	if id <= 0 || u.baseID != id {
		return nil
	}
	return u.base
}

// Stored records the chain checkpoint id stored; its shared native files
// become reusable once id completes.
func (u *NativeUploads) Stored(id int64, chain []FileRef) {
	files := map[string]FileRef{}
	for _, f := range chain {
		if f.Shared && f.Local != "" {
			files[f.Local] = f
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.pending == nil {
		u.pending = map[int64]map[string]FileRef{}
	}
	u.pending[id] = files
	for len(u.pending) > maxPending {
		oldest := id
		for k := range u.pending {
			oldest = min(oldest, k)
		}
		delete(u.pending, oldest)
	}
}

// Completed makes checkpoint id the base if it was stored.
func (u *NativeUploads) Completed(id int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.promote(id)
}

func (u *NativeUploads) promote(id int64) {
	if p, ok := u.pending[id]; ok && id > u.baseID {
		u.baseID, u.base = id, p
	}
	for k := range u.pending {
		if k <= id {
			delete(u.pending, k)
		}
	}
}
