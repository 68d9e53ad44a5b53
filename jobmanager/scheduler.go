package jobmanager

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// The scheduler core: pure functions from offered slots, jobs and the clock
// to decisions. The Run loop feeds them snapshots and carries the decisions
// out (DeployJob / FailJob commands, DeployTask RPCs).

// Slot names one slot of one TaskManager.
type Slot struct {
	TaskManagerID string
	Address       string
	Index         int
}

// TaskManagerSlots lists slot indexes of one TaskManager, ascending.
type TaskManagerSlots struct {
	TaskManagerID string
	Address       string
	Slots         []int
}

// FreeSlots subtracts from the offered slots those holding a non-terminal
// task of any job. A slot is shared by one subtask of each vertex of a job,
// so it becomes free when all of the job's tasks in it are terminal. The
// result is ordered by TaskManager ID.
func FreeSlots(offered []TaskManagerSlots, jobs []Job) []TaskManagerSlots {
	busy := map[Slot]bool{}
	for _, j := range jobs {
		for _, ts := range j.Tasks {
			for _, t := range ts {
				if t.TaskManagerID != "" && !TerminalTask(t.State) {
					busy[Slot{TaskManagerID: t.TaskManagerID, Index: t.Slot}] = true
				}
			}
		}
	}
	out := make([]TaskManagerSlots, 0, len(offered))
	for _, tm := range offered {
		free := TaskManagerSlots{TaskManagerID: tm.TaskManagerID, Address: tm.Address, Slots: []int{}}
		for _, i := range tm.Slots {
			if !busy[Slot{TaskManagerID: tm.TaskManagerID, Index: i}] {
				free.Slots = append(free.Slots, i)
			}
		}
		slices.Sort(free.Slots)
		out = append(out, free)
	}
	slices.SortFunc(out, func(a, b TaskManagerSlots) int { return cmp.Compare(a.TaskManagerID, b.TaskManagerID) })
	return out
}

// PlaceSlots picks need slots from free, spreading them over TaskManagers:
// round-robin over the TaskManagers ordered by most free slots (then by
// ID), taking each one's lowest free slot. It reports false if there are
// fewer than need free slots. free is not modified.
func PlaceSlots(need int, free []TaskManagerSlots) ([]Slot, bool) {
	if need > countSlots(free) {
		return nil, false
	}
	order := make([]int, 0, len(free))
	for k, tm := range free {
		if len(tm.Slots) > 0 {
			order = append(order, k)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if c := cmp.Compare(len(free[b].Slots), len(free[a].Slots)); c != 0 {
			return c
		}
		return cmp.Compare(free[a].TaskManagerID, free[b].TaskManagerID)
	})
	next := make([]int, len(free))
	out := make([]Slot, 0, need)
	for len(out) < need {
		for _, k := range order {
			if len(out) == need {
				break
			}
			if next[k] < len(free[k].Slots) {
				out = append(out, Slot{TaskManagerID: free[k].TaskManagerID, Address: free[k].Address, Index: free[k].Slots[next[k]]})
				next[k]++
			}
		}
	}
	return out, true
}

func countSlots(tms []TaskManagerSlots) int {
	n := 0
	for _, tm := range tms {
		n += len(tm.Slots)
	}
	return n
}

// PendingJob is a job waiting for slots.
type PendingJob struct {
	JobID       string
	SlotsNeeded int
	// Submitted is when the job began waiting.
	Submitted time.Time
	// MayExpire says the job fails once it has waited the slot request
	// timeout: only a first submission does. A restarted or rescaled job
	// waits until slots return, as Flink's restart strategy does.
	MayExpire bool
	// FallbackSlots, when not 0, is what a rescaled job needs at its
	// previous parallelism: if its new parallelism does not fit, it goes
	// back to the previous one if that fits.
	FallbackSlots int
}

// Placement assigns slots to a job: subtask j of every vertex goes to
// Slots[j].
type Placement struct {
	JobID string
	Slots []Slot
}

// Expiry is a pending job that waited too long for slots.
type Expiry struct {
	JobID  string
	Reason string
}

// Fallback places a rescaled job at its previous parallelism, on Slots,
// because its new one does not fit (Reason says how).
type Fallback struct {
	JobID  string
	Slots  []Slot
	Reason string
}

// Wait is a pending job that keeps waiting: it needs SlotsNeeded slots at
// once and SlotsFree were left when its turn came.
type Wait struct {
	JobID                  string
	SlotsNeeded, SlotsFree int
}

// Decision is what one scheduling pass decided.
type Decision struct {
	Placements []Placement
	Fallbacks  []Fallback
	Expired    []Expiry
	Waiting    []Wait
}

// Schedule places the pending jobs, oldest first, on the free slots; a job
// that does not fit does not block younger ones that do. A rescaled job
// that does not fit falls back to its previous parallelism if that fits. A
// job that does not fit, may expire and has waited at least timeout
// expires; the others wait.
// free lists every registered TaskManager (with its free slots) and is not
// modified.
func Schedule(now time.Time, timeout time.Duration, pending []PendingJob, free []TaskManagerSlots) Decision {
	avail := make([]TaskManagerSlots, len(free))
	for k, tm := range free {
		tm.Slots = slices.Clone(tm.Slots)
		avail[k] = tm
	}
	take := func(slots []Slot) {
		taken := map[Slot]bool{}
		for _, s := range slots {
			taken[s] = true
		}
		for k := range avail {
			avail[k].Slots = slices.DeleteFunc(avail[k].Slots, func(i int) bool {
				return taken[Slot{TaskManagerID: avail[k].TaskManagerID, Address: avail[k].Address, Index: i}]
			})
		}
	}
	var d Decision
	for _, p := range pending {
		if slots, ok := PlaceSlots(p.SlotsNeeded, avail); ok {
			d.Placements = append(d.Placements, Placement{JobID: p.JobID, Slots: slots})
			take(slots)
			continue
		}
		if p.FallbackSlots > 0 {
			if slots, ok := PlaceSlots(p.FallbackSlots, avail); ok {
				d.Fallbacks = append(d.Fallbacks, Fallback{JobID: p.JobID, Slots: slots, Reason: fmt.Sprintf(
					"it needs %d slots, %d free on %d TaskManager(s)", p.SlotsNeeded, countSlots(avail), len(avail))})
				take(slots)
				continue
			}
		}
		if p.MayExpire && now.Sub(p.Submitted) >= timeout {
			d.Expired = append(d.Expired, Expiry{JobID: p.JobID, Reason: fmt.Sprintf(
				"not enough free slots: job needs %d, %d free on %d TaskManager(s) after waiting %s",
				p.SlotsNeeded, countSlots(avail), len(avail), timeout)})
			continue
		}
		d.Waiting = append(d.Waiting, Wait{JobID: p.JobID, SlotsNeeded: p.SlotsNeeded, SlotsFree: countSlots(avail)})
	}
	return d
}

// SlotsAvailableTo counts the slots the job could have if it gave up its
// own: the offered slots that no other job's task occupies.
func SlotsAvailableTo(jobID string, offered []TaskManagerSlots, jobs []Job) int {
	others := slices.DeleteFunc(slices.Clone(jobs), func(j Job) bool { return j.ID == jobID })
	return countSlots(FreeSlots(offered, others))
}
