package kafka

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weirstream/weir/runtime"
)

// TestSCRAMFromAPasswordFile connects the source and sink with
// SASL/SCRAM-SHA-256 to a broker that requires it, the password read from
// a file; a wrong password fails the start without showing it.
func TestSCRAMFromAPasswordFile(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "weir", "s3cr3t-pw"), kfake.SeedTopics(2, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("s3cr3t-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := ClientConfig{Brokers: c.ListenAddrs(), SASLMechanism: "SCRAM-SHA-256", SASLUser: "weir",
		SASLPassword: Secret{File: pwFile}, StartupTimeout: 2 * time.Second}

	sink := &Sink[string]{Client: cfg, Topic: "out", Encode: encodeText}
	ctx := runtime.NewRuntimeContext(runtime.ContextConfig{JobID: "sasl", UID: "sink"})
	if err := sink.InitializeState(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := sink.Open(ctx); err != nil {
		t.Fatal(err)
	}
	write(t, sink, "s", 20)
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
	if len(out.got) != 20 {
		t.Fatalf("read %d records back, want 20", len(out.got))
	}

	t.Setenv("WEIR_TEST_KAFKA_PW", "wrong-pw")
	cfg.SASLPassword = Secret{Env: "WEIR_TEST_KAFKA_PW"}
	bad := &Source[string]{Client: cfg, Topics: []string{"out"}, Decode: Raw(decodeText)}
	bad.InitializeState(ctx, nil)
	err = bad.Open(ctx)
	t.Log(err)
	if !errors.Is(err, ErrBrokersUnreachable) || strings.Contains(err.Error(), "wrong-pw") {
		t.Fatalf("wrong password: %v", err)
	}
}
