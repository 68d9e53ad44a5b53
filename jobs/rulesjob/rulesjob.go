// Package rulesjob is the job "rules": the rule engine of package rules on
// a cluster. Rules are data (YAML, see README "Rules"); the job is fixed:
//
//	input (files, a generator or Kafka) -> parse with the declared schema
//	  (bad records to dead letters with the reason) -> event time
//	  -> route (keyed by a spread of the events): one copy of each event per
//	     distinct rule key of the set in force at its time, not per rule
//	  -> evaluate (keyed by the rule key's fields and values)
//	  -> alerts as JSON lines -> sinks
//
// The rule set comes from a rule source (the rules parameter; with etcd,
// the job's entries in package rules/store, watched: live.go) as Change
// records broadcast to the router and the evaluator and kept in broadcast
// state, so checkpoints and savepoints carry it. A Change's event time is
// the time it applies from, and the rule source's watermark follows its
// records, so no event is routed or evaluated before every change that
// applies to it has arrived: all subtasks agree on which events saw which
// rule version.
//
// Rules need each key's events in event-time order, which is what `weir
// rules test` gives them: the evaluator buffers each key's events in keyed
// state until the watermark passes their time, and then evaluates them in
// (time, file, line) order, firing the rules' own timers in between
// exactly as the local engine does (a timer at t fires after the events at
// t and before those at t+1). So the alerts of a run equal those of `weir
// rules test` on the same data.
//
// The per-key state of the rules themselves (windows, profiles, partial
// sequence matches) is in the evaluator's keyed state, encoded per rule
// (rules.KeyStates), and the rules' timers are the runtime's event-time
// timers of the key: checkpoints, savepoints, restores and rescales carry
// both. Each rule's state is stored under its ID and state shape, so a
// rule change that keeps the shape (a tuned threshold) keeps the state,
// one that changes it (another window) starts the rule empty for each key
// and reports so on <output>/rule-state, and the other rules of the key
// are not touched.
package rulesjob

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir/connectors"
	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/connectors/filesink"
	"github.com/weirstream/weir/connectors/kafka"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/jobs/connect"
	"github.com/weirstream/weir/jobs/fraud"
	"github.com/weirstream/weir/rules"
	"github.com/weirstream/weir/runtime"
)

// Name is the job's registered name.
const Name = "rules"

// The default Kafka topics.
const (
	EventsTopic = "events"
	AlertsTopic = "alerts"
)

// The directories under output.
const (
	AlertsDir      = "alerts"
	ShadowDir      = "shadow"
	TimeoutsDir    = "timeouts"
	DecisionsDir   = "decisions"
	DeciderUID     = "decide"
	DeadLetterDir  = "dead-letters"
	RuleErrorDir   = "rule-errors"
	LateDir        = "late"
	LateRulesDir   = "late-rules"
	RuleStateDir   = "rule-state"
	EvaluatorUID   = "evaluate-rules"
	RuleSourceUID  = "rule-set"
	RouterUID      = "route-by-rule-key"
	EventSourceUID = "events"
)

func init() {
	ps := []jobs.Param{
		{Name: "rules", Type: jobs.Path, Description: "a rule file or a directory of *.yaml/*.yml rule files (README, Rules), loaded at start by every process; a refused rule fails the submission with its line and reason. Required without etcd"},
		{Name: "etcd", Type: jobs.String, Description: "etcd endpoints (comma-separated): follow the rules stored under /weir/<cluster-id>/jobs/<job id>/rules/ (weir rules put/pause/resume/shadow/delete/rollback); the rules parameter's rules are stored there at start if absent"},
		{Name: "rules-name", Type: jobs.String, Description: "with etcd: the name the rules are kept under, /weir/<cluster-id>/jobs/<rules-name>/ (default: the job's ID); give one to keep following the same rules after a stop with a savepoint and a new submission, which gets a new ID"},
		{Name: "cluster-id", Type: jobs.String, Default: "default", Description: "with etcd: the cluster ID the rules are kept under (the --cluster-id of the weir rules commands)"},
		{Name: "rules-clock", Type: jobs.String, Default: "wall", Description: "with etcd: wall (a change applies from the event time it was put at; events wait rules-lag behind the wall clock for changes) or marks (a change applies from its --at; events wait for weir rules mark)"},
		{Name: "rules-lag", Type: jobs.Duration, Default: "1s", Description: "rules-clock=wall: how far behind the wall clock the rule watermark trails (the longest a put may take to reach the job and still apply from its time)"},
		{Name: "source", Type: jobs.String, Default: "files", Description: "files: JSON-lines or CSV files of `input`; walkthrough: Flink's walkthrough transactions {accountId, amount, ts} looping from one subtask; random: {accountId, amount, ts} uniform over `accounts`, one subtask per parallel instance, event time the wall clock; kafka: records of source-topic"},
		{Name: "input", Type: jobs.Path, Description: "source=files: a file, or a directory whose files (not starting with . or _) are read in name order"},
		{Name: "schema", Type: jobs.String, Description: "the events' declared fields, name:type,... (types string, number, bool, time; name:type? for an optional field): an event lacking a field or with another type is a dead letter; with format=csv, the header columns read and their types (required)"},
		{Name: "time-field", Type: jobs.String, Default: rules.DefaultTimeField, Description: "the field holding the event time, in Unix ms or RFC 3339"},
		{Name: "output", Type: jobs.Path, Required: true, Description: "directory or s3://bucket/prefix URL: alerts (and rule-drift alerts) go exactly once to <output>/alerts/, the rule_stats stream to <output>/rule-stats/, shadow rules' alerts to <output>/shadow/, sequences' timed-out partial matches (pattern.onTimeout) to <output>/timeouts/, one decision per event on which rules with emit.priority fired to <output>/decisions/, records that do not parse to <output>/dead-letters/, events a rule fails on to <output>/rule-errors/ with the reason, events behind the watermark to <output>/late/ (with a rule that has lateness in the set, to <output>/late-rules/ per rule key that did not take them), a line per key whose rule state a change of the rule's state shape dropped to <output>/rule-state/"},
		{Name: "sink", Type: jobs.String, Default: "files", Description: "where alerts go besides <output>/alerts: files (nowhere else), print (stdout of the TaskManagers), kafka (sink-topic), webhook or slack"},
		{Name: "out-of-orderness", Type: jobs.Duration, Default: "5s", Description: "how far an event may arrive behind the newest one seen; the watermark trails by this much, and alerts wait for it"},
		{Name: "monitor", Type: jobs.Duration, Default: "0s", Description: "source=files: 0 reads the input and finishes; above 0, lists the input directory this often and reads new files, never finishing"},
		{Name: "append", Type: jobs.Bool, Default: "false", Description: "add to an output directory holding another job's part files (a fresh job refuses one otherwise)"},
		{Name: "rate", Type: jobs.Float, Description: "source=walkthrough|random: records per second per source subtask, 0 = as fast as possible (default 10 for walkthrough, 0 for random)"},
		{Name: "count", Type: jobs.Int, Default: "0", Description: "source=walkthrough|random: records per source subtask before it finishes (0 = unbounded)"},
		{Name: "accounts", Type: jobs.Int, Default: "100000", Description: "source=random: the number of accounts"},
		{Name: "stats-interval", Type: jobs.Duration, Default: "1m", Description: "the interval of event time of the rule_stats stream: each rule version's evaluations, hits, errors and evaluation time per interval, and its keys in state at the interval's end, summed over the subtasks, as JSON lines under <output>/rule-stats/"},
		{Name: "drift-factor", Type: jobs.Float, Default: "0", Description: "above 1: a rule-drift alert (in <output>/alerts/) when a rule version's hit rate in an interval is at least this many times its baseline, or at most its 1/factor; 0 = no drift alerts"},
		{Name: "drift-window", Type: jobs.Int, Default: "10", Description: "the baseline of drift-factor: the hit rate over this many of the rule version's previous intervals (those it evaluated anything in)"},
		{Name: "drift-min-evaluations", Type: jobs.Int, Default: "100", Description: "drift-factor: both the interval and the baseline need at least this many evaluations"},
	}
	for _, p := range connect.Params(EventsTopic, AlertsTopic) {
		if p.Name == "format" {
			p.Description = "json (JSON lines / records) or csv (a header line per file, read with the schema; with source=kafka, fields in the schema's order)"
		}
		ps = append(ps, p)
	}
	jobs.Register(jobs.Job{
		Name: Name,
		Description: "rules as data: the rules of `rules` (YAML) evaluated on events in event time, one keyed operator " +
			"input per distinct rule key; alerts as JSON lines exactly once under <output>/alerts, bad records to dead letters",
		Params: ps,
		Build:  Build,
	})
}

// Config is the job's parameters.
type Config struct {
	Rules          string
	Set            *rules.Set
	Source         string
	Input          string
	Format         string
	Schema         Schema
	TimeField      string
	Output         string
	Sink           string
	OutOfOrderness time.Duration
	Monitor        time.Duration
	Append         bool
	Rate           float64
	Count          int64
	Accounts       int64
	IO             connect.IO
	Live           *liveConfig // nil without etcd
	Stats          StatsConfig
}

func parseConfig(p *runtime.Params) Config {
	c := Config{
		Rules:          p.String("rules", ""),
		Source:         connect.Choice(p, "source", connect.Files),
		Input:          p.String("input", ""),
		TimeField:      p.String("time-field", rules.DefaultTimeField),
		Output:         p.String("output", ""),
		Sink:           connect.Choice(p, "sink", connect.Files),
		OutOfOrderness: p.Duration("out-of-orderness", 5*time.Second),
		Monitor:        p.Duration("monitor", 0),
		Append:         p.Bool("append", false),
		Count:          p.Int("count", 0),
		Accounts:       p.Int("accounts", 100000),
	}
	c.IO = connect.ParseIO(p, c.Sink, EventsTopic, AlertsTopic)
	c.Format = c.IO.Source.Format
	defRate := 0.0
	if c.Source == "walkthrough" {
		defRate = 10
	}
	c.Rate = p.Float("rate", defRate)
	if err := connectors.ValidateRate(c.Rate); err != nil {
		p.Errorf("rate", "%v", err)
	}
	if c.Count < 0 {
		p.Errorf("count", "%d must not be negative", c.Count)
	}
	if c.Accounts < 1 {
		p.Errorf("accounts", "%d must be at least 1", c.Accounts)
	}
	if c.TimeField == "" {
		p.Errorf("time-field", "must not be empty")
	}
	interval := p.Duration("stats-interval", defaultStatsInterval)
	c.Stats = StatsConfig{Interval: interval.Milliseconds(), DriftFactor: p.Float("drift-factor", 0),
		DriftWindow: int(p.Int("drift-window", 10)), DriftMinEvaluations: p.Int("drift-min-evaluations", 100)}
	if c.Stats.Interval < 1 {
		p.Errorf("stats-interval", "%v must be at least 1ms", interval)
	}
	if f := c.Stats.DriftFactor; f != 0 && !(f > 1 && f < math.Inf(1)) {
		p.Errorf("drift-factor", "%v must be above 1 (or 0: no drift alerts)", f)
	}
	if c.Stats.DriftWindow < 1 || c.Stats.DriftWindow > 10000 {
		p.Errorf("drift-window", "%d must be from 1 to 10000 intervals", c.Stats.DriftWindow)
	}
	if c.Stats.DriftMinEvaluations < 1 {
		p.Errorf("drift-min-evaluations", "%d must be at least 1", c.Stats.DriftMinEvaluations)
	}
	var err error
	if c.Schema, err = ParseSchema(p.String("schema", ""), c.TimeField); err != nil {
		p.Errorf("schema", "%v", err)
	}
	switch c.Source {
	case "files":
		if in, err := file.LocalPath(c.Input); err != nil {
			p.Errorf("input", "%v", err)
		} else {
			c.Input = in
		}
		if c.Format == "csv" && len(c.Schema.fields) == 0 {
			p.Errorf("schema", "format=csv needs a schema: the columns to read and their types")
		}
	case "kafka":
		if c.Format == "csv" && len(c.Schema.fields) == 0 {
			p.Errorf("schema", "format=csv needs a schema: the fields of each record, in order")
		}
	case "walkthrough", "random":
		if c.TimeField != rules.DefaultTimeField {
			p.Errorf("time-field", "source=%s writes the time to %q", c.Source, rules.DefaultTimeField)
		}
	default:
		p.Errorf("source", "%q is not a source: use files, walkthrough, random or kafka", c.Source)
	}
	connect.CheckChoice(p, "sink", c.Sink, connect.Files, "print", "kafka", "webhook", "slack")
	connect.CheckOutput(p, c.Output, "the alerts and dead letters")
	if c.OutOfOrderness < 0 {
		p.Errorf("out-of-orderness", "%v must not be negative", c.OutOfOrderness)
	}
	if c.Monitor < 0 {
		p.Errorf("monitor", "%v must be 0 (read once) or positive", c.Monitor)
	}
	etcd := p.String("etcd", "")
	cluster := p.String("cluster-id", "default")
	rulesName := p.String("rules-name", "")
	if strings.Contains(rulesName, "/") {
		p.Errorf("rules-name", "%q must not contain /", rulesName)
	}
	clock := p.String("rules-clock", "wall")
	lag := p.Duration("rules-lag", time.Second)
	if clock != "wall" && clock != "marks" {
		p.Errorf("rules-clock", "%q: use wall or marks", clock)
	}
	if lag < 0 {
		p.Errorf("rules-lag", "%v must not be negative", lag)
	}
	var specs []*rules.Spec
	if c.Rules == "" {
		if etcd == "" {
			p.Errorf("rules", "must not be empty without etcd: a rule file or directory")
			return c
		}
		c.Set = &rules.Set{}
	} else {
		specs, err = rules.LoadPath(c.Rules)
		if err == nil {
			c.Set, err = rules.Compile(specs)
		}
		switch {
		case err != nil:
			p.Errorf("rules", "refused:\n%v", err)
			c.Set = nil
		case len(c.Set.Rules) == 0 && etcd == "":
			p.Errorf("rules", "%s holds no rules", c.Rules)
		}
	}
	if etcd != "" {
		live := &liveConfig{cluster: cluster, name: rulesName, marks: clock == "marks", lag: lag, file: specs}
		for _, e := range strings.Split(etcd, ",") {
			if e = strings.TrimSpace(e); e != "" {
				live.endpoints = append(live.endpoints, e)
			}
		}
		c.Live = live
	}
	return c
}

func (c Config) dir(name string) string { return strings.TrimSuffix(c.Output, "/") + "/" + name }

// Build defines the job (see the package comment).
func Build(env *runtime.Env, p *runtime.Params) error {
	c := parseConfig(p)
	if c.Set == nil || !slices.Contains([]string{"files", "kafka", "walkthrough", "random"}, c.Source) {
		return nil // the parameter errors say why
	}
	env.SetMaxParallelism(128)
	records := readRecords(env, c)

	// The rule set: broadcast records stamped with the event time they
	// apply from, so the watermark of the router and the evaluator (the
	// lower of both inputs') lets no event through before the set in force
	// at its time has arrived. Without etcd, one record before any event.
	set, live, stats := c.Set, c.Live, c.Stats
	changes := runtime.FromSource(env, "rule-set", func() runtime.SourceFunction[Change] {
		if live != nil {
			return &liveSource{cfg: *live}
		}
		return &setSource{set: set, forever: continuous(c)}
	}, ChangeCodec{}).UID(RuleSourceUID).Parallelism(1)
	cws := runtime.ForMonotonousTimestamps(func(c Change) int64 { return c.From })
	if live == nil && continuous(c) {
		// The set is sent once: then the source is idle, and event time
		// is the events' alone (and stands still while they are idle).
		cws = cws.WithIdleness(time.Second)
	}
	changes = runtime.AssignTimestampsAndWatermarks(changes, cws).Parallelism(1)

	routed := runtime.ConnectBroadcast(runtime.KeyBy(records, runtime.Int64Key, bucketOf), runtime.Broadcast(changes),
		"route-by-rule-key", func() runtime.KeyedBroadcastProcessFunction[int64, Record, Change, Routed] {
			return &router{static: staticSet(set, live)}
		},
		RoutedCodec{}).UID(RouterUID)
	writeDeadLetters(c, runtime.SideOutput(routed, lateRecords), "late-files", LateDir)
	keyed := runtime.KeyBy(routed, runtime.StringKey, func(r Routed) string { return r.Key })
	evaluated := runtime.ConnectBroadcast(keyed, runtime.Broadcast(changes), "evaluate-rules",
		func() runtime.KeyedBroadcastProcessFunction[string, Routed, Change, alertLine] {
			return &evaluator{live: live, statsCfg: stats, static: staticSet(set, live)}
		},
		alertLineCodec{}).UID(EvaluatorUID)
	writeDeadLetters(c, runtime.SideOutput(evaluated, lateRecords), "late-rule-files", LateRulesDir)
	writeLines(c, runtime.SideOutput(evaluated, timeoutAlerts), "timeout-files", TimeoutsDir)
	decisions := runtime.Process(runtime.KeyBy(runtime.SideOutput(evaluated, decisionParts), runtime.StringKey, decisionPart.key),
		"decide", func() runtime.KeyedProcessFunction[string, decisionPart, string] { return &decider{} },
		runtime.StringCodec{}).UID(DeciderUID)
	writeLines(c, decisions, "decision-files", DecisionsDir)
	writeDeadLetters(c, runtime.SideOutput(evaluated, evalErrors), "rule-error-files", RuleErrorDir)
	writeLines(c, runtime.SideOutput(evaluated, ruleStateReports), "rule-state-files", RuleStateDir)

	// The rule_stats stream: the evaluators' counts summed per rule
	// version; the alerts, shadow ones too, pass through to meet the drift
	// alerts (stats.go), so that each output has one writer. The counts (a
	// few records per interval) take a task of their own, as a two-input
	// operator's inputs must come from two tasks.
	parts := runtime.KeyBy(runtime.Rebalanced(runtime.SideOutput(evaluated, statParts)), runtime.StringKey, StatPart.key)
	alerts := runtime.ProcessConnected(runtime.ConnectKeyed(parts, runtime.KeyBy(evaluated, runtime.StringKey, func(l alertLine) string { return l.Text })),
		"rule-stats", func() runtime.KeyedCoProcessFunction[string, StatPart, alertLine, string] {
			return &statistician{cfg: stats}
		},
		runtime.StringCodec{}).UID(StatisticianUID)
	writeLines(c, runtime.SideOutput(alerts, ruleStatLines), "rule-stats-files", RuleStatsDir)
	writeLines(c, runtime.SideOutput(alerts, shadowAlerts), "shadow-files", ShadowDir)

	writeLines(c, alerts, "alert-files", AlertsDir)
	switch c.Sink {
	case "print":
		runtime.SinkTo(alerts, "print-alerts", func() runtime.SinkFunction[string] {
			return &connectors.Print[string]{Format: func(s string) string { return s }}
		}).UID("print-alerts")
	case "kafka":
		runtime.SinkTo(alerts, "kafka-alerts", func() runtime.SinkFunction[string] {
			return connect.KafkaSink(c.IO.Sink, func(r *kgo.Record, line string) {
				r.Key = append(r.Key, alertID(line)...)
				r.Value = append(r.Value, line...)
			})
		}).UID("kafka-alerts")
	case "webhook", "slack":
		runtime.SinkTo(alerts, c.Sink+"-alerts", func() runtime.SinkFunction[string] {
			return connect.WebhookSink(c.IO.Sink, c.Sink == "slack", func(dst []byte, line string) []byte {
				return append(dst, line...)
			}, alertID)
		}).UID(c.Sink + "-alerts")
	}
	return nil
}

// alertID identifies an alert whatever the order of a replay: its rule,
// version, key and time (for Kafka keys and webhook idempotency).
func alertID(line string) string {
	var a rules.Alert
	if err := json.Unmarshal([]byte(line), &a); err != nil {
		return line
	}
	k, _ := json.Marshal(a.Key)
	return a.Rule + "/" + strconv.FormatInt(a.Version, 10) + "/" + string(k) + "/" + strconv.FormatInt(a.Time, 10)
}

// readRecords is the input, parsed, with timestamps and watermarks.
func readRecords(env *runtime.Env, c Config) runtime.Stream[Record] {
	var records runtime.Stream[Record]
	switch c.Source {
	case "files":
		lines := runtime.FromSource(env, "events", func() runtime.SourceFunction[file.Line] {
			return &file.Source{Path: c.Input, Monitor: c.Monitor, Header: c.Format == "csv"}
		}, file.LineCodec{}).UID(EventSourceUID)
		records = file.Parse(lines, "parse-events", func() file.Parser[Record] {
			if c.Format == "csv" {
				return newCSVParser(c.Schema)
			}
			return jsonParser{schema: c.Schema}
		}, RecordCodec{}).UID("parse-events")
		writeDeadLetters(c, runtime.SideOutput(records, file.DeadLetters), "dead-letter-files", DeadLetterDir)
	case "kafka":
		records = runtime.FromSource(env, "events", func() runtime.SourceFunction[Record] {
			return connect.NewKafkaSource(c.IO.Source, kafkaDecoder(c))
		}, RecordCodec{}).UID(EventSourceUID)
		connect.DeadLetters(records, c.IO.Source, "kafka-dead-letters")
	case "walkthrough":
		records = runtime.FromSource(env, "events", func() runtime.SourceFunction[Record] {
			return &connectors.Generator[Record]{Rate: c.Rate, Count: c.Count, Next: func(i int64, _ time.Time) Record {
				t := fraud.WalkthroughTransaction(i)
				return transaction(t.AccountID, t.Amount, t.Timestamp, i)
			}}
		}, RecordCodec{}).UID(EventSourceUID).Parallelism(1)
	case "random":
		records = runtime.FromSource(env, "events", func() runtime.SourceFunction[Record] {
			return &randomSource{Generator: connectors.Generator[Record]{Rate: c.Rate, Count: c.Count}, accounts: uint64(c.Accounts)}
		}, RecordCodec{}).UID(EventSourceUID)
	}
	ws := runtime.ForBoundedOutOfOrderness(c.OutOfOrderness, func(r Record) int64 { return r.TS })
	if c.Monitor > 0 || c.Source == "kafka" {
		// A source subtask without new input would hold event time back
		// for good; idle, it is left out until records come.
		ws = ws.WithIdleness(max(time.Second, 4*c.Monitor))
	}
	return runtime.AssignTimestampsAndWatermarks(records, ws)
}

func transaction(account int64, amount float64, ts, line int64) Record {
	return Record{Fields: map[string]any{"accountId": float64(account), "amount": amount, "ts": float64(ts)}, TS: ts, Line: line + 1}
}

// randomSource is the random generator: accounts uniform over [1,
// accounts], about 1 % small amounts, event time the wall clock.
type randomSource struct {
	connectors.Generator[Record]
	accounts uint64
	seed     uint64
	sub      string
}

func (r *randomSource) Open(ctx *runtime.RuntimeContext) error {
	r.seed = (uint64(ctx.SubtaskIndex()) + 1) * 0x9e3779b97f4a7c15
	r.sub = "random-" + strconv.Itoa(ctx.SubtaskIndex())
	r.Next = func(i int64, now time.Time) Record {
		x := splitmix64(r.seed + uint64(i))
		cents := (x >> 40) % 100_000
		if (x>>32)&0xff < 3 {
			cents %= 100
		}
		rec := transaction(int64(x%r.accounts)+1, float64(cents)/100, now.UnixMilli(), i)
		rec.Source = r.sub
		return rec
	}
	return nil
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// kafkaDecoder reads a record's value as a JSON event, or as CSV fields in
// the schema's order.
func kafkaDecoder(c Config) kafka.Decoder[Record] {
	if c.Format == "csv" {
		req, opt := c.Schema.columns()
		header := strings.Join(append(append([]string(nil), req...), opt...), ",")
		p := newCSVParser(c.Schema)
		return func(r *kgo.Record) (Record, error) {
			rec, err := p.Parse(file.Line{Path: r.Topic, Number: r.Offset, Header: header, Text: string(r.Value)})
			return rec, err
		}
	}
	jp := jsonParser{schema: c.Schema}
	return func(r *kgo.Record) (Record, error) {
		rec, err := jp.parse(r.Value)
		rec.Source, rec.Line = r.Topic+"/"+strconv.Itoa(int(r.Partition)), r.Offset
		return rec, err
	}
}

// sigFields is one distinct rule key.
type sigFields struct {
	sig    string
	fields []string
}

// keySigs are the distinct keys of set's rules, in a fixed order.
func keySigs(set *rules.Set) []sigFields {
	var out []sigFields
	for _, r := range set.Rules {
		s := keySig(r.Key)
		if !slices.ContainsFunc(out, func(x sigFields) bool { return x.sig == s }) {
			out = append(out, sigFields{sig: s, fields: r.Key})
		}
	}
	return out
}

func writeLines(c Config, s runtime.Stream[string], uid, dir string) {
	runtime.SinkTo(s, uid, func() runtime.SinkFunction[string] {
		return &filesink.Sink[string]{Dir: c.dir(dir), Encode: func(dst []byte, l string) []byte { return append(dst, l...) },
			Append: c.Append}
	}).UID(uid)
}

func writeDeadLetters(c Config, s runtime.Stream[file.DeadLetter], uid, dir string) {
	runtime.SinkTo(s, uid, func() runtime.SinkFunction[file.DeadLetter] {
		return &filesink.Sink[file.DeadLetter]{Dir: c.dir(dir), Encode: func(dst []byte, d file.DeadLetter) []byte { return d.AppendJSON(dst) },
			Append: c.Append}
	}).UID(uid)
}

// continuous reports whether the job's input may go quiet for a while and
// then have more: a monitored directory or Kafka read without an end.
func continuous(c Config) bool {
	return c.Monitor > 0 || c.Source == "kafka" && !c.IO.Source.Bounded
}

// staticSet is the rule set of a job without live rules (nil with them).
//
// Such a job's rule source ends once it has sent its set, and a source
// that had ended is not run again when the job is restored (see
// docs/architecture.md, "Checkpoints after tasks finished"), so a job
// submitted from a savepoint with another rules file would go on with the
// set in the savepoint's broadcast state. The router and the evaluator
// therefore evaluate with the set the job was submitted with, which every
// process loads at start, whatever the broadcast state holds.
func staticSet(set *rules.Set, live *liveConfig) *rules.Set {
	if live != nil {
		return nil
	}
	return set
}

// setTime is the event time of the rule set loaded at start: before any
// event's.
const setTime = math.MinInt64 / 2
