package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/connectors/kafka/kafkatest"
	"github.com/weirstream/weir/internal/cluster"
	"github.com/weirstream/weir/jobs/anomaly"
)

var kafkaOriginRE = regexp.MustCompile(`"([ab]_)?source":"([^"/]+/\d+)","([ab]_)?line":(\d+)`)

// TestSeedJobsKafkaUnderWeirLocal runs each seed job under weir local at
// parallelism 2, with checkpoints, from a topic holding its sample's lines
// (three partitions, keyed by the job's key field) to an exactly-once
// alerts topic. A read-committed consumer reads the alerts of the file
// input (the golden files), and the dead letters are committed under
// output, each naming the topic, partition and offset of its record.
func TestSeedJobsKafkaUnderWeirLocal(t *testing.T) {
	dir := seedSample(t)
	keys := map[string]struct{ topic, field string }{
		"anomaly-detection": {anomaly.EventsTopic, "user"},
		"transfer-monitor":  {anomaly.TransfersTopic, "account"},
		"impossible-travel": {anomaly.CardUsesTopic, "card"},
	}
	for _, j := range seedJobs {
		t.Run(j.job, func(t *testing.T) {
			k := keys[j.job]
			kc := kafkatest.Start(t, map[string]int32{k.topic: 3, anomaly.AlertsTopic: 2})
			addrs := kc.ListenAddrs()
			data, err := os.ReadFile(filepath.Join(dir, j.input))
			if err != nil {
				t.Fatal(err)
			}
			origins := kafkatest.ProduceLines(t, addrs, k.topic, 3, strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"),
				func(l string) string {
					var m map[string]any
					if json.Unmarshal([]byte(l), &m) != nil {
						return ""
					}
					v, _ := m[k.field].(string)
					return v
				})
			out := filepath.Join(t.TempDir(), "out")
			args := []string{"local", "--job", j.job, "--parallelism", "2", "--taskmanagers", "2", "--checkpoint-interval", "100ms",
				"--param", "source=kafka", "--param", "bounded=true", "--param", "sink=kafka",
				"--param", "kafka-brokers=" + addrs[0], "--param", "output=" + out}
			for _, p := range j.params {
				name, file, _ := strings.Cut(p, "=")
				args = append(args, "--param", name+"="+filepath.Join(dir, file))
			}
			r := runWeir(t, args...)
			if r.ExitCode != 0 {
				t.Fatalf("weir local: exit %d: %s", r.ExitCode, r.Stderr)
			}
			asFile := func(l string) string {
				return kafkaOriginRE.ReplaceAllStringFunc(l, func(m string) string {
					sub := kafkaOriginRE.FindStringSubmatch(m)
					n, ok := origins[sub[2]+":"+sub[4]]
					if !ok {
						t.Errorf("no sample line for %s offset %s", sub[2], sub[4])
					}
					return `"` + sub[1] + `source":"` + j.input + `","` + sub[3] + `line":` + strconv.Itoa(n)
				})
			}
			var got []string
			for _, rec := range kafkatest.ReadCommitted(t, addrs, anomaly.AlertsTopic, 2, 30*time.Second) {
				got = append(got, asFile(string(rec.Value)))
			}
			for _, l := range committedLines(t, out, "") {
				got = append(got, asFile(l))
			}
			slices.Sort(got)
			if want := expectedLines(t, j.job); !slices.Equal(got, want) {
				t.Errorf("alerts and dead letters\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestKafkaIdlePartitionReleasesWindows runs transfer-monitor unbounded on
// a cluster at parallelism 2 from a topic of three partitions: one
// partition has a quiet account's two large transfers and nothing after,
// while the other two carry a steady stream. Once the quiet partition has
// been idle for idleness (1s), the watermark passes it, and both sliding
// windows over the two transfers close and alert, exactly once, through
// the exchange between the sources and the windows. (The quiet partition
// shares its source subtask with a busy one: Owner puts partitions 0 and
// 2 together at parallelism 2.)
func TestKafkaIdlePartitionReleasesWindows(t *testing.T) {
	kc := kafkatest.Start(t, map[string]int32{anomaly.TransfersTopic: 3, anomaly.AlertsTopic: 2})
	addrs := kc.ListenAddrs()
	c := startCluster(t, cluster.Options{TaskManagers: 2, Slots: 2, JobManagerArgs: []string{"--checkpoint-storage", t.TempDir()}})
	id := submit(t, c, "transfer-monitor", "--parallelism", "2", "--checkpoint-interval", "200ms",
		"--param", "source=kafka", "--param", "sink=kafka", "--param", "idleness=1s", "--param", "kafka-brokers="+addrs[0],
		"--param", "output="+t.TempDir())
	waitState(t, c, id, time.Minute, "RUNNING")

	const base = int64(1772355600000) // 2026-03-01T09:00:00Z, a multiple of the 5s slide
	transfer := func(p int32, account string, ms int64, amount int) *kgo.Record {
		return &kgo.Record{Topic: anomaly.TransfersTopic, Partition: p,
			Value: fmt.Appendf(nil, `{"time":%d,"account":%q,"amount":%d}`, ms, account, amount)}
	}
	kafkatest.Produce(t, addrs, transfer(2, "acct-quiet", base+1000, 60000), transfer(2, "acct-quiet", base+2000, 60000))

	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() { // partitions 0 and 1 stay busy, 1s of event time every 50ms
		defer close(fed)
		for ms := base; ; ms += 1000 {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			kafkatest.Produce(t, addrs, transfer(0, "acct-a", ms, 1000), transfer(1, "acct-b", ms, 1000))
		}
	}()
	defer func() { close(stop); <-fed }()

	want := []string{
		`{"detector":"transfer-sum","key":"acct-quiet","time":"2026-03-01T09:00:04.999Z","time_ms":1772355604999,"sum":120000,"limit":100000,"window_start_ms":1772355595000,"window_end_ms":1772355605000}`,
		`{"detector":"transfer-sum","key":"acct-quiet","time":"2026-03-01T09:00:09.999Z","time_ms":1772355609999,"sum":120000,"limit":100000,"window_start_ms":1772355600000,"window_end_ms":1772355610000}`,
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		var got []string
		for _, r := range kafkatest.ReadCommitted(t, addrs, anomaly.AlertsTopic, 2, 30*time.Second) {
			if strings.HasPrefix(string(r.Value), `{"detector":"transfer-sum"`) { // not the large transfers
				got = append(got, string(r.Value))
			}
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			break
		}
		if len(got) > len(want) || time.Now().After(deadline) {
			st := jobStatus(t, c, id)
			t.Fatalf("alerts (job %s, failure %q)\n%s\nwant\n%s", st.State, st.Failure, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if r := runWeir(t, "job", "cancel", id, "--jobmanager", c.JobManagerAddrs); r.ExitCode != 0 {
		t.Fatalf("cancel: exit %d: %s", r.ExitCode, r.Stderr)
	}
}
