package threshold

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/connectors/kafka/kafkatest"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
)

// TestKafkaInAndOut runs the job on the sample's rows as Kafka records,
// as CSV and as JSON, into an alerts topic: a read-committed consumer
// reads the sample's three alerts keyed by customer, and the rows that do
// not decode are dead letters under output naming topic, partition and
// offset.
func TestKafkaInAndOut(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "transactions.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")[1:]
	for _, format := range []string{"csv", "json"} {
		t.Run(format, func(t *testing.T) {
			c := kafkatest.Start(t, map[string]int32{TransactionsTopic: 2, AlertsTopic: 1})
			addrs := c.ListenAddrs()
			var rs []*kgo.Record
			for i, row := range rows {
				v := []byte(row)
				if format == "json" {
					f := strings.SplitN(row, ",", 3)
					for len(f) < 3 {
						f = append(f, "")
					}
					amount, _ := json.Marshal(strings.Trim(f[2], `"`))
					v = fmt.Appendf(nil, `{"transaction_id":%q,"customer_id":%q,"amount":%s}`, f[0], f[1], amount)
				}
				rs = append(rs, &kgo.Record{Topic: TransactionsTopic, Partition: int32(i % 2), Value: v})
			}
			kafkatest.Produce(t, addrs, rs...)
			out := t.TempDir()
			g, err := jobs.Build(Name, 1, map[string]string{"source": "kafka", "sink": "kafka", "format": format,
				"bounded": "true", "kafka-brokers": addrs[0], "output": out})
			if err != nil {
				t.Fatal(err)
			}
			task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{Stdout: io.Discard, LatencyInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := task.Run(ctx); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range kafkatest.ReadCommitted(t, addrs, AlertsTopic, 1, 30*time.Second) {
				var a struct {
					Key      string `json:"key"`
					Evidence struct {
						ID     string  `json:"transaction_id"`
						Amount float64 `json:"amount"`
						Source string  `json:"source"`
					} `json:"evidence"`
				}
				if err := json.Unmarshal(r.Value, &a); err != nil || string(r.Key) != a.Key ||
					!strings.HasPrefix(a.Evidence.Source, TransactionsTopic+"/") {
					t.Errorf("alert %s key %q: %v", r.Value, r.Key, err)
				}
				got = append(got, fmt.Sprintf("%s %s %g", a.Evidence.ID, a.Key, a.Evidence.Amount))
			}
			slices.Sort(got)
			if want := "tx1002 cust2 9200,tx1005 cust4 15000.75,tx1010 cust6 12000"; strings.Join(got, ",") != want {
				t.Errorf("alerts %q, want %q", strings.Join(got, ","), want)
			}
			// As from the file: not-a-number, a row without an amount, an
			// empty customer, and "8,500.00".
			const wantDead = 4
			var dead []string
			matches, _ := filepath.Glob(filepath.Join(out, DeadLetterDir, "part-*"))
			for _, m := range matches {
				b, err := os.ReadFile(m)
				if err != nil {
					t.Fatal(err)
				}
				dead = append(dead, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")...)
			}
			if len(dead) != wantDead {
				t.Fatalf("dead letters %q, want %d", dead, wantDead)
			}
			for _, d := range dead {
				if !strings.Contains(d, `"source":"`+TransactionsTopic+`/`) || !strings.Contains(d, `"reason":`) {
					t.Errorf("dead letter %s", d)
				}
			}
		})
	}
}
