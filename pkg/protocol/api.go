package protocol

import (
	"errors"
	"io"
	"os"
	"slices"
	"time"
)

// Version is the protocol version carried in Hello and Welcome. A master
// refuses a worker that speaks another version, naming both. Version 2
// logs in by challenge-response (login.go); version 1 sent the password
// in the hello, and a master tells such a worker to upgrade. Version 3
// keys the challenge's proof with a slow derivation of the password
// (login.go's loginKey), so a recorded login costs a guesser a PBKDF2
// derivation per guess, not one HMAC.
const Version = 3

// ErrConnectionLost is returned by WorkerConn.Run when the stream to the
// worker ends before the command completes.
var ErrConnectionLost = errors.New("protocol: connection to worker lost")

// ErrWorkerDraining is returned by WorkerConn.Run and Resume when the
// worker is stopping gently (see WorkerConn.Draining) and did not run the
// command: it refused it, or it was started after the worker said so.
var ErrWorkerDraining = errors.New("protocol: worker is stopping and takes no new command")

// ErrAuthFailed is returned (wrapped, with the master's message) by
// Client.Run when the master refuses the worker's name or password. It is
// permanent: the client does not retry.
var ErrAuthFailed = errors.New("protocol: master refused worker credentials")

// ErrVersionMismatch is returned (wrapped, naming both versions) by
// Client.Run when the master speaks another protocol version. It is
// permanent: the client does not retry.
var ErrVersionMismatch = errors.New("protocol: protocol version mismatch")

// ErrTLS is returned (wrapped, with the TLS handshake's error) by
// Client.Run when the worker cannot verify its master's certificate, or
// the TLS handshake fails otherwise, before the master ever welcomed it.
var ErrTLS = errors.New("protocol: TLS with the master failed")

// WorkerInfo describes a worker host, as buildbot's worker info does.
type WorkerInfo struct {
	Admin   string // contents of the worker's info/admin
	Host    string // contents of the worker's info/host
	OS      string // runtime.GOOS
	Arch    string // runtime.GOARCH
	Version string // the worker program's version
	Basedir string
	NumCPU  int
	Extra   map[string]string // other info, free form
}

// Stream names the log a chunk of output belongs to.
type Stream int

// The streams of a command's output.
const (
	Stdout Stream = iota
	Stderr
	Header  // messages from the worker itself, as buildbot's "header" log
	LogFile // a file tailed for ShellCommand.Logfiles; Output.Log names it
)

func (s Stream) String() string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	case Header:
		return "header"
	case LogFile:
		return "logfile"
	}
	return "stream?"
}

// Output is one chunk of a command's output.
type Output struct {
	Stream Stream
	Log    string // for LogFile: the ShellCommand.Logfiles name; "" otherwise
	Data   []byte
}

// ShellCommand runs a program on the worker.
type ShellCommand struct {
	// Exactly one of Argv and Script: Argv is run directly, Script by
	// /bin/sh -c.
	Argv   []string
	Script string
	// Workdir is relative to the worker's BASEDIR/<builder>/ (e.g. "build");
	// the worker refuses one that escapes it. Empty means BASEDIR/<builder>.
	Workdir string
	// Env is added to the worker's environment; the worker first expands
	// each ${NAME} in a value from its own environment (an unset one is
	// empty), as buildbot-worker does.
	Env map[string]string
	// EnvLists are env variables given as lists (buildbot's env lists):
	// the worker joins each with its path list separator (":") and
	// expands it as Env's values. A name is in Env or here, never both.
	EnvLists map[string][]string
	// Timeout kills the command after this long without output; zero
	// means none.
	Timeout time.Duration
	// MaxTime kills the command after this long in total; zero means none.
	MaxTime time.Duration
	// SigtermTime, when set, makes interrupt and timeout send SIGTERM
	// first and SIGKILL after this long; zero means SIGKILL at once
	// (buildbot's default interruptSignal KILL).
	SigtermTime time.Duration
	// InterruptSignal is the first signal sent to the command's process
	// group on interrupt and timeout, by name without "SIG" ("KILL",
	// "TERM", "INT"...). Empty means "TERM" when SigtermTime is set, else
	// "KILL". Any signal but KILL is followed by SIGKILL after SigtermTime,
	// or after 5s when SigtermTime is zero.
	InterruptSignal string
	// NoStdout and NoStderr make the worker drop that stream (buildbot's
	// want_stdout and want_stderr = False); false sends it.
	NoStdout, NoStderr bool
	// Logfiles maps a log name to a file path relative to Workdir; the
	// worker tails each file while the command runs and sends what is
	// written to it as LogFile output with Output.Log set to the name
	// (buildbot's logfiles). Nil means none.
	Logfiles map[string]string
}

// Git modes and methods of a GitCommand, as buildbot's Git step.
const (
	GitIncremental = "incremental" // fetch into the existing checkout, clone if none
	GitFull        = "full"        // start from a clean tree, by Method
	GitClobber     = "clobber"     // full: remove the directory and clone
	GitFresh       = "fresh"       // full: fetch, reset hard, remove untracked and ignored files
	GitClean       = "clean"       // full: fetch, reset hard, remove untracked files but not ignored ones
	GitCopy        = "copy"        // full: update BASEDIR/<builder>/source incrementally, copy it to a new workdir
)

// GitCommand checks out a revision of a git repository on the worker, with
// the worker's git binary, as buildbot's Git step does.
type GitCommand struct {
	RepoURL string
	// Branch to check out; empty means the remote's default branch.
	Branch string
	// Revision is the commit to check out; empty means the branch tip.
	Revision string
	// Mode is GitIncremental or GitFull; empty means GitIncremental.
	Mode string
	// Method is for GitFull: GitClobber, GitFresh, GitClean or GitCopy;
	// empty means GitClobber.
	Method string
	// Depth makes a shallow clone of that many commits; zero means the
	// full history.
	Depth int
	// Workdir is relative to the worker's BASEDIR/<builder>/, as for
	// ShellCommand.
	Workdir string
	// Submodules makes the worker init and update the submodules,
	// recursively, after the checkout; false leaves them alone.
	Submodules bool
	// SSHPrivateKeyFile is a path on the worker to the private key used for
	// ssh:// and user@host: URLs (git runs ssh -i KEY -o IdentitiesOnly=yes
	// -o BatchMode=yes; the hosts are checked against known_hosts); empty
	// means ssh's own keys and agent.
	SSHPrivateKeyFile string
	// Timeout kills a git command after this long without output (as the
	// timeout of buildbot's Git step, which applies to each of its
	// commands); zero means none.
	Timeout time.Duration
	// MaxTime kills the git command running once the whole step has run
	// this long; zero means none.
	MaxTime time.Duration
}

// Command is one command a master sends to a worker. Exactly one of its
// command fields is set.
type Command struct {
	// Builder is the builder's directory on the worker, under its
	// basedir (config.Builder.WorkerDir): one plain name.
	Builder string
	// Build is the number of the build the command is for, for the
	// worker's log lines; 0 when none is said.
	Build    int64
	Shell    *ShellCommand
	Git      *GitCommand
	File     *FileCommand
	Upload   *UploadCommand
	Download *DownloadCommand
	// ResumeKey, when set, makes the command resumable: if its stream
	// ends, a worker with a SpoolStore keeps it running for up to Keep,
	// its output spooled, reports it in its next hello, and goes on with
	// it when the master answers with WorkerConn.Resume (see resume.go).
	// "" (the default) means the worker kills it when the stream ends.
	ResumeKey string
	Keep      time.Duration
	// Secrets are the values the worker must not write to its own log;
	// it writes "<Name>" instead (see Hider). The master passes the
	// secrets its build rendered; nil hides URL passwords only.
	Secrets []Secret
}

// FileOp is what a FileCommand does.
type FileOp int

// The FileOps, as buildbot's worker commands mkdir, rmdir and rmfile.
const (
	Mkdir      FileOp = iota + 1 // make the directory and its parents; one that exists is fine
	Rmdir                        // remove the directory recursively; one missing is fine
	RemoveFile                   // remove one file (not a directory); one missing fails
)

// FileCommand changes the worker's files.
type FileCommand struct {
	Op FileOp
	// Path is relative to BASEDIR/<builder>/; the worker refuses a path
	// that is absolute, has "..", or goes through a symlink leading out.
	Path string
}

// MaxChunk is the largest chunk of a transfer on the wire, and the
// default BlockSize.
const MaxChunk = 64 << 10

// UploadCommand sends a file, or a directory as a tar stream, from the
// worker to the master.
type UploadCommand struct {
	// Workdir is relative to BASEDIR/<builder>/, Path to Workdir; neither
	// may leave BASEDIR/<builder>/.
	Workdir, Path string
	// Directory sends Path's contents as an uncompressed tar stream.
	Directory bool
	// MaxSize fails the command once more than this many bytes would be
	// sent; zero means no limit.
	MaxSize int64
	// BlockSize is the size of the chunks; zero or more than MaxChunk
	// means MaxChunk.
	BlockSize int
	// Sink receives the data. On the master, WorkerConn.Run writes each
	// chunk to it from Run's goroutine, so a slow Sink slows the worker
	// (the stream's flow control); if it fails, Run interrupts the command
	// and its Result carries the error. On the worker, the Client sets it
	// to the stream before calling the Executor.
	Sink io.Writer
}

// DownloadCommand writes a file on the worker from the master.
type DownloadCommand struct {
	// Workdir is relative to BASEDIR/<builder>/, Path to Workdir; neither
	// may leave BASEDIR/<builder>/.
	Workdir, Path string
	// MaxSize fails the command once more than this many bytes arrive;
	// zero means no limit.
	MaxSize int64
	// Mode is the file's permission bits; zero means 0666 less the umask.
	Mode os.FileMode
	// BlockSize is the size of each read; zero or more than MaxChunk means
	// MaxChunk.
	BlockSize int
	// Source provides the data. On the master, WorkerConn.Run reads one
	// chunk from it each time the worker asks for one (so only one chunk
	// is in flight). On the worker, the Client sets it to a reader that
	// pulls chunks from the master.
	Source io.Reader
}

// Result is how a command ended.
type Result struct {
	ExitCode    int
	Signal      string // name of the signal that killed the process ("KILL"); empty if none
	Elapsed     time.Duration
	TimedOut    bool   // killed by Timeout or MaxTime
	Interrupted bool   // killed because the master interrupted it
	Err         string // the command could not run (bad workdir, exec failure...)
	GotRevision string // the commit a git command checked out; empty otherwise
}

// Signals are the signal names a ShellCommand's InterruptSignal may take.
var Signals = []string{"ABRT", "ALRM", "HUP", "INT", "KILL", "QUIT", "TERM", "USR1", "USR2"}

// ValidSignal reports whether name is one of Signals.
func ValidSignal(name string) bool { return slices.Contains(Signals, name) }
