// Package anomaly holds the seeds' event-time jobs: anomaly-detection
// (spikes, failed logins in a sliding window, an A-then-B CEP pattern),
// transfer-monitor (limits and windowed sums) and impossible-travel (card
// uses too far apart, and a broadcast blacklist).
//
// All three read the same JSON events (Event), from files or, with
// source=kafka, one per record; a parser requires the fields its job
// needs, and an event that does not parse becomes a dead letter with its
// origin (file and line, or topic/partition and offset) instead of
// failing the job. From files, timestamps and watermarks are assigned
// after the parser; from Kafka, the source itself keeps a watermark per
// partition (connectors/kafka EventTime), so a quiet partition stops
// holding event time back once idle.
//
// Detectors that judge events one after another (inOrder) buffer each
// key's events in keyed state until the watermark passes them, and break
// ties by origin, so every run at any parallelism, restored or not, raises
// the same alerts; events behind the watermark go to a late side output.
// Alerts go to files, Kafka, a webhook or Slack (io.go); late events
// always go to files under output, and dead letters too unless a Kafka
// source has a dead-letter topic, so nothing is lost whatever the sink.
package anomaly
