package web

import (
	"fmt"
	"sync"

	"github.com/weirstream/weir/jobs"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// graphCache keeps the edges of each job graph the page asked for. The
// JobManager's status lists vertices but not which feeds which, so the
// graph is built again from the job's registered builder, as the
// JobManager builds it at submission: every process runs the same binary.
type graphCache struct {
	mu    sync.Mutex
	byJob map[graphKey][]EdgeView
}

// graphKey names one build: a rescale changes the parallelism.
type graphKey struct {
	job         string
	parallelism int32
}

func newGraphCache() *graphCache { return &graphCache{byJob: map[graphKey][]EdgeView{}} }

// maxGraphs bounds the cache; past it, it starts over (a build is cheap).
const maxGraphs = 256

func (c *graphCache) edges(st *weirv1.JobStatus) ([]EdgeView, error) {
	s := st.GetSummary()
	key := graphKey{job: s.GetJobId(), parallelism: s.GetParallelism()}
	c.mu.Lock()
	e, ok := c.byJob[key]
	c.mu.Unlock()
	if ok {
		return e, nil
	}
	g, err := jobs.BuildFixed(s.GetJobName(), int(s.GetParallelism()), int(st.GetMaxParallelism()), st.GetParams())
	if err != nil {
		return []EdgeView{}, fmt.Errorf("the job graph's edges are unknown: %w", err)
	}
	if len(g.Vertices) != len(st.GetVertices()) {
		return []EdgeView{}, fmt.Errorf("the job graph's edges are unknown: this binary builds %s with %d vertices, the JobManager's status has %d",
			s.GetJobName(), len(g.Vertices), len(st.GetVertices()))
	}
	e = []EdgeView{}
	for _, v := range g.Vertices {
		for _, out := range v.Outputs {
			e = append(e, EdgeView{Source: out.Source, Target: out.Target, Partitioning: out.Partitioning.String()})
		}
	}
	c.mu.Lock()
	if len(c.byJob) >= maxGraphs {
		clear(c.byJob)
	}
	c.byJob[key] = e
	c.mu.Unlock()
	return e, nil
}
