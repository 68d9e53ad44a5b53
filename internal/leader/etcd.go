package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Discovery through etcd. The leader keeps its client address under
// /weir/<cluster-id>/leader, and every member its own under
// /weir/<cluster-id>/members/<member-id>, each attached to a lease of a few
// seconds that the publisher keeps alive: a member that dies without
// revoking its lease disappears from etcd within the TTL. Callers read the
// keys; they never write them.

// DefaultTTL is the lease TTL of the keys a JobManager publishes.
const DefaultTTL = 5 * time.Second

// DefaultClusterID namespaces the keys when no --cluster-id is given.
const DefaultClusterID = "default"

// namespace is the prefix of a cluster's keys; an empty cluster ID is
// DefaultClusterID.
func namespace(clusterID string) string {
	if clusterID == "" {
		clusterID = DefaultClusterID
	}
	return "/weir/" + clusterID + "/"
}

// LeaderKey is the key holding the leader's client address.
func LeaderKey(clusterID string) string { return namespace(clusterID) + "leader" }

// MembersPrefix is the prefix of the keys holding the members' client
// addresses, one per member ID.
func MembersPrefix(clusterID string) string { return namespace(clusterID) + "members/" }

// MemberKey is the key holding one member's client address.
func MemberKey(clusterID, memberID string) string { return MembersPrefix(clusterID) + memberID }

// DialEtcd opens an etcd client on a comma-separated endpoint list and checks
// within timeout that some endpoint answers, so that an unreachable etcd is a
// clear error at start rather than calls that hang later. The caller closes
// the client.
func DialEtcd(ctx context.Context, endpoints string, timeout time.Duration) (*clientv3.Client, error) {
	eps := ParseAddrs(endpoints)
	if len(eps) == 0 {
		return nil, errors.New("no etcd endpoint given")
	}
	// etcd's client logs to its own zap logger; Weir's callers say what
	// matters in their own logs.
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: timeout, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd at %s: %w", strings.Join(eps, ","), err)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A serializable read needs one member, not an etcd quorum: this
	// checks that etcd is there, not that it is healthy.
	if _, err := cli.Get(cctx, "/weir/", clientv3.WithSerializable(), clientv3.WithCountOnly()); err != nil {
		cli.Close()
		if cctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %v", timeout)
		}
		return nil, fmt.Errorf("cannot reach etcd at %s: %w", strings.Join(eps, ","), err)
	}
	return cli, nil
}

// Publish keeps clientAddr under /weir/<clusterID>/leader (an empty
// clusterID is "default", as everywhere in this file) while ctx lasts:
// the leader runs it for as long as it leads. The key is attached to a lease
// of ttl (rounded up to whole seconds, at least 1 s) that Publish keeps
// alive; should the lease expire anyway (etcd unreachable for longer than
// ttl) or the key be deleted, Publish puts it again under a new lease. When
// ctx ends it revokes the lease, which deletes the key at once, and returns
// nil. It returns an error only for bad arguments, or when cli is closed.
func Publish(ctx context.Context, cli *clientv3.Client, clusterID, clientAddr string, ttl time.Duration) error {
	return publish(ctx, cli, LeaderKey(clusterID), clientAddr, ttl)
}

// PublishMember keeps one member's client address under
// /weir/<clusterID>/members/<memberID> while ctx lasts, as Publish does the
// leader's. Every member runs it, leader or not, so that callers that know
// only etcd can find the members (weir cluster status).
func PublishMember(ctx context.Context, cli *clientv3.Client, clusterID, memberID, clientAddr string, ttl time.Duration) error {
	if memberID == "" {
		return errors.New("publish member: empty member ID")
	}
	return publish(ctx, cli, MemberKey(clusterID, memberID), clientAddr, ttl)
}

func publish(ctx context.Context, cli *clientv3.Client, key, value string, ttl time.Duration) error {
	if cli == nil || value == "" {
		return fmt.Errorf("publish %s: needs an etcd client and an address", key)
	}
	secs := int64((ttl + time.Second - 1) / time.Second)
	log := slog.Default().With("component", "leader", "etcd_key", key, "address", value)
	retry := min(time.Second, ttl/3+time.Millisecond)
	failures := 0
	for ctx.Err() == nil {
		err := holdKey(ctx, cli, key, value, secs)
		if ctx.Err() != nil {
			break
		}
		if cli.Ctx().Err() != nil {
			return fmt.Errorf("publish %s: etcd client closed", key)
		}
		if err != nil {
			// Say it once per outage, not every retry.
			if failures++; failures == 1 {
				log.Warn("cannot publish in etcd; retrying", "err", err)
			}
		} else {
			failures = 0
			log.Info("etcd lease lost; publishing again")
		}
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
	return nil
}

// holdKey grants a lease, puts key under it and keeps both until ctx ends
// (then it revokes the lease and returns nil), the lease is lost or the key
// deleted (it returns nil to be called again), or etcd fails (an error).
func holdKey(ctx context.Context, cli *clientv3.Client, key, value string, ttlSecs int64) error {
	lease, err := cli.Grant(ctx, ttlSecs)
	if err != nil {
		return fmt.Errorf("grant lease: %w", err)
	}
	// Revoking deletes the key only if it is still attached to this
	// lease: a leader that put it since keeps it.
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_, _ = cli.Revoke(rctx, lease.ID)
		cancel()
	}()
	put, err := cli.Put(ctx, key, value, clientv3.WithLease(lease.ID))
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	alive, err := cli.KeepAlive(hctx, lease.ID)
	if err != nil {
		return fmt.Errorf("keep lease alive: %w", err)
	}
	// A deleted key (a deposed leader revoked its lease after putting the
	// key over ours) is put again.
	watch := cli.Watch(hctx, key, clientv3.WithRev(put.Header.Revision+1), clientv3.WithFilterPut())
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-alive:
			if !ok {
				return nil // expired, or the client closed
			}
		case w, ok := <-watch:
			if !ok || w.Canceled || len(w.Events) > 0 {
				return nil
			}
		}
	}
}

// EtcdLeader returns the leader's client address as published in etcd, or
// "" when no leader is published.
func EtcdLeader(ctx context.Context, cli *clientv3.Client, clusterID string) (string, error) {
	resp, err := cli.Get(ctx, LeaderKey(clusterID))
	if err != nil {
		return "", fmt.Errorf("etcd get %s: %w", LeaderKey(clusterID), err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// EtcdMembers returns the members' client addresses published in etcd, by
// member ID.
func EtcdMembers(ctx context.Context, cli *clientv3.Client, clusterID string) (map[string]string, error) {
	prefix := MembersPrefix(clusterID)
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcd get %s: %w", prefix, err)
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), prefix)] = string(kv.Value)
	}
	return out, nil
}
