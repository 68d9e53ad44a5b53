package jobmanager

import (
	"github.com/weirstream/weir/internal/auth"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// ClientPolicy maps each client RPC of the JobManager to the role it
// needs, under the name the CLI gives the action. The calls it leaves out
// are not client calls: RegisterTaskManager, OfferSlots, Heartbeat,
// UpdateTaskState and the checkpoint acknowledgements come from
// TaskManagers, RegisterMember from the other JobManagers, and
// GetClusterStatus from anything that looks for the leader (TaskManagers
// included) and says only who leads and how many slots are free. Mutual
// TLS authenticates those processes; a token does not.
var ClientPolicy = auth.Policy{
	weirv1.JobManager_ListJobs_FullMethodName:        {Role: auth.Viewer, Action: "list"},
	weirv1.JobManager_GetJobStatus_FullMethodName:    {Role: auth.Viewer, Action: "status"},
	weirv1.JobManager_ListCheckpoints_FullMethodName: {Role: auth.Viewer, Action: "checkpoints list"},

	weirv1.JobManager_SubmitJob_FullMethodName:          {Role: auth.Operator, Action: "submit"},
	weirv1.JobManager_CancelJob_FullMethodName:          {Role: auth.Operator, Action: "cancel"},
	weirv1.JobManager_TriggerSavepoint_FullMethodName:   {Role: auth.Operator, Action: "savepoint"},
	weirv1.JobManager_StopJob_FullMethodName:            {Role: auth.Operator, Action: "stop"},
	weirv1.JobManager_RescaleJob_FullMethodName:         {Role: auth.Operator, Action: "rescale"},
	weirv1.JobManager_DisposeCheckpoints_FullMethodName: {Role: auth.Operator, Action: "checkpoints dispose"},
}
