package jobmanager

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/weirstream/weir/internal/tlsconf"
)

// tlsStreamLayer carries raft's NetworkTransport over mutual TLS: accepted
// connections must present a certificate of the cluster's CA (checked at
// the first read, on the transport's own goroutine for the connection, so
// a stranger does not hold up Accept), and dialed members must present one
// valid for the host of their raft address.
type tlsStreamLayer struct {
	net.Listener
	advertise net.Addr
	tls       *tlsconf.Config
	server    *tls.Config
}

func newTLSStreamLayer(listen string, advertise net.Addr, c *tlsconf.Config) (*tlsStreamLayer, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	return &tlsStreamLayer{Listener: ln, advertise: advertise, tls: c, server: c.ServerTLS()}, nil
}

// Accept returns the next connection, whose handshake runs at its first
// read.
func (s *tlsStreamLayer) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(c, s.server), nil
}

// Addr is the advertised address: raft tells its peers this one.
func (s *tlsStreamLayer) Addr() net.Addr { return s.advertise }

// Dial connects to a member and completes the handshake within timeout.
func (s *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, err
	}
	cfg, err := s.tls.ClientTLS(host)
	if err != nil {
		return nil, err
	}
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(address), cfg)
}
