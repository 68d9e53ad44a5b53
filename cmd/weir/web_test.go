package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/internal/web"
)

// screenshotDir is where the dashboard tests keep their screenshots:
// $WEIR_SCREENSHOTS, else a temporary directory of the test.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("WEIR_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

var webServedRE = regexp.MustCompile(`msg="web dashboard served" address=(\S+)`)

// webAddr waits for a JobManager started with --web-listen 127.0.0.1:0 to
// log the address its dashboard took.
func webAddr(t *testing.T, p *cluster.Process) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := webServedRE.FindStringSubmatch(p.Stderr()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s announced no dashboard:\n%s", p.Name, p.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// browser starts a headless Chromium (Debian's chromium, which `make test`
// installs) and records the page's console errors and uncaught exceptions.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (make test installs Debian's chromium package): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1400, 1100), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	var mu sync.Mutex
	var problems []string
	err = chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *cdpruntime.EventConsoleAPICalled:
			if ev.Type == cdpruntime.ConsoleAPICalledTypeError || ev.Type == cdpruntime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problems = append(problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		case *cdpruntime.EventExceptionThrown:
			d := ev.ExceptionDetails
			desc := d.Text
			if d.Exception != nil {
				desc += " " + d.Exception.Description
			}
			problems = append(problems, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, desc))
		}
	})
	if err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx, func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(problems) }
}

// css is a CSS selector, formatted.
func css(format string, args ...any) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(format, args...)) }

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", file)
}

// TestDashboardInABrowser drives the JobManager's dashboard in a real
// headless Chromium against a multi-process cluster: the job list, a job's
// graph, a savepoint taken from the page (then listed by weir job
// checkpoints), a refused rescale shown in the page, and no console error.
// The TaskManagers log JSON, whose task lines name the task.
func TestDashboardInABrowser(t *testing.T) {
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2, DiscardStdout: true,
		JobManagerArgs:  []string{"--checkpoint-storage", t.TempDir(), "--web-listen", "127.0.0.1:0"},
		TaskManagerArgs: func(int) []string { return []string{"--log-format", "json"} }})
	webAddr := webAddr(t, c.JobManager)
	id := submit(t, c, "fraud-detection", "--parallelism", "2", "--checkpoint-interval", "500ms",
		"--param", "source=random", "--param", "rate=2000", "--param", "accounts=1000")
	waitCheckpoint(t, c, id, 1)
	dir := screenshotDir(t)
	ctx, problems := browser(t)
	url := "http://" + webAddr + "/"

	// The job list.
	if err := chromedp.Do(ctx, chromedp.Navigate(url),
		chromedp.WaitVisible(css(`tr[data-job="%s"]`, id)),
		chromedp.WaitVisible(css(`tr[data-taskmanager="tm-2"]`))); err != nil {
		t.Fatalf("job list: %v", err)
	}
	jobName, err := chromedp.Run(ctx, chromedp.Text(css(`tr[data-job="%s"] td:nth-child(2)`, id)))
	if err != nil {
		t.Fatal(err)
	}
	if jobName != "fraud-detection" {
		t.Errorf("the list names the job %q", jobName)
	}
	screenshot(t, ctx, dir, "dashboard-jobs.png")

	// The job: its graph, and the checkpoint history once a few exist.
	if err := chromedp.Do(ctx, chromedp.Click(css(`tr[data-job="%s"] a`, id)),
		chromedp.WaitVisible(css(`g.vertex[data-vertex="fraud-detector -> send-alerts"]`)),
		chromedp.WaitVisible(css(`#checkpoints tr[data-checkpoint]`))); err != nil {
		t.Fatalf("job page: %v", err)
	}
	vertices, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("g.vertex")).map(g => g.dataset.vertex + " p=" + g.dataset.parallelism)`))
	if err != nil {
		t.Fatal(err)
	}
	edges, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("g.edge-group")).map(g => g.dataset.edge + " " + g.dataset.partitioning)`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"transactions p=2", "fraud-detector -> send-alerts p=2"}; !slices.Equal(vertices, want) {
		t.Errorf("graph vertices %q, want %q", vertices, want)
	}
	if want := []string{"0->1 hash"}; !slices.Equal(edges, want) {
		t.Errorf("graph edges %q, want %q", edges, want)
	}
	// Rates need two heartbeats apart; then the heat map and sparklines
	// have something to show.
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`document.querySelector("#subtasks tbody tr td:nth-child(10)").textContent.includes("/s") &&
		!document.querySelector("#subtasks tbody tr td:nth-child(10)").textContent.startsWith("-") &&
		document.querySelectorAll("#keygroups .heat div").length === 128 &&
		Array.from(document.querySelectorAll("#keygroups .heat div")).some(d => d.title.includes("/s,") && !d.title.startsWith("key group " + d.dataset.kg + ": 0.0 /s"))`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("rates and key groups: %v", err)
	}
	screenshot(t, ctx, dir, "dashboard-job.png")

	// A savepoint from the page, confirmed in the dialog.
	if err := chromedp.Do(ctx, chromedp.Click(css(`#action-savepoint`)), chromedp.WaitVisible(css(`#confirm[open]`)),
		chromedp.Click(css(`#confirm-yes`))); err != nil {
		t.Fatalf("savepoint from the page: %v", err)
	}
	result, err := chromedp.Run(ctx, chromedp.Poll[string](`(() => { const r = document.querySelector("#action-result"); return r && r.textContent.startsWith("Savepoint") ? r.textContent : ""; })()`,
		chromedp.WithPollingTimeout(time.Minute)))
	if err != nil {
		t.Fatalf("savepoint from the page: %v", err)
	}
	path, ok := strings.CutPrefix(result, "Savepoint written: ")
	if !ok {
		t.Fatalf("the page says %q after a savepoint", result)
	}
	var cps cli.CheckpointListView
	weirJSON(t, &cps, "job", "checkpoints", id, "--jobmanager", c.JobManagerAddrs)
	if !slices.ContainsFunc(cps.Checkpoints, func(cp cli.CheckpointView) bool { return cp.Savepoint && cp.Path == path }) {
		t.Errorf("weir job checkpoints does not list the page's savepoint %s: %+v", path, cps.Checkpoints)
	}

	// A refused action: the JobManager's reason is in the page.
	if err := chromedp.Do(ctx, chromedp.SetValue(css(`#rescale-to`), "9"), chromedp.Click(css(`#action-rescale`)),
		chromedp.WaitVisible(css(`#confirm[open]`)), chromedp.Click(css(`#confirm-yes`)),
		chromedp.WaitVisible(css(`#error`))); err != nil {
		t.Fatalf("a refused rescale: %v", err)
	}
	shown, err := chromedp.Run(ctx, chromedp.Text(css(`#error`)))
	if err != nil {
		t.Fatal(err)
	}
	r := runWeir(t, "job", "rescale", id, "--parallelism", "9", "--jobmanager", c.JobManagerAddrs)
	if cliErr := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(r.Stderr), "weir:")); r.ExitCode == 0 || !strings.Contains(shown, cliErr) {
		t.Errorf("the page shows %q; the CLI says %q (exit %d)", shown, cliErr, r.ExitCode)
	}
	screenshot(t, ctx, dir, "dashboard-error.png")
	if p := problems(); len(p) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(p, "\n"))
	}

	// JSON task logs carry the task.
	found := false
	for _, line := range strings.Split(c.TaskManagers[0].Stderr(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "task running" {
			continue
		}
		if rec["job_id"] == id && rec["job"] == "fraud-detection" && rec["vertex"] != nil && rec["subtask"] != nil && rec["attempt"] != nil {
			found = true
		}
	}
	if !found {
		t.Errorf("no JSON \"task running\" line with job_id, job, vertex, subtask and attempt in:\n%s", c.TaskManagers[0].Stderr())
	}
}

// TestDashboardOnAFollower: every JobManager of a raft group serves the
// dashboard; a follower's reads and actions go to the leader, as the CLI's
// do, and its page says whose figures they are.
func TestDashboardOnAFollower(t *testing.T) {
	c := startCluster(t, cluster.Options{JobManagers: 3, RaftDir: t.TempDir(), TaskManagers: 1, Slots: 2, DiscardStdout: true,
		JobManagerArgs: []string{"--checkpoint-storage", t.TempDir(), "--web-listen", "127.0.0.1:0"}})
	var webAddrs []string
	for _, jm := range c.JobManagers {
		webAddrs = append(webAddrs, webAddr(t, jm))
	}
	lead := waitLeader(t, c, -1)
	follower := (lead + 1) % 3
	id := submit(t, c, "fraud-detection", "--parallelism", "2")
	get := func(path string, v any) {
		t.Helper()
		resp, err := http.Get("http://" + webAddrs[follower] + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s on the follower: %d %v", path, resp.StatusCode, err)
		}
	}
	var cl web.ClusterView
	get("/api/cluster", &cl)
	leaderID := fmt.Sprintf("jm-%d", lead+1)
	if cl.ServedBy != fmt.Sprintf("jm-%d", follower+1) || cl.LeaderID != leaderID || cl.RaftState != "leader" || len(cl.TaskManagers) != 1 {
		t.Errorf("a follower's cluster view: %+v", cl)
	}
	var jobs web.JobsView
	get("/api/jobs", &jobs)
	if len(jobs.Jobs) != 1 || jobs.Jobs[0].ID != id {
		t.Errorf("a follower's job list: %+v", jobs)
	}
	resp, err := http.Post("http://"+webAddrs[follower]+"/api/jobs/"+id+"/cancel", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("cancel through a follower: %d", resp.StatusCode)
	}
	waitState(t, c, id, 30*time.Second, "CANCELED")
}

// TestWebPortTaken: a dashboard port in use fails the start, naming the
// flag, on the JobManager and on weir local when the flag is given.
func TestWebPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	for _, args := range [][]string{
		{"jobmanager", "--listen", "127.0.0.1:0", "--web-listen", addr, "--checkpoint-storage", t.TempDir()},
		{"local", "--web-listen", addr, "--job", "fraud-detection", "--param", "count=10", "--param", "rate=0"},
	} {
		r := runWeir(t, args...)
		if want := "--web-listen " + addr; r.ExitCode == 0 || !strings.Contains(r.Stderr, want) {
			t.Errorf("weir %s with a taken port: exit %d, stderr lacks %q:\n%s", args[0], r.ExitCode, want, r.Stderr)
		}
	}
}

// TestDashboardWithTokens: against a JobManager with --auth-tokens the page
// shows the refusal and a token field; with a viewer's token it reads the
// cluster (the API tests check that a viewer's action is refused).
func TestDashboardWithTokens(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("ann viewer viewer-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, cluster.Options{TaskManagers: 1, Slots: 1, DiscardStdout: true,
		JobManagerArgs: []string{"--checkpoint-storage", t.TempDir(), "--web-listen", "127.0.0.1:0", "--auth-tokens", tokens}})
	webAddr := webAddr(t, c.JobManager)
	ctx, problems := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+webAddr+"/"), chromedp.WaitVisible(css(`#token`))); err != nil {
		t.Fatalf("no token field: %v", err)
	}
	refused, err := chromedp.Run(ctx, chromedp.Text(css(`#error`)))
	if err != nil || !strings.HasPrefix(refused, "401:") {
		t.Errorf("the page says %q (%v), want the 401", refused, err)
	}
	if err := chromedp.Do(ctx, chromedp.SetValue(css(`#token`), "viewer-token-0123456789"), chromedp.Click(css(`#token-save`)),
		chromedp.WaitVisible(css(`tr[data-taskmanager="tm-1"]`))); err != nil {
		t.Fatalf("with a viewer's token: %v", err)
	}
	if hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("#error").hidden`)); err != nil || !hidden {
		t.Errorf("the error stays shown with a good token (%v)", err)
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(p, "\n"))
	}
}
