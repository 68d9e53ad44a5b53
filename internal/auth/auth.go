// Package auth authenticates the callers of the JobManager's client RPCs
// and authorises each call by role.
//
// An Identity is who called: a name, the role it holds, and how it proved
// it (a bearer token today; a client certificate's subject once mutual TLS
// carries one). A Guard turns a call's context into an Identity (Identify),
// then checks the role the method needs (a Policy, owned by the service);
// its gRPC interceptors do both, refuse with Unauthenticated or
// PermissionDenied, and write one audit line per state-changing call.
//
// Roles are ordered: an operator may do all a viewer may. Methods a Policy
// does not list are internal (TaskManager and JobManager-to-JobManager
// calls): the Guard lets them through untouched; mutual TLS authenticates
// those processes.
package auth

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/credentials"
)

// Role is what an identity may do.
type Role int

const (
	// None is no role: no client call is allowed.
	None Role = iota
	// Viewer may read: list jobs, status, checkpoints, metrics.
	Viewer
	// Operator may also change state: submit, cancel, savepoint, stop,
	// rescale, dispose checkpoints, rules.
	Operator
)

func (r Role) String() string {
	switch r {
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	}
	return "none"
}

// ParseRole reads "viewer" or "operator".
func ParseRole(s string) (Role, error) {
	switch strings.ToLower(s) {
	case "viewer":
		return Viewer, nil
	case "operator":
		return Operator, nil
	}
	return None, fmt.Errorf("unknown role %q (want viewer or operator)", s)
}

// Identity is an authenticated caller.
type Identity struct {
	// Kind is how the caller proved who it is: "token" or "certificate".
	Kind string
	// Name is the token's name, or the certificate's subject.
	Name string
	Role Role
}

// Anonymous is the identity of every caller when authentication is off.
var Anonymous = Identity{Kind: "anonymous", Role: Operator}

// String reads `token "ci-bot"`, as messages and logs name the caller.
func (id Identity) String() string {
	if id.Kind == "anonymous" {
		return "anonymous"
	}
	return fmt.Sprintf("%s %q", id.Kind, id.Name)
}

// BearerToken is a per-RPC credential that sends token as
// `authorization: Bearer <token>`. It does not require transport security,
// so it works on today's plaintext connections; with TLS it is sent
// encrypted.
type BearerToken string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t BearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (BearerToken) RequireTransportSecurity() bool { return false }

var _ credentials.PerRPCCredentials = BearerToken("")
