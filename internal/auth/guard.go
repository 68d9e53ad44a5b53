package auth

import (
	"context"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Rule is what a client method needs: the role, and the action's name as
// users know it from the CLI ("cancel"), for messages and audit lines.
type Rule struct {
	Role   Role
	Action string
}

// Policy maps full gRPC method names to their rules. A method it does not
// list is internal and not checked.
type Policy map[string]Rule

// Guard authenticates and authorises client calls. Its zero value with a
// Policy and no Tokens or Subjects lets every caller in as Anonymous (auth
// is off) but still writes the audit lines.
type Guard struct {
	Policy Policy
	// Tokens are the bearer tokens accepted; nil with no Subjects turns
	// authentication off.
	Tokens *Tokens
	// Subjects maps verified client-certificate subjects (as
	// pkix.Name.String() prints them, "CN=ci-bot,O=acme") to roles. A
	// caller presenting a bearer token is identified by the token.
	Subjects map[string]Role
	Log      *slog.Logger
}

// enabled says whether calls must identify themselves.
func (g *Guard) enabled() bool { return g.Tokens != nil || len(g.Subjects) > 0 }

// Identify returns the caller of the call in ctx, or an Unauthenticated
// status error.
func (g *Guard) Identify(ctx context.Context) (Identity, error) {
	if !g.enabled() {
		return Anonymous, nil
	}
	if token, ok := bearer(ctx); ok {
		if g.Tokens != nil {
			if id, ok := g.Tokens.Lookup(token); ok {
				return id, nil
			}
		}
		return Identity{}, status.Error(codes.Unauthenticated, "the bearer token is not known to this JobManager (check --token-file or WEIR_TOKEN)")
	}
	if subject, ok := certificateSubject(ctx); ok {
		if role, ok := g.Subjects[subject]; ok {
			return Identity{Kind: "certificate", Name: subject, Role: role}, nil
		}
		if g.Tokens == nil {
			return Identity{}, status.Errorf(codes.Unauthenticated, "the client certificate %q has no role on this JobManager", subject)
		}
	}
	return Identity{}, status.Error(codes.Unauthenticated,
		"this JobManager requires a token: pass --token-file FILE or set WEIR_TOKEN")
}

// bearer returns the token of an `authorization: Bearer <token>` header.
func bearer(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if scheme, token, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "bearer") {
			if token = strings.TrimSpace(token); token != "" {
				return token, true
			}
		}
	}
	return "", false
}

// certificateSubject returns the subject of the verified client
// certificate of a call over mutual TLS.
func certificateSubject(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	return info.State.VerifiedChains[0][0].Subject.String(), true
}

// Authorize returns the caller of a call to method, or the status error
// refusing it. ok is false for methods the Policy does not list.
func (g *Guard) Authorize(ctx context.Context, method string) (id Identity, rule Rule, ok bool, err error) {
	rule, ok = g.Policy[method]
	if !ok {
		return Identity{}, Rule{}, false, nil
	}
	id, err = g.Identify(ctx)
	if err != nil {
		g.logger().Warn("call refused", "caller", "unauthenticated", "method", rule.Action, "err", status.Convert(err).Message())
		return id, rule, true, err
	}
	if id.Role < rule.Role {
		err = status.Errorf(codes.PermissionDenied, "%s has role %s; %s needs %s", id, id.Role, rule.Action, rule.Role)
		g.logger().Warn("call refused", "caller", id.String(), "role", id.Role.String(), "method", rule.Action, "needs", rule.Role.String())
		return id, rule, true, err
	}
	return id, rule, true, nil
}

func (g *Guard) logger() *slog.Logger {
	if g.Log != nil {
		return g.Log
	}
	return slog.Default()
}

// audit writes the audit line of a state-changing call.
func (g *Guard) audit(id Identity, rule Rule, req, resp any, err error) {
	if rule.Role < Operator {
		return
	}
	jobID := jobIDOf(req)
	if jobID == "" {
		jobID = jobIDOf(resp)
	}
	attrs := []any{"audit", true, "caller", id.String(), "role", id.Role.String(), "method", rule.Action, "job_id", jobID}
	if err != nil {
		attrs = append(attrs, "result", "error", "err", status.Convert(err).Message())
	} else {
		attrs = append(attrs, "result", "ok")
	}
	g.logger().Info("audit", attrs...)
}

func jobIDOf(m any) string {
	if j, ok := m.(interface{ GetJobId() string }); ok {
		return j.GetJobId()
	}
	return ""
}

// UnaryInterceptor checks each unary client call and audits the
// state-changing ones. Chain it before interceptors that may answer for
// the handler (the JobManager's leader gate), so no answer reaches a
// caller it refuses.
func (g *Guard) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		id, rule, ok, err := g.Authorize(ctx, info.FullMethod)
		if !ok {
			return handler(ctx, req)
		}
		if err != nil {
			return nil, err
		}
		resp, err := handler(ctx, req)
		g.audit(id, rule, req, resp, err)
		return resp, err
	}
}

// StreamInterceptor checks each streaming client call.
func (g *Guard) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		id, rule, ok, err := g.Authorize(ss.Context(), info.FullMethod)
		if !ok {
			return handler(srv, ss)
		}
		if err != nil {
			return err
		}
		err = handler(srv, ss)
		g.audit(id, rule, nil, nil, err)
		return err
	}
}
