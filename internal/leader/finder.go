package leader

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// Finder finds the leader of a JobManager group from a list of member
// addresses, and keeps one gRPC connection per address. It remembers the
// leader it found last, so the common case costs no extra call. It is safe
// for concurrent use.
type Finder struct {
	addrs []string

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	leader string // last known leader's client address
	closed bool
}

// ParseAddrs splits a comma-separated address list, dropping blanks.
func ParseAddrs(list string) []string {
	var out []string
	for _, a := range strings.Split(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// NewFinder returns a Finder over the members' client addresses.
func NewFinder(addrs []string) (*Finder, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no JobManager address given")
	}
	return &Finder{addrs: addrs, conns: map[string]*grpc.ClientConn{}}, nil
}

// Addrs are the addresses the Finder was given.
func (f *Finder) Addrs() []string { return append([]string(nil), f.addrs...) }

// Conn returns the cached connection to addr. grpc.NewClient does no I/O.
func (f *Finder) Conn(addr string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errors.New("finder closed")
	}
	if c, ok := f.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("JobManager address %q: %w", addr, err)
	}
	f.conns[addr] = c
	return c, nil
}

// NoLeaderError says no member named a leader: the group has no quorum,
// or is electing one.
type NoLeaderError struct {
	Reached, Tried int
	Last           error
}

func (e *NoLeaderError) Error() string {
	if e.Reached == 0 {
		return fmt.Sprintf("cannot reach any of the %d JobManager(s): %v", e.Tried, e.Last)
	}
	return fmt.Sprintf("no JobManager leader: reached %d of %d JobManager(s), none is or knows the leader "+
		"(without a quorum of members there is none)", e.Reached, e.Tried)
}

// Leader returns the leader's client address, asking the members in turn
// (the last known leader first) with GetClusterStatus.
func (f *Finder) Leader(ctx context.Context) (string, error) {
	f.mu.Lock()
	order := make([]string, 0, len(f.addrs)+1)
	if f.leader != "" {
		order = append(order, f.leader)
	}
	f.mu.Unlock()
	for _, a := range f.addrs {
		if len(order) == 0 || a != order[0] {
			order = append(order, a)
		}
	}
	e := &NoLeaderError{Tried: len(f.addrs)}
	for _, addr := range order {
		c, err := f.Conn(addr)
		if err != nil {
			e.Last = err
			continue
		}
		st, err := weirv1.NewJobManagerClient(c).GetClusterStatus(ctx, &weirv1.GetClusterStatusRequest{})
		if err != nil {
			e.Last = err
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			continue
		}
		e.Reached++
		leader := st.GetLeaderAddress()
		if st.GetRaftState() == "leader" {
			leader = addr // the address the caller can reach it at
		}
		if leader != "" {
			f.setLeader(leader)
			return leader, nil
		}
	}
	return "", e
}

func (f *Finder) setLeader(addr string) {
	f.mu.Lock()
	f.leader = addr
	f.mu.Unlock()
}

// Forget drops the remembered leader, after a call to it failed.
func (f *Finder) Forget(addr string) {
	f.mu.Lock()
	if f.leader == addr {
		f.leader = ""
	}
	f.mu.Unlock()
}

// Call runs call on the leader's connection. When the member called says it
// is not the leader, Call follows it to the leader it names (or looks the
// leader up again); when the remembered leader cannot be reached, Call looks
// it up again. It calls at most a few times.
func (f *Finder) Call(ctx context.Context, call func(context.Context, *grpc.ClientConn) error) error {
	var err error
	for range 4 {
		f.mu.Lock()
		addr := f.leader
		f.mu.Unlock()
		if addr == "" {
			if addr, err = f.Leader(ctx); err != nil {
				return err
			}
		}
		c, cerr := f.Conn(addr)
		if cerr != nil {
			return cerr
		}
		err = call(ctx, c)
		next, redirected := Redirect(err)
		switch {
		case redirected:
			f.Forget(addr)
			if next != "" && next != addr {
				f.setLeader(next)
			}
		case status.Code(err) == codes.Unavailable && ctx.Err() == nil && len(f.addrs) > 1:
			f.Forget(addr) // the leader may be gone: look again
		default:
			return err
		}
	}
	return err
}

// Close closes the connections. It is idempotent.
func (f *Finder) Close() {
	f.mu.Lock()
	conns := f.conns
	f.conns, f.closed = nil, true
	f.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
