package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

// runSetProperty sets a build property, as buildbot's SetProperty.
func (b *build) runSetProperty(step store.Step, sc config.Step) (int, string) {
	b.setProperty(sc.Property, sc.Value, "SetProperty Step")
	return store.Success, fmt.Sprintf("property '%s' set", sc.Property)
}

// runLogMessage writes the step's message into its log, as buildbot's
// LogRenderable.
func (b *build) runLogMessage(step store.Step, sc config.Step) (int, string) {
	b.writeText(step, sc.LogName, sc.Message)
	return store.Success, "logged " + sc.LogName
}

// maxPropertyOutput is how much of its command's stdout a
// set_property_from_command step keeps.
const maxPropertyOutput = 1 << 20

// runSetPropertyFromCommand runs its command on the worker and sets a
// property from its stdout, as buildbot's SetPropertyFromCommand: the whole
// output (stripped of surrounding whitespace unless strip is false), or the
// first group of regex's first match in it. A command that fails sets
// nothing; a regex that does not match fails the step.
func (b *build) runSetPropertyFromCommand(ctx context.Context, step store.Step, sc config.Step, log *slog.Logger) (int, string) {
	desc := sc.Description
	if desc == "" {
		desc = quoteCommand(sc.Command)
	}
	b.check(b.e.st.SetStepStateString(step.ID, desc))
	var mu sync.Mutex
	var stdout strings.Builder
	tap := func(o protocol.Output) {
		if o.Stream != protocol.Stdout {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if room := maxPropertyOutput - stdout.Len(); room > 0 {
			stdout.Write(o.Data[:min(len(o.Data), room)])
		}
	}
	res, results := b.runCommand(ctx, step, protocol.Command{
		Builder: b.cfg.WorkerDir(),
		Shell: &protocol.ShellCommand{
			Argv:     sc.Command.Argv,
			Script:   sc.Command.Script,
			Workdir:  sc.Workdir,
			Env:      sc.Env,
			EnvLists: sc.EnvLists,
			Timeout:  sc.Timeout.Duration,
			MaxTime:  sc.MaxTime.Duration,
		},
	}, log, tap)
	if results != store.Success {
		return results, desc + stateSuffix(results, res.TimedOut)
	}
	mu.Lock()
	value := stdout.String()
	mu.Unlock()
	if sc.Strip {
		value = strings.TrimSpace(value)
	}
	if sc.Regex != "" {
		m := regexp.MustCompile(sc.Regex).FindStringSubmatch(value)
		if m == nil {
			return store.Failure, b.stepError(step, fmt.Sprintf("property '%s' not set: regex %q does not match the output", sc.Property, sc.Regex))
		}
		value = m[1]
	}
	b.setProperty(sc.Property, value, "SetPropertyFromCommand Step")
	return store.Success, fmt.Sprintf("property '%s' set", sc.Property)
}

// errNoOutput is why a master_shell_command is killed after its timeout
// without output.
var errNoOutput = errors.New("no output")

// errMaxTime is why a master_shell_command is killed after its max_time.
var errMaxTime = errors.New("max_time reached")

// runMasterShell runs its command on the master, as buildbot's
// MasterShellCommand: in the master's basedir, with the master's
// environment plus env, in its own process group, which is killed when the
// step is stopped, times out (timeout without output, max_time) or ends
// (so that nothing it started in the background outlives it).
func (b *build) runMasterShell(ctx context.Context, step store.Step, sc config.Step, log *slog.Logger) (int, string) {
	st := b.e.st
	desc := sc.Description
	if desc == "" {
		desc = quoteCommand(sc.Command)
	}
	b.check(st.SetStepStateString(step.ID, desc))
	l, err := st.AddLog(step.ID, "stdio", "s")
	if err != nil {
		log.Error("add log", "err", err)
		return store.Exception, desc + stateSuffix(store.Exception, false)
	}
	lw := newLogWriter(st, l.ID, b.e.logOptions(), log)
	defer lw.close()
	if b.e.basedir == "" {
		lw.header("the master's basedir is unknown: cannot run a master_shell_command")
		return store.Exception, desc + stateSuffix(store.Exception, false)
	}

	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if sc.MaxTime.Duration > 0 {
		t := time.AfterFunc(sc.MaxTime.Duration, func() { cancel(errMaxTime) })
		defer t.Stop()
	}
	var idle *time.Timer
	if sc.Timeout.Duration > 0 {
		idle = time.AfterFunc(sc.Timeout.Duration, func() { cancel(errNoOutput) })
		defer idle.Stop()
	}
	argv := sc.Command.Argv
	if argv == nil {
		argv = []string{"/bin/sh", "-c", sc.Command.Script}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = b.e.basedir
	cmd.Env = protocol.CommandEnv(os.Environ(), sc.Env, sc.EnvLists)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout = streamWriter{lw, protocol.Stdout, idle, sc.Timeout.Duration}
	cmd.Stderr = streamWriter{lw, protocol.Stderr, idle, sc.Timeout.Duration}
	lw.header(sc.Command.String())
	lw.header(" in dir " + cmd.Dir)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		lw.header("error: " + err.Error())
		lw.header("program finished with exit code -1")
		return store.Failure, desc + stateSuffix(store.Failure, false)
	}
	pgid := cmd.Process.Pid
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-cctx.Done():
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		werr = <-waited
	}
	// Whatever the command left running in its group goes with it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	lw.endOutput()

	why := context.Cause(cctx)
	if cctx.Err() == nil {
		why = nil
	}
	code := cmd.ProcessState.ExitCode()
	switch {
	case errors.Is(why, ErrShutdown):
		lw.header("master shutting down: killed")
		return store.Retry, desc + stateSuffix(store.Retry, false)
	case why != nil && ctx.Err() != nil:
		lw.header("killed: " + why.Error())
		return store.Cancelled, desc + stateSuffix(store.Cancelled, false)
	case why != nil:
		lw.header(fmt.Sprintf("command timed out: %v; killed", why))
		lw.header("program finished with exit code -1")
		return store.Failure, desc + stateSuffix(store.Failure, true)
	}
	var exitErr *exec.ExitError
	if werr != nil && !errors.As(werr, &exitErr) {
		lw.header("error: " + werr.Error())
	}
	lw.header(fmt.Sprintf("program finished with exit code %d", code))
	lw.header(fmt.Sprintf("elapsedTime=%f", time.Since(start).Seconds()))
	if code != 0 {
		return store.Failure, desc + stateSuffix(store.Failure, false)
	}
	return store.Success, desc
}

// streamWriter writes a master command's output into its log, and restarts
// its timeout without output.
type streamWriter struct {
	lw      *logWriter
	stream  protocol.Stream
	idle    *time.Timer // nil: no timeout
	timeout time.Duration
}

var _ io.Writer = streamWriter{}

func (w streamWriter) Write(p []byte) (int, error) {
	if w.idle != nil {
		w.idle.Reset(w.timeout)
	}
	w.lw.output(protocol.Output{Stream: w.stream, Data: p})
	return len(p), nil
}
