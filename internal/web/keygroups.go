package web

import (
	"context"
	"fmt"
	"sync"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// KeyGroupsView is GET /api/jobs/{id}/keygroups: the state bytes of each
// key group in the job's latest completed checkpoint, per keyed operator.
// (The records per key group are in the job's status, per subtask.)
type KeyGroupsView struct {
	CheckpointID   int64              `json:"checkpointId"`
	Path           string             `json:"path,omitempty"`
	MaxParallelism int                `json:"maxParallelism"`
	Operators      []KeyGroupOperator `json:"operators"`
}

// KeyGroupOperator is one keyed operator's state by key group.
type KeyGroupOperator struct {
	UID  string `json:"uid"`
	Name string `json:"name"`
	// Parallelism is the operator's when the checkpoint was taken.
	Parallelism int `json:"parallelism"`
	// Bytes[kg] is key group kg's block in its state file (0: no state),
	// summed over the files of an incremental checkpoint's chain (what a
	// restore reads); Subtask[kg] the subtask that wrote it (-1: none).
	Bytes   []int64 `json:"bytes"`
	Subtask []int   `json:"subtask"`
	Keys    int64   `json:"keys"`
}

// keyGroupCache keeps the view of each checkpoint read: a checkpoint's files
// never change, and the page polls.
type keyGroupCache struct {
	opts  storage.Options
	mu    sync.Mutex
	views map[string]*KeyGroupsView // by checkpoint path
}

// maxKeyGroupViews bounds the cache (a view per job open in a page, as a
// rule); past it, it starts over.
const maxKeyGroupViews = 64

func newKeyGroupCache(opts storage.Options) *keyGroupCache {
	return &keyGroupCache{opts: opts, views: map[string]*KeyGroupsView{}}
}

func (c *keyGroupCache) get(ctx context.Context, cp *weirv1.CheckpointInfo) (*KeyGroupsView, error) {
	c.mu.Lock()
	v, ok := c.views[cp.GetPath()]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := readKeyGroups(ctx, cp.GetPath(), c.opts)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.views) >= maxKeyGroupViews {
		clear(c.views)
	}
	c.views[cp.GetPath()] = v
	c.mu.Unlock()
	return v, nil
}

// readKeyGroups reads the checkpoint's _metadata and the index of each
// keyed state file in it (two small ranged reads per file).
func readKeyGroups(ctx context.Context, path string, opts storage.Options) (*KeyGroupsView, error) {
	st, err := storage.Open(path, opts)
	if err != nil {
		return nil, err
	}
	data, err := st.Get(ctx, statebackend.MetadataFile)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", storage.Join(path, statebackend.MetadataFile), err)
	}
	m, err := statebackend.DecodeMetadata(storage.Join(path, statebackend.MetadataFile), data)
	if err != nil {
		return nil, err
	}
	v := &KeyGroupsView{CheckpointID: m.CheckpointID, Path: path, MaxParallelism: m.MaxParallelism, Operators: []KeyGroupOperator{}}
	for _, o := range m.Operators {
		op := KeyGroupOperator{UID: o.UID, Name: o.Name, Parallelism: o.Parallelism,
			Bytes: make([]int64, m.MaxParallelism), Subtask: make([]int, m.MaxParallelism)}
		for i := range op.Subtask {
			op.Subtask[i] = -1
		}
		keyed := false
		for _, s := range o.Subtasks {
			if s.KeyGroups.Empty() {
				continue
			}
			keyed = true
			op.Keys += s.Keys
			// An incremental checkpoint's key group takes the bytes of
			// its blocks in every file of the chain.
			files := s.Chain
			if len(files) == 0 {
				files = []statebackend.FileRef{{Path: s.File, Size: s.Size}}
			}
			for _, ref := range files {
				from, dir := st, path
				if ref.Shared {
					dir = statebackend.SharedDir(path)
					if from, err = storage.Open(dir, opts); err != nil {
						return nil, err
					}
				}
				read := func(ctx context.Context, off, n int64) ([]byte, error) { return from.GetRange(ctx, ref.Path, off, n) }
				f, err := statebackend.OpenStateFile(ctx, storage.Join(dir, ref.Path), ref.Size, read)
				if err != nil {
					return nil, err
				}
				r := f.KeyGroups()
				for i, n := range f.KeyGroupSizes() {
					if kg := r.First + i; kg >= 0 && kg < len(op.Bytes) {
						op.Bytes[kg] += n
						op.Subtask[kg] = s.Subtask
					}
				}
			}
		}
		if keyed {
			v.Operators = append(v.Operators, op)
		}
	}
	return v, nil
}
