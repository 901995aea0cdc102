package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// notifyEnv marks a child started by Start; its value is the number of the
// file descriptor the child reports on.
const notifyEnv = "GBB_DAEMON_NOTIFY"

// notifyFD is the child's end of the report pipe: the first ExtraFile.
const notifyFD = 3

// Messages on the report pipe.
const (
	readyMsg = "ready\n"
	failMsg  = "fail "
)

// Start re-executes the running binary with args (which must make the
// child run in the foreground) and the same argv[0], detached in its own session, stdout and
// stderr appended to logFile (made LogMode, as OpenLog does), and waits
// until the child calls Ready, or exits, or timeout passes. On failure it returns an error that includes
// the child's reason (what it passed to Fail, or the tail of logFile); a
// child that is not ready in time is killed.
//
// While the caller still runs, a goroutine reaps the child if it exits.
func Start(args []string, logFile string, timeout time.Duration) (pid int, err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("start daemon: find own binary: %w", err)
	}
	logf, err := openLog(logFile)
	if err != nil {
		return 0, fmt.Errorf("start daemon: %w", err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("start daemon: %w", err)
	}
	defer r.Close()

	cmd := exec.Command(exe, args...)
	// The child's argv[0] is the parent's, not exe: os.Executable resolves
	// symlinks, and rc.subr finds the daemon by its argv[0] (procname), so
	// a /usr/local/bin/gbb-master that links elsewhere would seem not to run.
	if len(os.Args) > 0 && os.Args[0] != "" {
		cmd.Args[0] = os.Args[0]
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.Env = append(os.Environ(), notifyEnv+"="+strconv.Itoa(notifyFD))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return 0, fmt.Errorf("start daemon %s: %w", exe, err)
	}
	pid = cmd.Process.Pid

	// The child closes its end when it reports, or when it exits.
	_ = r.SetReadDeadline(time.Now().Add(timeout))
	msg, rerr := io.ReadAll(io.LimitReader(r, 64<<10))
	switch {
	case string(msg) == readyMsg:
		go cmd.Wait() // reap the child if it dies while we run
		return pid, nil
	case bytes.HasPrefix(msg, []byte(failMsg)):
		waitOrKill(cmd, failGrace)
		return 0, fmt.Errorf("daemon failed to start: %s", bytes.TrimPrefix(msg, []byte(failMsg)))
	case errors.Is(rerr, os.ErrDeadlineExceeded):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 0, fmt.Errorf("daemon not ready after %s, killed it%s", timeout, logTail(logFile))
	}
	werr := cmd.Wait()
	if werr == nil {
		werr = errors.New("exited")
	}
	return 0, fmt.Errorf("daemon stopped before it was ready (%v)%s", werr, logTail(logFile))
}

// failGrace is how long a child that reported failure has to exit before
// it is killed.
const failGrace = 5 * time.Second

// waitOrKill waits for cmd to exit, killing it after d.
func waitOrKill(cmd *exec.Cmd, d time.Duration) {
	t := time.AfterFunc(d, func() { _ = cmd.Process.Kill() })
	defer t.Stop()
	_ = cmd.Wait()
}

// logTail returns the last lines of the log file, to explain a failure.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-10):]
	return "; last lines of " + path + ":\n" + strings.Join(lines, "\n")
}

// reportOnce guards the report pipe, which belongs to the whole process
// (hence package state).
var reportOnce sync.Once

func report(msg string) {
	reportOnce.Do(func() {
		v := os.Getenv(notifyEnv)
		if v == "" {
			return
		}
		os.Unsetenv(notifyEnv) // not for the commands we run
		fd, err := strconv.Atoi(v)
		if err != nil {
			return
		}
		f := os.NewFile(uintptr(fd), "daemon-notify")
		if f == nil {
			return
		}
		defer f.Close()
		_, _ = f.WriteString(msg)
	})
}

// Ready tells the parent that start-up succeeded. It is a no-op when the
// process was not started by Start, and after the first Ready or Fail.
func Ready() { report(readyMsg) }

// Fail tells the parent why start-up failed. It is a no-op when the
// process was not started by Start, and after the first Ready or Fail.
func Fail(err error) { report(failMsg + err.Error()) }

// readPID reads a pid file.
func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: %q is not a pid", path, bytes.TrimSpace(b))
	}
	return pid, nil
}

// alive reports whether a process with this pid exists and is not a
// zombie (a daemon whose parent has not reaped it yet is dead).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// Where there is a Linux-style /proc, tell zombies apart.
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 {
		if f := strings.Fields(string(stat[i+1:])); len(f) > 0 && f[0] == "Z" {
			return false
		}
	}
	return true
}

// WritePID writes the current process's pid to path. It refuses when the
// file names another live process.
func WritePID(path string) error {
	if pid, err := readPID(path); err == nil && pid != os.Getpid() && alive(pid) {
		return fmt.Errorf("pid file %s names running process %d: already running?", path, pid)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pid-*")
	if err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := fmt.Fprintf(tmp, "%d\n", os.Getpid()); err != nil {
		tmp.Close()
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// Stop sends SIGTERM to the process named in pidFile and waits up to
// timeout for it to exit. It returns a clear error when the process is not
// running, and removes the pid file once the process is gone (unless the
// process removed it itself).
func Stop(pidFile string, timeout time.Duration) error {
	return StopWith(pidFile, syscall.SIGTERM, timeout)
}

// StopWith is Stop with the signal given. When the process is still
// running after timeout, the error wraps ErrStillRunning.
func StopWith(pidFile string, sig syscall.Signal, timeout time.Duration) error {
	pid, err := ReadPID(pidFile)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("stop process %d: %w", pid, err)
	}
	// Not our child: poll for it to go.
	deadline := time.Now().Add(timeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d (from %s) %w %s after %s", pid, pidFile, ErrStillRunning, timeout, signalName(sig))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p, err := readPID(pidFile); err == nil && p == pid {
		os.Remove(pidFile)
	}
	return nil
}

// ErrStillRunning is wrapped by StopWith's error when the process outlives
// the timeout.
var ErrStillRunning = errors.New("still running")

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGUSR1:
		return "SIGUSR1"
	case syscall.SIGUSR2:
		return "SIGUSR2"
	}
	return sig.String()
}

// ReadPID returns the pid of the live process named in pidFile, or an error
// saying it is not running.
func ReadPID(pidFile string) (int, error) {
	pid, err := readPID(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("not running: no pid file %s", pidFile)
	}
	if err != nil {
		return 0, err
	}
	if !alive(pid) {
		return 0, fmt.Errorf("not running: process %d (from %s) is gone", pid, pidFile)
	}
	return pid, nil
}

// ReopenSignal makes a gbb program reopen its log file (SIGHUP is the
// master's reconfig, SIGUSR1 its clean stop).
const ReopenSignal = syscall.SIGUSR2

// ReopenLogs sends ReopenSignal to the process named in pidFile and waits
// up to timeout for it to log MsgLogReopened into the file at logPath: the
// proof that it writes there now, whether logPath was moved away (the
// process creates it) or newsyslog put an empty file in its place.
func ReopenLogs(pidFile, logPath string, timeout time.Duration) error {
	pid, err := ReadPID(pidFile)
	if err != nil {
		return err
	}
	var from int64
	if fi, err := os.Stat(logPath); err == nil {
		from = fi.Size()
	}
	if err := syscall.Kill(pid, ReopenSignal); err != nil {
		return fmt.Errorf("signal process %d: %w", pid, err)
	}
	deadline := time.Now().Add(timeout)
	for !logHas(logPath, from, MsgLogReopened) {
		if time.Now().After(deadline) {
			return fmt.Errorf("sent %s to process %d (from %s), but %s has no %q after %s", signalName(ReopenSignal), pid, pidFile, logPath, MsgLogReopened, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// logHas reports whether the file at path holds msg past offset from (or
// from its start, when it is now shorter than from: a new file).
func logHas(path string, from int64, msg string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	if fi.Size() < from {
		from = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, from, fi.Size()-from))
	return err == nil && bytes.Contains(b, []byte(msg))
}
