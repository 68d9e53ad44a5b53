package taskmanager

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/runtime"
)

// service is the TaskManager's gRPC face.
type service struct {
	weirv1.UnimplementedTaskManagerServer
	tm *TaskManager
}

func (s *service) DeployTask(_ context.Context, req *weirv1.DeployTaskRequest) (*weirv1.DeployTaskResponse, error) {
	if req.GetTask() == nil {
		return nil, status.Error(codes.InvalidArgument, "deploy request names no task")
	}
	if err := s.tm.deploy(req); err != nil {
		// Unimplemented tells the JobManager that no retry can help.
		code := codes.FailedPrecondition
		if errors.Is(err, ErrJobMismatch) {
			code = codes.Unimplemented
		}
		return nil, status.Errorf(code, "deploy %s: %v", req.JobName, err)
	}
	return &weirv1.DeployTaskResponse{}, nil
}

func (s *service) CancelTask(_ context.Context, req *weirv1.CancelTaskRequest) (*weirv1.CancelTaskResponse, error) {
	if !s.tm.cancelTask(req.GetTask()) {
		return nil, status.Errorf(codes.NotFound, "task %v is not running here", req.GetTask())
	}
	return &weirv1.CancelTaskResponse{}, nil
}

func (s *service) TriggerCheckpoint(_ context.Context, req *weirv1.TriggerCheckpointRequest) (*weirv1.TriggerCheckpointResponse, error) {
	t, err := s.tm.runtimeTask(req.GetTask())
	if err != nil {
		return nil, status.Error(codes.NotFound, err.Error())
	}
	b := runtime.Barrier{ID: req.CheckpointId, TimestampMs: req.TimestampMs, Location: req.Location,
		Savepoint: req.Savepoint, Stop: req.Stop, Drain: req.Drain, BaseID: req.BaseCheckpointId}
	if err := t.TriggerCheckpoint(b); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return &weirv1.TriggerCheckpointResponse{}, nil
}

func (s *service) NotifyCheckpoint(_ context.Context, req *weirv1.NotifyCheckpointRequest) (*weirv1.NotifyCheckpointResponse, error) {
	t, err := s.tm.runtimeTask(req.GetTask())
	if err != nil {
		return nil, status.Error(codes.NotFound, err.Error())
	}
	if req.Aborted {
		t.NotifyCheckpointAborted(req.CheckpointId)
	} else {
		t.NotifyCheckpointComplete(req.CheckpointId)
	}
	return &weirv1.NotifyCheckpointResponse{}, nil
}

func (s *service) Exchange(stream weirv1.TaskManager_ExchangeServer) error {
	return s.tm.x.Serve(stream)
}
