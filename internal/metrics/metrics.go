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
// secrets.
package metrics

import (
	"context"
	"fmt"
	"github.com/weirstream/weir/internal/httpserve"
	"net/http"

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

// Handler serves the registry in Prometheus's text (or negotiated) format.
func Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	return mux
}

// Server is a running metrics server.
type Server = httpserve.Server

// Listen serves GET /metrics on addr until ctx ends or Close.
func Listen(ctx context.Context, addr string, g prometheus.Gatherer) (*Server, error) {
	return httpserve.Listen(ctx, "metrics", addr, Handler(g))
}
