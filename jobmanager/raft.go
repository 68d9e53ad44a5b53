package jobmanager

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/weirstream/weir/internal/tlsconf"
)

// RaftConfig is a JobManager's place in its raft group. The zero value is
// a group of one kept in memory: a single JobManager, as before HA.
type RaftConfig struct {
	// ID names this member; it must be a key of Peers. Empty means
	// "jobmanager" for a group of one.
	ID string
	// Listen is the TCP address raft listens on; empty means Peers[ID]. A
	// group of one without Listen talks to no one and needs no port.
	Listen string
	// Dir holds the raft log, the stable store and the snapshots; empty
	// keeps them in memory (a restart forgets every job).
	Dir string
	// Peers maps every member's ID to its raft address (host:port), this
	// member's included, the same on every member. Empty: a group of one.
	Peers map[string]string

	// Timeouts; zero takes the defaults (500/500/250 ms for a group, which
	// elect a new leader in well under 2 s on a LAN; shorter for one).
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout time.Duration
	// SnapshotThreshold is how many log entries since the last snapshot
	// start a new one (then the log is compacted to TrailingLogs entries);
	// SnapshotInterval is how often that is checked.
	SnapshotThreshold, TrailingLogs uint64
	SnapshotInterval                time.Duration
}

// Raft defaults for a group: a new leader well under 2 s after a loss.
const (
	DefaultRaftHeartbeatTimeout   = 500 * time.Millisecond
	DefaultRaftElectionTimeout    = 500 * time.Millisecond
	DefaultRaftLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultRaftSnapshotThreshold  = 1024
	DefaultRaftTrailingLogs       = 512
	DefaultRaftSnapshotInterval   = 10 * time.Second
	raftApplyTimeout              = 10 * time.Second
)

// ParsePeers reads "id1=host:port,id2=host:port" into a map.
func ParsePeers(s string) (map[string]string, error) {
	peers := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, addr, ok := strings.Cut(part, "=")
		id, addr = strings.TrimSpace(id), strings.TrimSpace(addr)
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("peer %q: want id=host:port", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("peer %s: address %q: %w", id, addr, err)
		}
		if _, dup := peers[id]; dup {
			return nil, fmt.Errorf("peer %s is listed twice", id)
		}
		peers[id] = addr
	}
	return peers, nil
}

// peersText writes peers as ParsePeers reads them, sorted by ID.
func peersText(peers map[string]string) string {
	ids := slices.Sorted(maps.Keys(peers))
	parts := make([]string, len(ids))
	for k, id := range ids {
		parts[k] = id + "=" + peers[id]
	}
	return strings.Join(parts, ",")
}

// raftNode is a running raft member and what it owns.
type raftNode struct {
	r         *raft.Raft
	fsm       *fsm
	id        string
	addr      string // raft address
	peers     map[string]string
	notify    chan bool // leadership changes
	transport io.Closer
	stores    []io.Closer
}

// memberFile records, in a raft directory, which member of which group it
// belongs to, so a directory of another member or group is refused.
const memberFile = "weir-member.json"

type memberRecord struct {
	ID    string `json:"id"`
	Peers string `json:"peers"`
}

// checkRaftDir refuses a directory that belongs to another member or to a
// group with other peers. It returns whether the record must be written.
func checkRaftDir(dir, id string, peers map[string]string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, memberFile))
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("--raft-dir %s: %w", dir, err)
	}
	var rec memberRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return false, fmt.Errorf("--raft-dir %s: %s is unreadable: %w", dir, memberFile, err)
	}
	if rec.ID != id {
		return false, fmt.Errorf("--raft-dir %s belongs to JobManager %q, not %q: give each member its own directory", dir, rec.ID, id)
	}
	if want := peersText(peers); rec.Peers != want {
		return false, fmt.Errorf("--raft-dir %s belongs to a group with --peers %s, not %s: use the same --peers on every "+
			"member, or a new directory for a new group", dir, rec.Peers, want)
	}
	return false, nil
}

// startRaft starts this member's raft node: storage, transport, the
// bootstrap of a new group, and the checks that the flags describe the group
// its directory holds.
func startRaft(cfg RaftConfig, tc *tlsconf.Config, log *slog.Logger) (*raftNode, error) {
	single := len(cfg.Peers) == 0
	if cfg.ID == "" {
		if !single {
			return nil, errors.New("--id is required with --peers: it names this member among them")
		}
		cfg.ID = "jobmanager"
	}
	peers := maps.Clone(cfg.Peers)
	if single {
		peers = map[string]string{cfg.ID: cmp.Or(cfg.Listen, "in-memory")}
	}
	self, ok := peers[cfg.ID]
	if !ok {
		return nil, fmt.Errorf("--id %s is not among --peers %s", cfg.ID, peersText(peers))
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = newRaftLogger(log)
	rc.HeartbeatTimeout = cmp.Or(cfg.HeartbeatTimeout, DefaultRaftHeartbeatTimeout)
	rc.ElectionTimeout = cmp.Or(cfg.ElectionTimeout, DefaultRaftElectionTimeout)
	rc.LeaderLeaseTimeout = cmp.Or(cfg.LeaderLeaseTimeout, DefaultRaftLeaderLeaseTimeout)
	if single && cfg.HeartbeatTimeout == 0 {
		// Alone, there is nobody to wait for: elect itself at once.
		rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	}
	rc.SnapshotThreshold = cmp.Or(cfg.SnapshotThreshold, DefaultRaftSnapshotThreshold)
	rc.TrailingLogs = cmp.Or(cfg.TrailingLogs, DefaultRaftTrailingLogs)
	rc.SnapshotInterval = cmp.Or(cfg.SnapshotInterval, DefaultRaftSnapshotInterval)
	n := &raftNode{fsm: newFSM(), id: cfg.ID, peers: peers, notify: make(chan bool, 16)}
	rc.NotifyCh = n.notify
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raft settings: %w", err)
	}

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
		record bool
	)
	if cfg.Dir == "" {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("--raft-dir: %w", err)
		}
		var err error
		if record, err = checkRaftDir(cfg.Dir, cfg.ID, peers); err != nil {
			return nil, err
		}
		bolt, err := raftboltdb.NewBoltStore(filepath.Join(cfg.Dir, "raft.db"))
		if err != nil {
			return nil, fmt.Errorf("--raft-dir %s: opening the raft log: %w", cfg.Dir, err)
		}
		n.stores = append(n.stores, bolt)
		logs, stable = bolt, bolt
		if snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, rc.Logger); err != nil {
			n.closeStores()
			return nil, fmt.Errorf("--raft-dir %s: %w", cfg.Dir, err)
		}
	}

	var trans raft.Transport
	if single && cfg.Listen == "" {
		addr, t := raft.NewInmemTransport(raft.ServerAddress(self))
		n.addr, trans = string(addr), t
		n.transport = t
	} else {
		listen := cmp.Or(cfg.Listen, self)
		adv, err := net.ResolveTCPAddr("tcp", self)
		if err != nil {
			n.closeStores()
			return nil, fmt.Errorf("raft address %s of %s: %w", self, cfg.ID, err)
		}
		var t *raft.NetworkTransport
		if tc == nil {
			t, err = raft.NewTCPTransportWithLogger(listen, adv, 3, 10*time.Second, rc.Logger)
		} else {
			var stream *tlsStreamLayer
			if stream, err = newTLSStreamLayer(listen, adv, tc); err == nil {
				t = raft.NewNetworkTransportWithLogger(stream, 3, 10*time.Second, rc.Logger)
			}
		}
		if err != nil {
			n.closeStores()
			return nil, fmt.Errorf("raft address %s: %w (is another process using it?)", listen, err)
		}
		n.addr, trans, n.transport = self, t, t
	}

	existing, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		n.close()
		return nil, fmt.Errorf("reading raft state: %w", err)
	}
	if !existing {
		var conf raft.Configuration
		for _, id := range slices.Sorted(maps.Keys(peers)) {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(peers[id])})
		}
		if single {
			conf.Servers[0].Address = raft.ServerAddress(n.addr)
		}
		if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, conf); err != nil {
			n.close()
			return nil, fmt.Errorf("bootstrapping the raft group: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, stable, snaps, trans)
	if err != nil {
		n.close()
		return nil, fmt.Errorf("starting raft: %w", err)
	}
	n.r = r
	if existing && !single {
		if err := n.checkConfiguration(); err != nil {
			n.shutdown()
			return nil, err
		}
	}
	if record {
		b, _ := json.Marshal(memberRecord{ID: cfg.ID, Peers: peersText(peers)})
		if err := os.WriteFile(filepath.Join(cfg.Dir, memberFile), b, 0o644); err != nil {
			n.shutdown()
			return nil, fmt.Errorf("--raft-dir: %w", err)
		}
	}
	return n, nil
}

// checkConfiguration refuses a restart whose --peers differ from the
// configuration the group's log holds.
func (n *raftNode) checkConfiguration() error {
	f := n.r.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("reading the raft configuration: %w", err)
	}
	have := map[string]string{}
	for _, s := range f.Configuration().Servers {
		have[string(s.ID)] = string(s.Address)
	}
	if !maps.Equal(have, n.peers) {
		return fmt.Errorf("--peers %s differ from the raft group's configuration %s: use the same --peers on every member",
			peersText(n.peers), peersText(have))
	}
	return nil
}

// leader returns the leader's raft ID, "" if none is known.
func (n *raftNode) leader() string {
	_, id := n.r.LeaderWithID()
	return string(id)
}

func (n *raftNode) closeStores() {
	for _, s := range n.stores {
		_ = s.Close()
	}
}

func (n *raftNode) close() {
	if n.transport != nil {
		_ = n.transport.Close()
	}
	n.closeStores()
}

// shutdown stops raft and closes what it used.
func (n *raftNode) shutdown() {
	if n.r != nil {
		_ = n.r.Shutdown().Error()
	}
	n.close()
}
