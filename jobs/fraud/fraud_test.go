package fraud

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/statebackend/pebblestate"
)

// runChained runs the job at parallelism 1, where it is one chained task.
func runChained(t *testing.T, params map[string]string) string {
	t.Helper()
	g, err := jobs.Build(Name, 1, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Vertices) != 1 {
		t.Fatalf("%d vertices at parallelism 1, want one chain", len(g.Vertices))
	}
	var out bytes.Buffer
	task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := task.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestWalkthroughAlertsOncePerCycleForAccount3(t *testing.T) {
	// Ten cycles of the 50 walkthrough transactions, as fast as possible.
	got := runChained(t, map[string]string{"rate": "0", "count": "500"})
	if want := strings.Repeat("Alert{id=3}\n", 10); got != want {
		t.Errorf("output %q, want ten Alert{id=3} lines", got)
	}
}

func TestTimeoutClearsTheFlag(t *testing.T) {
	// At 10 records/s, account 3's small charge (record 23) comes 500 ms
	// before its large one (record 28): a 20 ms timeout forgets it, with
	// room for a loaded machine to run the timer late.
	got := runChained(t, map[string]string{"rate": "10", "count": "30", "timeout": "20ms"})
	if got != "" {
		t.Errorf("output %q, want no alert once the timer has cleared the flag", got)
	}
}

func TestWalkthroughDataIsFlinks(t *testing.T) {
	// The alert in each cycle comes from record 28 (index 27): 0.80, then 871.15.
	if tx := WalkthroughTransaction(22); tx.AccountID != 3 || tx.Amount != 0.80 {
		t.Errorf("record 23: %+v", tx)
	}
	if tx := WalkthroughTransaction(77); tx.AccountID != 3 || tx.Amount != 871.15 {
		t.Errorf("record 78: %+v", tx)
	}
	if d := WalkthroughTransaction(1).Timestamp - WalkthroughTransaction(0).Timestamp; d != 6*60*1000 {
		t.Errorf("timestamps %d ms apart, want six minutes", d)
	}
}

func TestInvalidParameters(t *testing.T) {
	for params, want := range map[string]string{
		"source=pulsar":            `"pulsar" is not a source`,
		"sink=email":               `"email" is not a sink`,
		"sink=slack":               "needs webhook-url-env or webhook-url-file",
		"start=first":              "use earliest, latest, committed or timestamp",
		"delivery=twice":           "use exactly-once, at-least-once or none",
		"format=xml":               `"xml": use json or csv`,
		"kafka-brokers=a b":        "is not host:port",
		"kafka-sasl-mechanism=MD5": "SASL mechanism",
		"transaction-timeout=-1s":  "must be positive",
		"rate=fast":                `rate="fast": want a number`,
		"rate=-1":                  "must be 0 (unlimited) or positive",
		"timeout=soon":             "want a duration",
		"accounts=0":               "must be at least 1",
		"colour=blue":              "unknown parameter(s) colour",
		"count=-5":                 "must be 0 (unbounded) or positive",
	} {
		k, v, _ := strings.Cut(params, "=")
		_, err := jobs.Build(Name, 1, map[string]string{k: v})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to contain %q", params, err, want)
		}
	}
	if _, err := jobs.Build("no-such-job", 1, nil); err == nil || !strings.Contains(err.Error(), "fraud-detection") {
		t.Errorf("unknown job: error %v, want it to name the known jobs", err)
	}
}

func TestCodecsRoundTrip(t *testing.T) {
	tx := Transaction{AccountID: 123456789, Timestamp: -42, Amount: 871.15}
	got, err := TransactionCodec{}.Decode(TransactionCodec{}.Append(nil, tx))
	if err != nil || got != tx {
		t.Errorf("round trip %+v -> %+v, %v", tx, got, err)
	}
	if _, err := (TransactionCodec{}).Decode([]byte{1, 2}); err == nil {
		t.Error("truncated transaction decoded without error")
	}
}

// BenchmarkDetectorChained measures the fraud detector chained behind the
// random source, one goroutine: the per-record cost of the hot path.
func BenchmarkDetectorChained(b *testing.B) {
	g, err := jobs.Build(Name, 1, map[string]string{"source": "random", "rate": "0", "count": "2000000"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var out bytes.Buffer
		task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{Stdout: &out, LatencyInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		if err := task.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(2_000_000*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDetectorStateHeavy is the state-heavy variant of
// BenchmarkDetectorChained: small=large=1000 and timeout=1h make every
// transaction clear and set the account's flag, delete its timer and
// register a new one, so the detector writes state and timers on every
// event. Run it with -cpu 1 for the one-core figure; WEIR_BENCH_EVENTS
// changes the events per run (10 M accounts need far more than 2 M events
// to reach a steady state), WEIR_STATE_MEMORY the pebble stores' memory
// budget (as --state-memory; default: the fixed sizes of a store without
// one), WEIR_TIMER_SERVICE its timer service (store or heap). events/cpu-s counts the process's user and system time, Pebble's
// background flushes and compactions included: on a shared machine it
// compares where events/s does not.
func BenchmarkDetectorStateHeavy(b *testing.B) {
	events := int64(2_000_000)
	if s := os.Getenv("WEIR_BENCH_EVENTS"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("WEIR_BENCH_EVENTS: %v", err)
		}
		events = n
	}
	for _, backend := range []string{runtime.StateBackendMemory, runtime.StateBackendPebble} {
		for _, accounts := range []int64{100_000, 10_000_000} {
			b.Run(fmt.Sprintf("backend=%s/accounts=%d", backend, accounts), func(b *testing.B) {
				stateHeavy(b, backend, accounts, events)
			})
		}
	}
}

func stateHeavy(b *testing.B, backend string, accounts, events int64) {
	{
		{
			g, err := jobs.Build(Name, 1, map[string]string{"source": "random", "rate": "0", "count": fmt.Sprint(events),
				"accounts": fmt.Sprint(accounts), "small": "1000", "large": "1000", "timeout": "1h"})
			if err != nil {
				b.Fatal(err)
			}
			var budget *pebblestate.Budget
			if s := os.Getenv("WEIR_STATE_MEMORY"); s != "" {
				n, err := pebblestate.ParseBytes(s)
				if err != nil {
					b.Fatalf("WEIR_STATE_MEMORY: %v", err)
				}
				if budget, err = pebblestate.NewBudget(n); err != nil {
					b.Fatal(err)
				}
				defer budget.Close()
			}
			timers, err := runtime.ParseTimerService(os.Getenv("WEIR_TIMER_SERVICE"))
			if err != nil {
				b.Fatalf("WEIR_TIMER_SERVICE: %v", err)
			}
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				var out bytes.Buffer
				task, err := runtime.NewTask(g, 0, 0, runtime.TaskIO{Stdout: &out, LatencyInterval: -1,
					StateBackend: runtime.StateBackend{Kind: backend, Dir: b.TempDir(), Memory: budget, Timers: timers}})
				if err != nil {
					b.Fatal(err)
				}
				if err := task.Run(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(events*int64(b.N))/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(events*int64(b.N))/(cpuTime()-cpu0).Seconds(), "events/cpu-s")
		}
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
