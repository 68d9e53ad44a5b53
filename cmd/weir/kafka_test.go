package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/connectors/kafka/kafkatest"
	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/jobs/seqcheck"
)

// TestKafkaSequenceCheckExactlyOnceAcrossKills is the Kafka exactly-once
// acceptance test: sequence-check reads per-key sequences from an 8-partition
// topic and writes them through the transactional Kafka sink at parallelism
// 3 with checkpoints every 500 ms, while a TaskManager running its tasks is
// killed with SIGKILL three times and replaced. A read-committed consumer
// must then see every (key, seq) exactly once, none flagged out of order,
// and nothing of the killed attempts' transactions.
func TestKafkaSequenceCheckExactlyOnceAcrossKills(t *testing.T) {
	const keys, count, parts = 24, 300, 8
	kc := kafkatest.Start(t, map[string]int32{seqcheck.InputTopic: parts, seqcheck.OutputTopic: 4})
	addrs := kc.ListenAddrs()
	o := cluster.Options{TaskManagers: 3, Slots: 2, JobManagerArgs: []string{"--checkpoint-storage", t.TempDir(),
		"--heartbeat-timeout", "1s", "--heartbeat-interval", "200ms"}}
	c := startCluster(t, o)
	id := submit(t, c, "sequence-check", "--parallelism", "3", "--checkpoint-interval", "500ms",
		"--param", fmt.Sprint("keys=", keys), "--param", "source=kafka", "--param", "sink=kafka",
		"--param", "kafka-brokers="+addrs[0], "--param", "transaction-timeout=30s")

	fed := feedSequences(t, addrs, keys, count, parts)

	var completed int64
	for kill := range 3 {
		st := waitCheckpoint(t, c, id, completed)
		completed = st.Checkpointing.Completed
		victim := st.Vertices[len(st.Vertices)-1].Subtasks[kill%3].TaskManagerID
		for _, tm := range c.TaskManagers {
			if tm.Name == "taskmanager-"+strings.TrimPrefix(victim, "tm-") {
				t.Logf("killing %s (checkpoints so far %d)", victim, completed)
				tm.Kill()
			}
		}
		if _, err := c.AddTaskManager(o, 3+kill); err != nil {
			t.Fatal(err)
		}
	}
	<-fed

	verifyKafkaSequences(t, c, id, addrs, keys, count)
	if st := jobStatus(t, c, id); st.Restarts < 3 {
		t.Errorf("restarts %d, want at least 3 (one per killed TaskManager)", st.Restarts)
	}
}

// feedSequences writes seq s of every key, then s+1, and so on, key k to
// partition k % parts, pacing itself so the input outlasts what the test
// does to the job meanwhile. The channel closes when all is written.
func feedSequences(t *testing.T, addrs []string, keys, count, parts int) chan struct{} {
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for s := 1; s <= count; s++ {
			rs := make([]*kgo.Record, 0, keys)
			for k := range keys {
				rs = append(rs, &kgo.Record{Topic: seqcheck.InputTopic, Partition: int32(k % parts),
					Key: []byte(strconv.Itoa(k)), Value: fmt.Appendf(nil, "%d,%d", k, s)})
			}
			kafkatest.Produce(t, addrs, rs...)
			time.Sleep(25 * time.Millisecond)
		}
	}()
	return fed
}

// verifyKafkaSequences waits until the committed output holds every
// (key, seq), failing as soon as one is there twice or flagged.
func verifyKafkaSequences(t *testing.T, c *cluster.Cluster, id string, addrs []string, keys, count int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		counts := map[[2]int64]int{}
		var flagged []string
		for _, r := range kafkatest.ReadCommitted(t, addrs, seqcheck.OutputTopic, 4, time.Minute) {
			out, ok := seqcheck.ParseOutput(r.Value)
			if !ok || out.Expected != 0 {
				flagged = append(flagged, string(r.Value))
				continue
			}
			counts[[2]int64{out.Key, out.Seq}]++
		}
		if len(flagged) > 0 {
			t.Fatalf("%d flagged or malformed records, first %q", len(flagged), flagged[0])
		}
		err := seqcheck.Verify(counts, keys, count)
		if err == nil {
			return
		}
		dup := false
		for _, n := range counts {
			dup = dup || n > 1
		}
		if dup || time.Now().After(deadline) {
			st := jobStatus(t, c, id)
			t.Fatalf("committed output is not exactly once: %v (job %s, restarts %d, failure %q)", err, st.State, st.Restarts, st.Failure)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestKafkaRescale rescales a running Kafka-to-Kafka sequence-check from 2
// to 4: the source's partitions move to their new owners with their
// offsets, the sink's transactions to the new subtasks, and the output
// stays exactly once.
func TestKafkaRescale(t *testing.T) {
	const keys, count, parts = 16, 200, 8
	kc := kafkatest.Start(t, map[string]int32{seqcheck.InputTopic: parts, seqcheck.OutputTopic: 4})
	addrs := kc.ListenAddrs()
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 4, JobManagerArgs: []string{"--checkpoint-storage", t.TempDir()}})
	id := submit(t, c, "sequence-check", "--parallelism", "2", "--checkpoint-interval", "500ms",
		"--param", fmt.Sprint("keys=", keys), "--param", "source=kafka", "--param", "sink=kafka",
		"--param", "kafka-brokers="+addrs[0])
	fed := feedSequences(t, addrs, keys, count, parts)
	waitCheckpoint(t, c, id, 0)
	r := runWeir(t, "job", "rescale", id, "--parallelism", "4", "--jobmanager", c.JobManagerAddrs)
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, "rescaled to parallelism 4") {
		t.Fatalf("rescale: exit %d, stdout %q, stderr %s", r.ExitCode, r.Stdout, r.Stderr)
	}
	<-fed
	verifyKafkaSequences(t, c, id, addrs, keys, count)
	if st := jobStatus(t, c, id); st.Parallelism != 4 {
		t.Fatalf("job at parallelism %d after the rescale", st.Parallelism)
	}
}

// TestWebhookAlertsSurviveKillsAndOutages sends fraud-detection's alerts
// to an HTTP receiver that fails every third request and is down for 5 s,
// while the TaskManager running the sink is killed: every alert arrives,
// and whatever arrives twice carries a key the receiver has seen. The URL
// reaches the TaskManagers only through their environment.
func TestWebhookAlertsSurviveKillsAndOutages(t *testing.T) {
	var (
		mu       sync.Mutex
		keys     = map[string]int{}
		requests int
		down     atomic.Bool
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []struct {
			Key string `json:"idempotency_key"`
		}
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		requests++
		if down.Load() || requests%3 == 0 {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		if err := json.Unmarshal(body, &batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, a := range batch {
			keys[a.Key]++
		}
	}))
	defer srv.Close()
	o := cluster.Options{TaskManagers: 2, Slots: 2, Env: []string{"WEIR_TEST_ALERTS_URL=" + srv.URL + "/hook?token=zq9x"},
		JobManagerArgs: []string{"--checkpoint-storage", t.TempDir(), "--heartbeat-timeout", "1s", "--heartbeat-interval", "200ms"}}
	c := startCluster(t, o)
	// 3000 walkthrough transactions at 300/s: 60 cycles, one alert each.
	id := submit(t, c, "fraud-detection", "--parallelism", "1", "--checkpoint-interval", "500ms",
		"--param", "rate=300", "--param", "count=3000", "--param", "sink=webhook",
		"--param", "webhook-url-env=WEIR_TEST_ALERTS_URL", "--param", "webhook-linger=20ms", "--param", "webhook-batch=4")
	st := waitCheckpoint(t, c, id, 0)
	if strings.Contains(fmt.Sprint(st), "zq9x") {
		t.Fatal("job status shows the webhook URL's token")
	}
	victim := st.Vertices[len(st.Vertices)-1].Subtasks[0].TaskManagerID
	for _, tm := range c.TaskManagers {
		if tm.Name == "taskmanager-"+strings.TrimPrefix(victim, "tm-") {
			tm.Kill()
		}
	}
	if _, err := c.AddTaskManager(o, 2); err != nil {
		t.Fatal(err)
	}
	waitCheckpoint(t, c, id, 0)
	down.Store(true)
	time.Sleep(5 * time.Second)
	down.Store(false)
	st = waitState(t, c, id, 2*time.Minute, "FINISHED", "FAILED")
	if st.State != "FINISHED" || st.Restarts < 1 {
		t.Fatalf("job %s after %d restarts: %s", st.State, st.Restarts, st.Failure)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 60 {
		t.Fatalf("%d distinct alerts delivered, want 60", len(keys))
	}
	for k := range keys {
		if !strings.HasPrefix(k, "fraud/3/") {
			t.Fatalf("alert key %q", k)
		}
	}
}
