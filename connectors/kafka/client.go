package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// ClientConfig is how a connector reaches the cluster: plain broker
// addresses, optionally TLS and SASL (PLAIN, SCRAM-SHA-256/512), so the
// connectors run unchanged against Kafka, Redpanda or the development
// broker.
type ClientConfig struct {
	Brokers []string
	// TLS enables TLS; CAFile (PEM) replaces the system roots when set.
	TLS    bool
	CAFile string
	// SASLMechanism is "", "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512".
	SASLMechanism string
	SASLUser      string
	// SASLPassword is resolved on the TaskManager, never carried in job
	// parameters.
	SASLPassword Secret
	// DialTimeout bounds one connection attempt (default 10s); the start-up
	// check waits at most StartupTimeout (default 30s) for a broker.
	DialTimeout    time.Duration
	StartupTimeout time.Duration
}

// Validate checks the configuration without contacting a broker.
func (c ClientConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: no brokers given")
	}
	for _, b := range c.Brokers {
		if b == "" || strings.ContainsAny(b, " \t,") {
			return fmt.Errorf("kafka: broker address %q is not host:port", b)
		}
	}
	switch c.SASLMechanism {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		return fmt.Errorf("kafka: SASL mechanism %q (want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", c.SASLMechanism)
	}
	if c.SASLMechanism != "" && c.SASLUser == "" {
		return errors.New("kafka: SASL needs a user")
	}
	return nil
}

// options builds the franz-go options shared by every client of a
// connector. The password is read here, on the TaskManager.
func (c ClientConfig) options() ([]kgo.Opt, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	dial := c.DialTimeout
	if dial <= 0 {
		dial = 10 * time.Second
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.DialTimeout(dial)}
	if c.TLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CAFile != "" {
			pem, err := readBounded(c.CAFile, 1<<20)
			if err != nil {
				return nil, fmt.Errorf("kafka: CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka: CA file %s holds no PEM certificate", c.CAFile)
			}
			cfg.RootCAs = pool
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if c.SASLMechanism != "" {
		pw, err := c.SASLPassword.Resolve()
		if err != nil {
			return nil, fmt.Errorf("kafka: SASL password: %w", err)
		}
		switch c.SASLMechanism {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUser, Pass: pw}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: pw}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: pw}.AsSha512Mechanism()))
		}
	}
	return opts, nil
}

// ErrBrokersUnreachable is wrapped by the start-up error of a connector
// that reached none of its brokers.
var ErrBrokersUnreachable = errors.New("kafka brokers unreachable")

// ErrUnknownTopic is wrapped when a topic a connector needs does not exist.
var ErrUnknownTopic = errors.New("kafka topic does not exist")

// checkTopics asks the cluster for the metadata of topics (all topics if
// none is named). It fails clearly when no broker answers, naming them.
func (c ClientConfig) checkTopics(ctx context.Context, adm *kadm.Client, topics ...string) (kadm.TopicDetails, error) {
	wait := c.StartupTimeout
	if wait <= 0 {
		wait = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var (
		td   kadm.TopicDetails
		err  error
		last error // the last error that says more than the deadline
	)
	for {
		td, err = adm.ListTopics(ctx, topics...)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			last = err
		}
		if err == nil || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil {
		if last != nil {
			err = last
		}
		return nil, fmt.Errorf("%w: %s (within %v): %w", ErrBrokersUnreachable, strings.Join(c.Brokers, ","), wait, err)
	}
	for _, t := range topics {
		d, ok := td[t]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return td, fmt.Errorf("%w: %q", ErrUnknownTopic, t)
		}
		if d.Err != nil {
			return td, fmt.Errorf("kafka topic %q: %w", t, d.Err)
		}
	}
	return td, nil
}

// Secret is a credential read where it is used (on the TaskManager) from
// an environment variable or a file, so its value never travels in job
// parameters, status or logs. Value is for programs that build a job in
// Go and hold the secret already.
type Secret struct {
	Env   string
	File  string
	Value string
}

// IsZero reports whether no source of the secret is set.
func (s Secret) IsZero() bool { return s.Env == "" && s.File == "" && s.Value == "" }

// maxSecretBytes bounds a secret file read.
const maxSecretBytes = 64 << 10

// Resolve returns the secret's value. A file's trailing newline is
// dropped. Errors name the variable or file, never the value.
func (s Secret) Resolve() (string, error) {
	switch {
	case s.Value != "":
		return s.Value, nil
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", s.Env)
		}
		return v, nil
	case s.File != "":
		b, err := readBounded(s.File, maxSecretBytes)
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return "", errors.New("no secret given (set an environment variable or a file)")
}

// String never shows the value.
func (s Secret) String() string {
	switch {
	case s.Env != "":
		return "env:" + s.Env
	case s.File != "":
		return "file:" + s.File
	case s.Value != "":
		return "***"
	}
	return ""
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
