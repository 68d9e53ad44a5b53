package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	view "github.com/weirstream/weir/internal/cli"
	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/jobs/fraud"
)

// The kafka section: Kafka -> keyBy -> fraud detector -> Kafka on one
// TaskManager with one core (GOMAXPROCS=1), checkpoints every second to a
// local directory, against the in-process development broker (kfake, in
// this process: it competes for the machine's cores, so the figures are a
// floor). Throughput: a topic of transactions read to its end with the
// sink exactly-once and at-least-once, alternating. Latency: transactions
// produced at a fixed rate, each stamped with its produce time; an alert
// carries the stamp of the transaction that raised it, and a
// read-committed consumer measures produce-to-visible-alert.

func (b *bench) kafkaSection(events int64, runs int, rate int, latencyFor time.Duration) error {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "transactions"))
	if err != nil {
		return err
	}
	defer kc.Close()
	addrs := kc.ListenAddrs()
	fmt.Printf("producing %d transactions to the development broker\n", events)
	if err := produceRandom(addrs, "transactions", events, 0, nil); err != nil {
		return err
	}
	rates := map[string][]float64{}
	for i := range 2 * runs {
		delivery := []string{"exactly-once", "at-least-once"}[i%2]
		r, err := b.kafkaThroughput(addrs, delivery, events, i)
		if err != nil {
			return fmt.Errorf("%s: %w", delivery, err)
		}
		fmt.Printf("  %s: %.0f events/s\n", delivery, r)
		rates[delivery] = append(rates[delivery], r)
	}
	eos, alo := median(rates["exactly-once"]), median(rates["at-least-once"])
	b.add("kafka", "throughput, 1 core, exactly-once", fmt.Sprintf("%.0f k events/s (median of %d)", eos/1e3, runs), "")
	b.add("kafka", "throughput, 1 core, at-least-once", fmt.Sprintf("%.0f k events/s (median of %d)", alo/1e3, runs), "")
	b.add("kafka", "cost of exactly-once", fmt.Sprintf("%.1f %%", 100*(1-eos/alo)), "< 15 %")

	p50, p99, n, err := b.kafkaLatency(addrs, rate, latencyFor)
	if err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	fmt.Printf("  latency at %d events/s: p50 %v p99 %v (%d alerts)\n", rate, p50, p99, n)
	b.add("kafka", fmt.Sprintf("produce -> committed alert at %d events/s, checkpoints 1s", rate),
		fmt.Sprintf("p50 %v / p99 %v (%d alerts)", p50, p99, n), "")
	return nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	switch {
	case len(s) == 0:
		return 0
	case len(s)%2 == 0:
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// produceRandom writes n transactions over 100,000 accounts, about 1 %
// small amounts. With rate > 0 it paces itself and stamps each with the
// produce time, stopping early when stop closes.
func produceRandom(addrs []string, topic string, n int64, rate int, stop <-chan struct{}) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := context.Background()
	var (
		mu    sync.Mutex
		first error
	)
	x := uint64(0x9e3779b97f4a7c15)
	start := time.Now()
	for i := int64(0); n == 0 || i < n; i++ {
		if rate > 0 && i%100 == 0 {
			due := start.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-stop:
					return cl.Flush(ctx)
				}
			}
		}
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		cents := (x >> 40) % 100_000
		if (x>>32)&0xff < 3 {
			cents %= 100
		}
		tx := fraud.Transaction{AccountID: int64(x%100_000) + 1, Timestamp: time.Now().UnixMilli(), Amount: float64(cents) / 100}
		r := &kgo.Record{Topic: topic, Key: strconv.AppendInt(nil, tx.AccountID, 10), Value: fraud.AppendTransactionJSON(nil, tx)}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				first = err
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return first
}

func kafkaCluster(b *bench) (*cluster.Cluster, error) {
	dir, err := os.MkdirTemp("", "weirbench-kafka-")
	if err != nil {
		return nil, err
	}
	return cluster.StartCluster(b.weir, cluster.Options{TaskManagers: 1, Slots: 1, TaskManagerEnv: []string{"GOMAXPROCS=1"},
		DiscardStdout: true, JobManagerArgs: []string{"--checkpoint-storage", dir}})
}

func (b *bench) kafkaThroughput(addrs []string, delivery string, events int64, run int) (float64, error) {
	c, err := kafkaCluster(b)
	if err != nil {
		return 0, err
	}
	defer c.Stop()
	id, err := submitJob(c, "fraud-detection", 1, time.Second, map[string]string{"source": "kafka", "bounded": "true",
		"sink": "kafka", "delivery": delivery, "kafka-brokers": addrs[0], "sink-topic": fmt.Sprintf("alerts-%d", run),
		"create-topic-partitions": "1"})
	if err != nil {
		return 0, err
	}
	var st *view.JobStatusView
	err = waitFor(10*time.Minute, 200*time.Millisecond, "the job to finish", func() (bool, error) {
		if st, err = jobStatus(c, id); err != nil {
			return false, err
		}
		switch st.State {
		case "FINISHED":
			return true, nil
		case "FAILED", "CANCELED":
			return false, fmt.Errorf("job %v: %s\n%s", st.State, st.Failure, c.Logs())
		}
		return false, nil
	})
	if err != nil {
		return 0, err
	}
	in := operatorRecordsIn(st, "fraud-detector")
	secs := float64(st.EndTimeMs-st.StartTimeMs) / 1000
	if in != events || secs <= 0 {
		return 0, fmt.Errorf("detector saw %d records in %.3fs, want %d", in, secs, events)
	}
	return float64(in) / secs, nil
}

func (b *bench) kafkaLatency(addrs []string, rate int, d time.Duration) (p50, p99 time.Duration, n int, err error) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "live", "live-alerts"))
	if err != nil {
		return 0, 0, 0, err
	}
	defer kc.Close()
	addrs = kc.ListenAddrs()
	c, err := kafkaCluster(b)
	if err != nil {
		return 0, 0, 0, err
	}
	defer c.Stop()
	id, err := submitJob(c, "fraud-detection", 1, time.Second, map[string]string{"source": "kafka", "source-topic": "live",
		"start": "latest", "sink": "kafka", "sink-topic": "live-alerts", "kafka-brokers": addrs[0]})
	if err != nil {
		return 0, 0, 0, err
	}
	defer cancelJob(c, id)
	if err := waitFor(time.Minute, 100*time.Millisecond, "the job to run", func() (bool, error) {
		st, err := jobStatus(c, id)
		return err == nil && st.State == "RUNNING" && st.Checkpointing.Completed > 0, err
	}); err != nil {
		return 0, 0, 0, err
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("live-alerts"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return 0, 0, 0, err
	}
	defer cons.Close()
	stop := make(chan struct{})
	prodErr := make(chan error, 1)
	go func() { prodErr <- produceRandom(addrs, "live", 0, rate, stop) }()
	var lat []time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		now := time.Now().UnixMilli()
		fs.EachRecord(func(r *kgo.Record) {
			var a struct {
				Timestamp int64 `json:"timestamp"`
			}
			if json.Unmarshal(r.Value, &a) == nil && a.Timestamp > 0 {
				lat = append(lat, time.Duration(now-a.Timestamp)*time.Millisecond)
			}
		})
	}
	close(stop)
	if err := <-prodErr; err != nil {
		return 0, 0, 0, err
	}
	if len(lat) == 0 {
		return 0, 0, 0, fmt.Errorf("no alert arrived within %v", d)
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100], len(lat), nil
}
