package bbimport

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// dumpPy is the Python program that loads a master.cfg with buildbot's
// FileLoader and prints the loaded config as JSON.
//
//go:embed dump.py
var dumpPy []byte

// DefaultPython is the interpreter Debian's buildbot package is for.
const DefaultPython = "/usr/bin/python3"

// ErrNoBuildbot is returned when the Python interpreter cannot import
// buildbot.
var ErrNoBuildbot = errors.New("buildbot is not installed")

// LoadError is returned when buildbot refuses the master.cfg: Msg is
// buildbot's own error text.
type LoadError struct{ Msg string }

func (e *LoadError) Error() string { return e.Msg }

// DefaultTimeout bounds a load: a master.cfg that loops forever is
// stopped.
const DefaultTimeout = 2 * time.Minute

// Options are Load's settings.
type Options struct {
	// Python is the interpreter; "" means DefaultPython.
	Python string
	// Timeout bounds the load; 0 means DefaultTimeout.
	Timeout time.Duration
	// Output receives what master.cfg printed (its print() calls);
	// nil discards it.
	Output io.Writer
}

// Load runs buildbot's loader on the master.cfg at path with the Python
// interpreter python ("" means DefaultPython) and returns the JSON it
// wrote, decoded (numbers as json.Number).
func Load(ctx context.Context, python, path string) (map[string]any, error) {
	return LoadWith(ctx, path, Options{Python: python})
}

// LoadWith is Load with options. The loader writes its JSON to a pipe of
// its own, so master.cfg's prints cannot mix with it; they go to
// opts.Output. The Python process runs in a process group of its own,
// killed whole when ctx ends or the timeout passes.
func LoadWith(ctx context.Context, path string, opts Options) (map[string]any, error) {
	python := opts.Python
	if python == "" {
		python = DefaultPython
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(python); err != nil {
		return nil, fmt.Errorf("%w: no Python interpreter %s (%v); install buildbot 3.x with its Python (on Debian: apt-get install buildbot)", ErrNoBuildbot, python, err)
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	// -c: no script file to write. The JSON goes to fd 3 (ExtraFiles[0]).
	cmd := exec.CommandContext(tctx, python, "-c", string(dumpPy), abs, "3")
	// buildbot's loader reads master.cfg relative to its basedir; run it
	// there, as `buildbot checkconfig` does.
	cmd.Dir = filepath.Dir(abs)
	cmd.ExtraFiles = []*os.File{pw}
	// A process group of its own: master.cfg may start children, and
	// all of them are killed with it. Where the system has one, a
	// parent-death signal kills the loader when gbb-master is killed.
	cmd.SysProcAttr = loaderSysProcAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	printed := opts.Output
	if printed == nil {
		printed = io.Discard
	}
	// stdout and stderr are copied by two goroutines: one lock for both.
	printed = &lockedWriter{w: printed}
	var stderr bytes.Buffer
	cmd.Stdout = printed
	cmd.Stderr = io.MultiWriter(&stderr, printed)
	// The parent-death signal comes when the thread that forked the
	// loader ends, not the process: keep this goroutine on its thread
	// until the loader is waited for.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		pw.Close()
		return nil, fmt.Errorf("run buildbot's loader: %w", err)
	}
	pw.Close()
	var data []byte
	readDone := make(chan error, 1)
	go func() {
		var err error
		data, err = io.ReadAll(pr)
		readDone <- err
	}()
	err = cmd.Wait()
	// The group may hold children of master.cfg that keep the pipe open.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	rerr := <-readDone
	var ee *exec.ExitError
	switch {
	case tctx.Err() != nil && ctx.Err() == nil:
		return nil, fmt.Errorf("buildbot's loader did not finish loading %s within %v (a loop in master.cfg? -timeout sets the limit); it was killed", path, timeout)
	case ctx.Err() != nil:
		return nil, fmt.Errorf("loading %s: %w; buildbot's loader was killed", path, ctx.Err())
	case errors.As(err, &ee) && ee.ExitCode() == 3:
		return nil, fmt.Errorf("%w: %s; install buildbot 3.x for %s (on Debian: apt-get install buildbot)", ErrNoBuildbot, strings.TrimSpace(stderr.String()), python)
	case errors.As(err, &ee) && (ee.ExitCode() == 2 || ee.ExitCode() == 4):
		return nil, &LoadError{Msg: strings.TrimSpace(stderr.String())}
	case err != nil:
		return nil, fmt.Errorf("run buildbot's loader: %w: %s", err, strings.TrimSpace(stderr.String()))
	case rerr != nil:
		return nil, fmt.Errorf("read buildbot's loaded config: %w", rerr)
	case len(data) == 0:
		return nil, &LoadError{Msg: "the Python process ended before buildbot's loader wrote the config (does master.cfg call os._exit?)" + tail(stderr.String())}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("read buildbot's loaded config: %w", err)
	}
	return out, nil
}

func tail(s string) string {
	if s = strings.TrimSpace(s); s != "" {
		return ": " + s
	}
	return ""
}

// lockedWriter serializes the writes of several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
