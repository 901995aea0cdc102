package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// pipeGrace bounds how long Run waits for the output pipes to close after
// the command's process group was killed (a process that left the group
// may hold them open).
const pipeGrace = 2 * time.Second

// defaultSigtermTime is how long a signal other than SIGKILL has to stop a
// command before SIGKILL, when the command has no SigtermTime (as
// buildbot's worker, which waits BACKUP_TIMEOUT, 5s).
const defaultSigtermTime = 5 * time.Second

// Executor runs commands under a base directory. It is safe for
// concurrent use.
type Executor struct {
	basedir string
	log     *slog.Logger
}

var _ protocol.Executor = (*Executor)(nil)

// NewExecutor returns an Executor that runs each builder's commands under
// basedir/<builder>/. A nil log means discard.
func NewExecutor(basedir string, log *slog.Logger) *Executor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Executor{basedir: basedir, log: log}
}

// Run runs cmd and returns when it and every process of its group are
// gone. Cancelling ctx interrupts it.
func (e *Executor) Run(ctx context.Context, cmd protocol.Command, out func(protocol.Output)) protocol.Result {
	start := time.Now()
	// What the worker writes of a command (its log, the header lines, the
	// record of a running command) has the secrets the master named and
	// URL passwords hidden; the command runs with the real values.
	hide := protocol.NewHider(cmd.Secrets)
	var r protocol.Result
	switch {
	case cmd.Shell != nil:
		r = e.runShell(ctx, cmd.Builder, cmd.Shell, hide, out)
	case cmd.Git != nil:
		r = e.runGit(ctx, cmd.Builder, cmd.Git, hide, out)
	case cmd.File != nil:
		r = e.runFile(cmd.Builder, cmd.File, out)
	case cmd.Upload != nil:
		r = e.runUpload(ctx, cmd.Builder, cmd.Upload, out)
	case cmd.Download != nil:
		r = e.runDownload(ctx, cmd.Builder, cmd.Download, out)
	default:
		return protocol.Result{ExitCode: -1, Err: "worker: unsupported command"}
	}
	r.Elapsed = time.Since(start)
	return r
}

// workdir returns the directory a command of builder runs in, creating it.
func (e *Executor) workdir(builder, workdir string) (string, error) {
	if builder == "" || !filepath.IsLocal(builder) || strings.ContainsRune(builder, filepath.Separator) {
		return "", fmt.Errorf("builder name %q is not a plain directory name", builder)
	}
	if workdir == "" {
		workdir = "."
	}
	if !filepath.IsLocal(workdir) {
		return "", fmt.Errorf("workdir %q is absolute or escapes the builder's directory", workdir)
	}
	dir := filepath.Join(e.basedir, builder, workdir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create workdir: %w", err)
	}
	return dir, nil
}

// why names what ended a command early.
type why int

const (
	notKilled why = iota
	interrupted
	timedOut
)

// runShell runs sh; hide hides the secrets in what it writes of the
// command (nil hides URL passwords only).
func (e *Executor) runShell(ctx context.Context, builder string, sh *protocol.ShellCommand, hide *protocol.Hider, out func(protocol.Output)) protocol.Result {
	var outMu sync.Mutex // out is never called concurrently
	emit := func(s protocol.Stream, data []byte) {
		if (s == protocol.Stdout && sh.NoStdout) || (s == protocol.Stderr && sh.NoStderr) {
			return // read, but not wanted by the master
		}
		outMu.Lock()
		defer outMu.Unlock()
		out(protocol.Output{Stream: s, Data: data})
	}
	header := func(format string, args ...any) {
		emit(protocol.Header, []byte(fmt.Sprintf(format, args...)+"\n"))
	}
	fail := func(err error) protocol.Result {
		msg := hide.Hide(err.Error())
		header("%s", msg)
		return protocol.Result{ExitCode: -1, Err: msg}
	}

	argv := sh.Argv
	if (len(argv) == 0) == (sh.Script == "") {
		return fail(errors.New("shell command needs exactly one of argv and script"))
	}
	if len(argv) == 0 {
		argv = []string{"/bin/sh", "-c", sh.Script}
	}
	dir, err := e.workdir(builder, sh.Workdir)
	if err != nil {
		return fail(err)
	}
	shown := hide.HideAll(argv) // argv as the worker writes it anywhere
	log := e.log.With("builder", builder, "argv", shown)

	c := exec.Command(argv[0], argv[1:]...)
	c.Dir = dir
	env, lists := pythonPath(sh.Env, sh.EnvLists)
	c.Env = protocol.CommandEnv(os.Environ(), env, lists)
	// No Pdeathsig: it would hit the leader only (the record made once
	// the command starts is what kills the group of a dead worker), and
	// it fires when the OS thread that started the command exits, not
	// the worker (golang/go#27505).
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.Err != nil { // argv[0] not found in PATH
		return fail(fmt.Errorf("cannot run %s: %w", argv[0], c.Err))
	}

	header("%s", quoteArgv(shown))
	header(" in dir %s (timeout %s secs)", dir, secs(sh.Timeout))
	if len(sh.Logfiles) > 0 {
		header(" watching logfiles %s", quoteMap(sh.Logfiles))
	}
	sig, err := interruptSignal(sh)
	if err != nil {
		return fail(err)
	}
	tails, err := newTails(dir, sh.Logfiles)
	if err != nil {
		return fail(err)
	}

	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("stdout pipe: %w", err))
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		stdoutR.Close()
		stdoutW.Close()
		return fail(fmt.Errorf("stderr pipe: %w", err))
	}
	c.Stdout, c.Stderr = stdoutW, stderrW
	err = c.Start()
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		stdoutR.Close()
		stderrR.Close()
		return fail(fmt.Errorf("cannot run %s: %w", argv[0], err))
	}
	pgid := c.Process.Pid
	// Recorded until the group is gone, so that a worker killed meanwhile
	// kills it when it starts again (ReapOrphans): nothing else would.
	if done, err := recordRunning(filepath.Join(e.basedir, RunningDir), pgid, builder, shown); err != nil {
		log.Warn("cannot record the command's process group: if the worker is killed, the command goes on running", "err", err)
	} else {
		defer done()
	}
	tailDone := make(chan struct{})
	tailers := tails.start(tailDone, func(name string, data []byte) {
		outMu.Lock()
		defer outMu.Unlock()
		out(protocol.Output{Stream: protocol.LogFile, Log: name, Data: data})
	})

	// Readers: stream both pipes until every holder has closed them.
	activity := make(chan struct{}, 1)
	var readers sync.WaitGroup
	for _, p := range []struct {
		f *os.File
		s protocol.Stream
	}{{stdoutR, protocol.Stdout}, {stderrR, protocol.Stderr}} {
		readers.Go(func() {
			defer p.f.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := p.f.Read(buf)
				if n > 0 {
					select {
					case activity <- struct{}{}:
					default:
					}
					emit(p.s, bytes.Clone(buf[:n]))
				}
				if err != nil {
					if !errors.Is(err, io.EOF) {
						log.Warn("reading command output", "stream", p.s, "err", err)
					}
					return
				}
			}
		})
	}

	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()

	var timeoutC, maxTimeC, escalateC <-chan time.Time
	var timeout *time.Timer
	if sh.Timeout > 0 {
		timeout = time.NewTimer(sh.Timeout)
		defer timeout.Stop()
		timeoutC = timeout.C
	}
	if sh.MaxTime > 0 {
		t := time.NewTimer(sh.MaxTime)
		defer t.Stop()
		maxTimeC = t.C
	}
	var escalate *time.Timer
	defer func() {
		if escalate != nil {
			escalate.Stop()
		}
	}()
	grace := sh.SigtermTime
	if grace == 0 {
		grace = defaultSigtermTime
	}
	killed := notKilled
	kill := func(reason why, msg string) {
		if killed != notKilled {
			return
		}
		killed = reason
		timeoutC, maxTimeC = nil, nil
		header("%s, attempting to kill", msg)
		if sig != syscall.SIGKILL {
			log.Info("signalling command", "why", msg, "signal", signalName(sig))
			signalGroup(pgid, sig)
			escalate = time.NewTimer(grace)
			escalateC = escalate.C
			return
		}
		log.Info("killing command", "why", msg)
		signalGroup(pgid, syscall.SIGKILL)
	}
	ctxDone := ctx.Done()
	var waitErr error
loop:
	for {
		select {
		case waitErr = <-exited:
			break loop
		case <-activity:
			if timeout != nil && timeoutC != nil {
				timeout.Reset(sh.Timeout)
			}
		case <-timeoutC:
			kill(timedOut, fmt.Sprintf("command timed out: %s seconds without output running %s", secs(sh.Timeout), quoteArgv(shown)))
		case <-maxTimeC:
			kill(timedOut, fmt.Sprintf("command timed out: %s seconds elapsed running %s", secs(sh.MaxTime), quoteArgv(shown)))
		case <-ctxDone:
			ctxDone = nil
			kill(interrupted, "command interrupted")
		case <-escalateC:
			escalateC = nil
			header("SIG%s did not stop the command within %s secs, sending SIGKILL", signalName(sig), secs(grace))
			signalGroup(pgid, syscall.SIGKILL)
		}
	}
	// The main process is gone; nothing else of its group may stay.
	signalGroup(pgid, syscall.SIGKILL)
	pipesClosed := make(chan struct{})
	go func() { readers.Wait(); close(pipesClosed) }()
	select {
	case <-pipesClosed:
	case <-time.After(pipeGrace):
		log.Warn("a process outside the command's group holds its output open; not reading it further")
		_ = stdoutR.SetReadDeadline(time.Now())
		_ = stderrR.SetReadDeadline(time.Now())
		<-pipesClosed
	}

	// The logfiles' last lines, written just before the end.
	close(tailDone)
	tailers.Wait()

	res := protocol.Result{
		TimedOut:    killed == timedOut,
		Interrupted: killed == interrupted,
	}
	var ee *exec.ExitError
	switch {
	case waitErr == nil:
	case errors.As(waitErr, &ee):
	default:
		res.ExitCode = -1
		res.Err = hide.Hide(fmt.Sprintf("wait for %s: %v", argv[0], waitErr))
		return res
	}
	res.ExitCode = c.ProcessState.ExitCode()
	if ws, ok := c.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Signal = signalName(ws.Signal())
		header("process killed by signal %d", int(ws.Signal()))
	}
	return res
}

// signalGroup sends sig to the process group pgid; a group already gone is
// fine.
func signalGroup(pgid int, sig syscall.Signal) {
	_ = syscall.Kill(-pgid, sig)
}

// secs formats d as buildbot does its timeouts, in seconds ("1200", "0.5");
// zero is "None".
func secs(d time.Duration) string {
	if d == 0 {
		return "None"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// quoteArgv formats argv as buildbot (Python) shows a list: ['sleep', '10'].
func quoteArgv(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = pyQuote(a)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// pyQuote quotes s as Python's repr of a str does, roughly: 'it\'s'.
func pyQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGABRT: "ABRT",
	syscall.SIGALRM: "ALRM",
	syscall.SIGBUS:  "BUS",
	syscall.SIGFPE:  "FPE",
	syscall.SIGHUP:  "HUP",
	syscall.SIGILL:  "ILL",
	syscall.SIGINT:  "INT",
	syscall.SIGKILL: "KILL",
	syscall.SIGPIPE: "PIPE",
	syscall.SIGQUIT: "QUIT",
	syscall.SIGSEGV: "SEGV",
	syscall.SIGTERM: "TERM",
	syscall.SIGUSR1: "USR1",
	syscall.SIGUSR2: "USR2",
}

// interruptSignal is the first signal sent to sh's group on interrupt or
// timeout, as ShellCommand.InterruptSignal says.
func interruptSignal(sh *protocol.ShellCommand) (syscall.Signal, error) {
	name := sh.InterruptSignal
	if name == "" {
		name = "KILL"
		if sh.SigtermTime > 0 {
			name = "TERM"
		}
	}
	for s, n := range signalNames {
		if n == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("unknown interrupt signal %q", name)
}

// quoteMap formats m as buildbot (Python) shows a dict: {'a': 'b'}.
func quoteMap(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, pyQuote(k)+": "+pyQuote(m[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// signalName is the signal's name without SIG ("KILL"), or its number.
func signalName(s syscall.Signal) string {
	if n, ok := signalNames[s]; ok {
		return n
	}
	return strconv.Itoa(int(s))
}

// pythonPath is env and lists with the worker's own PYTHONPATH appended to
// one the step sets, as buildbot-worker appends it.
func pythonPath(env map[string]string, lists map[string][]string) (map[string]string, map[string][]string) {
	sep := string(os.PathListSeparator)
	if l, ok := lists["PYTHONPATH"]; ok {
		lists = maps.Clone(lists)
		delete(lists, "PYTHONPATH")
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		env["PYTHONPATH"] = strings.Join(l, sep) + sep + "${PYTHONPATH}"
	} else if v, ok := env["PYTHONPATH"]; ok {
		env = maps.Clone(env)
		env["PYTHONPATH"] = v + sep + "${PYTHONPATH}"
	}
	return env, lists
}
