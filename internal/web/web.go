// Package web is the JobManager's dashboard: a JSON API under /api/ and the
// static page that draws it (embedded, no build step, no CDN).
//
// The API holds no state and no privilege of its own. Every read and every
// action is one call of the JobManager's gRPC service, the calls the CLI
// makes, so the dashboard gets the same checks, the same errors and the same
// leader: its client is a leader.Finder, and on a follower JobManager the
// calls go to the leader exactly as the CLI's would. A browser's
// Authorization header is passed on as the call's bearer token, so with
// --auth-tokens the dashboard needs a token with the role the action needs.
//
// Besides the service's answers the API adds two things the service does
// not compute: the job graph's edges (rebuilt from the job's registered
// builder, as the JobManager itself builds it) and the state bytes per key
// group of the job's latest checkpoint, read from the state files' indexes
// (two small ranged reads per file, cached per checkpoint). Rates (records/s,
// busy and backpressured shares, records/s per key group) are the page's:
// differences between two reads of the status's cumulative counters.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/httpserve"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/statebackend/storage"
)

//go:embed static
var static embed.FS

// JobManager is the part of the JobManager's gRPC service the dashboard
// calls; weirv1.JobManagerClient has it.
type JobManager interface {
	ListJobs(ctx context.Context, in *weirv1.ListJobsRequest, opts ...grpc.CallOption) (*weirv1.ListJobsResponse, error)
	GetJobStatus(ctx context.Context, in *weirv1.GetJobStatusRequest, opts ...grpc.CallOption) (*weirv1.JobStatus, error)
	CancelJob(ctx context.Context, in *weirv1.CancelJobRequest, opts ...grpc.CallOption) (*weirv1.CancelJobResponse, error)
	TriggerSavepoint(ctx context.Context, in *weirv1.TriggerSavepointRequest, opts ...grpc.CallOption) (*weirv1.TriggerSavepointResponse, error)
	StopJob(ctx context.Context, in *weirv1.StopJobRequest, opts ...grpc.CallOption) (*weirv1.StopJobResponse, error)
	RescaleJob(ctx context.Context, in *weirv1.RescaleJobRequest, opts ...grpc.CallOption) (*weirv1.RescaleJobResponse, error)
	ListCheckpoints(ctx context.Context, in *weirv1.ListCheckpointsRequest, opts ...grpc.CallOption) (*weirv1.ListCheckpointsResponse, error)
	GetClusterStatus(ctx context.Context, in *weirv1.GetClusterStatusRequest, opts ...grpc.CallOption) (*weirv1.ClusterStatus, error)
}

// Config configures the dashboard.
type Config struct {
	JobManager JobManager
	// Storage opens checkpoint storage for the key-group view (the
	// JobManager's S3 options).
	Storage storage.Options
	// Member is the ID of the JobManager serving the page, shown beside
	// the leader's.
	Member string
	Logger *slog.Logger
	// CallTimeout bounds each call of the service (default 10s; a
	// savepoint, a stop or a rescale gets ActionTimeout).
	CallTimeout, ActionTimeout time.Duration
}

// Server serves the dashboard.
type Server struct {
	cfg    Config
	mux    *http.ServeMux
	graphs *graphCache
	kgs    *keyGroupCache
}

// New returns the dashboard's handler.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.ActionTimeout <= 0 {
		cfg.ActionTimeout = 2 * time.Minute
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), graphs: newGraphCache(), kgs: newKeyGroupCache(cfg.Storage)}
	s.mux.HandleFunc("GET /api/cluster", s.cluster)
	s.mux.HandleFunc("GET /api/jobs", s.jobs)
	s.mux.HandleFunc("GET /api/jobs/{id}", s.job)
	s.mux.HandleFunc("GET /api/jobs/{id}/checkpoints", s.checkpoints)
	s.mux.HandleFunc("GET /api/jobs/{id}/keygroups", s.keyGroups)
	s.mux.HandleFunc("POST /api/jobs/{id}/cancel", s.cancel)
	s.mux.HandleFunc("POST /api/jobs/{id}/savepoint", s.savepoint)
	s.mux.HandleFunc("POST /api/jobs/{id}/stop", s.stop)
	s.mux.HandleFunc("POST /api/jobs/{id}/rescale", s.rescale)
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no API %s %s", r.Method, r.URL.Path))
	})
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded directory is part of the build
	}
	s.mux.Handle("/", http.FileServerFS(sub))
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

// Listen serves the dashboard on addr until ctx ends. A taken address is
// an error naming --web-listen.
func Listen(ctx context.Context, addr string, cfg Config) (*httpserve.Server, error) {
	srv, err := httpserve.Listen(ctx, "web", addr, New(cfg))
	if err != nil {
		return nil, fmt.Errorf("--web-listen %s: %w", addr, err)
	}
	return srv, nil
}

// call returns a context for one service call: bounded, and carrying the
// browser's bearer token, if it sent one.
func (s *Server) call(r *http.Request, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	if a := r.Header.Get("Authorization"); a != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", a)
	}
	return ctx, cancel
}

func (s *Server) cluster(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.call(r, s.cfg.CallTimeout)
	defer cancel()
	st, err := s.cfg.JobManager.GetClusterStatus(ctx, &weirv1.GetClusterStatusRequest{})
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, clusterView(st, s.cfg.Member))
}

func (s *Server) jobs(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.call(r, s.cfg.CallTimeout)
	defer cancel()
	resp, err := s.cfg.JobManager.ListJobs(ctx, &weirv1.ListJobsRequest{})
	if err != nil {
		s.fail(w, err)
		return
	}
	out := JobsView{Jobs: []JobSummaryView{}, NowMs: time.Now().UnixMilli()}
	for _, j := range resp.GetJobs() {
		out.Jobs = append(out.Jobs, summaryView(j))
	}
	writeJSON(w, out)
}

func (s *Server) job(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.call(r, s.cfg.CallTimeout)
	defer cancel()
	st, err := s.cfg.JobManager.GetJobStatus(ctx, &weirv1.GetJobStatusRequest{JobId: r.PathValue("id")})
	if err != nil {
		s.fail(w, err)
		return
	}
	v := jobView(st)
	v.NowMs = time.Now().UnixMilli()
	edges, err := s.graphs.edges(st)
	if err != nil {
		v.GraphError = err.Error()
	}
	v.Edges = edges
	writeJSON(w, v)
}

func (s *Server) checkpoints(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.call(r, s.cfg.CallTimeout)
	defer cancel()
	resp, err := s.cfg.JobManager.ListCheckpoints(ctx, &weirv1.ListCheckpointsRequest{JobId: r.PathValue("id")})
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, checkpointsView(resp))
}

func (s *Server) keyGroups(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.call(r, s.cfg.CallTimeout)
	defer cancel()
	st, err := s.cfg.JobManager.GetJobStatus(ctx, &weirv1.GetJobStatusRequest{JobId: r.PathValue("id")})
	if err != nil {
		s.fail(w, err)
		return
	}
	latest := st.GetLatestCheckpoint()
	if latest == nil {
		writeJSON(w, KeyGroupsView{MaxParallelism: int(st.GetMaxParallelism()), Operators: []KeyGroupOperator{}})
		return
	}
	v, err := s.kgs.get(ctx, latest)
	if err != nil {
		s.cfg.Logger.Warn("dashboard: key groups of a checkpoint not read", "job_id", st.GetSummary().GetJobId(), "path", latest.GetPath(), "err", err)
		writeError(w, http.StatusBadGateway, fmt.Sprintf("reading the state files of checkpoint %d: %v", latest.GetId(), err))
		return
	}
	writeJSON(w, v)
}

// actionBody is the JSON an action may carry; each action reads its fields.
type actionBody struct {
	Target      string `json:"target"`
	Drain       bool   `json:"drain"`
	Parallelism int    `json:"parallelism"`
}

// readBody reads an action's body. Actions must say they send JSON: a
// browser sends that content type across origins only after a CORS
// preflight, which this server never grants, so another site's page cannot
// make a visitor's browser cancel a job here.
func readBody(w http.ResponseWriter, r *http.Request) (actionBody, bool) {
	var b actionBody
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "an action's request must have Content-Type: application/json")
		return b, false
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading the request: "+err.Error())
		return b, false
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return b, true
	}
	d := json.NewDecoder(strings.NewReader(string(data)))
	d.DisallowUnknownFields()
	if err := d.Decode(&b); err != nil {
		writeError(w, http.StatusBadRequest, "the request body is not the action's JSON: "+err.Error())
		return b, false
	}
	return b, true
}

// act runs one of the dashboard's actions: it reads the JSON body, lets
// check refuse it before any call, makes the service call with the given
// timeout, and answers with the call's view or the service's error, so
// every action is checked and reported the same way.
func (s *Server) act(w http.ResponseWriter, r *http.Request, name string, timeout time.Duration,
	check func(actionBody) string, call func(context.Context, actionBody) (ActionView, error)) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	if check != nil {
		if msg := check(b); msg != "" {
			writeError(w, http.StatusBadRequest, msg)
			return
		}
	}
	ctx, cancel := s.call(r, timeout)
	defer cancel()
	v, err := call(ctx, b)
	if err != nil {
		s.fail(w, err)
		return
	}
	s.audit(r, name)
	v.JobID = r.PathValue("id")
	writeJSON(w, v)
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, "cancel", s.cfg.CallTimeout, nil, func(ctx context.Context, _ actionBody) (ActionView, error) {
		resp, err := s.cfg.JobManager.CancelJob(ctx, &weirv1.CancelJobRequest{JobId: r.PathValue("id")})
		return ActionView{State: stateName(resp.GetState())}, err
	})
}

func (s *Server) savepoint(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, "savepoint", s.cfg.ActionTimeout, nil, func(ctx context.Context, b actionBody) (ActionView, error) {
		resp, err := s.cfg.JobManager.TriggerSavepoint(ctx, &weirv1.TriggerSavepointRequest{JobId: r.PathValue("id"), Target: b.Target})
		return ActionView{SavepointPath: resp.GetPath()}, err
	})
}

func (s *Server) stop(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, "stop", s.cfg.ActionTimeout, nil, func(ctx context.Context, b actionBody) (ActionView, error) {
		resp, err := s.cfg.JobManager.StopJob(ctx, &weirv1.StopJobRequest{JobId: r.PathValue("id"), Target: b.Target, Drain: b.Drain})
		return ActionView{SavepointPath: resp.GetPath()}, err
	})
}

func (s *Server) rescale(w http.ResponseWriter, r *http.Request) {
	check := func(b actionBody) string {
		if b.Parallelism < 1 {
			return fmt.Sprintf("parallelism %d: want a number of subtasks, at least 1", b.Parallelism)
		}
		return ""
	}
	s.act(w, r, "rescale", s.cfg.ActionTimeout, check, func(ctx context.Context, b actionBody) (ActionView, error) {
		resp, err := s.cfg.JobManager.RescaleJob(ctx, &weirv1.RescaleJobRequest{JobId: r.PathValue("id"), Parallelism: int32(b.Parallelism)})
		return ActionView{SavepointPath: resp.GetSavepointPath()}, err
	})
}

func (s *Server) audit(r *http.Request, action string) {
	s.cfg.Logger.Info("dashboard action", "action", action, "job_id", r.PathValue("id"), "remote", r.RemoteAddr)
}

// fail answers a failed service call with the service's message and the
// HTTP status closest to its code.
func (s *Server) fail(w http.ResponseWriter, err error) {
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) {
			writeError(w, http.StatusGatewayTimeout, "the JobManager leader did not answer in time")
			return
		}
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	code := http.StatusInternalServerError
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange:
		code = http.StatusBadRequest
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.FailedPrecondition, codes.AlreadyExists, codes.Aborted:
		code = http.StatusConflict
	case codes.ResourceExhausted:
		code = http.StatusTooManyRequests
	case codes.Unauthenticated:
		code = http.StatusUnauthorized
	case codes.PermissionDenied:
		code = http.StatusForbidden
	case codes.Unavailable:
		code = http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		code = http.StatusGatewayTimeout
	}
	msg := st.Message()
	if code == http.StatusServiceUnavailable {
		msg = "cannot reach the JobManager leader: " + msg
	}
	writeError(w, code, msg)
}

// ErrorView is the body of every failed API call.
type ErrorView struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(ErrorView{Error: msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
