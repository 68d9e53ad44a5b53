package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/connectors/kafka/kafkatest"
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
