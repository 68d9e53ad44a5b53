package health

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProbes(t *testing.T) {
	var ready atomic.Bool
	s, err := Listen(context.Background(), "127.0.0.1:0", func() error {
		if !ready.Load() {
			return errors.New("not registered\nyet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.Addr()
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 ok", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || body != "not registered yet\n" {
		t.Errorf("/readyz before ready: %d %q, want 503 with the reason on one line", code, body)
	}
	ready.Store(true)
	if code, body := get(t, base+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz when ready: %d %q, want 200 ready", code, body)
	}
	if code, _ := get(t, base+"/nothing"); code != 404 {
		t.Errorf("/nothing: %d, want 404", code)
	}
	s.Close()
	s.Close() // idempotent
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Errorf("address %q", base)
	}
}

func TestStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Listen(ctx, "127.0.0.1:0", func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-s.Done()
	if _, err := http.Get("http://" + s.Addr() + "/healthz"); err == nil {
		t.Error("served after its context ended")
	}
}
