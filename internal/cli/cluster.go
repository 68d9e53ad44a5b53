package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/leader"
)

// Raft states as `weir cluster status` prints them; the others are the
// members' own words.
const (
	stateLeader      = "leader"
	stateUnreachable = "unreachable"
)

func newClusterCmd() *cobra.Command {
	var d discoveryFlags
	cmd := &cobra.Command{Use: "cluster", Short: "Inspect the JobManager group and its TaskManagers"}
	d.register(cmd, true, true)
	d.registerToken(cmd)
	var asJSON bool
	statusCmd := &cobra.Command{
		Use:   "status",
		Short: "Show the JobManagers with their raft state, the leader, and the TaskManagers with their slots",
		Long: "Show every JobManager of the group that can be found — the --jobmanager addresses, the members\n" +
			"etcd lists (--etcd), and the members those list in their raft configuration — with its raft\n" +
			"state (leader, follower, candidate, or unreachable), term and last applied index; the leader's\n" +
			"address; and the TaskManagers registered with the leader, with their slots and free slots.\n" +
			"Without a leader it prints what it reached and exits 1.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, closeFinder, err := d.finder(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFinder()
			ctx, cancel := rpcContext(cmd.Context())
			defer cancel()
			v, verr := clusterView(f.Survey(ctx), d.clusterID)
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), v); err != nil {
					return err
				}
			} else {
				printClusterStatus(cmd.OutOrStdout(), v)
			}
			return verr
		},
	}
	jsonFlag(statusCmd, &asJSON)
	cmd.AddCommand(statusCmd)
	return cmd
}

// clusterView merges the members' answers into one view of the group, and
// says what is wrong with it: no member reached, no leader, or a leader the
// members name that does not answer. clusterID is --cluster-id, shown when
// no member says its own.
func clusterView(replies []leader.Reply, clusterID string) (ClusterStatusView, error) {
	v := ClusterStatusView{ClusterID: clusterID, Members: []ClusterMemberView{}, TaskManagers: []ClusterTaskManagerView{}}
	byID := map[string]*ClusterMemberView{}
	var ids []string
	member := func(id string) *ClusterMemberView {
		m, ok := byID[id]
		if !ok {
			m = &ClusterMemberView{ID: id}
			byID[id] = m
			ids = append(ids, id)
		}
		return m
	}
	// Every configuration reached lists members; the answers fill them in.
	for _, r := range replies {
		if r.Err != nil {
			continue
		}
		for _, c := range r.Status.GetMembers() {
			m := member(c.GetId())
			m.RaftAddress = orElse(m.RaftAddress, c.GetRaftAddress())
			m.ClientAddress = orElse(m.ClientAddress, c.GetClientAddress())
			m.Suffrage = orElse(m.Suffrage, c.GetSuffrage())
		}
	}
	answered := map[string]bool{}     // by member ID
	answeredAddr := map[string]bool{} // by address asked
	var leaderReply *leader.Reply
	for i, r := range replies {
		if r.Err != nil {
			continue
		}
		st := r.Status
		m := member(st.GetMemberId())
		m.ClientAddress = orElse(m.ClientAddress, orElse(st.GetClientAddress(), r.Addr))
		v.Term = max(v.Term, st.GetTerm())
		if st.GetClusterId() != "" && (v.ClusterID == clusterID || st.GetRaftState() == stateLeader) {
			v.ClusterID = st.GetClusterId()
		}
		answeredAddr[r.Addr] = true
		if answered[m.ID] {
			continue // reached at two addresses
		}
		answered[m.ID] = true
		v.Reached++
		m.State, m.Term, m.LastAppliedIndex, m.CommitIndex = st.GetRaftState(), st.GetTerm(), st.GetLastAppliedIndex(), st.GetCommitIndex()
		if st.GetRaftState() == stateLeader && (leaderReply == nil || st.GetTerm() > leaderReply.Status.GetTerm()) {
			leaderReply = &replies[i]
		}
	}
	failed := map[string]error{}
	for _, r := range replies {
		if r.Err != nil {
			failed[r.Addr] = r.Err
		}
	}
	listed := map[string]bool{}
	for _, id := range ids {
		m := byID[id]
		listed[m.ClientAddress] = true
		if answered[id] {
			continue
		}
		m.State = stateUnreachable
		if err, ok := failed[m.ClientAddress]; ok {
			m.Error = errMessage(err)
		} else {
			m.Error = "its client address is unknown (it has not registered with a leader)"
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		v.Members = append(v.Members, *byID[id])
	}
	// Addresses asked that did not answer and that no member lists.
	var addrs []string
	var last error
	for _, r := range replies {
		addrs = append(addrs, r.Addr)
		if r.Err != nil {
			last = r.Err
			if !listed[r.Addr] && !answeredAddr[r.Addr] {
				v.Members = append(v.Members, ClusterMemberView{ClientAddress: r.Addr, State: stateUnreachable, Error: errMessage(r.Err)})
			}
		}
	}

	if leaderReply != nil {
		st := leaderReply.Status
		v.LeaderID, v.LeaderReached, v.Term = st.GetMemberId(), true, st.GetTerm()
		v.LeaderAddress = orElse(st.GetLeaderAddress(), orElse(st.GetClientAddress(), leaderReply.Addr))
		for _, tm := range st.GetTaskManagers() {
			v.TaskManagers = append(v.TaskManagers, ClusterTaskManagerView{ID: tm.GetId(), Address: tm.GetAddress(),
				Slots: int(tm.GetSlots()), FreeSlots: int(tm.GetFreeSlots())})
		}
		sort.Slice(v.TaskManagers, func(i, j int) bool { return v.TaskManagers[i].ID < v.TaskManagers[j].ID })
		return v, nil
	}
	// No leader answered: do the followers name one?
	var named uint64
	for _, r := range replies {
		if r.Err == nil && r.Status.GetLeaderAddress() != "" && (v.LeaderAddress == "" || r.Status.GetTerm() > named) {
			v.LeaderID, v.LeaderAddress, named = r.Status.GetLeaderId(), r.Status.GetLeaderAddress(), r.Status.GetTerm()
		}
	}
	switch {
	case v.Reached == 0 || v.LeaderAddress == "":
		return v, &leader.NoLeaderError{Reached: v.Reached, Tried: len(v.Members), Addrs: addrs, Last: last}
	default:
		return v, fmt.Errorf("the leader the JobManagers name, %s at %s, does not answer (it may have just failed: a new one is elected within seconds if a quorum remains)",
			v.LeaderID, v.LeaderAddress)
	}
}

// cmp is a if it is set, else b.
func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// errMessage is why an address did not answer, without gRPC's framing.
func errMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

// shortReason is the end of an error message, for a table cell:
// "connection refused" rather than the whole dial story.
func shortReason(msg string) string {
	msg = strings.TrimRight(msg, `"`)
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

func printClusterStatus(w io.Writer, v ClusterStatusView) {
	head := "no leader"
	switch {
	case v.LeaderAddress != "" && v.LeaderReached:
		head = fmt.Sprintf("leader %s at %s, term %d", v.LeaderID, v.LeaderAddress, v.Term)
	case v.LeaderAddress != "":
		head = fmt.Sprintf("leader %s at %s (named by the members reached; it does not answer)", v.LeaderID, v.LeaderAddress)
	}
	fmt.Fprintf(w, "Cluster %s: %s; reached %d of %d JobManager(s)\n\n", v.ClusterID, head, v.Reached, len(v.Members))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tSTATE\tTERM\tAPPLIED\tCLIENT ADDRESS\tRAFT ADDRESS")
	for _, m := range v.Members {
		id, state, term, applied := orElse(m.ID, "-"), m.State, "-", "-"
		if m.Suffrage == "nonvoter" {
			state += " (nonvoter)"
		}
		if m.State != stateUnreachable {
			term, applied = fmt.Sprint(m.Term), fmt.Sprint(m.LastAppliedIndex)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s", id, state, term, applied, orElse(m.ClientAddress, "-"), orElse(m.RaftAddress, "-"))
		if m.Error != "" {
			fmt.Fprintf(tw, "  (%s)", shortReason(m.Error))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w)
	if !v.LeaderReached {
		fmt.Fprintln(w, "TaskManagers: unknown (only the leader knows them)")
		return
	}
	if len(v.TaskManagers) == 0 {
		fmt.Fprintln(w, "no TaskManagers")
		return
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TASKMANAGER\tADDRESS\tSLOTS\tFREE")
	for _, tm := range v.TaskManagers {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", tm.ID, tm.Address, tm.Slots, tm.FreeSlots)
	}
	tw.Flush()
}
