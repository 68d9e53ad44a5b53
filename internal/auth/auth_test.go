package auth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

const (
	viewerToken   = "viewer-token-0123456789"
	operatorToken = "operator-token-0123456789"
)

func writeTokens(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseTokens(t *testing.T) {
	good := "# name role token\n\nci-bot viewer " + viewerToken + "\n  deployer\toperator " + operatorToken + "\n"
	m, err := ParseTokens([]byte(good))
	if err != nil || len(m) != 2 {
		t.Fatalf("ParseTokens: %v, %d tokens", err, len(m))
	}
	for _, bad := range []string{
		"ci-bot viewer",               // two fields
		"ci-bot admin " + viewerToken, // unknown role
		"ci-bot viewer short",         // short token
		"a viewer " + viewerToken + "\na operator " + operatorToken, // name twice
		"a viewer " + viewerToken + "\nb operator " + viewerToken,   // token twice
	} {
		if _, err := ParseTokens([]byte(bad)); err == nil {
			t.Errorf("ParseTokens(%q) accepted it", bad)
		}
	}
}

func TestTokensReload(t *testing.T) {
	p := writeTokens(t, "ci-bot viewer "+viewerToken+"\n")
	tok, err := LoadTokens(p)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := tok.Lookup(viewerToken); !ok || id.Name != "ci-bot" || id.Role != Viewer {
		t.Fatalf("Lookup: %+v %v", id, ok)
	}
	if _, ok := tok.Lookup(operatorToken); ok {
		t.Fatal("an unknown token was found")
	}
	// Rewrite the file with another size; force the next check.
	if err := os.WriteFile(p, []byte("deployer operator "+operatorToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok.mu.Lock()
	tok.checked = time.Time{}
	tok.mu.Unlock()
	if id, ok := tok.Lookup(operatorToken); !ok || id.Role != Operator {
		t.Fatalf("after reload: %+v %v", id, ok)
	}
	if _, ok := tok.Lookup(viewerToken); ok {
		t.Fatal("a removed token still works")
	}
	// A broken file keeps the old tokens.
	if err := os.WriteFile(p, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok.mu.Lock()
	tok.checked = time.Time{}
	tok.mu.Unlock()
	if _, ok := tok.Lookup(operatorToken); !ok {
		t.Fatal("a broken file dropped the tokens read before")
	}
	if _, err := LoadTokens(writeTokens(t, "# nothing\n")); err == nil {
		t.Fatal("an empty token file was accepted")
	}
}

const (
	readMethod  = "/svc/Read"
	writeMethod = "/svc/Cancel"
	internal    = "/svc/Heartbeat"
)

type jobReq struct{}

func (jobReq) GetJobId() string { return "job-42" }

func guard(t *testing.T, log *bytes.Buffer) *Guard {
	t.Helper()
	tok, err := LoadTokens(writeTokens(t, "ci-bot viewer "+viewerToken+"\ndeployer operator "+operatorToken+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return &Guard{Policy: Policy{readMethod: {Viewer, "list"}, writeMethod: {Operator, "cancel"}}, Tokens: tok,
		Log: slog.New(slog.NewTextHandler(log, nil))}
}

func call(g *Guard, method, token string) error {
	ctx := context.Background()
	if token != "" {
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token))
	}
	_, err := g.UnaryInterceptor()(ctx, jobReq{}, &grpc.UnaryServerInfo{FullMethod: method},
		func(context.Context, any) (any, error) { return "ok", nil })
	return err
}

func TestGuard(t *testing.T) {
	var log bytes.Buffer
	g := guard(t, &log)
	for _, c := range []struct {
		method, token string
		code          codes.Code
		msg           string
	}{
		{readMethod, viewerToken, codes.OK, ""},
		{readMethod, operatorToken, codes.OK, ""},
		{writeMethod, operatorToken, codes.OK, ""},
		{writeMethod, viewerToken, codes.PermissionDenied, `token "ci-bot" has role viewer; cancel needs operator`},
		{writeMethod, "", codes.Unauthenticated, "requires a token"},
		{readMethod, "not-a-known-token-at-all", codes.Unauthenticated, "not known"},
		{internal, "", codes.OK, ""},
	} {
		err := call(g, c.method, c.token)
		st := status.Convert(err)
		if st.Code() != c.code || !strings.Contains(st.Message(), c.msg) {
			t.Errorf("%s with %q: %v, want %v %q", c.method, c.token, err, c.code, c.msg)
		}
	}
	out := log.String()
	if n := strings.Count(out, "audit=true"); n != 1 {
		t.Errorf("%d audit lines, want 1 (the operator's cancel):\n%s", n, out)
	}
	if !strings.Contains(out, `audit=true caller="token \"deployer\"" role=operator method=cancel job_id=job-42 result=ok`) {
		t.Errorf("no audit line for the cancel:\n%s", out)
	}
	if !strings.Contains(out, `level=WARN msg="call refused" caller="token \"ci-bot\""`) {
		t.Errorf("the refusal is not logged with the caller:\n%s", out)
	}
	if strings.Contains(out, viewerToken) || strings.Contains(out, operatorToken) {
		t.Errorf("a token was logged:\n%s", out)
	}
}

func TestGuardOff(t *testing.T) {
	var log bytes.Buffer
	g := &Guard{Policy: Policy{writeMethod: {Operator, "cancel"}}, Log: slog.New(slog.NewTextHandler(&log, nil))}
	if err := call(g, writeMethod, ""); err != nil {
		t.Fatalf("auth off refused a call: %v", err)
	}
	if !strings.Contains(log.String(), "audit=true caller=anonymous") {
		t.Errorf("no audit line with auth off:\n%s", log.String())
	}
}

func TestBearerToken(t *testing.T) {
	md, err := BearerToken("abc").GetRequestMetadata(context.Background())
	if err != nil || md["authorization"] != "Bearer abc" {
		t.Fatalf("%v %v", md, err)
	}
}

// FuzzParseTokens reads arbitrary token files: an error or tokens that
// each satisfy the format's rules.
func FuzzParseTokens(f *testing.F) {
	f.Add([]byte("# c\nci-bot viewer " + viewerToken + "\ndeployer operator " + operatorToken + "\n"))
	f.Add([]byte("a b c d\n\n\t# x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseTokens(data)
		if err != nil {
			return
		}
		for _, id := range m {
			if id.Name == "" || (id.Role != Viewer && id.Role != Operator) || id.Kind != "token" {
				t.Fatalf("a token file yielded %+v", id)
			}
		}
	})
}

// A verified client certificate's subject is an identity too, when no
// token is presented; a token wins over it.
func TestGuardCertificateSubject(t *testing.T) {
	var log bytes.Buffer
	g := guard(t, &log)
	g.Subjects = map[string]Role{"CN=ci-bot,O=acme": Viewer}
	withCert := func(cn string) context.Context {
		cert := &x509.Certificate{Subject: pkix.Name{CommonName: cn, Organization: []string{"acme"}}}
		return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{
			State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}}})
	}
	_, err := g.UnaryInterceptor()(withCert("ci-bot"), jobReq{}, &grpc.UnaryServerInfo{FullMethod: writeMethod},
		func(context.Context, any) (any, error) { return "ok", nil })
	if st := status.Convert(err); st.Code() != codes.PermissionDenied ||
		st.Message() != `certificate "CN=ci-bot,O=acme" has role viewer; cancel needs operator` {
		t.Errorf("cancel with a viewer certificate: %v", err)
	}
	if id, err := g.Identify(withCert("stranger")); err == nil {
		t.Errorf("an unknown certificate (with tokens configured and none sent) was let in as %v", id)
	}
	ctx := metadata.NewIncomingContext(withCert("ci-bot"), metadata.Pairs("authorization", "Bearer "+operatorToken))
	if id, err := g.Identify(ctx); err != nil || id.Name != "deployer" {
		t.Errorf("token and certificate: %v %v, want the token's identity", id, err)
	}
}
