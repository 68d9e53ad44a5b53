package leader

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/rpcopts"
	"github.com/weirstream/weir/internal/tlsconf"
	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

// Finder finds the leader of a JobManager group and keeps one gRPC
// connection per member address. With an etcd client (WithEtcd) it tries
// the address the leader published there first; then the addresses it was
// given, the members etcd lists, and the members that those it reaches name
// in their raft configuration. It remembers the leader it found last, so
// the common case costs no extra call. It is safe for concurrent use, and
// it is a grpc.ClientConnInterface whose calls go to the leader
// (weirv1.NewJobManagerClient(finder)).
type Finder struct {
	addrs     []string
	etcd      *clientv3.Client
	clusterID string
	tls       *tlsconf.Config
	perRPC    credentials.PerRPCCredentials

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	leader string // last known leader's client address
	closed bool
}

// An Option configures a Finder.
type Option func(*Finder)

// WithEtcd makes the Finder read the leader's address, and the members',
// from etcd under /weir/<clusterID>/ before it asks the members it knows.
// When etcd does not answer the Finder goes on with its addresses. The
// caller owns cli and closes it after the Finder.
func WithEtcd(cli *clientv3.Client, clusterID string) Option {
	return func(f *Finder) {
		if clusterID == "" {
			clusterID = DefaultClusterID
		}
		f.etcd, f.clusterID = cli, clusterID
	}
}

// WithTLS makes the Finder dial the members with mutual TLS: it presents
// c's certificate and verifies theirs against c's CA and the host dialed.
// A nil c keeps plaintext.
func WithTLS(c *tlsconf.Config) Option {
	return func(f *Finder) { f.tls = c }
}

// WithPerRPC makes every call of the Finder carry creds (a bearer token,
// auth.BearerToken), the probes for the leader included.
func WithPerRPC(creds credentials.PerRPCCredentials) Option {
	return func(f *Finder) { f.perRPC = creds }
}

// probeTimeout bounds each GetClusterStatus call of Leader and Survey, and
// etcdTimeout the etcd reads before them, so that one hung member or etcd
// does not hold the others up for long.
const (
	probeTimeout = 3 * time.Second
	etcdTimeout  = time.Second
)

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

// NewFinder returns a Finder over the members' client addresses. With etcd
// (WithEtcd) the list may be empty.
func NewFinder(addrs []string, opts ...Option) (*Finder, error) {
	f := &Finder{addrs: addrs, conns: map[string]*grpc.ClientConn{}}
	for _, o := range opts {
		o(f)
	}
	if len(addrs) == 0 && f.etcd == nil {
		return nil, errors.New("no JobManager address given")
	}
	return f, nil
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
	opts := append(rpcopts.DialOptions(), tlsconf.DialOption(f.tls))
	if f.perRPC != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(f.perRPC))
	}
	c, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("JobManager address %q: %w", addr, err)
	}
	f.conns[addr] = c
	return c, nil
}

// NoLeaderError says no member named a leader: the group has no quorum,
// or is electing one.
type NoLeaderError struct {
	// Reached members answered; Tried is how many the Finder knew of: the
	// addresses it asked, or the size of a reached member's raft
	// configuration when that is larger.
	Reached, Tried int
	// Addrs are the addresses asked.
	Addrs []string
	Last  error
}

func (e *NoLeaderError) Error() string {
	if e.Reached == 0 {
		if len(e.Addrs) == 1 {
			return fmt.Sprintf("cannot reach the JobManager at %s: %s", e.Addrs[0], errText(e.Last))
		}
		return fmt.Sprintf("cannot reach any of the %d JobManagers (%s): %s", e.Tried, strings.Join(e.Addrs, ", "), errText(e.Last))
	}
	return fmt.Sprintf("no JobManager leader: reached %d of %d JobManager(s), none is or knows the leader "+
		"(without a quorum of members there is none)", e.Reached, e.Tried)
}

// errText is a gRPC error's message without its "rpc error: code =" frame.
func errText(err error) string {
	if err == nil {
		return "no answer"
	}
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

// candidates collects member addresses in the order they are asked,
// without repeats.
type candidates struct {
	list []string
	seen map[string]bool
}

func (c *candidates) add(addrs ...string) {
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	for _, a := range addrs {
		if a != "" && !c.seen[a] {
			c.seen[a] = true
			c.list = append(c.list, a)
		}
	}
}

// fromEtcd returns the leader's and the members' addresses published in
// etcd; nothing when there is no etcd client or it does not answer.
func (f *Finder) fromEtcd(ctx context.Context) (leaderAddr string, members []string) {
	if f.etcd == nil {
		return "", nil
	}
	ectx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	leaderAddr, err := EtcdLeader(ectx, f.etcd, f.clusterID)
	if err != nil {
		return "", nil // the addresses given still count
	}
	byID, err := EtcdMembers(ectx, f.etcd, f.clusterID)
	if err != nil {
		return leaderAddr, nil
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		members = append(members, byID[id])
	}
	return leaderAddr, members
}

// clusterStatus asks the member at addr for its view of the group.
func (f *Finder) clusterStatus(ctx context.Context, addr string) (*weirv1.ClusterStatus, error) {
	c, err := f.Conn(addr)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	st, err := weirv1.NewJobManagerClient(c).GetClusterStatus(pctx, &weirv1.GetClusterStatusRequest{})
	return st, f.tlsHint(err)
}

// tlsHint adds what to check to an Unavailable error that looks like a
// refused TLS handshake, keeping its code. gRPC gives these causes only as
// text, so the text is what is read; the hint is for people.
func (f *Finder) tlsHint(err error) error {
	st, ok := status.FromError(err)
	if err == nil || !ok || st.Code() != codes.Unavailable {
		return err
	}
	msg := st.Message()
	switch {
	case f.tls == nil && strings.Contains(msg, "server preface"):
		msg += " (the JobManager may require mutual TLS: pass --tls-cert, --tls-key and --tls-ca)"
	case f.tls != nil && (strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:") ||
		strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset")):
		msg += " (TLS handshake refused: --tls-cert must be valid now and signed by the cluster's CA, " +
			"--tls-ca must be that CA, and the JobManager must use TLS)"
	default:
		return err
	}
	return status.Error(codes.Unavailable, msg)
}

// leaderOf is the leader's client address as the member at addr sees it:
// addr itself when it leads (the address the caller can reach it at).
func leaderOf(addr string, st *weirv1.ClusterStatus) string {
	if st.GetRaftState() == "leader" {
		return addr
	}
	return st.GetLeaderAddress()
}

// Leader returns the leader's client address. It asks, in turn and with
// GetClusterStatus, the last known leader, the leader etcd names, the
// addresses given, the members etcd lists, and the members that the ones
// reached list in their raft configuration, until one is or names the
// leader. When none does it returns a *NoLeaderError with the counts.
//
// Members that answer but know of no leader may be electing one, which
// takes well under a second: Leader asks again for up to electionWait
// before it reports that there is no leader.
func (f *Finder) Leader(ctx context.Context) (string, error) {
	deadline := time.Now().Add(electionWait)
	for {
		addr, err := f.leaderOnce(ctx)
		var nl *NoLeaderError
		if err == nil || !errors.As(err, &nl) || nl.Reached == 0 || time.Now().After(deadline) {
			return addr, err
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// electionWait is how long Leader waits for reachable members to elect a
// leader.
const electionWait = 2 * time.Second

func (f *Finder) leaderOnce(ctx context.Context) (string, error) {
	f.mu.Lock()
	remembered := f.leader
	f.mu.Unlock()
	var q candidates
	q.add(remembered)
	etcdLeader, etcdMembers := f.fromEtcd(ctx)
	q.add(etcdLeader)
	q.add(f.addrs...)
	q.add(etcdMembers...)
	e := &NoLeaderError{}
	group := 0
	for i := 0; i < len(q.list); i++ {
		addr := q.list[i]
		st, err := f.clusterStatus(ctx, addr)
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			e.Last = err
			continue
		}
		e.Reached++
		if leader := leaderOf(addr, st); leader != "" {
			f.setLeader(leader)
			return leader, nil
		}
		group = max(group, len(st.GetMembers()))
		for _, m := range st.GetMembers() {
			q.add(m.GetClientAddress())
		}
	}
	e.Addrs = q.list
	e.Tried = max(len(q.list), group)
	return "", e
}

// Reply is one member's answer to GetClusterStatus, or why there was none.
type Reply struct {
	Addr   string
	Status *weirv1.ClusterStatus
	Err    error
}

// Survey asks every member it can find for GetClusterStatus, all at once:
// the addresses given, those etcd lists, and then those that the answers
// name (their raft configuration's client addresses and the leader's),
// until no new address turns up. Replies come in the order the addresses
// were found; the leader found, if any, is remembered for Call.
func (f *Finder) Survey(ctx context.Context) []Reply {
	var q candidates
	etcdLeader, etcdMembers := f.fromEtcd(ctx)
	q.add(f.addrs...)
	q.add(etcdLeader)
	q.add(etcdMembers...)
	var replies []Reply
	for asked := 0; asked < len(q.list); {
		wave := q.list[asked:]
		asked = len(q.list)
		out := make([]Reply, len(wave))
		var wg sync.WaitGroup
		for i, addr := range wave {
			wg.Go(func() {
				st, err := f.clusterStatus(ctx, addr)
				out[i] = Reply{Addr: addr, Status: st, Err: err}
			})
		}
		wg.Wait()
		for _, r := range out {
			if r.Err != nil {
				continue
			}
			if r.Status.GetRaftState() == "leader" {
				f.setLeader(r.Addr)
			}
			q.add(r.Status.GetLeaderAddress())
			for _, m := range r.Status.GetMembers() {
				q.add(m.GetClientAddress())
			}
		}
		replies = append(replies, out...)
	}
	return replies
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
		case status.Code(err) == codes.Unavailable && ctx.Err() == nil && (len(f.addrs) > 1 || f.etcd != nil):
			f.Forget(addr) // the leader may be gone: look again
		default:
			return err
		}
	}
	if status.Code(err) == codes.Unavailable && ctx.Err() == nil {
		// The leader named keeps not answering: it is gone and no other
		// leads yet. Say how much of the group is there.
		return f.noLeader(ctx, err)
	}
	return err
}

// noLeader surveys the group after the leader failed to answer: unless a
// leader turns up, the error says how many members answered.
func (f *Finder) noLeader(ctx context.Context, last error) error {
	e := &NoLeaderError{Tried: len(f.addrs), Addrs: f.Addrs(), Last: last}
	for _, r := range f.Survey(ctx) {
		if r.Err != nil {
			continue
		}
		if r.Status.GetRaftState() == "leader" {
			return last
		}
		e.Reached++
		e.Tried = max(e.Tried, len(r.Status.GetMembers()))
	}
	return e
}

var _ grpc.ClientConnInterface = (*Finder)(nil)

// Invoke makes a unary call on the leader, through Call: a generated client
// over a Finder follows redirects.
func (f *Finder) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return f.Call(ctx, func(ctx context.Context, c *grpc.ClientConn) error {
		return c.Invoke(ctx, method, args, reply, opts...)
	})
}

// NewStream opens a stream on the leader. Only the opening follows
// redirects; a stream's own messages go to the member it was opened on.
func (f *Finder) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	var s grpc.ClientStream
	err := f.Call(ctx, func(ctx context.Context, c *grpc.ClientConn) error {
		var err error
		s, err = c.NewStream(ctx, desc, method, opts...)
		return err
	})
	return s, err
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
