package daemon

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childLog is the daemon child of TestReopenLogs: it logs to x.log next to
// its pid file, with stdout and stderr following it, and on ReopenSignal
// reopens it, logs MsgLogReopened and writes a line to stderr.
func childLog(pidFile string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	reopen := make(chan os.Signal, 1)
	signal.Notify(reopen, ReopenSignal)
	l, err := OpenLog(strings.TrimSuffix(pidFile, ".pid")+".log", true)
	if err != nil {
		Fail(err)
		return 1
	}
	defer l.Close()
	if err := WritePID(pidFile); err != nil {
		Fail(err)
		return 1
	}
	defer os.Remove(pidFile)
	Ready()
	for {
		select {
		case <-ctx.Done():
			return 0
		case <-reopen:
			if err := l.Reopen(); err != nil {
				fmt.Fprintln(l, "reopen:", err)
				continue
			}
			fmt.Fprintln(l, MsgLogReopened)
			fmt.Fprintln(os.Stderr, "stderr after reopen")
		}
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestOpenLogMode: a log file is created 0600, and an existing one that
// others may read is made 0600; what it held stays.
func TestOpenLogMode(t *testing.T) {
	t.Parallel()
	for _, existing := range []os.FileMode{0, 0o644, 0o666, 0o640, 0o600} {
		t.Run(fmt.Sprintf("%04o", existing), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "x.log")
			want := ""
			if existing != 0 {
				want = "before\n"
				if err := os.WriteFile(path, []byte(want), existing); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, existing); err != nil { // past the umask
					t.Fatal(err)
				}
			}
			l, err := OpenLog(path, false)
			if err != nil {
				t.Fatalf("OpenLog: %v", err)
			}
			fmt.Fprintln(l, "after")
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if m := mode(t, path); m != LogMode {
				t.Errorf("mode %04o, want %04o", m, LogMode)
			}
			if b, _ := os.ReadFile(path); string(b) != want+"after\n" {
				t.Errorf("log = %q, want %q", b, want+"after\n")
			}
		})
	}
}

// TestLogReopen: after the file is moved away, Reopen creates a new one
// (0600) at the path, and the writes that follow go there.
func TestLogReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "x.log")
	l, err := OpenLog(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fmt.Fprintln(l, "one")
	if err := os.Rename(path, path+".0"); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(l, "two")
	if err := l.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	fmt.Fprintln(l, "three")
	for p, want := range map[string]string{path + ".0": "one\ntwo\n", path: "three\n"} {
		if b, _ := os.ReadFile(p); string(b) != want {
			t.Errorf("%s = %q, want %q", filepath.Base(p), b, want)
		}
		if m := mode(t, p); m != LogMode {
			t.Errorf("%s: mode %04o, want %04o", filepath.Base(p), m, LogMode)
		}
	}
}

// TestReopenLogs: a daemon started by Start, its log file rotated away,
// writes to a new file after ReopenLogs, its stderr too (where a panic
// would go). Start itself makes an existing world-readable log 0600.
func TestReopenLogs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "x.pid")
	logFile := filepath.Join(dir, "x.log")
	if err := os.WriteFile(logFile, []byte("from an older run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(logFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Start([]string{"child-log", pidFile}, logFile, 10*time.Second); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := Stop(pidFile, 10*time.Second); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	if m := mode(t, logFile); m != LogMode {
		t.Errorf("log file after Start: mode %04o, want %04o", m, LogMode)
	}
	if err := os.Rename(logFile, logFile+".0"); err != nil {
		t.Fatal(err)
	}
	if err := ReopenLogs(pidFile, logFile, 30*time.Second); err != nil {
		t.Fatalf("ReopenLogs: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(logFile)
		if strings.Contains(string(b), "stderr after reopen") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon's stderr does not reach the new log file; it holds:\n%s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m := mode(t, logFile); m != LogMode {
		t.Errorf("new log file: mode %04o, want %04o", m, LogMode)
	}
	old, _ := os.ReadFile(logFile + ".0")
	if !strings.Contains(string(old), "from an older run") || !strings.Contains(string(old), "child starting child-log") || strings.Contains(string(old), "after reopen") {
		t.Errorf("old log file:\n%s", old)
	}
}

func TestReopenLogsNotRunning(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	err := ReopenLogs(filepath.Join(dir, "none.pid"), filepath.Join(dir, "x.log"), time.Second)
	if err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("ReopenLogs without a daemon = %v, want not running", err)
	}
}
