package taskmanager

import (
	"strings"
	"testing"

	"github.com/weirstream/weir/jobs"
	_ "github.com/weirstream/weir/jobs/seqcheck"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

func TestDeploymentDescriptorMustMatchTheGraph(t *testing.T) {
	g, err := jobs.BuildFixed("sequence-check", 2, 128, map[string]string{"output": t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	good := &weirv1.DeployTaskRequest{JobName: "sequence-check", MaxParallelism: 128}
	for i, v := range g.Vertices {
		good.VertexParallelism = append(good.VertexParallelism, int32(v.Parallelism))
		if v.IsSource {
			good.SourceVertices = append(good.SourceVertices, int32(i))
		}
	}
	if err := matchDescriptor(g, good); err != nil {
		t.Fatalf("matching descriptor refused: %v", err)
	}
	for name, mutate := range map[string]func(r *weirv1.DeployTaskRequest){
		"maxParallelism 128, the JobManager's with 256":    func(r *weirv1.DeployTaskRequest) { r.MaxParallelism = 256 },
		"vertices, the JobManager's":                       func(r *weirv1.DeployTaskRequest) { r.VertexParallelism = r.VertexParallelism[1:] },
		"with parallelism 2, the JobManager's with 3":      func(r *weirv1.DeployTaskRequest) { r.VertexParallelism[len(r.VertexParallelism)-1] = 3 },
		"as source=true, the JobManager's as source=false": func(r *weirv1.DeployTaskRequest) { r.SourceVertices = nil },
	} {
		r := &weirv1.DeployTaskRequest{JobName: good.JobName, MaxParallelism: good.MaxParallelism,
			VertexParallelism: append([]int32(nil), good.VertexParallelism...), SourceVertices: good.SourceVertices}
		mutate(r)
		if err := matchDescriptor(g, r); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}
