// Package cluster starts real weir processes (a JobManager and
// TaskManagers) on 127.0.0.1 for the integration tests and the benchmark
// harness, and stops them. Each process listens on port 0 and announces its
// address in its log, so there are no port races.
package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one running weir process.
type Process struct {
	Name    string
	Addr    string // gRPC address, once announced
	cmd     *exec.Cmd
	stdout  syncBuffer
	stderr  syncBuffer
	addrC   chan string
	regC    chan struct{}
	waitErr chan error
}

// syncBuffer is a bytes.Buffer safe for a writer and readers at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The lines a process announces itself with, in --log-format text or json.
var (
	addrRE       = regexp.MustCompile(`msg="(jobmanager|taskmanager) started".* address=(\S+)|"msg":"(jobmanager|taskmanager) started".*"address":"([^"]+)"`)
	registeredRE = regexp.MustCompile(`msg="registered with the JobManager"|"msg":"registered with the JobManager"`)
)

// Start runs `weir args...` with extra environment variables. stdout is
// kept in memory unless discardStdout is set.
func Start(name, weir string, env []string, discardStdout bool, args ...string) (*Process, error) {
	p := &Process{Name: name, addrC: make(chan string, 1), regC: make(chan struct{}, 1), waitErr: make(chan error, 1)}
	p.cmd = exec.Command(weir, args...)
	p.cmd.Env = append(os.Environ(), env...)
	if discardStdout {
		p.cmd.Stdout = io.Discard
	} else {
		p.cmd.Stdout = &p.stdout
	}
	pr, pw := io.Pipe()
	p.cmd.Stderr = pw
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.stderr.Write([]byte(line + "\n"))
			if m := addrRE.FindStringSubmatch(line); m != nil {
				select {
				case p.addrC <- m[2] + m[4]:
				default:
				}
			}
			if registeredRE.MatchString(line) {
				select {
				case p.regC <- struct{}{}:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		err := p.cmd.Wait()
		pw.Close()
		p.waitErr <- err
	}()
	return p, nil
}

// WaitAddr waits for the process to announce its gRPC address.
func (p *Process) WaitAddr(timeout time.Duration) (string, error) {
	select {
	case a := <-p.addrC:
		p.Addr = a
		return a, nil
	case err := <-p.waitErr:
		p.waitErr <- err
		return "", fmt.Errorf("%s exited before announcing its address (%v); stderr:\n%s", p.Name, err, p.Stderr())
	case <-time.After(timeout):
		return "", fmt.Errorf("%s did not announce its address within %v; stderr:\n%s", p.Name, timeout, p.Stderr())
	}
}

// WaitRegistered waits for a TaskManager to register with the JobManager.
func (p *Process) WaitRegistered(timeout time.Duration) error {
	select {
	case <-p.regC:
		return nil
	case err := <-p.waitErr:
		p.waitErr <- err
		return fmt.Errorf("%s exited before registering (%v); stderr:\n%s", p.Name, err, p.Stderr())
	case <-time.After(timeout):
		return fmt.Errorf("%s did not register within %v; stderr:\n%s", p.Name, timeout, p.Stderr())
	}
}

// Stdout is what the process printed so far.
func (p *Process) Stdout() string { return p.stdout.String() }

// Stderr is what the process logged so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// Kill sends SIGKILL and waits for the process to exit.
func (p *Process) Kill() {
	p.cmd.Process.Kill()
	p.wait(10 * time.Second)
}

// Stop sends SIGTERM and waits, killing the process if it lingers.
func (p *Process) Stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(10 * time.Second); err != nil {
		p.cmd.Process.Kill()
		return err
	}
	return nil
}

func (p *Process) wait(d time.Duration) error {
	select {
	case err := <-p.waitErr:
		p.waitErr <- err
		return nil
	case <-time.After(d):
		return fmt.Errorf("%s did not exit within %v", p.Name, d)
	}
}

// CPUTime is the user and system CPU time the process used, once it has
// exited (after Stop or Kill); 0 before.
func (p *Process) CPUTime() time.Duration {
	select {
	case err := <-p.waitErr:
		p.waitErr <- err
	default:
		return 0
	}
	if ps := p.cmd.ProcessState; ps != nil {
		return ps.UserTime() + ps.SystemTime()
	}
	return 0
}

// Signal sends sig (SIGSTOP, SIGCONT, ...) to the process.
func (p *Process) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Cluster is a JobManager (or a raft group of them) and TaskManagers as
// separate processes.
type Cluster struct {
	Weir string
	// JobManager is the first JobManager; JobManagers are all of them.
	JobManager   *Process
	JobManagers  []*Process
	TaskManagers []*Process
	// JobManagerAddrs is the comma-separated client addresses of the
	// JobManagers, for --jobmanager.
	JobManagerAddrs string

	env    []string
	jmArgs [][]string
}

// Options shape a cluster.
type Options struct {
	TaskManagers int
	Slots        int
	// Env is extra environment for every process (S3 credentials).
	Env []string
	// JobManagerArgs are extra flags, e.g. --heartbeat-timeout.
	JobManagerArgs []string
	// TaskManagerEnv is extra environment for TaskManagers (GOMAXPROCS).
	TaskManagerEnv []string
	// TaskManagerArgs returns extra flags for TaskManager i.
	TaskManagerArgs func(i int) []string
	DiscardStdout   bool
	// JobManagers above 1 start a raft group (--id jm-N, --peers,
	// --raft-dir under RaftDir) on ports chosen up front, so members can
	// be restarted on the same addresses.
	JobManagers int
	RaftDir     string
	// TLSArgs are flags given to every JobManager and TaskManager
	// (--tls-cert, --tls-key, --tls-ca).
	TLSArgs []string
}

// StartCluster starts the JobManager(s) and the TaskManagers and waits
// until all have announced their addresses.
func StartCluster(weir string, o Options) (*Cluster, error) {
	c := &Cluster{Weir: weir, env: o.Env}
	if o.JobManagers <= 1 {
		c.jmArgs = [][]string{append(append([]string{"jobmanager", "--listen", "127.0.0.1:0"}, o.JobManagerArgs...), o.TLSArgs...)}
	} else {
		var peers, clients []string
		for i := range o.JobManagers {
			raftAddr, err := freeAddr()
			if err != nil {
				return nil, err
			}
			client, err := freeAddr()
			if err != nil {
				return nil, err
			}
			peers = append(peers, fmt.Sprintf("jm-%d=%s", i+1, raftAddr))
			clients = append(clients, client)
		}
		for i := range o.JobManagers {
			c.jmArgs = append(c.jmArgs, append([]string{"jobmanager", "--id", fmt.Sprintf("jm-%d", i+1),
				"--listen", clients[i], "--peers", strings.Join(peers, ","),
				"--raft-dir", filepath.Join(o.RaftDir, fmt.Sprintf("jm-%d", i+1))}, append(o.JobManagerArgs, o.TLSArgs...)...))
		}
	}
	c.JobManagers = make([]*Process, len(c.jmArgs))
	var addrs []string
	for i := range c.jmArgs {
		if err := c.StartJobManager(i); err != nil {
			c.Stop()
			return nil, err
		}
		addrs = append(addrs, c.JobManagers[i].Addr)
	}
	c.JobManager = c.JobManagers[0]
	c.JobManagerAddrs = strings.Join(addrs, ",")
	for i := 0; i < o.TaskManagers; i++ {
		if _, err := c.AddTaskManager(o, i); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// StartJobManager starts JobManager i (again, after a Kill or Stop), with
// the arguments it was first started with.
func (c *Cluster) StartJobManager(i int) error {
	name := "jobmanager"
	if len(c.jmArgs) > 1 {
		name = fmt.Sprintf("jobmanager-%d", i+1)
	}
	jm, err := Start(name, c.Weir, c.env, true, c.jmArgs[i]...)
	if err != nil {
		return err
	}
	c.JobManagers[i] = jm
	if i == 0 {
		c.JobManager = jm
	}
	_, err = jm.WaitAddr(30 * time.Second)
	return err
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// AddTaskManager starts TaskManager number i of the cluster.
func (c *Cluster) AddTaskManager(o Options, i int) (*Process, error) {
	slots := o.Slots
	if slots == 0 {
		slots = 2
	}
	args := []string{"taskmanager", "--jobmanager", c.JobManagerAddrs, "--listen", "127.0.0.1:0",
		"--slots", fmt.Sprint(slots), "--id", fmt.Sprintf("tm-%d", i+1)}
	args = append(args, o.TLSArgs...)
	if o.TaskManagerArgs != nil {
		args = append(args, o.TaskManagerArgs(i)...)
	}
	env := append(append([]string(nil), o.Env...), o.TaskManagerEnv...)
	tm, err := Start(fmt.Sprintf("taskmanager-%d", i+1), c.Weir, env, o.DiscardStdout, args...)
	if err != nil {
		return nil, err
	}
	c.TaskManagers = append(c.TaskManagers, tm)
	if _, err := tm.WaitAddr(30 * time.Second); err != nil {
		return nil, err
	}
	// Jobs submitted before every TaskManager registered would be placed
	// on the ones that had.
	if err := tm.WaitRegistered(30 * time.Second); err != nil {
		return nil, err
	}
	return tm, nil
}

// Stop stops every process.
func (c *Cluster) Stop() {
	for _, tm := range c.TaskManagers {
		tm.Stop()
	}
	for _, jm := range c.JobManagers {
		if jm != nil {
			jm.Stop()
		}
	}
}

// Logs returns every process's stderr, for test failure messages.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, p := range append(append([]*Process(nil), c.JobManagers...), c.TaskManagers...) {
		if p != nil {
			fmt.Fprintf(&b, "==== %s ====\n%s\n", p.Name, p.Stderr())
		}
	}
	return b.String()
}

// Result is a finished CLI invocation.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
}

// Run runs the weir CLI to completion.
func Run(ctx context.Context, weir string, args ...string) (Result, error) {
	cmd := exec.CommandContext(ctx, weir, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.ExitCode = ee.ExitCode()
		return r, nil
	}
	return r, err
}

// Pid is the process's ID (for reading its memory use under /proc).
func (p *Process) Pid() int { return p.cmd.Process.Pid }
