package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestMain doubles as the daemon child: Start re-executes the test binary
// with "child-MODE PIDFILE".
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && strings.HasPrefix(os.Args[1], "child-") {
		os.Exit(child(os.Args[1], os.Args[2]))
	}
	os.Exit(m.Run())
}

func child(mode, pidFile string) int {
	fmt.Println("child starting", mode)
	switch mode {
	case "child-ready":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		if err := WritePID(pidFile); err != nil {
			Fail(err)
			return 1
		}
		if os.Getenv(notifyEnv) == "" {
			fmt.Println("no notify env")
		}
		Ready()
		if os.Getenv(notifyEnv) != "" {
			fmt.Println("notify env still set after Ready")
			return 3
		}
		<-ctx.Done()
		os.Remove(pidFile)
		return 0
	case "child-start":
		// A parent, run through a symlink: starts a child-ready daemon.
		if _, err := Start([]string{"child-ready", pidFile}, pidFile+".log", 10*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "child-log":
		return childLog(pidFile)
	case "child-fail":
		Fail(errors.New("port 9989 is busy"))
		return 1
	case "child-exit":
		fmt.Fprintln(os.Stderr, "config: bad key on line 3")
		return 2
	case "child-hang":
		// Not select{}: without -race the runtime would see a deadlock
		// and exit, instead of hanging as the test needs.
		time.Sleep(time.Hour)
	}
	return 9
}

func TestStartReadyStop(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "x.pid")
	logFile := filepath.Join(dir, "x.log")
	pid, err := Start([]string{"child-ready", pidFile}, logFile, 10*time.Second)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got, err := readPID(pidFile); err != nil || got != pid {
		t.Errorf("pid file says %d, %v; want %d", got, err, pid)
	}
	sid, err := unix.Getsid(pid)
	if err != nil || sid != pid {
		t.Errorf("child session = %d, %v; want its own (%d)", sid, err, pid)
	}
	if err := WritePID(pidFile); err == nil || !strings.Contains(err.Error(), fmt.Sprint(pid)) {
		t.Errorf("WritePID over a live daemon = %v, want an error naming %d", err, pid)
	}
	if err := Stop(pidFile, 10*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if alive(pid) {
		t.Errorf("process %d alive after Stop", pid)
	}
	if err := Stop(pidFile, time.Second); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("second Stop = %v, want not running", err)
	}
	log, _ := os.ReadFile(logFile)
	if !strings.Contains(string(log), "child starting child-ready") || strings.Contains(string(log), "notify env") {
		t.Errorf("log:\n%s", log)
	}
}

func TestStartFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode, want string
	}{
		{"child-fail", "daemon failed to start: port 9989 is busy"},
		{"child-exit", "config: bad key on line 3"},
		{"child-hang", "not ready after"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			timeout := 10 * time.Second
			if tt.mode == "child-hang" {
				timeout = 200 * time.Millisecond
			}
			_, err := Start([]string{tt.mode, filepath.Join(dir, "x.pid")}, filepath.Join(dir, "x.log"), timeout)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestWritePID(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "p.pid")
	// A stale pid file (no such process) is overwritten.
	if err := os.WriteFile(path, []byte("999999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WritePID(path); err != nil {
		t.Fatalf("WritePID over a stale file: %v", err)
	}
	if got, err := readPID(path); err != nil || got != os.Getpid() {
		t.Errorf("pid file = %d, %v; want %d", got, err, os.Getpid())
	}
	// A live process (our parent) is refused.
	if err := os.WriteFile(path, []byte(fmt.Sprintln(os.Getppid())), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WritePID(path); err == nil || !strings.Contains(err.Error(), fmt.Sprint(os.Getppid())) {
		t.Errorf("WritePID over a live process = %v", err)
	}
}

func TestStopNotRunning(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := Stop(filepath.Join(dir, "none.pid"), time.Second); err == nil || !strings.Contains(err.Error(), "no pid file") {
		t.Errorf("Stop without pid file = %v", err)
	}
}

func TestNotDaemonNoop(t *testing.T) {
	// Not started by Start: Ready and Fail do nothing.
	if os.Getenv(notifyEnv) != "" {
		t.Skip("running under Start")
	}
	Ready()
	Fail(errors.New("x"))
}

// TestStartKeepsArgv0: a binary run through a symlink (/usr/local/bin/gbb-master
// linking elsewhere) starts a child whose argv[0] is the symlink, the
// path rc.subr's procname check looks for, not the resolved binary.
func TestStartKeepsArgv0(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	link := filepath.Join(dir, "gbb-link")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "x.pid")
	cmd := exec.Command(link, "child-start", pidFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s child-start: %v\n%s", link, err, out)
	}
	pid, err := ReadPID(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Stop(pidFile, 10*time.Second); err != nil {
			t.Error(err)
		}
	})
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if diff := cmp.Diff([]string{link, "child-ready", pidFile}, args); diff != "" {
		t.Errorf("daemon's argv (-want +got):\n%s", diff)
	}
}
