// Command weirbench measures Weir with real processes (a JobManager and
// TaskManagers started by internal/cluster) on the fraud-detection job over
// its random transaction source. `make bench` runs every section:
//
//   - throughput: (a) one subtask, fully chained, on a TaskManager limited
//     to one core; (b) parallelism 2 on two TaskManager processes, the keyBy
//     crossing the network. For each, the maximum rate (source as fast as
//     possible, default checkpointing), then end-to-end latency (latency
//     markers) at half of it.
//   - stateheavy: scenario (a) with small=1000 large=1000 timeout=1h, so
//     that every event writes the detector's state and timers, at 100
//     thousand and 10 million accounts, with CPU profiles, on each state
//     backend (-stateheavy-backends, memory and pebble).
//   - seeds: the seeds' event-time jobs (anomaly-detection,
//     transfer-monitor, impossible-travel) over a generated JSON-lines
//     file, one subtask on one core: events per second.
//   - checkpoint: checkpoint duration and the longest synchronous snapshot
//     (the processing stall) with 100 thousand, 1 million and 10 million
//     keys of detector state, to MinIO.
//   - overhead: throughput of scenario (b) with checkpoints every second to
//     MinIO against no checkpoints.
//   - failover: SIGKILL of a TaskManager running tasks, to the job running
//     again and the first record processed after the restore.
//   - rescale: `weir job rescale` from parallelism 2 to 4: the gap from the
//     stop-with-savepoint to the first record at the new parallelism.
//   - ha: SIGKILL of the leader of three JobManagers: time to a new leader,
//     to its first checkpoint, the gap in the output, task restarts; and
//     submit and checkpoint latency with one JobManager against three.
//   - nexmark: the Nexmark queries of the nexmark job on a fixed event
//     count, events per second per core used beside Flink's published
//     figures (also `make bench-nexmark`).
//   - tls: throughput of scenario (b) with mutual TLS on every connection
//     against plaintext, the cost of a TLS handshake on a new connection,
//     and the TaskManager and JobManager leader failovers with and without
//     TLS (the handshakes of the connections a failover opens).
//
// -only selects sections; a results table ends the output.
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weirstream/weir/internal/tlsconf"
)

// sections, in the order they run.
var sections = []string{"throughput", "stateheavy", "seeds", "checkpoint", "overhead", "failover", "rescale", "ha", "tls", "kafka", "nexmark"}

// benchBucket is the MinIO bucket every S3 section writes under.
const benchBucket = "weirbench"

// bench is what the sections share.
type bench struct {
	weir    string
	s3      *minioServer // nil until a section needs it
	verbose bool
	results []result
	// tlsArgs, when set, are the --tls-* flags of the clusters the
	// failover and ha runs start, and clientTLS what the harness dials
	// their JobManagers with (the tls section sets both for its TLS runs).
	tlsArgs   []string
	clientTLS *tlsconf.Config
}

// result is one row of the final table.
type result struct {
	section, metric, value, goal string
}

func (b *bench) add(section, metric, value, goal string) {
	b.results = append(b.results, result{section, metric, value, goal})
}

func (b *bench) minio() (*minioServer, error) {
	if b.s3 != nil {
		return b.s3, nil
	}
	s, err := startMinIO(benchBucket)
	if err != nil {
		return nil, fmt.Errorf("MinIO: %w", err)
	}
	b.s3 = s
	return s, nil
}

func main() {
	weir := flag.String("weir", "bin/weir", "path of the weir binary")
	only := flag.String("only", "all", "comma-separated sections to run: "+strings.Join(sections, ",")+" (or all)")
	verbose := flag.Bool("v", false, "print every checkpoint and poll as it happens")
	events := flag.Int64("events", 40_000_000, "throughput: events per max-throughput run (all source subtasks together)")
	latencyFor := flag.Duration("latency-duration", 10*time.Second, "throughput: length of each latency run")
	profileDir := flag.String("profile-dir", ".bench", "throughput: where CPU profiles are written")
	heavyAccounts := flag.String("stateheavy-accounts", "100000,10000000", "stateheavy: account counts to run")
	heavyEvents := flag.Int64("stateheavy-events", 50_000_000, "stateheavy: events per run")
	heavyBackends := flag.String("stateheavy-backends", "memory,pebble", "stateheavy: state backends to run (memory, pebble)")
	heavyMemory := flag.String("stateheavy-state-memory", "2GiB", "stateheavy: the TaskManager's --state-memory on the pebble backend (empty: its default)")
	stateKeys := flag.String("state-keys", "100000,1000000,10000000", "checkpoint: state sizes (accounts) to measure")
	stateFill := flag.Duration("state-fill", 60*time.Second, "checkpoint: longest time to fill the state, per size")
	stateCheckpoints := flag.Int("state-checkpoints", 5, "checkpoint: checkpoints measured per size once the state is full")
	stateMeasure := flag.Duration("state-measure", 60*time.Second, "checkpoint: longest measurement per size")
	overheadEvents := flag.Int64("overhead-events", 20_000_000, "overhead: events per run (all source subtasks together)")
	overheadStateEvents := flag.Int64("overhead-state-events", 4_000_000, "overhead: events per run of the variant where every account holds state (0 skips it)")
	overheadRuns := flag.Int("overhead-runs", 3, "overhead: runs with and without checkpoints each (alternating)")
	failoverRuns := flag.Int("failover-runs", 3, "failover: TaskManager kills, each on a fresh cluster")
	freezeRuns := flag.Int("failover-freeze-runs", 2, "failover: extra runs that freeze (SIGSTOP) the TaskManager instead of killing it")
	failoverRate := flag.Int("failover-rate", 20000, "failover and rescale: source rate per subtask (records/s)")
	rescaleRuns := flag.Int("rescale-runs", 2, "rescale: rescales 2 -> 4, each on a fresh cluster")
	haRuns := flag.Int("ha-runs", 3, "ha: JobManager leader kills, each on a fresh cluster")
	tlsEvents := flag.Int64("tls-events", 20_000_000, "tls: events per run (all source subtasks together)")
	tlsRuns := flag.Int("tls-runs", 3, "tls: runs with and without TLS each (alternating)")
	tlsHandshakes := flag.Int("tls-handshakes", 200, "tls: new connections timed with and without TLS")
	tlsFailovers := flag.Int("tls-failover-runs", 3, "tls: TaskManager kills with and without TLS each (alternating; 0 skips them)")
	tlsHARuns := flag.Int("tls-ha-runs", 2, "tls: JobManager leader kills with and without TLS each (alternating; 0 skips them)")
	seedsEvents := flag.Int("seeds-events", 2_000_000, "seeds: events per job run")
	kafkaEvents := flag.Int64("kafka-events", 1_000_000, "kafka: transactions in the topic each throughput run reads")
	kafkaRuns := flag.Int("kafka-runs", 2, "kafka: throughput runs with exactly-once and at-least-once each (alternating)")
	kafkaRate := flag.Int("kafka-rate", 20000, "kafka: transactions per second of the latency run")
	nexmarkEvents := flag.Int64("nexmark-events", 20_000_000, "nexmark: events per query")
	nexmarkQueries := flag.String("nexmark-queries", "q0,q1,q2,q3,q4,q5,q7,q8", "nexmark: the queries to run")
	kafkaLatency := flag.Duration("kafka-latency-duration", 15*time.Second, "kafka: length of the latency run")
	flag.Parse()

	sel := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		s = strings.TrimSpace(s)
		switch {
		case s == "all":
			for _, x := range sections {
				sel[x] = true
			}
		case slices.Contains(sections, s):
			sel[s] = true
		case s != "":
			fmt.Fprintf(os.Stderr, "weirbench: -only: unknown section %q (have %s)\n", s, strings.Join(sections, ", "))
			os.Exit(2)
		}
	}
	sizes := positiveList("state-keys", *stateKeys)
	heavySizes := positiveList("stateheavy-accounts", *heavyAccounts)

	b := &bench{weir: *weir, verbose: *verbose}
	var failed []string
	runSection := func(name string, f func() error) {
		if !sel[name] {
			return
		}
		start := time.Now()
		fmt.Printf("=== %s ===\n", name)
		if err := f(); err != nil {
			fmt.Fprintf(os.Stderr, "weirbench: %s: %v\n", name, err)
			failed = append(failed, name)
			b.add(name, "ERROR", firstLine(err.Error()), "")
		}
		fmt.Printf("(%s took %v)\n\n", name, time.Since(start).Round(time.Second))
	}
	runSection("throughput", func() error { return b.baseline(*events, *latencyFor, *profileDir) })
	runSection("stateheavy", func() error {
		return b.stateHeavySection(heavySizes, *heavyEvents, *profileDir, strings.Split(*heavyBackends, ","), *heavyMemory)
	})
	runSection("seeds", func() error { return b.seedsSection(*seedsEvents) })
	runSection("checkpoint", func() error {
		return b.checkpointSection(sizes, stateOptions{fillMax: *stateFill, measure: *stateCheckpoints, measureMax: *stateMeasure})
	})
	runSection("overhead", func() error { return b.overheadSection(*overheadEvents, *overheadStateEvents, *overheadRuns) })
	runSection("failover", func() error { return b.failoverSection(*failoverRuns, *freezeRuns, *failoverRate) })
	runSection("rescale", func() error { return b.rescaleSection(*rescaleRuns, *failoverRate) })
	runSection("ha", func() error { return b.haSection(*haRuns, *failoverRate) })
	runSection("tls", func() error {
		return b.tlsSection(*tlsEvents, *tlsRuns, *tlsHandshakes, *tlsFailovers, *tlsHARuns, *failoverRate)
	})
	runSection("kafka", func() error { return b.kafkaSection(*kafkaEvents, *kafkaRuns, *kafkaRate, *kafkaLatency) })
	runSection("nexmark", func() error {
		return b.nexmarkSection(*nexmarkEvents, strings.Split(*nexmarkQueries, ","), *profileDir)
	})
	if b.s3 != nil {
		b.s3.Stop()
	}

	fmt.Println("=== results ===")
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "SECTION\tMETRIC\tVALUE\tGOAL")
	for _, r := range b.results {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.section, r.metric, r.value, r.goal)
	}
	w.Flush()
	if len(failed) > 0 {
		fmt.Fprintf(os.Stderr, "weirbench: failed sections: %s\n", strings.Join(failed, ", "))
		os.Exit(1)
	}
}

// positiveList parses the comma-separated positive numbers of flag name,
// or exits with a usage error.
func positiveList(name, list string) []int64 {
	var out []int64
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "weirbench: -%s: %q is not a positive number\n", name, s)
			os.Exit(2)
		}
		out = append(out, n)
	}
	return out
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
