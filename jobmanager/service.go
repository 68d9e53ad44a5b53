package jobmanager

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// service is the gRPC face of a JobManager: it translates messages and
// leaves the logic to the JobManager. Its errors are domain errors, mapped
// to status codes by the interceptors.
type service struct {
	weirv1.UnimplementedJobManagerServer
	jm *JobManager
}

// Register installs the JobManager's gRPC service on s. Install
// UnaryErrorInterceptor and StreamErrorInterceptor on s too.
func (jm *JobManager) Register(s *grpc.Server) {
	weirv1.RegisterJobManagerServer(s, &service{jm: jm})
}

func (s *service) SubmitJob(ctx context.Context, req *weirv1.SubmitJobRequest) (*weirv1.SubmitJobResponse, error) {
	id, err := s.jm.submitJob(ctx, req.GetJobName(), int(req.GetParallelism()), req.GetParams(), SubmitOptions{
		Checkpointing: req.GetCheckpointing(), FromSavepoint: req.GetFromSavepoint(),
		AllowNonRestored: req.GetAllowNonRestoredState(), Labels: req.GetLabels(),
		StateBackend: req.GetStateBackend(), TimerService: req.GetTimerService()})
	if err != nil {
		return nil, err
	}
	return &weirv1.SubmitJobResponse{JobId: id}, nil
}

func (s *service) ListJobs(context.Context, *weirv1.ListJobsRequest) (*weirv1.ListJobsResponse, error) {
	return &weirv1.ListJobsResponse{Jobs: s.jm.listJobs()}, nil
}

func (s *service) GetJobStatus(_ context.Context, req *weirv1.GetJobStatusRequest) (*weirv1.JobStatus, error) {
	return s.jm.jobStatus(req.GetJobId())
}

func (s *service) CancelJob(_ context.Context, req *weirv1.CancelJobRequest) (*weirv1.CancelJobResponse, error) {
	state, err := s.jm.cancelJob(req.GetJobId())
	if err != nil {
		return nil, err
	}
	return &weirv1.CancelJobResponse{State: state}, nil
}

func (s *service) TriggerSavepoint(ctx context.Context, req *weirv1.TriggerSavepointRequest) (*weirv1.TriggerSavepointResponse, error) {
	path, err := s.jm.triggerSavepoint(ctx, req.GetJobId(), req.GetTarget())
	if err != nil {
		return nil, err
	}
	return &weirv1.TriggerSavepointResponse{Path: path}, nil
}

func (s *service) StopJob(ctx context.Context, req *weirv1.StopJobRequest) (*weirv1.StopJobResponse, error) {
	path, err := s.jm.stopJob(ctx, req.GetJobId(), req.GetTarget(), req.GetDrain())
	if err != nil {
		return nil, err
	}
	return &weirv1.StopJobResponse{Path: path}, nil
}

func (s *service) RescaleJob(ctx context.Context, req *weirv1.RescaleJobRequest) (*weirv1.RescaleJobResponse, error) {
	path, err := s.jm.rescaleJob(ctx, req.GetJobId(), int(req.GetParallelism()))
	if err != nil {
		return nil, err
	}
	return &weirv1.RescaleJobResponse{SavepointPath: path}, nil
}

func (s *service) ListCheckpoints(_ context.Context, req *weirv1.ListCheckpointsRequest) (*weirv1.ListCheckpointsResponse, error) {
	return s.jm.listCheckpoints(req.GetJobId())
}

func (s *service) DisposeCheckpoints(ctx context.Context, req *weirv1.DisposeCheckpointsRequest) (*weirv1.DisposeCheckpointsResponse, error) {
	path, n, err := s.jm.disposeCheckpoints(ctx, req.GetJobId())
	if err != nil {
		return nil, err
	}
	return &weirv1.DisposeCheckpointsResponse{Path: path, Checkpoints: int32(n)}, nil
}

func (s *service) AcknowledgeCheckpoint(_ context.Context, req *weirv1.AcknowledgeCheckpointRequest) (*weirv1.AcknowledgeCheckpointResponse, error) {
	if c := s.jm.coordinator(req.GetTask().GetJobId()); c != nil {
		c.acknowledge(req)
	}
	return &weirv1.AcknowledgeCheckpointResponse{}, nil
}

func (s *service) DeclineCheckpoint(_ context.Context, req *weirv1.DeclineCheckpointRequest) (*weirv1.DeclineCheckpointResponse, error) {
	if c := s.jm.coordinator(req.GetTask().GetJobId()); c != nil {
		c.decline(req.GetCheckpointId(), int(req.GetTask().GetAttempt()), req.GetReason(), req.GetTaskEnded())
	}
	return &weirv1.DeclineCheckpointResponse{}, nil
}

func (s *service) RequestCheckpoint(_ context.Context, req *weirv1.RequestCheckpointRequest) (*weirv1.RequestCheckpointResponse, error) {
	if c := s.jm.coordinator(req.GetTask().GetJobId()); c != nil {
		c.requestCheckpoint()
	}
	return &weirv1.RequestCheckpointResponse{}, nil
}

func (s *service) RegisterTaskManager(_ context.Context, req *weirv1.RegisterTaskManagerRequest) (*weirv1.RegisterTaskManagerResponse, error) {
	l := s.jm.leading()
	if l == nil {
		return nil, s.jm.notLeader()
	}
	adopted, err := s.jm.registerTaskManager(req.GetTaskManagerId(), req.GetAddress(), int(req.GetSlots()), req.GetJobs(), req.GetTasks())
	if err != nil {
		return nil, err
	}
	return &weirv1.RegisterTaskManagerResponse{
		JobManagerId:        s.jm.id,
		HeartbeatIntervalMs: s.jm.cfg.HeartbeatInterval.Milliseconds(),
		HeartbeatTimeoutMs:  s.jm.cfg.HeartbeatTimeout.Milliseconds(),
		LeaderTerm:          int64(l.term),
		Adopted:             adopted,
	}, nil
}

func (s *service) OfferSlots(_ context.Context, req *weirv1.OfferSlotsRequest) (*weirv1.OfferSlotsResponse, error) {
	indexes := make([]int, len(req.GetSlots()))
	for k, o := range req.GetSlots() {
		indexes[k] = int(o.GetIndex())
	}
	accepted, err := s.jm.offerSlots(req.GetTaskManagerId(), indexes)
	if err != nil {
		return nil, err
	}
	resp := &weirv1.OfferSlotsResponse{Accepted: make([]int32, len(accepted))}
	for k, i := range accepted {
		resp.Accepted[k] = int32(i)
	}
	return resp, nil
}

// Heartbeat acknowledges each heartbeat. When the stream breaks, the
// TaskManager that last heartbeated on it (if still the same registration)
// is lost at once. A TaskManager that says it is leaving is removed as
// stopped, and the stream ends without an acknowledgement.
func (s *service) Heartbeat(stream weirv1.JobManager_HeartbeatServer) error {
	var (
		tmID        string
		incarnation uint64
	)
	for {
		hb, err := stream.Recv()
		if err != nil {
			if tmID != "" {
				s.jm.streamBroken(tmID, incarnation)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		inc, known := s.jm.recordHeartbeat(hb)
		if known {
			tmID, incarnation = hb.GetTaskManagerId(), inc
		}
		if hb.GetLeaving() {
			if known {
				s.jm.taskManagerStopped(tmID, incarnation)
			}
			return nil
		}
		if err := stream.Send(&weirv1.HeartbeatAck{Known: known}); err != nil {
			if tmID != "" {
				s.jm.streamBroken(tmID, incarnation)
			}
			return err
		}
	}
}

func (s *service) UpdateTaskState(_ context.Context, req *weirv1.TaskStateUpdate) (*weirv1.TaskStateAck, error) {
	if err := s.jm.updateTaskState(req); err != nil {
		return nil, err
	}
	return &weirv1.TaskStateAck{}, nil
}

func (s *service) GetClusterStatus(context.Context, *weirv1.GetClusterStatusRequest) (*weirv1.ClusterStatus, error) {
	return s.jm.clusterStatus(), nil
}

func (s *service) RegisterMember(_ context.Context, req *weirv1.RegisterMemberRequest) (*weirv1.RegisterMemberResponse, error) {
	if err := s.jm.registerMember(req); err != nil {
		return nil, err
	}
	return &weirv1.RegisterMemberResponse{}, nil
}
