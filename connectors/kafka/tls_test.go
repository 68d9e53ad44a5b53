package kafka

import (
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weirstream/weir/internal/tlsconf"
	"github.com/weirstream/weir/runtime"
)

// TestTLSWithACAFile talks TLS to a broker whose certificate a CA file
// signs; without that CA the start fails clearly.
func TestTLSWithACAFile(t *testing.T) {
	g, err := tlsconf.Generate(t.TempDir(), nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(g.NodeCert, g.NodeKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}),
		kfake.SeedTopics(1, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := ClientConfig{Brokers: c.ListenAddrs(), TLS: true, CAFile: g.CA, StartupTimeout: 2 * time.Second}
	sink := &Sink[string]{Client: cfg, Topic: "out", Encode: encodeText}
	ctx := runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "tls", UID: "sink"})
	if err := sink.InitializeState(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := sink.Open(ctx); err != nil {
		t.Fatal(err)
	}
	write(t, sink, "t", 5)
	if err := sink.EndInput(); err != nil {
		t.Fatal(err)
	}
	sink.Close()
	src := &Source[string]{Client: cfg, Topics: []string{"out"}, Decode: Raw(decodeText), Bounded: true}
	openSource(t, src, 0, 1, nil)
	out := &collect[string]{}
	for {
		_, err := src.Poll(out)
		if errors.Is(err, runtime.ErrEndOfInput) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if len(out.got) != 5 {
		t.Fatalf("read %d records over TLS, want 5", len(out.got))
	}
	cfg.CAFile = ""
	bad := &Source[string]{Client: cfg, Topics: []string{"out"}, Decode: Raw(decodeText)}
	bad.InitializeState(ctx, nil)
	if err := bad.Open(ctx); !errors.Is(err, ErrBrokersUnreachable) {
		t.Fatalf("a broker certificate no trusted CA signs: %v", err)
	}
}
