package runtime

import (
	"fmt"
	"strings"
)

// Partitioning says how records travel from one vertex's subtasks to the
// next vertex's subtasks.
type Partitioning uint8

const (
	// Forward sends subtask i's records to subtask i (equal parallelism).
	Forward Partitioning = iota
	// Hash sends a record to the subtask owning its key group (keyBy).
	Hash
	// Rebalance spreads records round-robin over all consumer subtasks.
	Rebalance
	// BroadcastEdge sends every record to every consumer subtask.
	BroadcastEdge
)

func (p Partitioning) String() string {
	switch p {
	case Forward:
		return "forward"
	case Hash:
		return "hash"
	case Rebalance:
		return "rebalance"
	case BroadcastEdge:
		return "broadcast"
	}
	return fmt.Sprintf("partitioning(%d)", uint8(p))
}

// JobGraph is the executable shape of a job: operators chained into
// vertices, vertices connected by edges. It is what the JobManager schedules
// (one subtask per vertex and parallel instance) and what a TaskManager
// instantiates a subtask from.
type JobGraph struct {
	Name           string
	MaxParallelism int
	Vertices       []*Vertex
	// EventTime says the job assigns event timestamps: records cross
	// exchanges with their timestamps, and watermarks flow.
	EventTime bool
}

// Vertex is a chain of operators run by one goroutine per subtask.
type Vertex struct {
	ID          int
	Name        string
	Parallelism int
	Operators   []OperatorInfo
	Inputs      []*Edge
	Outputs     []*Edge
	IsSource    bool

	chain []*node
}

// OperatorInfo names one chained operator.
type OperatorInfo struct {
	UID  string
	Name string
}

// Edge connects two vertices.
type Edge struct {
	Source, Target int // vertex IDs
	Partitioning   Partitioning

	// Watermarks says an assigner is upstream of the edge, so its
	// channels take part in the consumer's watermark; an input without
	// event time (rules, say) never holds the watermark back.
	Watermarks bool

	// from is the operator of the source vertex whose output the edge
	// carries: the chain's tail, or a node inside it whose chain
	// branches (an operator with side outputs).
	from *node
}

// SlotsNeeded is how many slots the job needs with slot sharing (a slot
// hosts one subtask of every vertex, as in Flink): its largest parallelism.
func (g *JobGraph) SlotsNeeded() int {
	n := 0
	for _, v := range g.Vertices {
		n = max(n, v.Parallelism)
	}
	return n
}

// Vertex returns the vertex with the given ID, or nil.
func (g *JobGraph) Vertex(id int) *Vertex {
	if id < 0 || id >= len(g.Vertices) {
		return nil
	}
	return g.Vertices[id]
}

// Graph validates the dataflow built on env, chains operators and returns
// the job graph.
func (e *Env) Graph() (*JobGraph, error) {
	if e.err != nil {
		return nil, e.err
	}
	if len(e.nodes) == 0 {
		return nil, fmt.Errorf("job %s defines no operators", e.name)
	}
	maxP := e.maxParallelism
	uids := map[string]bool{}
	for _, n := range e.nodes {
		if n.parallelism == 0 {
			n.parallelism = e.parallelism
			if n.side != "" {
				n.parallelism = n.input.parallelism
			}
		}
		if n.parallelism < 1 {
			return nil, fmt.Errorf("operator %s: parallelism %d must be at least 1", n.name, n.parallelism)
		}
		if n.uid == "" {
			n.uid = fmt.Sprintf("%s-%d", strings.ReplaceAll(strings.ToLower(n.name), " ", "-"), n.id)
		}
		if uids[n.uid] {
			return nil, fmt.Errorf("operator UID %q is used twice", n.uid)
		}
		uids[n.uid] = true
	}
	if maxP == 0 {
		for _, n := range e.nodes {
			maxP = max(maxP, DefaultMaxParallelism(n.parallelism))
		}
	}
	for _, n := range e.nodes {
		if n.parallelism > maxP {
			return nil, fmt.Errorf("operator %s: parallelism %d is above maxParallelism %d", n.name, n.parallelism, maxP)
		}
	}
	g := &JobGraph{Name: e.name, MaxParallelism: maxP}
	for _, n := range e.nodes {
		g.EventTime = g.EventTime || n.eventTime
	}

	// Decide each edge's partitioning and whether it is chained.
	for _, n := range e.nodes {
		if n.input == nil {
			continue
		}
		in := n.input
		if n.side != "" {
			// A side output is a branch of its producer's chain.
			if n.parallelism != in.parallelism {
				return nil, fmt.Errorf("operator %s: a side output runs with its operator's parallelism %d, not %d", n.name, in.parallelism, n.parallelism)
			}
			n.chained = true
			continue
		}
		if n.partitioning == Forward && in.parallelism != n.parallelism {
			n.partitioning = Rebalance
		}
		n.chained = n.input2 == nil && in.parallelism == n.parallelism &&
			(n.partitioning == Forward ||
				// With one subtask on each side every key goes to the same
				// place, so a keyBy is a direct call, not an exchange.
				(n.partitioning == Hash && n.parallelism == 1))
	}

	vertexOf := map[*node]*Vertex{}
	for _, n := range e.nodes {
		if n.chained {
			v := vertexOf[n.input]
			v.chain = append(v.chain, n)
			v.Operators = append(v.Operators, OperatorInfo{UID: n.uid, Name: n.name})
			vertexOf[n] = v
			continue
		}
		v := &Vertex{ID: len(g.Vertices), Parallelism: n.parallelism, IsSource: n.input == nil,
			chain: []*node{n}, Operators: []OperatorInfo{{UID: n.uid, Name: n.name}}}
		g.Vertices = append(g.Vertices, v)
		vertexOf[n] = v
	}
	for _, v := range g.Vertices {
		names := make([]string, len(v.chain))
		for i, n := range v.chain {
			names[i] = n.name
		}
		v.Name = strings.Join(names, " -> ")
		head := v.chain[0]
		if head.input != nil {
			src := vertexOf[head.input]
			if head.input.codec == nil {
				return nil, fmt.Errorf("operator %s: its output crosses an exchange to %s but it has no codec", head.input.name, head.name)
			}
			e := &Edge{Source: src.ID, Target: v.ID, Partitioning: head.partitioning, from: head.input,
				Watermarks: g.EventTime && hasEventTime(head.input)}
			v.Inputs = append(v.Inputs, e)
			src.Outputs = append(src.Outputs, e)
		}
		if in2 := head.input2; in2 != nil {
			src := vertexOf[in2]
			if src == vertexOf[head.input] {
				return nil, fmt.Errorf("operator %s: its two inputs come from one chain (%s); give one of them its own operator", head.name, src.Name)
			}
			e := &Edge{Source: src.ID, Target: v.ID, Partitioning: head.partitioning2, from: in2,
				Watermarks: g.EventTime && hasEventTime(in2)}
			v.Inputs = append(v.Inputs, e)
			src.Outputs = append(src.Outputs, e)
		}
	}
	return g, nil
}

// hasEventTime reports whether a timestamp assigner is upstream of n (or n).
func hasEventTime(n *node) bool {
	for ; n != nil; n = n.input {
		if n.eventTime {
			return true
		}
		if n.input2 != nil && hasEventTime(n.input2) {
			return true
		}
	}
	return false
}

// InputChannels lists the producer subtasks feeding consumer subtask i over
// e, in the order of the consumer's input channels.
func (g *JobGraph) InputChannels(e *Edge, i int) []int {
	if e.Partitioning == Forward {
		return []int{i}
	}
	return seq(g.Vertices[e.Source].Parallelism)
}

// OutputChannels lists the consumer subtasks producer subtask i sends to
// over e, in the order of the producer's output channels.
func (g *JobGraph) OutputChannels(e *Edge, i int) []int {
	if e.Partitioning == Forward {
		return []int{i}
	}
	return seq(g.Vertices[e.Target].Parallelism)
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
