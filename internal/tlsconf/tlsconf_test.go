package tlsconf

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// writeIdentity writes a certificate of ca for 127.0.0.1 into dir as
// name.pem/name-key.pem beside ca.pem and returns its Files.
func writeIdentity(t *testing.T, dir, name string, ca *CA, notBefore, notAfter time.Time) Files {
	t.Helper()
	cert, key, err := ca.Issue(name, []string{"127.0.0.1"}, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	f := Files{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem"), CA: filepath.Join(dir, "ca.pem")}
	for p, d := range map[string][]byte{f.Cert: cert, f.Key: key, f.CA: ca.CertPEM} {
		if err := WriteFileAtomic(p, d, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func load(t *testing.T, f Files) *Config {
	t.Helper()
	c, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serve accepts TLS connections with srv and completes their handshakes.
func serve(t *testing.T, srv *Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tln := tls.NewListener(ln, srv.ServerTLS())
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					c.Write([]byte("ok"))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// dial connects with cfg and reads the server's "ok": TLS 1.3 reports a
// refused client certificate only on the first read.
func dial(addr string, cfg *tls.Config) (*tls.Conn, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func TestMutualHandshake(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	now := time.Now()
	srv := load(t, writeIdentity(t, dir, "server", ca, now.Add(-time.Minute), now.Add(time.Hour)))
	cli := load(t, writeIdentity(t, dir, "client", ca, now.Add(-time.Minute), now.Add(time.Hour)))
	addr := serve(t, srv)

	cfg, err := cli.ClientTLS("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := dial(addr, cfg)
	if err != nil {
		t.Fatalf("handshake with the CA's certificates: %v", err)
	}
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("version %x, want TLS 1.3", v)
	}
	c.Close()

	// The server name is checked.
	cfg, _ = cli.ClientTLS("weir.example")
	if _, err := dial(addr, cfg); err == nil {
		t.Error("a client accepted a certificate without its server name")
	}
}

func TestRefused(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	now := time.Now()
	srv := load(t, writeIdentity(t, dir, "server", ca, now.Add(-time.Minute), now.Add(time.Hour)))
	addr := serve(t, srv)

	other := t.TempDir()
	foreign := load(t, writeIdentity(t, other, "foreign", newCA(t), now.Add(-time.Minute), now.Add(time.Hour)))
	expired := load(t, writeIdentity(t, dir, "expired", ca, now.Add(-2*time.Hour), now.Add(-time.Hour)))
	good := load(t, writeIdentity(t, dir, "client", ca, now.Add(-time.Minute), now.Add(time.Hour)))

	cases := map[string]func() *tls.Config{
		"another CA's certificate": func() *tls.Config {
			// Trust the server, present a foreign certificate.
			cfg, _ := foreign.ClientTLS("127.0.0.1")
			g, _ := good.ClientTLS("127.0.0.1")
			cfg.RootCAs = g.RootCAs
			return cfg
		},
		"an expired certificate": func() *tls.Config {
			cfg, _ := expired.ClientTLS("127.0.0.1")
			return cfg
		},
		"no certificate": func() *tls.Config {
			cfg, _ := good.ClientTLS("127.0.0.1")
			cfg.Certificates = nil
			return cfg
		},
		"a server of another CA": func() *tls.Config {
			cfg, _ := foreign.ClientTLS("127.0.0.1")
			return cfg
		},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			if c, err := dial(addr, cfg()); err == nil {
				c.Close()
				t.Fatal("handshake succeeded")
			} else {
				t.Logf("refused: %v", err)
			}
		})
	}
	t.Run("plaintext", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		if string(buf[:n]) == "ok" {
			t.Fatal("plaintext accepted")
		}
	})
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	now := time.Now()
	sf := writeIdentity(t, dir, "server", ca, now.Add(-time.Minute), now.Add(time.Hour))
	srv := load(t, sf)
	cli := load(t, writeIdentity(t, dir, "client", ca, now.Add(-time.Minute), now.Add(time.Hour)))
	addr := serve(t, srv)

	serial := func() string {
		t.Helper()
		cfg, err := cli.ClientTLS("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		c, err := dial(addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	writeIdentity(t, dir, "server", ca, now.Add(-time.Minute), now.Add(time.Hour))
	if after := serial(); after == before {
		t.Fatalf("the server still presents serial %s after its files were replaced", before)
	}

	// A half-done rotation (new certificate, old key) keeps the last pair.
	rotated := serial()
	cert, _, err := ca.Issue("half", []string{"127.0.0.1"}, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(sf.Cert, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != rotated {
		t.Fatalf("serial %s during a half-done rotation, want the last good %s", got, rotated)
	}

	// A new CA for both sides, written while running, is trusted.
	ca2 := newCA(t)
	writeIdentity(t, dir, "server", ca2, now.Add(-time.Minute), now.Add(time.Hour))
	writeIdentity(t, dir, "client", ca2, now.Add(-time.Minute), now.Add(time.Hour))
	serial()
}

func TestLoadNeedsAllThree(t *testing.T) {
	if _, err := Load(Files{Cert: "a.pem"}); err == nil {
		t.Fatal("Load took a certificate without key and CA")
	}
	if _, err := Load(Files{Cert: "a.pem", Key: "b.pem", CA: "c.pem"}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing files: %v, want not exist", err)
	}
}

func TestGRPC(t *testing.T) {
	g, err := Generate(t.TempDir(), []string{"weir.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	node := load(t, Files{Cert: g.NodeCert, Key: g.NodeKey, CA: g.CA})
	client := load(t, Files{Cert: g.ClientCert, Key: g.ClientKey, CA: g.CA})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(ServerOptions(node)...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(ln)
	defer s.Stop()

	check := func(c *Config) error {
		conn, err := grpc.NewClient(ln.Addr().String(), DialOption(c))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := check(client); err != nil {
		t.Fatalf("gRPC over mutual TLS: %v", err)
	}
	if err := check(nil); err == nil {
		t.Fatal("a plaintext gRPC client was served")
	}
}
