package jobmanager

import (
	"cmp"
	"slices"
	"time"
)

// taskManager is a registered TaskManager, as the JobManager knows it. This
// state is volatile: TaskManagers register again with a new JobManager.
type taskManager struct {
	id      string
	address string
	slots   int
	offered []bool
	// incarnation tells registrations of the same ID apart, so a heartbeat
	// stream of an old incarnation cannot declare the new one lost.
	incarnation   uint64
	lastHeartbeat time.Time
}

// registry holds the registered TaskManagers. It is not safe for concurrent
// use; the JobManager guards it with its mutex.
type registry struct {
	tms         map[string]*taskManager
	incarnation uint64
}

func newRegistry() *registry {
	return &registry{tms: map[string]*taskManager{}}
}

// register records a TaskManager, replacing (and returning) an earlier
// incarnation with the same ID.
func (r *registry) register(id, address string, slots int, now time.Time) (tm, old *taskManager) {
	old = r.tms[id]
	r.incarnation++
	tm = &taskManager{id: id, address: address, slots: slots, offered: make([]bool, slots),
		incarnation: r.incarnation, lastHeartbeat: now}
	r.tms[id] = tm
	return tm, old
}

// offer marks slots free to use and returns the accepted indexes: those in
// 0..slots-1, each once.
func (r *registry) offer(id string, indexes []int) ([]int, bool) {
	tm, ok := r.tms[id]
	if !ok {
		return nil, false
	}
	accepted := []int{}
	for _, i := range indexes {
		if i >= 0 && i < tm.slots && !slices.Contains(accepted, i) {
			tm.offered[i] = true
			accepted = append(accepted, i)
		}
	}
	return accepted, true
}

// heartbeat records a heartbeat and returns the TaskManager's incarnation.
func (r *registry) heartbeat(id string, now time.Time) (uint64, bool) {
	tm, ok := r.tms[id]
	if !ok {
		return 0, false
	}
	tm.lastHeartbeat = now
	return tm.incarnation, true
}

// remove removes the TaskManager if it is still the given incarnation (0
// matches any).
func (r *registry) remove(id string, incarnation uint64) (*taskManager, bool) {
	tm, ok := r.tms[id]
	if !ok || (incarnation != 0 && tm.incarnation != incarnation) {
		return nil, false
	}
	delete(r.tms, id)
	return tm, true
}

// expired removes and returns the TaskManagers silent for longer than
// timeout.
func (r *registry) expired(now time.Time, timeout time.Duration) []*taskManager {
	var out []*taskManager
	for id, tm := range r.tms {
		if now.Sub(tm.lastHeartbeat) > timeout {
			delete(r.tms, id)
			out = append(out, tm)
		}
	}
	slices.SortFunc(out, func(a, b *taskManager) int { return cmp.Compare(a.id, b.id) })
	return out
}

// offeredSlots lists every TaskManager's offered slots.
func (r *registry) offeredSlots() []TaskManagerSlots {
	out := make([]TaskManagerSlots, 0, len(r.tms))
	for _, tm := range r.tms {
		s := TaskManagerSlots{TaskManagerID: tm.id, Address: tm.address, Slots: []int{}}
		for i, ok := range tm.offered {
			if ok {
				s.Slots = append(s.Slots, i)
			}
		}
		out = append(out, s)
	}
	return out
}

// usesAddress reports whether a registered TaskManager has the address.
func (r *registry) usesAddress(addr string) bool {
	for _, tm := range r.tms {
		if tm.address == addr {
			return true
		}
	}
	return false
}
