// Package exchange moves buffers between the subtasks of a job: the network
// stack of a TaskManager, in the way Flink's is built.
//
// A channel connects one producer subtask to one consumer subtask
// (ChannelID). The consumer side is an input Gate, registered by the
// TaskManager before the consumer task runs, that merges all of its input
// channels into one Go channel; the producer side is a runtime.OutputChannel
// returned by OpenChannel. Flow control is credit-based, as in Flink's
// network stack since 1.5: the receiver grants each
// channel Config.Credits credits, sending a data buffer spends one, and the
// consumer's Gate.Recycle of that buffer returns it. A producer without
// credit blocks in Send, so a slow consumer holds back exactly the channels
// that feed it, backpressure travels hop by hop up to the sources, and at
// most Credits data buffers per channel are in flight or queued. Events
// (end-of-partition, latency markers) spend no credit but travel in order
// with the data of their channel.
//
// When producer and consumer run in the same TaskManager (the consumer's
// address is Config.SelfAddress) the channel is local: Send hands the
// *runtime.Buffer to the gate's Go channel, no copy and no serialisation, and
// credits are tokens in a Go channel. Otherwise the channel is one gRPC
// bidirectional TaskManager.Exchange stream to the consumer's TaskManager,
// multiplexed over one cached connection per address: the producer sends a
// ChannelOpen, then one ExchangeFrame per buffer; the receiving TaskManager
// (Serve) waits for the gate, grants the initial credits and returns one
// ExchangeCredit per batch of recycled buffers. The credits a remote channel
// gets are the receiver's Config.Credits: the side whose memory is bounded
// decides.
//
// Failures travel both ways. A producer whose consumer is gone (the stream
// broke, or the gate was unregistered) gets an error from Send, also while it
// waits for credit. A consumer whose producer is gone before its
// end-of-partition (the producer failed, was cancelled, or its TaskManager
// died) gets the error on Gate.Err, which fails the consumer task. After
// end-of-partition a channel ends normally.
//
// Ownership: each remote producer channel owns one goroutine that reads
// credits and ends when the stream does (Close waits for it); each Serve call
// owns one goroutine that reads frames and ends with the stream. Local
// channels have none. A TaskManager that deploys a task registers its gate
// before it opens the task's output channels, so that chains of tasks being
// deployed at once never wait on each other.
package exchange
