package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWorkerLogFile runs the real worker in the background against a
// master in the test: worker.log, world-readable from an older run, is
// made 0600 at start; moved away (as newsyslog does), reopen-logs makes the
// worker write a new worker.log, 0600, where its stop is then logged.
func TestWorkerLogFile(t *testing.T) {
	t.Parallel()
	addr, attach := startMaster(t)
	dir := filepath.Join(t.TempDir(), "w")
	if code, _, stderr := gbbWorker(t, "create-worker", dir, addr, "w1", "pw"); code != 0 {
		t.Fatalf("create-worker: %s", stderr)
	}
	logPath := filepath.Join(dir, "worker.log")
	if err := os.WriteFile(logPath, []byte("an older run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(logPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := gbbWorker(t, "start", dir); code != 0 {
		t.Fatalf("start: exit %d: %s%s", code, stdout, stderr)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			gbbWorker(t, "stop", dir)
		}
	})
	waitAttach(t, attach)
	checkMode := func(path string) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", path, fi.Mode().Perm())
		}
	}
	checkMode(logPath)

	if err := os.Rename(logPath, logPath+".0"); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := gbbWorker(t, "reopen-logs", dir)
	if code != 0 || !strings.Contains(stdout, "writes to "+logPath) {
		t.Fatalf("reopen-logs: exit %d: %s%s", code, stdout, stderr)
	}
	checkMode(logPath)
	if code, _, stderr := gbbWorker(t, "stop", dir); code != 0 {
		t.Fatalf("stop: exit %d: %s", code, stderr)
	}
	stopped = true
	cur, _ := os.ReadFile(logPath)
	old, _ := os.ReadFile(logPath + ".0")
	if !bytes.Contains(cur, []byte("log file reopened")) || !bytes.Contains(cur, []byte("worker stopped")) {
		t.Errorf("new worker.log:\n%s", cur)
	}
	if !bytes.Contains(old, []byte("connected to master")) || bytes.Contains(old, []byte("worker stopped")) {
		t.Errorf("rotated worker.log:\n%s", old)
	}
	if code, _, stderr := gbbWorker(t, "reopen-logs", dir); code != 1 || !strings.Contains(stderr, "not running") {
		t.Errorf("reopen-logs when stopped: exit %d, %q", code, stderr)
	}
}
