package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	view "github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/statebackend"
	"github.com/weirstream/weir/statebackend/storage"
)

// cli runs `weir args... --jobmanager <addr>` and returns its stdout.
func cli(ctx context.Context, c *cluster.Cluster, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	r, err := cluster.Run(ctx, c.Weir, append(args, "--jobmanager", c.JobManagerAddrs)...)
	if err != nil {
		return "", fmt.Errorf("weir %s: %w", strings.Join(args, " "), err)
	}
	if r.ExitCode != 0 {
		return "", fmt.Errorf("weir %s: exit %d: %s", strings.Join(args, " "), r.ExitCode, strings.TrimSpace(r.Stderr))
	}
	return r.Stdout, nil
}

// submitJob submits a job and returns its ID. interval is the checkpoint
// interval (0 disables checkpoints).
func submitJob(c *cluster.Cluster, name string, parallelism int, interval time.Duration, params map[string]string) (string, error) {
	args := []string{"job", "submit", name, "--parallelism", fmt.Sprint(parallelism),
		"--checkpoint-interval", interval.String()}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--param", k+"="+params[k])
	}
	out, err := cli(context.Background(), c, args...)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// cliJSON runs a weir command with --json and decodes its output (the
// shapes of docs/json.md) into v.
func cliJSON(c *cluster.Cluster, v any, args ...string) error {
	out, err := cli(context.Background(), c, append(args, "--json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("weir %s --json: %w", strings.Join(args, " "), err)
	}
	return nil
}

func jobStatus(c *cluster.Cluster, id string) (*view.JobStatusView, error) {
	st := &view.JobStatusView{}
	if err := cliJSON(c, st, "job", "status", id); err != nil {
		return nil, err
	}
	return st, nil
}

func listCheckpoints(c *cluster.Cluster, id string) (*view.CheckpointListView, error) {
	r := &view.CheckpointListView{}
	if err := cliJSON(c, r, "job", "checkpoints", id); err != nil {
		return nil, err
	}
	return r, nil
}

// msDuration turns the JSON views' fractional milliseconds into a
// Duration.
func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// restoredID is the checkpoint the job's attempt restored, 0 for none.
func restoredID(st *view.JobStatusView) int64 {
	if r := st.Checkpointing.Restored; r != nil {
		return r.ID
	}
	return 0
}

// cancelJob cancels a job, ignoring errors (the cluster is stopped next).
func cancelJob(c *cluster.Cluster, id string) {
	_, _ = cli(context.Background(), c, "job", "cancel", id)
}

// readMetadata reads and decodes a checkpoint's _metadata.
func readMetadata(opts storage.Options, dir string) (*statebackend.Metadata, error) {
	st, err := storage.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data, err := st.Get(ctx, statebackend.MetadataFile)
	if err != nil {
		return nil, err
	}
	return statebackend.DecodeMetadata(storage.Join(dir, statebackend.MetadataFile), data)
}

// operatorKeys sums the keys an operator's subtasks hold in m.
func operatorKeys(m *statebackend.Metadata, uid string) (keys, size int64) {
	for _, o := range m.Operators {
		if o.UID == uid {
			for _, s := range o.Subtasks {
				keys += s.Keys
				size += s.Size
			}
		}
	}
	return keys, size
}

// operatorRecordsIn is the records-in count of the named operator.
func operatorRecordsIn(st *view.JobStatusView, name string) int64 {
	var n int64
	for _, v := range st.Vertices {
		for _, o := range v.Operators {
			if o.Name == name {
				n += o.RecordsIn
			}
		}
	}
	return n
}

// logLine is one slog text line of a weir process.
type logLine struct {
	Time  time.Time
	Msg   string
	Attrs map[string]string
}

// parseLog parses slog's text format (key=value, values quoted as Go
// strings when they need it) and keeps the lines whose msg is one of msgs.
func parseLog(text string, msgs ...string) []logLine {
	var out []logLine
	for _, line := range strings.Split(text, "\n") {
		attrs := parseLogfmt(line)
		if !slices.Contains(msgs, attrs["msg"]) {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, attrs["time"])
		if err != nil {
			continue
		}
		out = append(out, logLine{Time: t, Msg: attrs["msg"], Attrs: attrs})
	}
	return out
}

func parseLogfmt(line string) map[string]string {
	attrs := map[string]string{}
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			break
		}
		key := line[:eq]
		line = line[eq+1:]
		var val string
		if strings.HasPrefix(line, `"`) {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				break
			}
			val, _ = strconv.Unquote(q)
			line = line[len(q):]
		} else if sp := strings.IndexByte(line, ' '); sp >= 0 {
			val, line = line[:sp], line[sp:]
		} else {
			val, line = line, ""
		}
		attrs[key] = val
	}
	return attrs
}

// stats are the median and maximum of some durations.
type stats struct {
	n           int
	median, max time.Duration
}

func statsOf(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stats{n: len(s), median: m, max: s[len(s)-1]}
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string {
	if d < 0 {
		return "n/a"
	}
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 0, 64) + " ms"
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// waitFor polls cond every interval until it reports true or timeout.
func waitFor(timeout, interval time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(interval)
	}
}
