// Package exchange moves buffers between the subtasks of a job: the network
// stack of a TaskManager, built the way Flink's is.
//
// A channel connects one producer subtask to one consumer subtask
// (ChannelID). Its consumer end is an input Gate, registered by the
// TaskManager before the consumer task runs, which merges all of the task's
// input channels into one Go channel; its producer end is the
// engine.OutputChannel that OpenChannel returns. Flow control is
// credit-based, as in Flink's network stack since 1.5: the receiver grants
// each channel Config.Credits credits, sending a data buffer spends one, and
// the consumer's Gate.Recycle of that buffer gives it back. A producer
// without credit blocks in Send, so a slow consumer holds back exactly the
// channels that feed it, backpressure travels hop by hop to the sources, and
// at most Credits data buffers per channel are in flight or queued. Events
// (end-of-partition, latency markers) spend no credit but travel in order
// with the data of their channel.
//
// When producer and consumer run in the same TaskManager (the consumer's
// address is Config.SelfAddress) the channel is local: Send hands the
// *engine.Buffer itself to the gate, with no copy and no serialisation, and
// credits are tokens in a Go channel. Otherwise the channel is one
// bidirectional TaskManager.Exchange gRPC stream to the consumer's
// TaskManager, multiplexed with the others over one cached connection per
// address. The producer sends a ChannelOpen, then one ExchangeFrame per
// buffer; the receiving TaskManager (Serve) waits for the gate, grants the
// initial credits, and sends one ExchangeCredit per batch of recycled
// buffers. A remote channel gets the receiver's Config.Credits: the side
// whose memory the credits bound decides. Frames travel under the
// content-subtype "weir-exchange", whose codec writes the ordinary protobuf
// encoding of ExchangeFrame straight from, and reads it straight into,
// pooled engine.Buffers (see codec.go).
//
// Failures travel both ways. A producer whose consumer is gone (the stream
// broke, or the gate was unregistered) gets an error from Send, also while
// it waits for credit. A consumer whose producer went away before its
// end-of-partition (the producer failed, or its TaskManager died) gets an
// error on Gate.Err, which fails the consumer task. A producer that was
// canceled says so (ErrCanceled, a PRODUCER_CANCELED event on the wire), and
// the consumer task ends canceled rather than failed, as in Flink. After
// end-of-partition a channel ends normally.
//
// Goroutines: each remote producer channel owns one, which reads credits
// and ends with the stream (Close waits for it); each Serve call owns one,
// which reads frames and ends with the stream. Local channels have none. A
// TaskManager registers a task's gate before it opens the task's output
// channels, so that tasks deployed together never wait on each other.
package exchange
