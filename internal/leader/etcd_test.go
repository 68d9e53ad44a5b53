package leader

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/weirstream/weir/internal/etcdtest"
)

// ttl is the shortest lease etcd grants with its default timing (it
// raises shorter ones to about 2 s).
const ttl = 2 * time.Second

// waitKey polls until the key holds want ("" for absent), or fails after
// within.
func waitKey(t *testing.T, cli *clientv3.Client, key, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := cli.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if len(resp.Kvs) > 0 {
			got = string(resp.Kvs[0].Value)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q after %v, want %q", key, got, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func publishing(t *testing.T, cli *clientv3.Client, clusterID, addr string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Publish(ctx, cli, clusterID, addr, ttl) }()
	var once bool
	stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Publish returned %v at ctx's end, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Publish did not return after ctx's end")
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestPublishAndLookUp(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	if got, err := EtcdLeader(t.Context(), cli, "c1"); err != nil || got != "" {
		t.Fatalf("EtcdLeader before any publication = %q, %v", got, err)
	}
	stop := publishing(t, cli, "c1", "10.0.0.1:6123")
	waitKey(t, cli, "/weir/c1/leader", "10.0.0.1:6123", 5*time.Second)
	if got, err := EtcdLeader(t.Context(), cli, "c1"); err != nil || got != "10.0.0.1:6123" {
		t.Errorf("EtcdLeader = %q, %v", got, err)
	}
	// The cluster ID namespaces the key.
	if got, _ := EtcdLeader(t.Context(), cli, "c2"); got != "" {
		t.Errorf("EtcdLeader of another cluster = %q, want none", got)
	}
	// The key lives on a lease kept alive beyond its TTL.
	time.Sleep(2 * ttl)
	if got, _ := EtcdLeader(t.Context(), cli, "c1"); got != "10.0.0.1:6123" {
		t.Errorf("after twice the TTL the key is %q: the lease was not kept alive", got)
	}
	// Leadership ends: the lease is revoked and the key goes at once,
	// well before its TTL would have run out.
	start := time.Now()
	stop()
	if got, _ := EtcdLeader(t.Context(), cli, "c1"); got != "" {
		t.Errorf("after Publish returned the key is %q (after %v), want it revoked", got, time.Since(start))
	}
}

func TestPublishedKeyExpiresWhenThePublisherDies(t *testing.T) {
	srv := etcdtest.Start(t)
	observer := srv.Client(t)
	// The publisher reaches etcd through a proxy; cutting it is the
	// publisher's death: nothing revokes the lease, nothing keeps it
	// alive.
	proxy := startProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	pub, err := clientv3.New(clientv3.Config{Endpoints: []string{proxy.addr}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	publishing(t, pub, "c1", "10.0.0.1:6123")
	waitKey(t, observer, "/weir/c1/leader", "10.0.0.1:6123", 5*time.Second)
	resp, err := observer.Get(t.Context(), "/weir/c1/leader")
	if err != nil {
		t.Fatal(err)
	}
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	if lease == 0 {
		t.Fatal("the key has no lease")
	}
	proxy.cut()
	// Still there right after: the lease's expiry, not a revoke, removes it.
	if r, err := observer.TimeToLive(t.Context(), lease); err != nil || r.TTL <= 0 {
		t.Fatalf("the lease right after the publisher died: TTL %d, %v; want it alive", r.TTL, err)
	}
	waitKey(t, observer, "/weir/c1/leader", "", ttl+3*time.Second)
}

func TestPublishReturnsWhenItsClientCloses(t *testing.T) {
	srv := etcdtest.Start(t)
	pub := srv.Client(t)
	done := make(chan error, 1)
	go func() { done <- Publish(t.Context(), pub, "c1", "10.0.0.1:6123", ttl) }()
	waitKey(t, srv.Client(t), "/weir/c1/leader", "10.0.0.1:6123", 5*time.Second)
	pub.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "closed") {
			t.Errorf("Publish with its client closed returned %v, want an error saying so", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Publish did not return after its client closed")
	}
}

// proxy forwards TCP connections to an address until cut.
type proxy struct {
	addr  string
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	dead  bool
}

func startProxy(t *testing.T, to string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String(), ln: ln}
	t.Cleanup(p.cut)
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			if p.dead {
				in.Close()
				out.Close()
			}
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	return p
}

// cut closes the listener and every connection; it is idempotent.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dead = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

func TestPublishRecreatesALostLease(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	publishing(t, cli, "c1", "10.0.0.1:6123")
	waitKey(t, cli, "/weir/c1/leader", "10.0.0.1:6123", 5*time.Second)
	// Another party revokes the lease (as an expiry would): the key is
	// deleted, and Publish puts it back under a new lease.
	resp, err := cli.Get(t.Context(), "/weir/c1/leader")
	if err != nil {
		t.Fatal(err)
	}
	old := clientv3.LeaseID(resp.Kvs[0].Lease)
	if _, err := cli.Revoke(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	waitKey(t, cli, "/weir/c1/leader", "10.0.0.1:6123", 5*time.Second)
	resp, err = cli.Get(t.Context(), "/weir/c1/leader")
	if err != nil {
		t.Fatal(err)
	}
	if l := clientv3.LeaseID(resp.Kvs[0].Lease); l == old || l == 0 {
		t.Errorf("the key's lease is %x after the old one %x was revoked, want a new one", l, old)
	}
	// A deposed leader that put its address over ours and then revoked
	// its lease deletes the key: Publish puts ours back.
	l, err := cli.Grant(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(t.Context(), "/weir/c1/leader", "10.0.0.9:6123", clientv3.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(t.Context(), l.ID); err != nil {
		t.Fatal(err)
	}
	waitKey(t, cli, "/weir/c1/leader", "10.0.0.1:6123", 5*time.Second)
}

func TestPublishMemberAndEtcdMembers(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go PublishMember(ctx, cli, "c1", "jm-a", "10.0.0.1:6123", ttl)
	go PublishMember(ctx, cli, "c1", "jm-b", "10.0.0.2:6123", ttl)
	waitKey(t, cli, "/weir/c1/members/jm-b", "10.0.0.2:6123", 5*time.Second)
	waitKey(t, cli, "/weir/c1/members/jm-a", "10.0.0.1:6123", 5*time.Second)
	got, err := EtcdMembers(t.Context(), cli, "c1")
	if err != nil || len(got) != 2 || got["jm-a"] != "10.0.0.1:6123" || got["jm-b"] != "10.0.0.2:6123" {
		t.Errorf("EtcdMembers = %v, %v", got, err)
	}
	if err := PublishMember(ctx, cli, "c1", "", "10.0.0.3:6123", ttl); err == nil {
		t.Error("PublishMember with no ID succeeded")
	}
	if err := Publish(ctx, cli, "c1", "", ttl); err == nil {
		t.Error("Publish with no address succeeded")
	}
	// No cluster ID is the default one.
	go Publish(ctx, cli, "", "10.0.0.3:6123", ttl)
	waitKey(t, cli, "/weir/default/leader", "10.0.0.3:6123", 5*time.Second)
	if got, err := EtcdLeader(t.Context(), cli, "default"); err != nil || got != "10.0.0.3:6123" {
		t.Errorf("EtcdLeader(default) = %q, %v", got, err)
	}
}

func TestFinderPrefersEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	a, b, c := threeMembers(t)
	// c is told to be the leader only by etcd; the address list names a,
	// which says b. The Finder asks etcd first.
	c.set("leader", "c", c.addr)
	publishing(t, cli, "c1", c.addr)
	waitKey(t, cli, "/weir/c1/leader", c.addr, 5*time.Second)
	f := newFinder(t, []string{a.addr}, WithEtcd(cli, "c1"))
	if got, err := f.Leader(t.Context()); err != nil || got != c.addr {
		t.Fatalf("Leader() = %q, %v; want etcd's c at %s", got, err, c.addr)
	}
	if s, _ := a.calls(); s != 0 {
		t.Errorf("a was asked %d times, want 0: etcd named the leader", s)
	}

	// A stale entry (the leader died before its lease ran out) costs
	// one failed probe, then the addresses given answer.
	publishing(t, cli, "c2", deadAddr(t))
	f = newFinder(t, []string{a.addr}, WithEtcd(cli, "c2"))
	if got, err := f.Leader(t.Context()); err != nil || got != b.addr {
		t.Errorf("Leader() with a dead address in etcd = %q, %v; want b at %s from a", got, err, b.addr)
	}

	// With only etcd, the members it lists are enough.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go PublishMember(ctx, cli, "c3", "a", a.addr, ttl)
	waitKey(t, cli, "/weir/c3/members/a", a.addr, 5*time.Second)
	f = newFinder(t, nil, WithEtcd(cli, "c3"))
	if got, err := f.Leader(t.Context()); err != nil || got != b.addr {
		t.Errorf("Leader() from etcd's members = %q, %v; want b at %s", got, err, b.addr)
	}
	replies := f.Survey(t.Context())
	if len(replies) != 3 {
		t.Errorf("Survey from etcd's members reached %d, want the 3 members", len(replies))
	}

	// etcd unreachable: the Finder goes on with its addresses.
	down, err := clientv3.New(clientv3.Config{Endpoints: []string{deadAddr(t)}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	f = newFinder(t, []string{a.addr}, WithEtcd(down, "c1"))
	if got, err := f.Leader(t.Context()); err != nil || got != b.addr {
		t.Errorf("Leader() with etcd down = %q, %v; want b at %s from a", got, err, b.addr)
	}
}

func TestDialEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	cli, err := DialEtcd(t.Context(), " "+srv.Endpoint+",", time.Second)
	if err != nil {
		t.Fatalf("DialEtcd(%s): %v", srv.Endpoint, err)
	}
	cli.Close()
	dead := "http://" + deadAddr(t)
	start := time.Now()
	_, err = DialEtcd(t.Context(), dead, 500*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "cannot reach etcd at "+dead) {
		t.Errorf("DialEtcd(%s) = %v, want an error naming the endpoint", dead, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("DialEtcd of a dead endpoint took %v, want about its timeout", d)
	}
	if _, err := DialEtcd(t.Context(), " , ", time.Second); err == nil {
		t.Error("DialEtcd with no endpoint succeeded")
	}
}
