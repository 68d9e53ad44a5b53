package fraud

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// TestAlertsToAWebhook runs the walkthrough into an HTTP receiver whose
// URL comes from an environment variable: every alert arrives with a key
// made of its account and transaction time.
func TestAlertsToAWebhook(t *testing.T) {
	var mu sync.Mutex
	keys := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []struct {
			Key    string `json:"idempotency_key"`
			Record struct {
				AccountID int64 `json:"account_id"`
			} `json:"record"`
		}
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, a := range batch {
			if a.Record.AccountID != 3 {
				http.Error(w, "unexpected account", http.StatusBadRequest)
				return
			}
			keys[a.Key]++
		}
	}))
	defer srv.Close()
	t.Setenv("WEIR_TEST_FRAUD_WEBHOOK", srv.URL+"/alerts?token=abc")
	g, err := jobs.Build(Name, 1, map[string]string{"rate": "0", "count": "500", "sink": "webhook",
		"webhook-url-env": "WEIR_TEST_FRAUD_WEBHOOK", "webhook-linger": "5ms"})
	if err != nil {
		t.Fatal(err)
	}
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 10 {
		t.Fatalf("%d distinct alerts delivered, want 10: %v", len(keys), keys)
	}
	for k, n := range keys {
		if n != 1 || !strings.HasPrefix(k, "fraud/3/") {
			t.Fatalf("alert key %q delivered %d times", k, n)
		}
	}
}
