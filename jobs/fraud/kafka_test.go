package fraud

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/connectors/kafka/kafkatest"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
)

// TestKafkaInAndOut runs the job from a transactions topic to an alerts
// topic, with a bad record that goes to the dead-letter topic.
func TestKafkaInAndOut(t *testing.T) {
	for _, format := range []string{"json", "csv"} {
		t.Run(format, func(t *testing.T) {
			c := kafkatest.Start(t, map[string]int32{"transactions": 3, "alerts": 2, "bad": 1})
			addrs := c.ListenAddrs()
			var rs []*kgo.Record
			for i := range int64(500) {
				tx := WalkthroughTransaction(i)
				v := AppendTransactionJSON(nil, tx)
				if format == "csv" {
					v = fmt.Appendf(nil, "%d,%d,%g", tx.AccountID, tx.Timestamp, tx.Amount)
				}
				// One account's transactions stay in order: key by account.
				rs = append(rs, &kgo.Record{Topic: "transactions", Partition: int32(tx.AccountID % 3), Value: v})
			}
			rs = append(rs, &kgo.Record{Topic: "transactions", Partition: 0, Value: []byte("not a transaction")})
			kafkatest.Produce(t, addrs, rs...)

			g, err := jobs.Build(Name, 1, map[string]string{"source": "kafka", "sink": "kafka", "format": format,
				"bounded": "true", "kafka-brokers": addrs[0], "dead-letter-topic": "bad"})
			if err != nil {
				t.Fatal(err)
			}
			for v := range g.Vertices {
				task, err := runtime.NewTask(g, v, 0, runtime.TaskIO{})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				err = task.Run(ctx)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
			}
			alerts := kafkatest.ReadCommitted(t, addrs, "alerts", 2, 30*time.Second)
			if len(alerts) != 10 {
				t.Fatalf("%d alerts, want 10 (one per walkthrough cycle)", len(alerts))
			}
			for _, r := range alerts {
				var a struct {
					AccountID int64 `json:"account_id"`
				}
				if err := json.Unmarshal(r.Value, &a); err != nil || a.AccountID != 3 || string(r.Key) != "3" {
					t.Fatalf("alert %q key %q: %v", r.Value, r.Key, err)
				}
			}
			dead := kafkatest.ReadCommitted(t, addrs, "bad", 1, 30*time.Second)
			if len(dead) != 1 || !strings.Contains(string(dead[0].Value), `"offset":`) || !strings.Contains(string(dead[0].Value), "not a transaction") {
				t.Fatalf("dead letters %v", dead)
			}
		})
	}
}
