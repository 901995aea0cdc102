package protocol

import (
	"context"
	"errors"
)

// Resumable commands: the master's end.
//
// A command run with a Command.ResumeKey is resumable. When its stream
// ends, a worker that has a SpoolStore keeps it running for up to
// Command.Keep, spooling its output to a file, and lists it (KeptCommand)
// in the hello of its next stream. The master then answers each kept
// command exactly once: WorkerConn.Resume goes on with it under a new
// command id (the worker replays the output the master lacks, then sends
// the live rest and the Complete), WorkerConn.Abandon makes the worker
// kill it and forget it. A kept command no master claims within its Keep
// is killed.

// ErrMasterStopping is the Err of a WorkerConn whose stream ended because
// the master is shutting down (Serve's ctx is done); the Runs in flight
// return ErrConnectionLost as for any lost stream.
var ErrMasterStopping = errors.New("protocol: master shutting down")

// Kept is a resumable command a worker kept after its stream ended, as
// its hello reports it.
type Kept struct {
	ResumeKey string
	// Complete is set when the command has ended; its Result waits for
	// the master.
	Complete bool
	// OutputSize counts the bytes of output the command produced so far,
	// over all its streams.
	OutputSize int64
}

func keptFromPB(ks []*KeptCommand) []Kept {
	var out []Kept
	for _, k := range ks {
		out = append(out, Kept{ResumeKey: k.GetResumeKey(), Complete: k.GetComplete(), OutputSize: k.GetOutputSize()})
	}
	return out
}

func keptToPB(ks []Kept) []*KeptCommand {
	var out []*KeptCommand
	for _, k := range ks {
		out = append(out, &KeptCommand{ResumeKey: k.ResumeKey, Complete: k.Complete, OutputSize: k.OutputSize})
	}
	return out
}

// Kept lists the resumable commands the worker reported in its hello. The
// caller answers each with Resume or Abandon.
func (c *WorkerConn) Kept() []Kept { return c.kept }

// Resume goes on with the kept command key under a new command id: the
// worker sends its output from byte offset on (the master has the bytes
// before it), then its live output, then its Complete. out and the return
// values are as for Run, and so is cancelling ctx (the command is
// interrupted). The worker answers a key it no longer has with a Result
// whose Err says so.
func (c *WorkerConn) Resume(ctx context.Context, key string, offset int64, out func(Output)) (Result, error) {
	return c.run(ctx, Command{}, out, func(id uint64) *MasterMessage {
		return &MasterMessage{Msg: &MasterMessage_Reattach{Reattach: &Reattach{
			ResumeKey: key, CommandId: id, Offset: offset,
		}}}
	})
}

// Abandon tells the worker to kill the kept command key and forget it: the
// master does not know it (any more). It returns ErrConnectionLost if the
// stream ended first.
func (c *WorkerConn) Abandon(ctx context.Context, key, why string) error {
	m := &MasterMessage{Msg: &MasterMessage_Reattach{Reattach: &Reattach{ResumeKey: key, Abandon: true, Why: why}}}
	select {
	case c.sendq <- m:
		return nil
	case <-c.done:
		return ErrConnectionLost
	case <-ctx.Done():
		return ctx.Err()
	}
}
