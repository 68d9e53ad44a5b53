package runtime

import (
	"sync"
	"sync/atomic"
)

// keyGroupRecords counts the records each key group of a task's keyed
// operator received, for the dashboard's key-group heat map. The keyed
// operator adds one to a plain slice per record, which it indexes anyway;
// the task copies the slice for readers only when one asked since the last
// copy (one atomic load per batch otherwise), so a reader sees the counts
// as of the batch after its previous read.
type keyGroupRecords struct {
	first  int
	counts []int64 // the task goroutine's

	want      atomic.Bool
	mu        sync.Mutex
	published []int64
}

func newKeyGroupRecords(r KeyGroupRange) *keyGroupRecords {
	return &keyGroupRecords{first: r.First, counts: make([]int64, r.Len()), published: make([]int64, r.Len())}
}

// publish copies the counts if a reader asked; task goroutine only.
func (k *keyGroupRecords) publish() {
	if !k.want.Load() {
		return
	}
	k.want.Store(false)
	k.mu.Lock()
	copy(k.published, k.counts)
	k.mu.Unlock()
}

// KeyGroupRecords returns the first key group of the task's keyed operator
// and the records each of its key groups received since the task started,
// as of the task's last batch before the previous call (the first call
// returns zeros); nil for a task without a keyed operator. With several
// keyed operators in one chain, the one nearest the head counts. It is safe
// to call while the task runs.
func (t *Task) KeyGroupRecords() (first int, counts []int64) {
	k := t.chain.kgRecords
	if k == nil {
		return 0, nil
	}
	k.want.Store(true)
	k.mu.Lock()
	defer k.mu.Unlock()
	if t.eng.Ended() {
		// The task goroutine is done with the counts (it stores ended
		// last): they are final.
		copy(k.published, k.counts)
	}
	return k.first, append([]int64(nil), k.published...)
}
