package main

import (
	"fmt"
	"strconv"
	"strings"
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

	// Feed the topic while the job runs: seq s of every key, then s+1, so
	// the input outlasts the kills.
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

	// Wait until the committed output holds every record, then check it
	// holds each exactly once.
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
			break
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
	if st := jobStatus(t, c, id); st.Restarts < 3 {
		t.Errorf("restarts %d, want at least 3 (one per killed TaskManager)", st.Restarts)
	}
}
