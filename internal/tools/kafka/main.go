// Command kafka is a development Kafka for trying Weir's Kafka connectors
// by hand (`make kafka`): franz-go's in-process kfake broker, plus small
// producer and consumer commands for the README's walkthrough. It keeps
// everything in memory and is not a production broker.
//
//	kafka serve   [--listen 127.0.0.1:9092] [--topic name:partitions]...
//	kafka produce-walkthrough [--brokers ...] [--topic transactions] [--count 500] [--format json|csv]
//	kafka produce-lines [--brokers ...] --topic events [--key field] [--skip-header] file...
//	kafka consume [--brokers ...] --topic alerts [--count N] [--timeout 30s]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/jobs/anomaly"
	"github.com/weirstream/weir/jobs/fraud"
	"github.com/weirstream/weir/jobs/threshold"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "produce-walkthrough":
		err = produce(os.Args[2:])
	case "produce-lines":
		err = produceLines(os.Args[2:])
	case "consume":
		err = consume(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafka:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: kafka serve|produce-walkthrough|produce-lines|consume [flags] (-h for the flags)")
	os.Exit(2)
}

type topicsFlag []string

func (t *topicsFlag) String() string     { return strings.Join(*t, ",") }
func (t *topicsFlag) Set(v string) error { *t = append(*t, v); return nil }

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9092", "address to listen on")
	var topics topicsFlag
	fs.Var(&topics, "topic", "topic to create, name:partitions (repeatable; default: the jobs' default topics, 4 partitions each)")
	fs.Parse(args)
	if len(topics) == 0 {
		for _, t := range []string{fraud.TransactionsTopic, fraud.AlertsTopic, anomaly.EventsTopic, anomaly.TransfersTopic,
			anomaly.CardUsesTopic, anomaly.AlertsTopic, threshold.TransactionsTopic, threshold.AlertsTopic} {
			topics = append(topics, t+":4")
		}
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return fmt.Errorf("--listen %q: %w", *listen, err)
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, *listen) })}
	for _, t := range topics {
		name, n, ok := strings.Cut(t, ":")
		parts, err := strconv.Atoi(n)
		if !ok || err != nil || parts < 1 || name == "" {
			return fmt.Errorf("--topic %q: want name:partitions", t)
		}
		opts = append(opts, kfake.SeedTopics(int32(parts), name))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Printf("development Kafka (in memory) listening on %s with topics %s; Ctrl-C stops it\n", strings.Join(c.ListenAddrs(), ","), topics.String())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return nil
}

func client(brokers string, opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(strings.Split(brokers, ",")...)}, opts...)...)
}

func produce(args []string) error {
	fs := flag.NewFlagSet("produce-walkthrough", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated brokers")
	topic := fs.String("topic", fraud.TransactionsTopic, "topic to write")
	count := fs.Int64("count", 500, "transactions (the walkthrough's 50, looping)")
	format := fs.String("format", "json", "json or csv")
	fs.Parse(args)
	if *format != "json" && *format != "csv" {
		return fmt.Errorf("--format %q: use json or csv", *format)
	}
	cl, err := client(*brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs := make([]*kgo.Record, 0, *count)
	for i := range *count {
		tx := fraud.WalkthroughTransaction(i)
		v := fraud.AppendTransactionJSON(nil, tx)
		if *format == "csv" {
			v = fmt.Appendf(nil, "%d,%d,%s", tx.AccountID, tx.Timestamp, strconv.FormatFloat(tx.Amount, 'f', -1, 64))
		}
		// Keyed by account: an account's transactions stay in order.
		rs = append(rs, &kgo.Record{Topic: *topic, Key: strconv.AppendInt(nil, tx.AccountID, 10), Value: v})
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		return fmt.Errorf("producing to %s at %s: %w", *topic, *brokers, err)
	}
	fmt.Printf("produced %d transactions to %s\n", *count, *topic)
	return nil
}

// produceLines writes each line of the files as a record, keyed by a
// JSON field so that one key's lines stay in order in one partition.
func produceLines(args []string) error {
	fs := flag.NewFlagSet("produce-lines", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated brokers")
	topic := fs.String("topic", "", "topic to write (required)")
	key := fs.String("key", "", "JSON field whose string value keys each record (default: no key)")
	skipHeader := fs.Bool("skip-header", false, "leave out each file's first line (a CSV header)")
	fs.Parse(args)
	if *topic == "" || fs.NArg() == 0 {
		return errors.New("produce-lines needs --topic and at least one file")
	}
	var rs []*kgo.Record
	for _, path := range fs.Args() {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		if *skipHeader && len(lines) > 0 {
			lines = lines[1:]
		}
		for _, l := range lines {
			r := &kgo.Record{Topic: *topic, Value: []byte(strings.TrimSuffix(l, "\r"))}
			if *key != "" {
				var m map[string]any
				if json.Unmarshal(r.Value, &m) == nil {
					if k, ok := m[*key].(string); ok {
						r.Key = []byte(k)
					}
				}
			}
			rs = append(rs, r)
		}
	}
	cl, err := client(*brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		return fmt.Errorf("producing to %s at %s: %w", *topic, *brokers, err)
	}
	fmt.Printf("produced %d records to %s\n", len(rs), *topic)
	return nil
}

func consume(args []string) error {
	fs := flag.NewFlagSet("consume", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated brokers")
	topic := fs.String("topic", fraud.AlertsTopic, "topic to read")
	count := fs.Int("count", 0, "stop after this many records (0: at --timeout)")
	timeout := fs.Duration("timeout", 30*time.Second, "stop after this long")
	fs.Parse(args)
	cl, err := client(*brokers, kgo.ConsumeTopics(*topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	n := 0
	for *count == 0 || n < *count {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				ferr = fmt.Errorf("reading %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		fetches.EachRecord(func(r *kgo.Record) {
			n++
			fmt.Printf("%s\t%s\n", r.Key, r.Value)
		})
	}
	fmt.Fprintf(os.Stderr, "%d records\n", n)
	return nil
}
