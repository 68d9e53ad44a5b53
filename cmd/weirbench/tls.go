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
//     the exchange between them, unthrottled sources, no checkpoints),
//     with every process under --tls-* and without, alternating runs;
//   - handshake: a new connection plus its first call (GetClusterStatus)
//     to a JobManager, with and without TLS, the median of many; this is
//     what TLS adds to every connection a failover opens (a TaskManager
//     registering with a new leader, the leader dialing TaskManagers, the
//     exchange dialing a TaskManager it had no connection to).
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

func (b *bench) tlsSection(events int64, runs, handshakes int) error {
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
	var sum, best [2]float64
	for range runs {
		for k, on := range []bool{false, true} {
			var thr float64
			st := s
			run := func() error {
				var err error
				thr, err = throughput(b.weir, st, events, "")
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
			sum[k] += thr
			best[k] = max(best[k], thr)
			fmt.Printf("  %-10s %.2f M events/s\n", map[bool]string{false: "plaintext:", true: "mutual TLS:"}[on], thr/1e6)
		}
	}
	mean := [2]float64{sum[0] / float64(runs), sum[1] / float64(runs)}
	fmt.Printf("  mean: %.2f plaintext vs %.2f M events/s TLS: %.1f %% (best runs: %.1f %%)\n",
		mean[0]/1e6, mean[1]/1e6, 100*mean[1]/mean[0], 100*best[1]/best[0])
	b.add("tls", "scenario (b) plaintext (mean)", fmt.Sprintf("%.2f M events/s", mean[0]/1e6), "")
	b.add("tls", "scenario (b) mutual TLS (mean)", fmt.Sprintf("%.2f M events/s", mean[1]/1e6), "")
	b.add("tls", "ratio TLS/plaintext (mean; best runs)", fmt.Sprintf("%.1f %%; %.1f %%", 100*mean[1]/mean[0], 100*best[1]/best[0]), ">= 90 %")

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
	return nil
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
