package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weirstream/weir/internal/auth"
	"github.com/weirstream/weir/internal/leader"
)

// How the client commands and TaskManagers find the JobManager leader:
// --jobmanager lists member addresses (comma-separated), --etcd names an
// etcd the leader publishes itself in, under --cluster-id. A Finder (package
// leader) asks etcd first, then the members, and follows the NOT_LEADER
// redirects of followers.

// etcdDialTimeout bounds the check that etcd answers at start.
const etcdDialTimeout = 3 * time.Second

// discoveryFlags are --jobmanager, --etcd and --cluster-id, and the TLS
// flags every command that connects to the cluster takes.
type discoveryFlags struct {
	jobManagers string
	etcd        string
	clusterID   string
	tls         tlsFlags
	// tokenFile is --token-file; withToken says the command has it and
	// reads WEIR_TOKEN.
	tokenFile string
	withToken bool
}

// tokenEnv holds a bearer token itself; --token-file wins over it.
const tokenEnv = "WEIR_TOKEN"

// registerToken adds --token-file to a client command group (job,
// cluster): its calls then carry the token, or WEIR_TOKEN's.
func (d *discoveryFlags) registerToken(cmd *cobra.Command) {
	d.withToken = true
	fs := cmd.PersistentFlags()
	fs.StringVar(&d.tokenFile, "token-file", "",
		"file holding the bearer token the JobManager's --auth-tokens lists (default: the token in WEIR_TOKEN)")
}

// token returns the bearer token of --token-file or WEIR_TOKEN, or "".
func (d *discoveryFlags) token() (string, error) {
	if !d.withToken {
		return "", nil
	}
	if d.tokenFile != "" {
		b, err := os.ReadFile(d.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("--token-file %s is empty", d.tokenFile)
		}
		return t, nil
	}
	return strings.TrimSpace(os.Getenv(tokenEnv)), nil
}

// register adds the flags to cmd, as persistent flags when persistent (a
// command group such as `weir job`). withJobManager adds --jobmanager; a
// JobManager takes only --etcd and --cluster-id.
func (d *discoveryFlags) register(cmd *cobra.Command, persistent, withJobManager bool) {
	fs := cmd.Flags()
	if persistent {
		fs = cmd.PersistentFlags()
	}
	if withJobManager {
		fs.StringVar(&d.jobManagers, "jobmanager", "127.0.0.1:6123",
			"JobManager client addresses, comma-separated: any members of the group; the leader is found and followed")
	}
	fs.StringVar(&d.etcd, "etcd", "",
		"etcd endpoints, comma-separated, where the JobManager leader publishes its address (env WEIR_ETCD_ENDPOINTS)")
	setEnvName(fs, "etcd", "WEIR_ETCD_ENDPOINTS")
	fs.StringVar(&d.clusterID, "cluster-id", leader.DefaultClusterID, "namespaces the cluster's keys in etcd: /weir/<cluster-id>/...")
	d.tls.register(fs)
}

// addrs is the --jobmanager list.
func (d *discoveryFlags) addrs() []string { return leader.ParseAddrs(d.jobManagers) }

// dialEtcd opens the --etcd client, or returns nil without --etcd.
func (d *discoveryFlags) dialEtcd(ctx context.Context) (*clientv3.Client, error) {
	if strings.TrimSpace(d.etcd) == "" {
		return nil, nil
	}
	cli, err := leader.DialEtcd(ctx, d.etcd, etcdDialTimeout)
	if err != nil {
		return nil, fmt.Errorf("--etcd: %w", err)
	}
	return cli, nil
}

// finder returns a Finder over --jobmanager and, when etcd answers, --etcd.
// An unreachable etcd is a warning: the addresses are used alone. close
// releases the Finder and the etcd client.
func (d *discoveryFlags) finder(ctx context.Context) (f *leader.Finder, close func(), err error) {
	tc, err := d.tls.config()
	if err != nil {
		return nil, nil, err
	}
	opts := []leader.Option{leader.WithTLS(tc)}
	token, err := d.token()
	if err != nil {
		return nil, nil, err
	}
	if token != "" {
		opts = append(opts, leader.WithPerRPC(auth.BearerToken(token)))
	}
	cli, err := d.dialEtcd(ctx)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, nil, ctx.Err()
	case err != nil:
		slog.Warn("etcd unreachable; finding the JobManager leader from --jobmanager alone", "err", err, "jobmanager", d.jobManagers)
	case cli != nil:
		opts = append(opts, leader.WithEtcd(cli, d.clusterID))
	}
	f, err = leader.NewFinder(d.addrs(), opts...)
	if err != nil {
		if cli != nil {
			cli.Close()
		}
		return nil, nil, fmt.Errorf("--jobmanager: %w", err)
	}
	return f, func() {
		f.Close()
		if cli != nil {
			cli.Close()
		}
	}, nil
}
