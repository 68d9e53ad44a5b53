package jobmanager

import (
	"encoding/json"
	"fmt"
)

// The command codec: how a Command is written to the replicated log. An
// entry is the command's type byte followed by its JSON. JSON is slower
// than a hand-written codec, but commands travel on the control path
// (a few per task state change or checkpoint), an entry can be read in a
// debugger, and fields can be added without a version bump: a field an
// older member does not know is ignored, a field a newer one lacks is zero.

// decoders decode each command type's JSON into its value.
var decoders = map[CommandType]func([]byte) (Command, error){
	SubmitJobType:          decodeAs[SubmitJob],
	DeployJobType:          decodeAs[DeployJob],
	UpdateTaskType:         decodeAs[UpdateTask],
	FailJobType:            decodeAs[FailJob],
	CancelJobType:          decodeAs[CancelJob],
	TaskManagerLostType:    decodeAs[TaskManagerLost],
	CompleteCheckpointType: decodeAs[CompleteCheckpoint],
	AbortCheckpointType:    decodeAs[AbortCheckpoint],
	RestartJobType:         decodeAs[RestartJob],
	BeginRescaleType:       decodeAs[BeginRescale],
	EndRescaleType:         decodeAs[EndRescale],
	DisposeCheckpointsType: decodeAs[DisposeCheckpoints],
	FallBackRescaleType:    decodeAs[FallBackRescale],
	SetMemberAddressType:   decodeAs[SetMemberAddress],
	ReserveCheckpointType:  decodeAs[ReserveCheckpoint],
}

func decodeAs[C Command](body []byte) (Command, error) {
	var c C
	err := json.Unmarshal(body, &c)
	return c, err
}

// EncodeCommand writes cmd as a log entry.
func EncodeCommand(cmd Command) ([]byte, error) {
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encoding %T: %w", cmd, err)
	}
	return append([]byte{byte(cmd.Type())}, body...), nil
}

// DecodeCommand reads a log entry written by EncodeCommand.
func DecodeCommand(entry []byte) (Command, error) {
	if len(entry) == 0 {
		return nil, fmt.Errorf("empty command entry")
	}
	decode, ok := decoders[CommandType(entry[0])]
	if !ok {
		return nil, fmt.Errorf("unknown command type %d", entry[0])
	}
	cmd, err := decode(entry[1:])
	if err != nil {
		return nil, fmt.Errorf("decoding command type %d: %w", entry[0], err)
	}
	return cmd, nil
}
