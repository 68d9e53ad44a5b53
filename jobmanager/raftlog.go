package jobmanager

import (
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// raftLogger hands hashicorp/raft's hclog lines to slog, so a JobManager's
// log has one format. raft warns about routine events (an election after a
// leader's loss, a follower that is catching up), which are INFO for an
// operator of Weir; its errors become WARN, as the group heals them itself.
type raftLogger struct {
	log  *slog.Logger
	name string
	args []any
}

func newRaftLogger(l *slog.Logger) hclog.Logger { return &raftLogger{log: l.With("component", "raft")} }

func (r *raftLogger) Log(level hclog.Level, msg string, args ...any) {
	var l slog.Level
	switch level {
	case hclog.Trace, hclog.Debug, hclog.NoLevel:
		l = slog.LevelDebug
	case hclog.Info, hclog.Warn:
		l = slog.LevelInfo
	default:
		l = slog.LevelWarn
	}
	if !r.log.Enabled(context.Background(), l) {
		return
	}
	r.log.Log(context.Background(), l, msg, append(append([]any(nil), r.args...), args...)...)
}

func (r *raftLogger) Trace(msg string, args ...any) { r.Log(hclog.Trace, msg, args...) }
func (r *raftLogger) Debug(msg string, args ...any) { r.Log(hclog.Debug, msg, args...) }
func (r *raftLogger) Info(msg string, args ...any)  { r.Log(hclog.Info, msg, args...) }
func (r *raftLogger) Warn(msg string, args ...any)  { r.Log(hclog.Warn, msg, args...) }
func (r *raftLogger) Error(msg string, args ...any) { r.Log(hclog.Error, msg, args...) }

func (r *raftLogger) IsTrace() bool { return false }
func (r *raftLogger) IsDebug() bool { return r.log.Enabled(context.Background(), slog.LevelDebug) }
func (r *raftLogger) IsInfo() bool  { return r.log.Enabled(context.Background(), slog.LevelInfo) }
func (r *raftLogger) IsWarn() bool  { return r.IsInfo() }
func (r *raftLogger) IsError() bool { return true }

func (r *raftLogger) ImpliedArgs() []any { return r.args }
func (r *raftLogger) With(args ...any) hclog.Logger {
	return &raftLogger{log: r.log, name: r.name, args: append(append([]any(nil), r.args...), args...)}
}
func (r *raftLogger) Name() string { return r.name }
func (r *raftLogger) Named(name string) hclog.Logger {
	n := name
	if r.name != "" {
		n = r.name + "." + name
	}
	return &raftLogger{log: r.log, name: n, args: r.args}
}
func (r *raftLogger) ResetNamed(name string) hclog.Logger {
	return &raftLogger{log: r.log, name: name, args: r.args}
}
func (r *raftLogger) SetLevel(hclog.Level)  {}
func (r *raftLogger) GetLevel() hclog.Level { return hclog.Info }
func (r *raftLogger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(r.StandardWriter(nil), "", 0)
}
func (r *raftLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer { return rawWriter{r} }

// rawWriter logs each write as one INFO line.
type rawWriter struct{ r *raftLogger }

func (w rawWriter) Write(p []byte) (int, error) {
	w.r.Info(string(p))
	return len(p), nil
}
