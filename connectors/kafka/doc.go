// Package kafka is Weir's Kafka source and sink, on franz-go. They take
// plain broker addresses with optional TLS and SASL (PLAIN, SCRAM), so the
// same job runs against Kafka, Redpanda, or the development broker of
// internal/tools/kafka (franz-go's kfake).
//
// # Source: offsets in checkpoints
//
// Partitions are assigned to source subtasks by a pure function of (topic,
// partition, parallelism) (Owner): no consumer-group protocol, so every
// restart and every process agrees without talking. Each subtask keeps the
// next offset of its partitions as operator state; on restore it receives
// the entries of all old subtasks (union redistribution) and keeps the
// ones it owns at the new parallelism, so a rescale moves partitions with
// their offsets. Partitions without a checkpointed offset start at the
// configured position (earliest, latest, a timestamp, or the group's
// committed offsets) on a fresh start, and at the earliest offset when they
// are discovered later (a background look every Discovery interval, for
// new partitions and, with a regex, new topics). Offsets are committed to
// the consumer group only after a checkpoint completes, and only for
// monitoring: the job reads its position from its checkpoints.
//
// Records are read with read-committed isolation and decoded by a Decoder
// (JSON, CSV, Raw, or hand-written); a record that does not decode goes to
// the dead letters (topic, partition, offset, reason, value) instead of
// failing the job.
//
// # Source: per-partition watermarks
//
// Source.EventTime(Watermarks{...}) makes the source a
// runtime.WatermarkingSource: each partition it reads has its own bounded
// out-of-orderness generator, the subtask's watermark is the lowest of
// its partitions that are not idle (no record for Watermarks.Idleness),
// and a subtask whose partitions are all idle, or that reads none, is idle
// itself, so a quiet partition does not hold back event time downstream.
// An assigner after the source could not do this: it sees one interleaved
// stream, in which one partition's late records look out of order and a
// quiet partition is invisible. Generators are not checkpointed; a
// partition restored or moved by a rescale starts without a watermark.
//
// # Sink: two-phase commit with Kafka transactions
//
// With ExactlyOnce each subtask writes into a Kafka transaction that spans
// one checkpoint interval. At the barrier the transaction is closed to new
// records and a new one is opened at once; the closed one is flushed (every
// record acknowledged, still uncommitted) in the checkpoint's asynchronous
// phase, and its producer ID and epoch go into the checkpoint: this is the
// pre-commit. When the checkpoint completes the transaction is committed,
// and only then does a read-committed consumer see its records.
//
// Each transaction has its own transactional ID,
// <prefix>-<subtask>-<sequence>, where the prefix defaults to
// weir-<job ID>-<operator UID> and the sequence counts the subtask's
// transactions; the checkpoint stores the sequence of the transaction
// open at the barrier. A restore then
//
//  1. commits the pre-committed transactions of the restored checkpoint
//     (whose completion notice the failed attempt may not have acted on)
//     by sending EndTxn with their stored producer ID and epoch, as the
//     lost producer would have; a retried commit is acknowledged by the
//     broker, so this is idempotent;
//  2. calls InitProducerID on every ID from the stored sequence on, up to
//     the first ID the broker has never seen (it answers epoch 0): that
//     fences the failed attempt's producers and aborts their open
//     transactions, so nothing of a failed attempt is ever committed and
//     read-committed consumers are not held back by it.
//
// Because an ID is never used for two transactions, a stored producer ID
// and epoch can only ever commit the transaction they were stored for (a
// pool of reused IDs could commit a later, partial transaction under the
// same epoch). Old subtask j is recovered by new subtask j % parallelism,
// so rescaling keeps the guarantee; that subtask also carries j's position
// in its own snapshots while j does not exist, so scaling up again resumes
// after the IDs j used rather than probing them all.
//
// The broker aborts a transaction open longer than TransactionTimeout. A
// transaction lives from one barrier to the completion of the next
// checkpoint, so the timeout must exceed the checkpoint interval plus the
// time a checkpoint takes to complete, with room for restarts (the
// default is one minute). If the broker aborted a pre-committed
// transaction anyway, its commit fails and the job fails with an error
// naming the transaction rather than going on with a gap.
//
// A task that fails or is cancelled aborts its open transaction but leaves
// the pre-committed ones for a restore to commit: after a cancellation
// they stay open until the broker's transaction timeout, and read-committed
// consumers of the partitions they wrote wait that long. Stop a job with a
// savepoint to have everything committed.
//
// AtLeastOnce flushes at every barrier; None never waits.
//
// # Cost
//
// Exactly-once costs, per subtask and checkpoint, a new producer (its own
// connections, InitProducerID, AddPartitionsToTxn) and an EndTxn: a few
// round trips, hidden behind processing except the commit, which runs on
// the task goroutine when the checkpoint completes. franz-go cannot change
// a client's transactional ID, so producers are not pooled as Flink pools
// its own. The per-record path (Invoke) reuses pooled records and only
// hands them to the producer; the source's decodes each record into the
// user's type and updates one offset per partition batch.
package kafka
