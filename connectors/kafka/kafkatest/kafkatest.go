// Package kafkatest runs franz-go's in-process Kafka (kfake) for tests and
// reads topics back the way a downstream read-committed consumer would.
package kafkatest

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Start runs a one-broker cluster on a free port of 127.0.0.1 with the given
// topics (name -> partitions) and stops it when the test ends.
func Start(t testing.TB, topics map[string]int32) *kfake.Cluster {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	for name, n := range topics {
		opts = append(opts, kfake.SeedTopics(n, name))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// SentinelHeader marks the records ReadCommitted writes to find the end of
// a topic; readers of the topic skip them.
const SentinelHeader = "weir-test-sentinel"

// Produce writes records without a transaction and waits for them.
func Produce(t testing.TB, addrs []string, rs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

// ReadCommitted returns every committed record of topic (its partitions
// 0..partitions-1) as a read-committed consumer sees them. To know where
// the end is, it first appends a sentinel record to every partition and
// reads until it has seen all of them: a transaction left open holds the
// sentinel back, so a lingering transaction fails the read after within.
func ReadCommitted(t testing.TB, addrs []string, topic string, partitions int32, within time.Duration) []*kgo.Record {
	t.Helper()
	rs, err := readCommitted(addrs, topic, partitions, within)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// ReadCommittedErr is ReadCommitted returning its error.
func ReadCommittedErr(addrs []string, topic string, partitions int32, within time.Duration) ([]*kgo.Record, error) {
	return readCommitted(addrs, topic, partitions, within)
}

func readCommitted(addrs []string, topic string, partitions int32, within time.Duration) ([]*kgo.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	p, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return nil, err
	}
	defer p.Close()
	// Each read has its own sentinels: an earlier read's are skipped.
	nonce := []byte(strconv.FormatInt(time.Now().UnixNano(), 36))
	var sentinels []*kgo.Record
	for i := range partitions {
		sentinels = append(sentinels, &kgo.Record{Topic: topic, Partition: i, Headers: []kgo.RecordHeader{{Key: SentinelHeader, Value: nonce}}})
	}
	if err := p.ProduceSync(ctx, sentinels...).FirstErr(); err != nil {
		return nil, fmt.Errorf("writing sentinels: %w", err)
	}
	// No fetch sessions: closing a client races with its last fetch's
	// session update (see the source's options).
	c, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableFetchSessions())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var out []*kgo.Record
	seen := map[int32]bool{}
	for len(seen) < int(partitions) {
		fs := c.PollFetches(ctx)
		if ctx.Err() != nil {
			return out, fmt.Errorf("reading %s: saw the end of %d of %d partitions within %v (a transaction left open?)", topic, len(seen), partitions, within)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if len(r.Headers) > 0 && r.Headers[0].Key == SentinelHeader {
				if bytes.Equal(r.Headers[0].Value, nonce) {
					seen[r.Partition] = true
				}
				return
			}
			if !seen[r.Partition] {
				out = append(out, r)
			}
		})
	}
	return out, nil
}

// ProduceLines writes lines as records to a new topic of parts partitions,
// each to the partition of its key (FNV-1a of key(line), modulo parts;
// partition 0 for an empty key), as a keyed producer would: one key's
// lines stay in order. It returns the 1-based line number of each record,
// by "<topic>/<partition>:<offset>", offsets counting from 0 in each
// partition (so the topic must start empty).
func ProduceLines(t testing.TB, addrs []string, topic string, parts int32, lines []string, key func(line string) string) map[string]int {
	t.Helper()
	origins := make(map[string]int, len(lines))
	next := make([]int64, parts)
	rs := make([]*kgo.Record, 0, len(lines))
	for i, l := range lines {
		p := int32(0)
		if k := key(l); k != "" {
			h := fnv.New32a()
			h.Write([]byte(k))
			p = int32(h.Sum32() % uint32(parts))
		}
		origins[topic+"/"+strconv.Itoa(int(p))+":"+strconv.FormatInt(next[p], 10)] = i + 1
		next[p]++
		rs = append(rs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(l)})
	}
	Produce(t, addrs, rs...)
	return origins
}
