// Package httpserve runs the small plain-HTTP servers every process may
// offer beside its gRPC port (health probes, /metrics): listen first, so a
// taken address fails at once, then serve until the context ends or Close.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server is a running HTTP server.
type Server struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

// Listen serves h on addr until ctx ends or Close. name ("health",
// "metrics") prefixes its errors and logs.
func Listen(ctx context.Context, name, addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listen: %w", name, err)
	}
	s := &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second},
		addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Warn(name+" server stopped", "err", err)
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

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.addr }

// Done is closed once the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// Close stops the server and waits for it; it may be called more than once.
func (s *Server) Close() {
	s.srv.Close()
	<-s.done
}
