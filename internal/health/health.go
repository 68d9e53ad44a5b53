// Package health serves a process's liveness and readiness probes over
// plain HTTP, for Kubernetes and for anyone with curl:
//
//   - GET /healthz answers 200 "ok" while the process runs.
//   - GET /readyz answers 200 "ready" when the ready function returns nil,
//     and 503 with the error on one line otherwise.
//
// The server carries no job data and no credentials, so it is plain HTTP
// on an address of its own (--health-listen), apart from the gRPC port.
package health

import (
	"context"
	"fmt"
	"github.com/weirstream/weir/internal/httpserve"
	"net/http"
	"strings"
)

// Handler serves /healthz and /readyz; ready decides readiness.
func Handler(ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.ReplaceAll(err.Error(), "\n", " "))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Server is a running health server.
type Server = httpserve.Server

// Listen starts serving the probes on addr until ctx ends or Close.
func Listen(ctx context.Context, addr string, ready func() error) (*Server, error) {
	return httpserve.Listen(ctx, "health", addr, Handler(ready))
}
