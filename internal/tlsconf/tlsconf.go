// Package tlsconf gives every Weir connection mutual TLS from three PEM
// files: a certificate, its key, and the CA that signs the certificates of
// every process of the cluster. A Config hands out server and client
// settings for gRPC (ServerOptions, DialOption) and for plain TCP (raft's
// transport: ServerTLS, ClientTLS). Servers require a client certificate
// signed by the CA; clients verify the server's certificate against the CA
// and the host they dialed.
//
// The files are re-read when they change on disk (their modification time
// or size), checked at each handshake, so a rotation by cert-manager or by
// hand needs no restart: connections already open keep their session, new
// ones present and trust the new files. A half-written rotation (a new
// certificate beside the old key) fails to load and the previous pair stays
// in use until the files agree again. No goroutine is involved.
//
// TLS 1.3 is the minimum. Its cipher suites are chosen by crypto/tls, which
// prefers AES-GCM when the CPU has AES instructions (about 4 % of a
// TaskManager's CPU in the fraud job's exchange). Records are always full
// size (16 KiB): dynamic record sizing, which starts every connection with
// small records for web pages' first bytes, is off, since the exchange
// writes 32 KiB buffers.
package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Files names the PEM files of a Config.
type Files struct {
	Cert, Key, CA string
}

// Config is a process's TLS identity and trust, reloaded from its files.
// It is safe for concurrent use. A nil *Config means plaintext to the
// helpers DialOption and ServerOptions.
type Config struct {
	files Files

	mu    sync.Mutex
	stamp [3]fileStamp // of Cert, Key, CA when last loaded
	cert  *tls.Certificate
	pool  *x509.CertPool
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// Load reads the files once, so that a wrong path or a bad file is an
// error at start, and returns a Config that re-reads them when they change.
func Load(f Files) (*Config, error) {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, errors.New("TLS needs a certificate, its key and a CA (--tls-cert, --tls-key, --tls-ca): all three or none")
	}
	c := &Config{files: f}
	if _, _, err := c.current(); err != nil {
		return nil, err
	}
	return c, nil
}

// current returns the certificate and CA pool, reloading them when a file
// changed. If the changed files do not load (a rotation half done), the
// previous ones stay in use; with no previous ones it is an error.
func (c *Config) current() (*tls.Certificate, *x509.CertPool, error) {
	var stamp [3]fileStamp
	for i, p := range []string{c.files.Cert, c.files.Key, c.files.CA} {
		fi, err := os.Stat(p)
		if err != nil {
			return c.keep(err)
		}
		stamp[i] = fileStamp{fi.ModTime(), fi.Size()}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && stamp == c.stamp {
		return c.cert, c.pool, nil
	}
	cert, pool, err := c.files.read()
	if err != nil {
		if c.cert != nil {
			return c.cert, c.pool, nil
		}
		return nil, nil, err
	}
	c.cert, c.pool, c.stamp = cert, pool, stamp
	return cert, pool, nil
}

func (c *Config) keep(err error) (*tls.Certificate, *x509.CertPool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil {
		return c.cert, c.pool, nil
	}
	return nil, nil, err
}

func (f Files) read() (*tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("TLS CA %s holds no PEM certificate", f.CA)
	}
	return &cert, pool, nil
}

// ServerTLS is the settings of a server: it presents the current
// certificate and requires a client certificate signed by the current CA.
// nextProtos are the ALPN protocols it offers ("h2" for gRPC).
func (c *Config) ServerTLS(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool, err := c.current()
			if err != nil {
				return nil, err
			}
			return &tls.Config{
				MinVersion:                  tls.VersionTLS13,
				DynamicRecordSizingDisabled: true,
				NextProtos:                  nextProtos,
				Certificates:                []tls.Certificate{*cert},
				ClientAuth:                  tls.RequireAndVerifyClientCert,
				ClientCAs:                   pool,
			}, nil
		},
	}
}

// ClientTLS is the settings of a client of serverName (the host dialed):
// it presents the current certificate and verifies the server's against
// the current CA. It is a snapshot: take a new one per connection.
func (c *Config) ClientTLS(serverName string) (*tls.Config, error) {
	cert, pool, err := c.current()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		DynamicRecordSizingDisabled: true,
		ServerName:                  serverName,
		Certificates:                []tls.Certificate{*cert},
		RootCAs:                     pool,
	}, nil
}

// ServerOptions are the gRPC server options of c: TLS credentials, or none
// for a nil c (plaintext).
func ServerOptions(c *Config) []grpc.ServerOption {
	if c == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(c.ServerTLS("h2")))}
}

// DialOption is the gRPC dial option of c: TLS credentials that verify
// the host of the target, or insecure ones for a nil c (plaintext).
func DialOption(c *Config) grpc.DialOption {
	if c == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(&clientCreds{c: c, info: credentials.NewTLS(&tls.Config{}).Info()})
}

// clientCreds builds the TLS settings at each handshake from the current
// files, so a rotation reaches new connections; the rest is gRPC's own TLS.
type clientCreds struct {
	c            *Config
	info         credentials.ProtocolInfo
	overrideName string
}

func (cc *clientCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	host := cc.overrideName
	if host == "" {
		host = authority
		if h, _, err := net.SplitHostPort(authority); err == nil {
			host = h
		}
	}
	cfg, err := cc.c.ClientTLS(host)
	if err != nil {
		return nil, nil, err
	}
	return credentials.NewTLS(cfg).ClientHandshake(ctx, authority, conn)
}

func (cc *clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("tlsconf: client credentials used by a server")
}

func (cc *clientCreds) Info() credentials.ProtocolInfo { return cc.info }

func (cc *clientCreds) Clone() credentials.TransportCredentials {
	cp := *cc
	return &cp
}

//nolint:staticcheck // part of the interface
func (cc *clientCreds) OverrideServerName(name string) error {
	cc.overrideName = name
	return nil
}
