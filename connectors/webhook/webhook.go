// Package webhook is a sink that POSTs records as JSON to an HTTP endpoint,
// and a Slack variant that posts them as incoming-webhook messages.
//
// # Delivery
//
// Invoke encodes a record and queues it (a bounded queue: a slow or absent
// receiver blocks the job, which is backpressure, never a dropped alert).
// A sender goroutine collects up to BatchSize records, or what arrived
// within Linger of a batch's first record, and POSTs them as one request.
// A request that times out, cannot connect, or is answered 5xx, 408 or 429
// is retried with exponential backoff (honouring Retry-After) for as long
// as it takes; any other 4xx answer is a bad request that retrying cannot
// cure, and fails the job with the status and the start of the answer.
// At a checkpoint barrier the sink waits until every queued record was
// delivered: delivery is at least once.
//
// # Duplicates after a restore
//
// A restore replays the records after the checkpoint, some of which were
// delivered before the failure. Every record carries an idempotency key,
// <job>/<subtask>/<checkpoint>/<n>: the checkpoint the subtask last
// snapshotted (restored from its state) and the record's index since then.
// A replayed record gets the key it had, provided the sink's input replays
// in the same order (a sink fed by one upstream subtask, such as a
// forward-connected or parallelism-1 operator); a Key function derives
// keys from the records themselves instead, which holds in every case.
// Keys go in the Idempotency-Key header, comma-separated in the order of
// the batch's records, and for the generic webhook also inside each JSON
// element, so a receiver can drop what it has seen.
//
// A rate limit spaces requests at least 1/RateLimit seconds apart.
//
// The URL usually holds a token: it is resolved on the TaskManager from an
// environment variable or a file and never logged (errors name the host
// only).
package webhook

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/weirstream/weir/runtime"
)

// Format turns a batch into a request body. Records are already encoded
// (one JSON value, or one line of text for Slack) with their keys.
type Format interface {
	Body(dst []byte, recs [][]byte, keys []string) []byte
	ContentType() string
}

// JSONArray is the generic webhook body:
// [{"idempotency_key":"...","record":<record>},...].
type JSONArray struct{}

func (JSONArray) ContentType() string { return "application/json" }

func (JSONArray) Body(dst []byte, recs [][]byte, keys []string) []byte {
	dst = append(dst, '[')
	for i, r := range recs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"idempotency_key":`...)
		dst = strconv.AppendQuote(dst, keys[i])
		dst = append(dst, `,"record":`...)
		dst = append(dst, r...)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// Slack is an incoming-webhook message: {"text":"<line>\n<line>..."}, one
// line per record (each record is encoded as plain text).
type Slack struct{}

func (Slack) ContentType() string { return "application/json" }

func (Slack) Body(dst []byte, recs [][]byte, _ []string) []byte {
	var text []byte
	for i, r := range recs {
		if i > 0 {
			text = append(text, '\n')
		}
		text = append(text, r...)
	}
	dst = append(dst, `{"text":`...)
	dst = appendJSONString(dst, text)
	return append(dst, '}')
}

// appendJSONString quotes s as a JSON string (strconv.Quote's escapes
// are Go's, not JSON's, for some control characters).
func appendJSONString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// Secret is the endpoint URL's source: an environment variable, a file,
// or (for programs that hold it already) the value.
type Secret struct {
	Env, File, Value string
}

// Resolve reads the URL. Errors name the variable or file, never the value.
func (s Secret) Resolve() (string, error) {
	switch {
	case s.Value != "":
		return s.Value, nil
	case s.Env != "":
		v := os.Getenv(s.Env)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is not set", s.Env)
		}
		return v, nil
	case s.File != "":
		f, err := os.Open(s.File)
		if err != nil {
			return "", err
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, 64<<10+1))
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", s.File, err)
		}
		if len(b) > 64<<10 {
			return "", fmt.Errorf("%s is larger than 64 KiB", s.File)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return "", errors.New("no URL given (set an environment variable or a file)")
}

// Sink posts records to a webhook.
type Sink[T any] struct {
	URL Secret
	// Encode appends one record: a JSON value for JSONArray, a line of
	// text for Slack.
	Encode func(dst []byte, v T) []byte
	// Key, when set, is the record's idempotency key (unique per record,
	// the same when replayed); otherwise keys are positional (see the
	// package documentation).
	Key    func(v T) string
	Format Format // default JSONArray
	// BatchSize records at most per request (default 100); Linger is how
	// long a batch waits for more records (default 200ms).
	BatchSize int
	Linger    time.Duration
	// Timeout bounds one request (default 10s); MaxBackoff caps the wait
	// between retries (default 30s).
	Timeout    time.Duration
	MaxBackoff time.Duration
	// RateLimit is the most requests per second (0: no limit).
	RateLimit float64
	// Client is the HTTP client (default: one with Timeout).
	Client *http.Client

	rc         *runtime.RuntimeContext
	url        string
	host       string
	queue      chan item
	flushReq   chan chan error
	done       chan struct{}
	err        chan error
	cancel     context.CancelFunc
	checkpoint int64
	n          int64
	jobPrefix  string
	failed     error
}

type item struct {
	rec []byte
	key string
}

const stateVersion = 1

// InitializeState restores the checkpoint the subtask last snapshotted,
// which positional idempotency keys carry.
func (s *Sink[T]) InitializeState(ctx *runtime.RuntimeContext, entries [][]byte) error {
	for _, e := range entries {
		if len(e) == 0 || e[0] != stateVersion {
			return fmt.Errorf("webhook sink: state entry: %w", runtime.ErrCorrupt)
		}
		r := runtime.NewReader(e[1:])
		sub, cp := r.Varint(), r.Varint()
		if err := r.Done(); err != nil {
			return fmt.Errorf("webhook sink: state entry: %w", err)
		}
		if int(sub) == ctx.SubtaskIndex() {
			s.checkpoint = cp
		}
	}
	return nil
}

// SnapshotState waits until every record so far is delivered, then
// records the checkpoint for the keys of the records after it.
func (s *Sink[T]) SnapshotState(checkpointID int64) ([][]byte, error) {
	if err := s.flush(); err != nil {
		return nil, err
	}
	s.checkpoint, s.n = checkpointID, 0
	e := binary.AppendVarint([]byte{stateVersion}, int64(s.rc.SubtaskIndex()))
	return [][]byte{binary.AppendVarint(e, checkpointID)}, nil
}

// Open resolves the URL and starts the sender.
func (s *Sink[T]) Open(ctx *runtime.RuntimeContext) error {
	s.rc = ctx
	if s.Encode == nil {
		return errors.New("webhook sink: no Encode function")
	}
	u, err := s.URL.Resolve()
	if err != nil {
		return fmt.Errorf("webhook sink: URL: %w", err)
	}
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return errors.New("webhook sink: the URL is not an http(s) URL") // never echo it: it may hold a token
	}
	s.url, s.host = u, pu.Scheme+"://"+pu.Host
	if s.Format == nil {
		s.Format = JSONArray{}
	}
	if s.BatchSize <= 0 {
		s.BatchSize = 100
	}
	if s.Linger <= 0 {
		s.Linger = 200 * time.Millisecond
	}
	if s.Timeout <= 0 {
		s.Timeout = 10 * time.Second
	}
	if s.MaxBackoff <= 0 {
		s.MaxBackoff = 30 * time.Second
	}
	if s.Client == nil {
		s.Client = &http.Client{Timeout: s.Timeout}
	}
	s.jobPrefix = ctx.JobID() + "/" + strconv.Itoa(ctx.SubtaskIndex()) + "/"
	s.queue = make(chan item, 2*s.BatchSize)
	s.flushReq = make(chan chan error)
	s.done = make(chan struct{})
	s.err = make(chan error, 1)
	bg, cancel := context.WithCancel(ctx.Context())
	s.cancel = cancel
	go s.send(bg)
	return nil
}

// Invoke queues one record; it blocks while the queue is full.
func (s *Sink[T]) Invoke(v T) error {
	if s.failed != nil {
		return s.failed
	}
	select {
	case err := <-s.err:
		s.failed = err
		return err
	default:
	}
	var key string
	if s.Key != nil {
		key = s.Key(v)
	} else {
		key = s.jobPrefix + strconv.FormatInt(s.checkpoint, 10) + "/" + strconv.FormatInt(s.n, 10)
	}
	s.n++
	it := item{rec: s.Encode(nil, v), key: key}
	select {
	case s.queue <- it:
		return nil
	case err := <-s.err:
		s.failed = err
		return err
	}
}

// flush waits until the sender has delivered everything queued.
func (s *Sink[T]) flush() error {
	if s.failed != nil {
		return s.failed
	}
	ack := make(chan error, 1)
	select {
	case s.flushReq <- ack:
	case err := <-s.err:
		s.failed = err
		return err
	}
	if err := <-ack; err != nil {
		s.failed = err
		return err
	}
	return nil
}

// EndInput delivers what is left.
func (s *Sink[T]) EndInput() error { return s.flush() }

// Close stops the sender; records not delivered are replayed by a restore.
func (s *Sink[T]) Close() error {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	return nil
}

// send is the sender goroutine.
func (s *Sink[T]) send(ctx context.Context) {
	defer close(s.done)
	var (
		recs  [][]byte
		keys  []string
		body  []byte
		timer = time.NewTimer(time.Hour)
		last  time.Time
	)
	timer.Stop()
	post := func() error {
		if len(recs) == 0 {
			return nil
		}
		if s.RateLimit > 0 {
			gap := time.Duration(float64(time.Second) / s.RateLimit)
			if wait := time.Until(last.Add(gap)); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		body = s.Format.Body(body[:0], recs, keys)
		err := s.deliver(ctx, body, keys)
		last = time.Now()
		recs, keys = recs[:0], keys[:0]
		timer.Stop()
		return err
	}
	fail := func(err error) {
		if err != nil && ctx.Err() == nil {
			s.err <- err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-s.queue:
			if len(recs) == 0 {
				timer.Reset(s.Linger)
			}
			recs, keys = append(recs, it.rec), append(keys, it.key)
			if len(recs) >= s.BatchSize {
				if err := post(); err != nil {
					fail(err)
					return
				}
			}
		case <-timer.C:
			if err := post(); err != nil {
				fail(err)
				return
			}
		case ack := <-s.flushReq:
			// Everything queued before the flush request is in the
			// channel: drain it, then post in batches.
			var err error
		drain:
			for err == nil {
				select {
				case it := <-s.queue:
					recs, keys = append(recs, it.rec), append(keys, it.key)
					if len(recs) >= s.BatchSize {
						err = post()
					}
				default:
					break drain
				}
			}
			if err == nil {
				err = post()
			}
			ack <- err
			if err != nil {
				return
			}
		}
	}
}

// ErrRejected is wrapped when the receiver refuses a batch for good (a 4xx
// answer other than 408 and 429).
var ErrRejected = errors.New("webhook receiver rejected the request")

// deliver POSTs one body until it is accepted, backing off between tries.
func (s *Sink[T]) deliver(ctx context.Context, body []byte, keys []string) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		wait, err := s.try(ctx, body, keys)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrRejected) || ctx.Err() != nil {
			return err
		}
		if wait <= 0 {
			wait = backoff
			backoff = min(2*backoff, s.MaxBackoff)
		}
		s.rc.Logger().Warn("webhook sink: delivery failed, retrying", "host", s.host, "attempt", attempt, "in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// try makes one request; wait is the receiver's Retry-After, if any.
func (s *Sink[T]) try(ctx context.Context, body []byte, keys []string) (time.Duration, error) {
	rctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: building the request for %s", ErrRejected, s.host)
	}
	req.Header.Set("Content-Type", s.Format.ContentType())
	req.Header.Set("Idempotency-Key", strings.Join(keys, ","))
	resp, err := s.Client.Do(req)
	if err != nil {
		// The error text of net/http holds the URL: name the host only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("posting to %s: %s", s.host, strings.ReplaceAll(err.Error(), s.url, s.host))
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return 0, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		var wait time.Duration
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			wait = min(time.Duration(secs)*time.Second, s.MaxBackoff)
		}
		return wait, fmt.Errorf("%s answered %s", s.host, resp.Status)
	default:
		return 0, fmt.Errorf("%w: %s answered %s: %q", ErrRejected, s.host, resp.Status, head)
	}
}
