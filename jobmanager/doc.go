// Package jobmanager is the logic of one JobManager process: the gRPC
// service the CLI and the TaskManagers talk to, the job lifecycle, the slot
// scheduler and the deployment of tasks onto TaskManagers.
//
// Data flows the way it does in nomad:
//
//	reads:  RPC → Store (copies)
//	writes: RPC → Command → Store.Apply (one apply function per command)
//
// The durable state — jobs, their vertices and their deployments (which task
// runs where, in which attempt and state) — lives behind the small Store
// interface. MemStore implements it in memory today; a raft FSM will
// implement it when JobManagers become highly available, with the leader
// proposing the same Commands through raft. Apply is deterministic: it reads
// no clock and draws no random numbers; job IDs and times are carried in the
// commands, and job state transitions (a failed task fails the job, the last
// finished task finishes it, ...) are decided inside the apply functions so
// every replica reaches the same state. Readers always get deep copies.
//
// Volatile state — registered TaskManagers and their offered slots,
// heartbeat times, the latest task metrics, client connections and which
// cancels were sent — is not replicated: TaskManagers register again with a
// new leader. It lives in the JobManager behind one mutex. No gRPC call is
// ever made while holding that mutex; the DeployTask and CancelTask calls run
// on goroutines owned by Run, each with a deadline.
//
// The scheduler core is pure (FreeSlots, PlaceSlots, Schedule): given the
// offered slots, the jobs and the clock it returns placements and expiries,
// and the Run loop applies them and performs the RPCs. Slot sharing follows
// Flink: a job needs as many slots as its largest vertex parallelism, and slot
// j hosts subtask j of every vertex with more than j subtasks. Slots are
// taken round-robin over the TaskManagers ordered by most free slots, so a
// job spreads over the cluster. A slot is free again when every task in it
// is terminal, which the scheduler derives from the Store rather than
// tracking separately.
//
// Job lifecycle: a submitted job is CREATED; it stays CREATED while it waits
// for slots and while it deploys. Only a first submission gives up waiting
// (after SlotRequestTimeout, FAILED); a job restarting after a failure, or
// redeploying after a rescale, waits until enough slots return, as Flink's
// restart strategy does — waiting for slots is a state, not a failure.
// Its start time is when deployment began. It becomes RUNNING when every
// task has reported RUNNING (or already FINISHED), and FINISHED when every
// task has finished. A failed task, a failed deployment or a lost
// TaskManager fails the job at once; its remaining tasks are then cancelled
// in the background and their slots return when they confirm (or when their
// TaskManager cannot be reached, in which case they count as cancelled).
// CancelJob moves a deployed job to CANCELING and then CANCELED when every
// task is terminal; a job still waiting for slots is CANCELED at once.
//
// A rescale is refused, before anything stops, unless the free slots and
// the job's own can hold the new parallelism. It then stops the job with a
// savepoint and redeploys it from there as a new attempt at the new
// parallelism; if that cannot be placed after the stop (a TaskManager left,
// another job took the slots) but the previous parallelism can, the job
// goes back to it from the same savepoint (FallBackRescale). The job's
// RescalePlan records the outcome for its status.
//
// Errors carry domain sentinels (ErrJobNotFound, ErrInvalidJob, ...) and are
// mapped to gRPC status codes once, by UnaryErrorInterceptor and
// StreamErrorInterceptor.
package jobmanager
