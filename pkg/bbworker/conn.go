package bbworker

import (
	"context"
	"time"
)

// Conn is one logged-in buildbot-worker, as buildbot's master sees it
// (master/buildbot/worker/protocols/base.py, class Connection). Both
// protocols implement it; nothing above this interface knows which one
// carries the calls. Values crossing it are plain Go values: string,
// int64, float64, bool, nil, []any, map[string]any, and the callback
// objects below; each protocol maps them to and from its own encoding
// (jelly or msgpack), and str/bytes both arrive as string.
type Conn interface {
	// Name is the worker name the worker logged in with.
	Name() string
	// Protocol is "pb" or "msgpack", shown in the UI and API.
	Protocol() string
	// Remote is the worker's network address.
	Remote() string

	// Print writes message into the worker's log (remote_print).
	Print(ctx context.Context, message string) error
	// GetWorkerInfo returns the worker's info dict (remote_getWorkerInfo):
	// admin, host, access_uri, version, environ, basedir, system,
	// worker_commands (command name -> version), ...
	GetWorkerInfo(ctx context.Context) (map[string]any, error)
	// SetBuilderList tells the worker which builders it serves, each with
	// its directory name (remote_setBuilderList), and returns the builder
	// names the worker has set up.
	SetBuilderList(ctx context.Context, builders []Builder) ([]string, error)
	// StartCommand starts the remote command name (shell, uploadFile,
	// downloadFile, mkdir, ...) with args on the worker for builder, with
	// commandID unique among the worker's running commands. The worker
	// reports through sink until it calls Complete. Args may hold
	// FileWriter and FileReader values (the "writer"/"reader" arguments of
	// the transfer commands); the protocol passes them as references the
	// worker calls back.
	StartCommand(ctx context.Context, sink CommandSink, builder, commandID, name string, args map[string]any) error
	// InterruptCommand asks the worker to interrupt a running command
	// (remote_interruptCommand); the command still completes through its
	// sink.
	InterruptCommand(ctx context.Context, builder, commandID, why string) error
	// Keepalive round-trips a keepalive to the worker; an error or no
	// answer within ctx means the worker is gone.
	Keepalive(ctx context.Context) error
	// Shutdown asks the worker to shut down (remote_shutdown).
	Shutdown(ctx context.Context) error

	// Done is closed when the connection is gone, for any reason.
	Done() <-chan struct{}
	// Close drops the connection; Done is then closed.
	Close()
}

// Builder is one entry of SetBuilderList: a builder's name and the name
// of its directory under the worker's basedir.
type Builder struct {
	Name string
	Dir  string
}

// Update is one key/value a running command reports: "stdout", "stderr",
// "header" (string), "log" ([]any{logname, text}), "rc" (int64),
// "elapsed", "files", "stat", "got_revision", ... as buildbot's
// RemoteCommand.remoteUpdate receives them. For PB, the protocol unpacks
// each [dict, num] pair into one Update per key; for msgpack, each
// [key, value] pair (with stdout/stderr/header values unwrapped from
// their one-element lists) becomes one Update.
type Update struct {
	Key   string
	Value any
}

// CommandSink is the master side of a running remote command (buildbot's
// RemoteCommandImpl).
type CommandSink interface {
	// Update delivers updates in the order the worker sent them.
	Update(updates []Update)
	// Complete ends the command; failure is nil on success, else the
	// worker's failure, as text.
	Complete(failure error)
}

// FileWriter is the master side of an upload (buildbot's FileWriterImpl):
// the worker writes a file's bytes (or a tar stream, for a directory
// upload) into it.
type FileWriter interface {
	Write(data []byte) error
	// Utime sets the file's access and modification times.
	Utime(accessed, modified time.Time) error
	// Unpack unpacks the tar written so far (directory uploads).
	Unpack() error
	Close() error
}

// FileReader is the master side of a download (buildbot's
// FileReaderImpl): the worker reads up to maxLength bytes at a time, an
// empty answer meaning end of file.
type FileReader interface {
	Read(maxLength int) ([]byte, error)
	Close() error
}
