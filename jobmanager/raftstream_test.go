package jobmanager

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/weirstream/weir/internal/tlsconf"
)

func loadTLS(t *testing.T, dir, name string) *tlsconf.Config {
	t.Helper()
	c, err := tlsconf.Load(tlsconf.Files{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem"),
		CA: filepath.Join(dir, "ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTLSStreamLayer: members with certificates of the CA talk; a
// plaintext peer and one of another CA get nothing through.
func TestTLSStreamLayer(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	for _, d := range []string{dir, other} {
		if _, err := tlsconf.Generate(d, nil, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	adv, _ := net.ResolveTCPAddr("tcp", "127.0.0.1:1")
	s, err := newTLSStreamLayer("127.0.0.1:0", adv, loadTLS(t, dir, "node"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Addr() != adv {
		t.Errorf("Addr %v, want the advertised %v", s.Addr(), adv)
	}
	got := make(chan []byte, 4)
	go func() {
		for {
			c, err := s.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				b := make([]byte, 5)
				if _, err := io.ReadFull(c, b); err == nil {
					got <- b
				}
			}()
		}
	}()
	addr := raft.ServerAddress(s.Listener.Addr().String())

	peer := &tlsStreamLayer{tls: loadTLS(t, dir, "node")}
	c, err := peer.Dial(addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	select {
	case b := <-got:
		if !bytes.Equal(b, []byte("hello")) {
			t.Fatalf("got %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a member of the CA was not heard")
	}
	c.Close()

	stranger := &tlsStreamLayer{tls: loadTLS(t, other, "node")}
	if c, err := stranger.Dial(addr, 5*time.Second); err == nil {
		c.Write([]byte("hello"))
		c.Close()
	}
	if c, err := net.Dial("tcp", string(addr)); err == nil {
		c.Write([]byte("hello"))
		c.Close()
	}
	select {
	case b := <-got:
		t.Fatalf("a peer without the CA's certificate was heard: %q", b)
	case <-time.After(500 * time.Millisecond):
	}
}
