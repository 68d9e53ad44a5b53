package anomaly

import (
	"strings"
	"time"

	"github.com/weirstream/weir/connectors"
	"github.com/weirstream/weir/connectors/file"
	"github.com/weirstream/weir/connectors/filesink"
	"github.com/weirstream/weir/jobs"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/statebackend/storage"
)

// The parameters every job of the package has.
var ioParams = []jobs.Param{
	{Name: "input", Type: jobs.Path, Required: true, Description: "a JSON-lines file, or a directory whose files (not starting with . or _) are read in name order"},
	{Name: "output", Type: jobs.Path, Required: true, Description: "directory or s3://bucket/prefix URL: each detector's alerts go to <output>/<detector>/, lines that do not parse to <output>/dead-letters/, events behind the watermark to <output>/late/"},
	{Name: "out-of-orderness", Type: jobs.Duration, Default: "5s", Description: "how far an event may arrive behind the newest one seen; the watermark trails by this much"},
	{Name: "monitor", Type: jobs.Duration, Default: "0s", Description: "0 reads the input and finishes; above 0, lists the input directory this often and reads new files, never finishing"},
	{Name: "append", Type: jobs.Bool, Default: "false", Description: "add to an output directory holding another job's part files (a fresh job refuses one otherwise)"},
}

func withIO(ps ...jobs.Param) []jobs.Param {
	return append(append([]jobs.Param(nil), ioParams...), ps...)
}

// ioConfig is the parameters of ioParams.
type ioConfig struct {
	input, output  string
	outOfOrderness time.Duration
	monitor        time.Duration
	append         bool
}

func parseIO(p *runtime.Params) ioConfig {
	c := ioConfig{input: p.String("input", ""), output: p.String("output", ""),
		outOfOrderness: p.Duration("out-of-orderness", 5*time.Second), monitor: p.Duration("monitor", 0),
		append: p.Bool("append", false)}
	if in, err := file.LocalPath(c.input); err != nil {
		p.Errorf("input", "%v", err)
	} else {
		c.input = in
	}
	if c.output == "" {
		p.Errorf("output", "must not be empty: the directory or s3://bucket/prefix URL the alerts go to")
	} else if _, err := storage.Open(c.output, storage.Options{}); err != nil {
		p.Errorf("output", "%v", err) // no I/O: malformed URLs only
	}
	if c.outOfOrderness < 0 {
		p.Errorf("out-of-orderness", "%v must not be negative", c.outOfOrderness)
	}
	if c.monitor < 0 {
		p.Errorf("monitor", "%v must be 0 (read once) or positive", c.monitor)
	}
	return c
}

func (c ioConfig) dir(name string) string { return strings.TrimSuffix(c.output, "/") + "/" + name }

// readEvents reads the input's JSON lines as events with the fields in
// need, in event time; lines that do not parse go to <output>/dead-letters.
func readEvents(env *runtime.Env, c ioConfig, uid string, need field) runtime.Stream[Event] {
	return readEventsFrom(env, c, c.input, uid, need, c.outOfOrderness)
}

func readEventsFrom(env *runtime.Env, c ioConfig, path, uid string, need field, ooo time.Duration) runtime.Stream[Event] {
	lines := runtime.FromSource(env, uid, func() runtime.SourceFunction[file.Line] {
		return &file.Source{Path: path, Monitor: c.monitor}
	}, file.LineCodec{}).UID(uid)
	events := file.Parse(lines, "parse-"+uid, func() file.Parser[Event] { return eventParser{need: need} }, EventCodec{}).
		UID("parse-" + uid)
	writeDeadLetters(c, runtime.SideOutput(events, file.DeadLetters), "dead-letters-"+uid, "dead-letters")
	ws := runtime.ForBoundedOutOfOrderness(ooo, func(e Event) int64 { return e.Time })
	if c.monitor > 0 {
		// Watching a directory, a source subtask with no new file has no
		// records and would hold the watermark back for good; idle, it is
		// left out until a file comes.
		ws = ws.WithIdleness(max(time.Second, 4*c.monitor))
	}
	return runtime.AssignTimestampsAndWatermarks(events, ws)
}

func writeDeadLetters(c ioConfig, s runtime.Stream[file.DeadLetter], uid, dir string) {
	runtime.SinkTo(s, uid, func() runtime.SinkFunction[file.DeadLetter] {
		return &filesink.Sink[file.DeadLetter]{Dir: c.dir(dir), Encode: func(dst []byte, d file.DeadLetter) []byte { return d.AppendJSON(dst) },
			Append: c.append}
	}).UID(uid)
}

// writeAlerts prints a detector's alerts and writes them exactly once to
// <output>/<detector>.
func writeAlerts(c ioConfig, alerts runtime.Stream[Alert], detector string) {
	runtime.SinkTo(alerts, "print-"+detector, func() runtime.SinkFunction[Alert] {
		return &connectors.Print[Alert]{Format: Alert.String}
	}).UID("print-" + detector)
	runtime.SinkTo(alerts, "files-"+detector, func() runtime.SinkFunction[Alert] {
		return &filesink.Sink[Alert]{Dir: c.dir(detector), Encode: func(dst []byte, a Alert) []byte { return a.AppendJSON(dst) },
			Append: c.append}
	}).UID("files-" + detector)
}
