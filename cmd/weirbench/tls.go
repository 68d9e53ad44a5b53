package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/internal/tlsconf"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// The tls section measures what mutual TLS costs:
//
//   - throughput: scenario (b) of the throughput section (parallelism 2,
//     two TaskManager processes with one slot each, the keyBy crossing
//     the exchange between them, unthrottled sources), with every process
//     under --tls-* and without, alternating runs; with the CPU time the
//     TaskManagers used per event, less dependent than the rate on a shared
//     machine's other load;
//   - handshake: a new connection plus its first call (GetClusterStatus)
//     to a JobManager, with and without TLS, the median of many; this is
//     what TLS adds to every connection a failover opens (a TaskManager
//     registering with a new leader, the leader dialing TaskManagers, the
//     exchange dialing a TaskManager it had no connection to);
//   - failover: the failover section's TaskManager kill and the ha
//     section's leader kill, with and without TLS, alternating.
//
// The CLI the harness runs reads WEIR_TLS_* from the environment, set for
// the runs with TLS and cleared after them.

// withTLSEnv points the CLI at the client certificate of dir while f runs.
func withTLSEnv(dir string, f func() error) error {
	env := map[string]string{"WEIR_TLS_CERT": "client.pem", "WEIR_TLS_KEY": "client-key.pem", "WEIR_TLS_CA": "ca.pem"}
	for k, v := range env {
		os.Setenv(k, filepath.Join(dir, v))
	}
	defer func() {
		for k := range env {
			os.Unsetenv(k)
		}
	}()
	return f()
}

func (b *bench) tlsSection(events int64, runs, handshakes, failovers, haRuns, rate int) error {
	dir, err := os.MkdirTemp("", "weirbench-tls-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	g, err := tlsconf.Generate(dir, nil, 24*time.Hour)
	if err != nil {
		return err
	}
	tlsArgs := []string{"--tls-cert", g.NodeCert, "--tls-key", g.NodeKey, "--tls-ca", g.CA}

	s := scenario{name: "(b)", taskManagers: 2, slots: 1, parallelism: 2}
	fmt.Printf("scenario (b): parallelism 2, 2 TaskManagers x 1 slot, 100000 accounts, rate unlimited, %d events per run;\n"+
		"rate = detector records / job wall time; %d runs each, alternating plaintext and mutual TLS (TLS 1.3, ECDSA P-256)\n", events, runs)
	var sum, best, cpu [2]float64
	for range runs {
		for k, on := range []bool{false, true} {
			st := s
			var r tlsRun
			run := func() error {
				var err error
				r, err = tlsThroughput(b.weir, st, events)
				return err
			}
			if on {
				st.tlsArgs = tlsArgs
				err = withTLSEnv(dir, run)
			} else {
				err = run()
			}
			if err != nil {
				return fmt.Errorf("TLS %v: %w", on, err)
			}
			sum[k] += r.rate
			best[k] = max(best[k], r.rate)
			cpu[k] += r.cpuPerEvent
			fmt.Printf("  %-12s %.2f M events/s, TaskManager CPU %.0f ns/event\n",
				map[bool]string{false: "plaintext:", true: "mutual TLS:"}[on], r.rate/1e6, r.cpuPerEvent)
		}
	}
	mean := [2]float64{sum[0] / float64(runs), sum[1] / float64(runs)}
	cpu = [2]float64{cpu[0] / float64(runs), cpu[1] / float64(runs)}
	fmt.Printf("  mean: %.2f plaintext vs %.2f M events/s TLS: %.1f %% (best runs: %.1f %%); CPU %.0f vs %.0f ns/event: +%.1f %%\n",
		mean[0]/1e6, mean[1]/1e6, 100*mean[1]/mean[0], 100*best[1]/best[0], cpu[0], cpu[1], 100*(cpu[1]/cpu[0]-1))
	b.add("tls", "scenario (b) plaintext (mean)", fmt.Sprintf("%.2f M events/s", mean[0]/1e6), "")
	b.add("tls", "scenario (b) mutual TLS (mean)", fmt.Sprintf("%.2f M events/s", mean[1]/1e6), "")
	b.add("tls", "ratio TLS/plaintext (mean; best runs)", fmt.Sprintf("%.1f %%; %.1f %%", 100*mean[1]/mean[0], 100*best[1]/best[0]), ">= 90 %")
	b.add("tls", "TaskManager CPU per event, plaintext / TLS", fmt.Sprintf("%.0f / %.0f ns (+%.1f %%)", cpu[0], cpu[1], 100*(cpu[1]/cpu[0]-1)), "")

	var med [2]time.Duration
	for k, on := range []bool{false, true} {
		var tc *tlsconf.Config
		o := cluster.Options{DiscardStdout: true}
		if on {
			o.TLSArgs = tlsArgs
			if tc, err = tlsconf.Load(tlsconf.Files{Cert: g.ClientCert, Key: g.ClientKey, CA: g.CA}); err != nil {
				return err
			}
		}
		c, err := cluster.StartCluster(b.weir, o)
		if err != nil {
			return err
		}
		ds, err := connectTimes(c.JobManager.Addr, tc, handshakes)
		c.Stop()
		if err != nil {
			return fmt.Errorf("TLS %v: %w", on, err)
		}
		st := statsOf(ds)
		med[k] = st.median
		fmt.Printf("  new connection + first call, %s: median %s  max %s  (%d connections)\n",
			map[bool]string{false: "plaintext", true: "mutual TLS"}[on], msFrac(st.median), msFrac(st.max), handshakes)
	}
	b.add("tls", "new connection + first call: plaintext / TLS (median)", fmt.Sprintf("%s / %s", msFrac(med[0]), msFrac(med[1])), "")
	b.add("tls", "handshake cost per new connection (median)", msFrac(med[1]-med[0]), "")
	client, err := tlsconf.Load(tlsconf.Files{Cert: g.ClientCert, Key: g.ClientKey, CA: g.CA})
	if err != nil {
		return err
	}
	// withTLS runs f with every process, the CLI and the harness's own
	// calls under TLS.
	withTLS := func(f func() error) error {
		b.tlsArgs, b.clientTLS = tlsArgs, client
		defer func() { b.tlsArgs, b.clientTLS = nil, nil }()
		return withTLSEnv(dir, f)
	}
	if failovers > 0 {
		if err := b.tlsFailovers(withTLS, failovers, rate); err != nil {
			return err
		}
	}
	if haRuns > 0 {
		return b.tlsHAFailovers(withTLS, haRuns, rate)
	}
	return nil
}

// tlsHAFailovers runs the ha section's SIGKILL of the JobManager leader
// with and without TLS: raft elects over TLS, and every TaskManager
// connects to the new leader, and the leader to each TaskManager, with a
// handshake. The new leader's first checkpoint, from its log, is after
// all of that; the time to a new leader is polled with a new connection
// every 5 ms, so under TLS its resolution includes a handshake.
func (b *bench) tlsHAFailovers(withTLS func(func() error) error, runs, rate int) error {
	if _, err := b.minio(); err != nil {
		return err
	}
	fmt.Printf("leader failover as in the ha section (SIGKILL of the leader of 3 JobManagers), plaintext and TLS alternating:\n")
	var firsts [2][]time.Duration
	err := alternateTLS(withTLS, runs, func(n, k int, label string) error {
		r, err := runHAFailover(b, n, rate)
		if err != nil {
			return fmt.Errorf("leader failover, %s %w", label, err)
		}
		firsts[k] = append(firsts[k], r.firstCheckpoint)
		fmt.Printf("  %-11s kill -> new leader %s, first checkpoint %s, restarts %d\n",
			label, ms(r.newLeader), ms(r.firstCheckpoint), r.restarts)
		return nil
	})
	if err != nil {
		return err
	}
	p, t := statsOf(firsts[0]), statsOf(firsts[1])
	b.add("tls", "leader kill -> first checkpoint, plaintext / TLS (median)", fmt.Sprintf("%s / %s", ms(p.median), ms(t.median)), "")
	return nil
}

// tlsFailovers runs the failover section's SIGKILL of a TaskManager with
// and without TLS: the restarted subtasks open new connections (the
// JobManager to a TaskManager it never deployed to, the exchange to it),
// each with a handshake.
func (b *bench) tlsFailovers(withTLS func(func() error) error, runs, rate int) error {
	if _, err := b.minio(); err != nil {
		return err
	}
	fmt.Printf("failover as in the failover section (SIGKILL of a TaskManager, 3 TaskManagers, rate %d/s per source subtask), plaintext and TLS alternating:\n", rate)
	var firsts [2][]time.Duration
	err := alternateTLS(withTLS, runs, func(n, k int, label string) error {
		r, err := runFailover(b, n, rate, false)
		if err != nil {
			return fmt.Errorf("failover, %s %w", label, err)
		}
		firsts[k] = append(firsts[k], r.firstRecord)
		fmt.Printf("  %-11s kill -> RUNNING %s, first record %s\n", label, ms(r.running), ms(r.firstRecord))
		return nil
	})
	if err != nil {
		return err
	}
	p, t := statsOf(firsts[0]), statsOf(firsts[1])
	b.add("tls", "TaskManager kill -> first record, plaintext / TLS (median)", fmt.Sprintf("%s / %s", ms(p.median), ms(t.median)), "")
	return nil
}

type tlsRun struct {
	rate        float64 // events/s over the job's wall time
	cpuPerEvent float64 // ns of TaskManager CPU (user+system) per event
}

// tlsThroughput runs scenario s like the throughput section and adds the
// CPU time the TaskManager processes used: on a shared machine the wall
// time varies with the neighbours' load, the CPU per event much less.
func tlsThroughput(weir string, s scenario, events int64) (tlsRun, error) {
	c, err := start(weir, s, "")
	if err != nil {
		return tlsRun{}, err
	}
	per := events / int64(s.parallelism)
	st, err := runJob(c, s.parallelism, map[string]string{"rate": "0", "count": fmt.Sprint(per)}, 10*time.Minute)
	c.Stop()
	if err != nil {
		return tlsRun{}, err
	}
	in := operatorRecordsIn(st, "fraud-detector")
	secs := float64(st.EndTimeMs-st.StartTimeMs) / 1000
	if in != per*int64(s.parallelism) || secs <= 0 {
		return tlsRun{}, fmt.Errorf("detector saw %d records in %.3fs, want %d", in, secs, per*int64(s.parallelism))
	}
	var cpu time.Duration
	for _, tm := range c.TaskManagers {
		cpu += tm.CPUTime()
	}
	return tlsRun{rate: float64(in) / secs, cpuPerEvent: float64(cpu.Nanoseconds()) / float64(in)}, nil
}

// connectTimes opens n connections to addr one after another and times
// each from grpc.NewClient to the answer of its first call.
func connectTimes(addr string, tc *tlsconf.Config, n int) ([]time.Duration, error) {
	var ds []time.Duration
	for range n {
		start := time.Now()
		conn, err := grpc.NewClient(addr, tlsconf.DialOption(tc))
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = weirv1.NewJobManagerClient(conn).GetClusterStatus(ctx, &weirv1.GetClusterStatusRequest{})
		cancel()
		d := time.Since(start)
		conn.Close()
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// alternateTLS runs one measurement per run, plaintext then under mutual
// TLS (withTLS), runs times: f gets a fresh run number, 0 for plaintext or
// 1 for TLS, and a label for its output.
func alternateTLS(withTLS func(func() error) error, runs int, f func(n, k int, label string) error) error {
	for i := range runs {
		for k, label := range []string{"plaintext:", "mutual TLS:"} {
			run := func() error { return f(100+2*i+k, k, label) }
			var err error
			if k == 1 {
				err = withTLS(run)
			} else {
				err = run()
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}
