package anomaly

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/connectors/kafka/kafkatest"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
)

// produceSample writes the lines of a sample file as records to a topic
// of parts partitions, keyed by the JSON field key (see
// kafkatest.ProduceLines).
func produceSample(t *testing.T, addrs []string, topic string, parts int32, path, keyField string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	return kafkatest.ProduceLines(t, addrs, topic, parts, lines, func(l string) string {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil {
			return ""
		}
		k, _ := m[keyField].(string)
		return k
	})
}

var originRE = regexp.MustCompile(`"([ab]_)?source":"([^"/]+/\d+)","([ab]_)?line":(\d+)`)

// asFileOrigins rewrites the Kafka origins of an output line (topic,
// partition, offset) into the sample file's (name, line).
func asFileOrigins(t *testing.T, l, file string, lines map[string]int) string {
	return originRE.ReplaceAllStringFunc(l, func(m string) string {
		sub := originRE.FindStringSubmatch(m)
		n, ok := lines[sub[2]+":"+sub[4]]
		if !ok {
			t.Errorf("no sample line for %s offset %s", sub[2], sub[4])
		}
		return `"` + sub[1] + `source":"` + file + `","` + sub[3] + `line":` + strconv.Itoa(n)
	})
}

// partLines returns the lines of the committed part files under dir.
func partLines(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), "part-") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out = append(out, strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")...)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// TestKafkaInAndOutGivesTheSampleAlerts runs each job (impossible-travel
// without its blacklist, which is a file) at parallelism 1 from a topic
// holding its sample file's lines, keyed, in three partitions, to an
// alerts topic: a read-committed consumer reads exactly the alerts of the
// file input, and the bad records are dead letters under output.
func TestKafkaInAndOutGivesTheSampleAlerts(t *testing.T) {
	for _, j := range []struct{ job, topic, sample, key string }{
		{AnomalyDetection, EventsTopic, "events.jsonl", "user"},
		{TransferMonitor, TransfersTopic, "transfers.jsonl", "account"},
		{ImpossibleTravel, CardUsesTopic, "card-uses.jsonl", "card"},
	} {
		t.Run(j.job, func(t *testing.T) {
			c := kafkatest.Start(t, map[string]int32{j.topic: 3, AlertsTopic: 2})
			addrs := c.ListenAddrs()
			lines := produceSample(t, addrs, j.topic, 3, filepath.Join("testdata", j.sample), j.key)
			out := t.TempDir()
			g, err := jobs.Build(j.job, 1, map[string]string{"source": "kafka", "sink": "kafka", "bounded": "true",
				"kafka-brokers": addrs[0], "output": out})
			if err != nil {
				t.Fatal(err)
			}
			if len(g.Vertices) != 1 {
				t.Fatalf("%d vertices, want the whole job chained", len(g.Vertices))
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
			for _, r := range kafkatest.ReadCommitted(t, addrs, AlertsTopic, 2, 30*time.Second) {
				var a struct {
					Detector string `json:"detector"`
					Key      string `json:"key"`
				}
				if err := json.Unmarshal(r.Value, &a); err != nil || string(r.Key) != a.Key ||
					len(r.Headers) != 1 || string(r.Headers[0].Value) != a.Detector {
					t.Errorf("alert %s key %q headers %v: %v", r.Value, r.Key, r.Headers, err)
				}
				got = append(got, asFileOrigins(t, string(r.Value), j.sample, lines))
			}
			for _, l := range partLines(t, out) {
				got = append(got, asFileOrigins(t, l, j.sample, lines))
			}
			slices.Sort(got)
			data, err := os.ReadFile(filepath.Join("testdata", "expected-"+j.job+".jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			want := slices.DeleteFunc(strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"), func(l string) bool {
				return strings.HasPrefix(l, `{"detector":"blacklist"`)
			})
			if !slices.Equal(got, want) {
				t.Errorf("alerts and dead letters\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestAlertsToAWebhookAndSlack sends transfer-monitor's sample alerts to
// an HTTP receiver, as JSON with idempotency keys and as Slack messages.
func TestAlertsToAWebhookAndSlack(t *testing.T) {
	for _, sink := range []string{"webhook", "slack"} {
		t.Run(sink, func(t *testing.T) {
			var mu sync.Mutex
			var got []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				defer mu.Unlock()
				if sink == "slack" {
					var m struct {
						Text string `json:"text"`
					}
					if err := json.Unmarshal(body, &m); err != nil {
						http.Error(w, err.Error(), http.StatusBadRequest)
						return
					}
					got = append(got, strings.Split(m.Text, "\n")...)
					return
				}
				var batch []struct {
					Key    string `json:"idempotency_key"`
					Record struct {
						Detector string `json:"detector"`
						Key      string `json:"key"`
						TimeMs   int64  `json:"time_ms"`
					} `json:"record"`
				}
				if err := json.Unmarshal(body, &batch); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				for _, a := range batch {
					got = append(got, fmt.Sprintf("%s %s/%s/%d", a.Key, a.Record.Detector, a.Record.Key, a.Record.TimeMs))
				}
			}))
			defer srv.Close()
			t.Setenv("WEIR_TEST_ANOMALY_WEBHOOK", srv.URL)
			g, err := jobs.Build(TransferMonitor, 1, map[string]string{"input": filepath.Join("testdata", "transfers.jsonl"),
				"output": t.TempDir(), "sink": sink, "webhook-url-env": "WEIR_TEST_ANOMALY_WEBHOOK", "webhook-linger": "5ms"})
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
			mu.Lock()
			defer mu.Unlock()
			slices.Sort(got)
			if len(got) != 3 {
				t.Fatalf("%d alerts delivered, want the sample's 3: %q", len(got), got)
			}
			for i, want := range []string{"large-transfer", "small-transfer", "transfer-sum"} {
				prefix := want + "/acct-"
				if sink == "slack" {
					prefix = ":rotating_light: " + want + " alert on acct-"
				}
				if !strings.HasPrefix(got[i], prefix) {
					t.Errorf("alert %d: %q, want it to start with %q", i, got[i], prefix)
				}
				if k, rest, _ := strings.Cut(got[i], " "); sink == "webhook" && !strings.HasPrefix(k, rest+"/") {
					t.Errorf("idempotency key %q of alert %s", k, rest)
				}
			}
		})
	}
}
