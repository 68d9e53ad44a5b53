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
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
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

// Server is a running probe server.
type Server struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

// Listen starts serving the probes on addr until ctx ends or Close.
func Listen(ctx context.Context, addr string, ready func() error) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health listen: %w", err)
	}
	s := &Server{srv: &http.Server{Handler: Handler(ready), ReadHeaderTimeout: 5 * time.Second},
		addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Warn("health server stopped", "err", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.done:
		}
	}()
	return s, nil
}

// Addr is the address the probes are served at.
func (s *Server) Addr() string { return s.addr }

// Close stops the server and waits for it; it may be called more than once.
func (s *Server) Close() {
	s.srv.Close()
	<-s.done
}
