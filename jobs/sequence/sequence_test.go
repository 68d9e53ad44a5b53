package sequence

import (
	"bytes"
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
)

func run(t *testing.T, params map[string]string) string {
	t.Helper()
	g, err := jobs.Build(Name, 1, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Vertices) != 1 {
		t.Fatalf("%d vertices at parallelism 1, want one chain", len(g.Vertices))
	}
	var out bytes.Buffer
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{Stdout: &out, LatencyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// reference computes the job's output for one source subtask the plain
// way: per user, every A waits for the first later B; a C in between, or
// reaching the window, ends the wait (the latter as a timeout).
func reference(count, users, spacing, window int64) (matches, timeouts []string) {
	pending := map[int64][]Event{}
	seed := uint64(1) * 0x9e3779b97f4a7c15
	expire := func(now int64) {
		for u, as := range pending {
			keep := as[:0]
			for _, a := range as {
				if now-a.Time >= window {
					timeouts = append(timeouts, "Timeout{user="+strconv.FormatInt(u, 10)+", a="+strconv.FormatInt(a.Time, 10)+"}")
				} else {
					keep = append(keep, a)
				}
			}
			pending[u] = keep
		}
	}
	for i := int64(0); i < count; i++ {
		e := GenerateEvent(seed, i, uint64(users), spacing)
		expire(e.Time)
		switch e.Type {
		case 'A':
			pending[e.User] = append(pending[e.User], e)
		case 'B':
			for _, a := range pending[e.User] {
				matches = append(matches, "Match{user="+strconv.FormatInt(e.User, 10)+", a="+strconv.FormatInt(a.Time, 10)+", b="+strconv.FormatInt(e.Time, 10)+"}")
			}
			pending[e.User] = nil
		case 'C':
			pending[e.User] = nil
		}
	}
	expire(1 << 62)
	return matches, timeouts
}

func TestMatchesTheReference(t *testing.T) {
	out := run(t, map[string]string{"users": "7", "count": "3000", "rate": "0", "spacing": "700ms", "window": "10s"})
	var matches, timeouts []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, "Timeout") {
			timeouts = append(timeouts, l)
		} else {
			matches = append(matches, l)
		}
	}
	wantM, wantT := reference(3000, 7, 700, 10_000)
	if len(wantM) < 100 || len(wantT) < 50 {
		t.Fatalf("reference too thin: %d matches, %d timeouts", len(wantM), len(wantT))
	}
	// Keys' matches interleave by when their timers fire: compare as sets.
	slices.Sort(matches)
	slices.Sort(wantM)
	if !slices.Equal(matches, wantM) {
		t.Errorf("%d matches, want %d; first got %q, want %q", len(matches), len(wantM), matches[:min(3, len(matches))], wantM[:3])
	}
	slices.Sort(timeouts)
	slices.Sort(wantT)
	if !slices.Equal(timeouts, wantT) {
		t.Errorf("%d timeouts, want %d", len(timeouts), len(wantT))
	}
}

func TestBadParams(t *testing.T) {
	for _, p := range []map[string]string{{"users": "0"}, {"spacing": "0s"}, {"window": "0s"}, {"out-of-orderness": "-1s"}, {"count": "-1"}} {
		if _, err := jobs.Build(Name, 1, p); err == nil {
			t.Errorf("%v accepted", p)
		}
	}
}

func TestEventCodec(t *testing.T) {
	e := Event{User: 42, Type: 'C', Time: 123456}
	got, err := EventCodec{}.Decode(EventCodec{}.Append(nil, e))
	if err != nil || got != e {
		t.Errorf("round trip %+v, %v", got, err)
	}
	if _, err := (EventCodec{}).Decode([]byte{1}); err == nil {
		t.Error("short input decoded")
	}
}
