package web

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/auth"
	"github.com/weirstream/weir/jobmanager"
	_ "github.com/weirstream/weir/jobs/fraud" // the job the tests run
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
	"github.com/weirstream/weir/taskmanager"
)

const waitFor = 30 * time.Second

// testCluster is a real JobManager and one TaskManager in this process,
// talking gRPC over loopback, and the dashboard over its client.
type testCluster struct {
	t      *testing.T
	client weirv1.JobManagerClient
	web    *httptest.Server
}

func startCluster(t *testing.T, tokens *auth.Tokens) *testCluster {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	jm, err := jobmanager.New(jobmanager.Config{HeartbeatInterval: 50 * time.Millisecond, Logger: log,
		CheckpointStorage: t.TempDir(), Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(jm.ServerOptions()...)
	jm.Register(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	jmDone := make(chan error, 1)
	go func() { jmDone <- jm.Run(ctx) }()
	tm, err := taskmanager.New(taskmanager.Config{ID: "tm-1", JobManager: lis.Addr().String(), Slots: 2, Stdout: io.Discard, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	tmCtx, stopTM := context.WithCancel(context.Background())
	tmDone := make(chan error, 1)
	go func() { tmDone <- tm.Run(tmCtx) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, client: weirv1.NewJobManagerClient(conn)}
	c.web = httptest.NewServer(New(Config{JobManager: c.client, Member: jm.ID(), Logger: log}))
	t.Cleanup(func() {
		c.web.Close()
		stopTM()
		<-tmDone
		conn.Close()
		cancel()
		<-jmDone
		srv.Stop()
		<-served
	})
	select {
	case <-tm.Registered():
	case <-time.After(waitFor):
		t.Fatal("the TaskManager did not register")
	}
	return c
}

// do calls the API and decodes the answer into v (unless nil); it returns
// the status code and the body.
func (c *testCluster) do(method, path, body, token string, v any) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.web.URL+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode == http.StatusOK {
		d := json.NewDecoder(bytes.NewReader(data))
		d.DisallowUnknownFields()
		if err := d.Decode(v); err != nil {
			c.t.Fatalf("%s %s: %v\n%s", method, path, err, data)
		}
	}
	return resp.StatusCode, string(data)
}

func (c *testCluster) get(path string, v any) {
	c.t.Helper()
	if code, body := c.do("GET", path, "", "", v); code != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s", path, code, body)
	}
}

// wantError checks an API error: the code and the JSON message.
func wantError(t *testing.T, code int, body string, wantCode int, wantMsg string) {
	t.Helper()
	var e ErrorView
	if err := json.Unmarshal([]byte(body), &e); err != nil || code != wantCode || !strings.Contains(e.Error, wantMsg) {
		t.Errorf("got %d %s, want %d with an error containing %q", code, body, wantCode, wantMsg)
	}
}

func (c *testCluster) submit(parallelism int) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := c.client.SubmitJob(ctx, &weirv1.SubmitJobRequest{JobName: "fraud-detection", Parallelism: int32(parallelism),
		Params:        map[string]string{"source": "random", "rate": "2000", "accounts": "1000"},
		Checkpointing: &weirv1.CheckpointConfig{IntervalMs: 200}})
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.JobId
}

func (c *testCluster) waitJob(id, what string, cond func(JobView) bool) JobView {
	c.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		var v JobView
		c.get("/api/jobs/"+id, &v)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s; last %+v", what, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAPI(t *testing.T) {
	c := startCluster(t, nil)
	id := c.submit(2)

	var jobs JobsView
	c.get("/api/jobs", &jobs)
	if len(jobs.Jobs) != 1 || jobs.Jobs[0].ID != id || jobs.Jobs[0].Name != "fraud-detection" || jobs.Jobs[0].Parallelism != 2 || jobs.NowMs == 0 {
		t.Fatalf("jobs %+v", jobs)
	}

	// The graph, placement, key groups and the subtasks' counters.
	v := c.waitJob(id, "both vertices to count records and time", func(v JobView) bool {
		if v.State != "RUNNING" || len(v.Vertices) != 2 {
			return false
		}
		for _, vx := range v.Vertices {
			for _, s := range vx.Subtasks {
				if s.BusyNs+s.IdleNs == 0 || s.RecordsIn+s.RecordsOut == 0 {
					return false
				}
			}
		}
		return true
	})
	names := []string{v.Vertices[0].Name, v.Vertices[1].Name}
	if !slices.Equal(names, []string{"transactions", "fraud-detector -> send-alerts"}) || v.Vertices[1].InputPartitioning != "hash" {
		t.Errorf("vertices %v, input %q", names, v.Vertices[1].InputPartitioning)
	}
	if !slices.Equal(v.Edges, []EdgeView{{Source: 0, Target: 1, Partitioning: "hash"}}) || v.GraphError != "" {
		t.Errorf("edges %+v (%s)", v.Edges, v.GraphError)
	}
	if v.MaxParallelism != 128 || v.NowMs == 0 {
		t.Errorf("maxParallelism %d, nowMs %d", v.MaxParallelism, v.NowMs)
	}
	for i, s := range v.Vertices[1].Subtasks {
		if s.TaskManagerID != "tm-1" || s.Slot != i || s.State != "RUNNING" || s.KeyGroupFirst != 64*i || s.KeyGroupLast != 64*i+63 {
			t.Errorf("subtask %d: %+v", i, s)
		}
	}
	if s := v.Vertices[0].Subtasks[0]; s.KeyGroupRecords != nil {
		t.Errorf("the source, not keyed, counts records by key group: %v", s.KeyGroupRecords)
	}

	// Records per key group: each keyed subtask counts its own key groups,
	// never more than the records it took in.
	v = c.waitJob(id, "records counted by key group", func(v JobView) bool {
		for _, s := range v.Vertices[1].Subtasks {
			var sum int64
			for _, n := range s.KeyGroupRecords {
				sum += n
			}
			if sum == 0 {
				return false
			}
		}
		return true
	})
	for i, s := range v.Vertices[1].Subtasks {
		var sum int64
		for _, n := range s.KeyGroupRecords {
			sum += n
		}
		if s.KeyGroupRecordsFirst != 64*i || len(s.KeyGroupRecords) != 64 || sum > s.RecordsIn {
			t.Errorf("subtask %d: key groups from %d, %d counts summing to %d of %d records in", i, s.KeyGroupRecordsFirst,
				len(s.KeyGroupRecords), sum, s.RecordsIn)
		}
	}

	var cl ClusterView
	c.get("/api/cluster", &cl)
	if len(cl.TaskManagers) != 1 || cl.TaskManagers[0].ID != "tm-1" || cl.TaskManagers[0].Slots != 2 || cl.TaskManagers[0].FreeSlots != 0 ||
		time.Since(time.UnixMilli(cl.TaskManagers[0].LastHeartbeatMs)) > time.Minute || cl.RaftState != "leader" || cl.ServedBy != cl.LeaderID {
		t.Errorf("cluster %+v", cl)
	}

	// Key groups: the latest checkpoint's state bytes, each written by the
	// subtask owning its key group.
	v = c.waitJob(id, "a checkpoint", func(v JobView) bool { return v.LatestCheckpoint != nil })
	var kg KeyGroupsView
	c.get("/api/jobs/"+id+"/keygroups", &kg)
	if kg.CheckpointID < v.LatestCheckpoint.ID || kg.MaxParallelism != 128 || len(kg.Operators) != 1 || kg.Operators[0].UID != "fraud-detector" {
		t.Fatalf("key groups %+v", kg)
	}
	op := kg.Operators[0]
	var total int64
	for g, n := range op.Bytes {
		total += n
		if n > 0 && op.Subtask[g] != g/64 {
			t.Errorf("key group %d: %d bytes written by subtask %d, want %d", g, n, op.Subtask[g], g/64)
		}
	}
	if total == 0 || len(op.Bytes) != 128 || op.Parallelism != 2 || op.Keys == 0 {
		t.Errorf("fraud-detector: %d bytes over %d key groups, parallelism %d, %d keys", total, len(op.Bytes), op.Parallelism, op.Keys)
	}

	// A savepoint through the API is in the job's checkpoints.
	var sp ActionView
	if code, body := c.do("POST", "/api/jobs/"+id+"/savepoint", `{"target": ""}`, "", &sp); code != http.StatusOK || sp.SavepointPath == "" {
		t.Fatalf("savepoint: %d %s", code, body)
	}
	var cps CheckpointsView
	c.get("/api/jobs/"+id+"/checkpoints", &cps)
	if !slices.ContainsFunc(cps.Checkpoints, func(c CheckpointView) bool { return c.Savepoint && c.Path == sp.SavepointPath && c.SizeBytes > 0 }) {
		t.Errorf("savepoint %s not among %+v", sp.SavepointPath, cps.Checkpoints)
	}

	// Errors are the service's, with the HTTP status of their code.
	code, body := c.do("POST", "/api/jobs/"+id+"/rescale", `{"parallelism": 9}`, "", nil)
	_, direct := c.client.RescaleJob(context.Background(), &weirv1.RescaleJobRequest{JobId: id, Parallelism: 9})
	if direct == nil {
		t.Fatal("rescaling to 9 on 2 slots was accepted")
	}
	var e ErrorView
	json.Unmarshal([]byte(body), &e)
	if code < 400 || code >= 500 || e.Error != status.Convert(direct).Message() {
		t.Errorf("rescale to 9: %d %q, the service says %q", code, e.Error, status.Convert(direct).Message())
	}
	code, body = c.do("POST", "/api/jobs/"+id+"/rescale", `{}`, "", nil)
	wantError(t, code, body, http.StatusBadRequest, "parallelism 0")
	code, body = c.do("POST", "/api/jobs/"+id+"/stop", `{"drian": true}`, "", nil)
	wantError(t, code, body, http.StatusBadRequest, `unknown field "drian"`)
	// A form post (what another site's page may send without asking) is
	// refused before it reaches the service.
	resp, err := http.Post(c.web.URL+"/api/jobs/"+id+"/cancel", "text/plain", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, resp.StatusCode, string(data), http.StatusUnsupportedMediaType, "Content-Type: application/json")
	code, body = c.do("GET", "/api/jobs/0123456789abcdef0123456789abcdef", "", "", nil)
	wantError(t, code, body, http.StatusNotFound, "0123456789abcdef0123456789abcdef")
	code, body = c.do("GET", "/api/nothing", "", "", nil)
	wantError(t, code, body, http.StatusNotFound, "no API GET /api/nothing")
	code, body = c.do("DELETE", "/api/jobs/"+id, "", "", nil)
	wantError(t, code, body, http.StatusNotFound, "no API DELETE /api/jobs/"+id)
	if st := c.waitJob(id, "the job to run on", func(v JobView) bool { return v.State == "RUNNING" }); st.Parallelism != 2 {
		t.Errorf("a refused rescale changed the job: %+v", st.JobSummaryView)
	}

	// Rescale and stop with a savepoint, as the page sends them.
	var rescaled ActionView
	if code, body := c.do("POST", "/api/jobs/"+id+"/rescale", `{"parallelism": 1}`, "", &rescaled); code != http.StatusOK || rescaled.SavepointPath == "" {
		t.Fatalf("rescale to 1: %d %s", code, body)
	}
	// At parallelism 1 the keyBy is chained: one vertex, no edge.
	v = c.waitJob(id, "the job to run at parallelism 1", func(v JobView) bool {
		return v.State == "RUNNING" && v.Parallelism == 1 && v.Rescale != nil && v.Rescale.Phase == "DONE"
	})
	if len(v.Vertices) != 1 || len(v.Edges) != 0 || v.GraphError != "" || v.Vertices[0].Subtasks[0].KeyGroupLast != 127 {
		t.Errorf("at parallelism 1: %d vertices, edges %v (%s)", len(v.Vertices), v.Edges, v.GraphError)
	}
	var stopped ActionView
	if code, body := c.do("POST", "/api/jobs/"+id+"/stop", `{"drain": true}`, "", &stopped); code != http.StatusOK || stopped.SavepointPath == "" {
		t.Fatalf("stop: %d %s", code, body)
	}
	c.waitJob(id, "the stopped job to finish", func(v JobView) bool { return v.State == "FINISHED" })
	c.get("/api/jobs/"+id+"/checkpoints", &cps)
	if !slices.ContainsFunc(cps.Checkpoints, func(c CheckpointView) bool { return c.Savepoint && c.Path == stopped.SavepointPath }) {
		t.Errorf("the stop's savepoint %s not among %+v", stopped.SavepointPath, cps.Checkpoints)
	}
	code, body = c.do("POST", "/api/jobs/"+id+"/savepoint", "", "", nil)
	if code != http.StatusConflict && code != http.StatusBadRequest {
		t.Errorf("savepoint of a finished job: %d %s", code, body)
	}

	id = c.submit(2)
	c.waitJob(id, "the second job to run", func(v JobView) bool { return v.State == "RUNNING" })
	var canceled ActionView
	if code, body := c.do("POST", "/api/jobs/"+id+"/cancel", "", "", &canceled); code != http.StatusOK || canceled.JobID != id {
		t.Fatalf("cancel: %d %s", code, body)
	}
	c.waitJob(id, "the job to be canceled", func(v JobView) bool { return v.State == "CANCELED" })
}

func TestStaticPages(t *testing.T) {
	srv := httptest.NewServer(New(Config{}))
	defer srv.Close()
	for path, want := range map[string]string{"/": `<script src="app.js">`, "/app.js": "function renderGraph", "/style.css": ".graph"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(data), want) || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: %d, %d bytes, Cache-Control %q", path, resp.StatusCode, len(data), resp.Header.Get("Cache-Control"))
		}
	}
}

// TestTokensReachTheService: the browser's bearer token is the call's, so
// the JobManager's roles apply to the dashboard as to the CLI.
func TestTokensReachTheService(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("alice viewer viewer-secret-0123\nbob operator operator-secret-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.LoadTokens(file)
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, tokens)
	code, body := c.do("GET", "/api/jobs", "", "", nil)
	wantError(t, code, body, http.StatusUnauthorized, "")
	if code, body := c.do("GET", "/api/jobs", "", "viewer-secret-0123", &JobsView{}); code != http.StatusOK {
		t.Errorf("a viewer lists jobs: %d %s", code, body)
	}
	code, body = c.do("POST", "/api/jobs/0123456789abcdef0123456789abcdef/cancel", "", "viewer-secret-0123", nil)
	wantError(t, code, body, http.StatusForbidden, "")
	code, body = c.do("POST", "/api/jobs/0123456789abcdef0123456789abcdef/cancel", "", "operator-secret-0123", nil)
	wantError(t, code, body, http.StatusNotFound, "")
}

func TestListenNamesTheFlag(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, err = Listen(t.Context(), taken.Addr().String(), Config{})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("--web-listen %s", taken.Addr())) {
		t.Errorf("a taken port: %v", err)
	}
}

// TestKeyGroupsOfAMissingCheckpoint: a checkpoint whose files are gone is
// an error naming its _metadata, not an empty heat map.
func TestKeyGroupsOfAMissingCheckpoint(t *testing.T) {
	dir := t.TempDir()
	_, err := readKeyGroups(t.Context(), dir, storage.Options{})
	if err == nil || !strings.Contains(err.Error(), "_metadata") {
		t.Errorf("reading the key groups of an empty directory: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "_metadata"), []byte("not a manifest"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readKeyGroups(t.Context(), dir, storage.Options{}); err == nil {
		t.Error("a corrupt _metadata was read")
	}
}

// varintCodec is an int64 codec for state written by the test.
type varintCodec struct{}

func (varintCodec) Append(dst []byte, v int64) []byte { return binary.AppendVarint(dst, v) }
func (varintCodec) Decode(src []byte) (int64, error) {
	v, n := binary.Varint(src)
	if n != len(src) {
		return 0, fmt.Errorf("bad varint")
	}
	return v, nil
}

// TestKeyGroupsOfAnIncrementalCheckpoint: a key group's bytes are its
// blocks in every file of the chain, read from the job's shared
// directory.
func TestKeyGroupsOfAnIncrementalCheckpoint(t *testing.T) {
	root := t.TempDir()
	r := statebackend.KeyGroupRange{First: 0, Last: 3}
	b := statebackend.NewBackend(r)
	vt, err := statebackend.NewValueTable[int64, int64](b, "v", varintCodec{}, varintCodec{})
	if err != nil {
		t.Fatal(err)
	}
	for k := range int64(20) {
		vt.Put(int(k%2)*2, k, k) // key groups 0 and 2
	}
	first := b.Snapshot()
	full, err := statebackend.WriteStateFile(r, first, nil)
	if err != nil {
		t.Fatal(err)
	}
	vt.Put(2, 100, 1) // the delta changes key group 2 only
	delta, err := statebackend.WriteDeltaFile(r, first, b.Snapshot(), nil)
	if err != nil {
		t.Fatal(err)
	}
	chain := []statebackend.FileRef{{Path: statebackend.SharedFileName("op", 0, 1), Size: int64(len(full)), Shared: true},
		{Path: statebackend.SharedFileName("op", 0, 2), Size: int64(len(delta)), Shared: true, Delta: true}}
	m := &statebackend.Metadata{JobID: "j", JobName: "job", CheckpointID: 2, MaxParallelism: 4,
		Operators: []statebackend.OperatorState{{UID: "op", Name: "op", Parallelism: 1, Subtasks: []statebackend.SubtaskState{
			{Subtask: 0, Chain: chain, Size: int64(len(delta)), KeyGroups: r, Keys: 21}}}}}
	for name, data := range map[string][]byte{"j/shared/" + chain[0].Path: full, "j/shared/" + chain[1].Path: delta,
		"j/chk-2/_metadata": statebackend.EncodeMetadata(m)} {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v, err := readKeyGroups(t.Context(), filepath.Join(root, "j", "chk-2"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sizes := func(data []byte) []int64 {
		f, err := statebackend.OpenStateFile(t.Context(), "f", int64(len(data)), func(_ context.Context, off, n int64) ([]byte, error) {
			return data[off : off+n], nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return f.KeyGroupSizes()
	}
	fs, ds := sizes(full), sizes(delta)
	op := v.Operators[0]
	if op.Bytes[0] != fs[0] || op.Bytes[2] != fs[2]+ds[2] || ds[2] == 0 || op.Bytes[1] != 0 || op.Subtask[2] != 0 || op.Keys != 21 {
		t.Errorf("key groups %+v; full file %v, delta %v", op, fs, ds)
	}
}
