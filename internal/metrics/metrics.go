// Package metrics exports Weir's metrics to Prometheus.
//
// Nothing here runs on the per-record path. Tasks keep plain counters and
// publish them to atomics after each batch (runtime.Task.Operators, Stats,
// UserMetrics); the collectors of this package, and the JobManager's, read
// those at scrape time and build constant metrics from them, so a scrape
// costs the tasks nothing and an unscraped process pays nothing for
// metrics at all. Every metric is documented in docs/metrics.md.
//
// Listen serves a registry's /metrics over plain HTTP on an address of its
// own (--metrics-listen), like the health probes: the metrics carry no
// secrets. With Profiles (--metrics-pprof) the same address serves the Go
// profiler's /debug/pprof/ endpoints too, for profiling a running process
// over a stretch of time chosen by the caller (a benchmark's changes, not
// its warm-up); the command line is left out, as flags may hold secrets.
package metrics

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"

	"github.com/weirstream/weir/internal/httpserve"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry holding the Go runtime's and the
// process's standard collectors and the given ones.
func NewRegistry(cs ...prometheus.Collector) (*prometheus.Registry, error) {
	r := prometheus.NewRegistry()
	all := append([]prometheus.Collector{collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}, cs...)
	for _, c := range all {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register collector: %w", err)
		}
	}
	return r, nil
}

// Options are what a metrics server serves besides /metrics.
type Options struct {
	// Profiles serves /debug/pprof/ (profile, heap, goroutine, ...).
	Profiles bool
}

// Handler serves the registry in Prometheus's text (or negotiated) format.
func Handler(g prometheus.Gatherer, o ...Options) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	if len(o) > 0 && o[0].Profiles {
		// pprof.Index serves the named profiles (heap, goroutine, ...)
		// under its prefix; the CPU profile and trace have handlers of
		// their own.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Server is a running metrics server.
type Server = httpserve.Server

// Listen serves GET /metrics (and what o adds) on addr until ctx ends or
// Close.
func Listen(ctx context.Context, addr string, g prometheus.Gatherer, o ...Options) (*Server, error) {
	return httpserve.Listen(ctx, "metrics", addr, Handler(g, o...))
}
