package webhook

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
)

type alert struct{ ID int }

func encodeAlert(dst []byte, a alert) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendInt(dst, int64(a.ID), 10)
	return append(dst, '}')
}

// receiver records every record it accepts by idempotency key, and fails
// every third request and any request while down.
type receiver struct {
	mu       sync.Mutex
	byKey    map[string]int
	ids      map[int]int
	requests int
	down     atomic.Bool
}

func (rv *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.requests++
	if rv.down.Load() || rv.requests%3 == 0 {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	var batch []struct {
		Key    string `json:"idempotency_key"`
		Record alert  `json:"record"`
	}
	if err := json.Unmarshal(body, &batch); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	keys := strings.Split(r.Header.Get("Idempotency-Key"), ",")
	if len(keys) != len(batch) {
		http.Error(w, "keys do not match the batch", http.StatusBadRequest)
		return
	}
	for i, b := range batch {
		if b.Key != keys[i] {
			http.Error(w, "key mismatch", http.StatusBadRequest)
			return
		}
		rv.byKey[b.Key]++
		rv.ids[b.Record.ID]++
	}
}

func newReceiver() *receiver { return &receiver{byKey: map[string]int{}, ids: map[int]int{}} }

func openSink(t *testing.T, url string, entries [][]byte) *Sink[alert] {
	t.Helper()
	s := &Sink[alert]{URL: Secret{Value: url}, Encode: encodeAlert, BatchSize: 7, Linger: 5 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond}
	ctx := runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "job", Subtask: 0, Parallelism: 1, Restored: entries != nil})
	if err := s.InitializeState(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestWebhookDeliversEverythingThroughFailuresAndRestores(t *testing.T) {
	rv := newReceiver()
	srv := httptest.NewServer(rv)
	defer srv.Close()
	s := openSink(t, srv.URL+"/hook?token=secret", nil)
	for i := range 50 {
		if err := s.Invoke(alert{i}); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := s.SnapshotState(4)
	if err != nil {
		t.Fatal(err)
	}
	// The receiver goes down for 5 s; records queue up (backpressure) and
	// the batch in flight is retried.
	rv.down.Store(true)
	done := make(chan error, 1)
	go func() {
		for i := 50; i < 80; i++ {
			if err := s.Invoke(alert{i}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	time.Sleep(5 * time.Second) // down for a while: retries, no loss
	rv.down.Store(false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Give part of the post-checkpoint records time to be delivered, then
	// "fail": a restored sink replays 50..79 with the same keys.
	time.Sleep(50 * time.Millisecond)
	s.Close()
	r := openSink(t, srv.URL+"/hook?token=secret", entries)
	for i := 50; i < 80; i++ {
		if err := r.Invoke(alert{i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.EndInput(); err != nil {
		t.Fatal(err)
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	for i := range 80 {
		if rv.ids[i] == 0 {
			t.Fatalf("alert %d never delivered", i)
		}
	}
	// Every duplicate carries a key seen before: deduplicating by key
	// leaves each alert exactly once.
	if len(rv.byKey) != 80 {
		t.Fatalf("%d distinct keys, want 80 (one per alert)", len(rv.byKey))
	}
	for i := range 50 {
		if rv.ids[i] != 1 {
			t.Fatalf("alert %d (before the checkpoint) delivered %d times", i, rv.ids[i])
		}
	}
}

func TestWebhookRejectionFailsAndHidesTheURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad payload", http.StatusBadRequest)
	}))
	defer srv.Close()
	s := openSink(t, srv.URL+"/hook/T000/SECRET", nil)
	var err error
	for i := 0; err == nil && i < 1000; i++ {
		err = s.Invoke(alert{i})
	}
	if err == nil {
		_, err = s.SnapshotState(1)
	}
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "400") {
		t.Fatalf("error %v, want a rejection with the status", err)
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("error shows the URL's token: %v", err)
	}
	// A receiver that cannot be reached: the error names the host only.
	bad := &Sink[alert]{URL: Secret{Env: "WEIR_TEST_NO_SUCH_VAR"}, Encode: encodeAlert}
	if err := bad.Open(runtime.NewRuntimeContext(runtime.ContextConfig{})); err == nil || !strings.Contains(err.Error(), "WEIR_TEST_NO_SUCH_VAR") {
		t.Fatalf("unset URL variable: %v", err)
	}
}

func TestSlackMessagesAndRateLimit(t *testing.T) {
	var mu sync.Mutex
	var texts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			Text string `json:"text"`
		}
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		texts = append(texts, m.Text)
		mu.Unlock()
	}))
	defer srv.Close()
	t.Setenv("WEIR_TEST_SLACK_URL", srv.URL)
	s := &Sink[alert]{URL: Secret{Env: "WEIR_TEST_SLACK_URL"}, Format: Slack{}, BatchSize: 2, RateLimit: 20,
		Encode: func(dst []byte, a alert) []byte {
			return append(dst, "Fraud \"alert\" for account "+strconv.Itoa(a.ID)...)
		}}
	if err := s.Open(runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "j"})); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 6 {
		if err := s.Invoke(alert{i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.EndInput(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(texts) != 3 || texts[0] != "Fraud \"alert\" for account 0\nFraud \"alert\" for account 1" {
		t.Fatalf("messages %q", texts)
	}
}

// TestTooManyRequestsIsRetried answers 429 with Retry-After first: the
// batch is sent again and delivered.
func TestTooManyRequestsIsRetried(t *testing.T) {
	var calls atomic.Int32
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		got.Add(1)
	}))
	defer srv.Close()
	s := openSink(t, srv.URL, nil)
	if err := s.Invoke(alert{1}); err != nil {
		t.Fatal(err)
	}
	if err := s.EndInput(); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || got.Load() != 1 {
		t.Fatalf("%d requests, %d accepted; want the 429 retried once", calls.Load(), got.Load())
	}
}
