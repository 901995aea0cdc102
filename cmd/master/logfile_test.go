package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildMaster builds gbb-master into a temp dir.
func buildMaster(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gbb-master")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runMaster runs gbb-master and fails the test when it exits non-zero.
func runMaster(t *testing.T, bin string, args ...string) string {
	t.Helper()
	// Not t.Context(): stop runs in Cleanup, after it is cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("gbb-master %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestMasterLogFile runs the real master in the background: master.log,
// world-readable from an older run, is made 0600 at start; moved away (as
// newsyslog does), reopen-logs makes the master write a new master.log,
// 0600, where a reconfig's verdict then appears.
func TestMasterLogFile(t *testing.T) {
	t.Parallel()
	bin := buildMaster(t)
	dir := t.TempDir()
	conf := `buildbot_url = "http://127.0.0.1/"
[protocols.grpc]
port = 0
interface = "127.0.0.1"
[www]
port = 0
interface = "127.0.0.1"
`
	if err := os.WriteFile(filepath.Join(dir, configFile), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, logFile)
	if err := os.WriteFile(logPath, []byte("an older run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(logPath, 0o644); err != nil {
		t.Fatal(err)
	}
	runMaster(t, bin, "start", dir)
	t.Cleanup(func() { runMaster(t, bin, "stop", dir) })
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
	if out := runMaster(t, bin, "reopen-logs", dir); !strings.Contains(out, "writes to "+logPath) {
		t.Errorf("reopen-logs said %q", out)
	}
	checkMode(logPath)
	runMaster(t, bin, "reconfig", dir)
	cur, _ := os.ReadFile(logPath)
	old, _ := os.ReadFile(logPath + ".0")
	if !bytes.Contains(cur, []byte("log file reopened")) || !bytes.Contains(cur, []byte(msgReconfigApplied)) {
		t.Errorf("new master.log:\n%s", cur)
	}
	if !bytes.Contains(old, []byte("gbb-master is up")) || bytes.Contains(old, []byte(msgReconfigApplied)) {
		t.Errorf("rotated master.log:\n%s", old)
	}

	// Removed by hand: reopen-logs makes the master create it again.
	if err := os.Remove(logPath); err != nil {
		t.Fatal(err)
	}
	runMaster(t, bin, "reopen-logs", dir)
	checkMode(logPath)
}

// TestReopenLogsNotRunning: reopen-logs without a master fails, saying so.
func TestReopenLogsNotRunning(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	err := run([]string{"reopen-logs", dir})
	if err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("reopen-logs = %v, want not running", err)
	}
}

// TestConfigMessages: start, restart and checkconfig on a directory
// without master.toml say that the file does not exist and how to make
// one, in one line, not "no such file" then "config has errors"; and
// checkconfig warns when master.toml holds a password and others may read
// it, and not when it is 0600 or keeps its passwords in files.
func TestConfigMessages(t *testing.T) {
	t.Parallel()
	bin := buildMaster(t)
	missing := filepath.Join(t.TempDir(), "nonexistent")
	for _, cmd := range []string{"start", "restart", "checkconfig"} {
		out, err := exec.Command(bin, cmd, missing).CombinedOutput()
		want := filepath.Join(missing, configFile) + " does not exist (gbb-master create-master " + missing
		if err == nil || !strings.Contains(string(out), want) || strings.Contains(string(out), "config has errors") ||
			strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
			t.Errorf("gbb-master %s %s: %v\n%s\nwant one line with %q", cmd, missing, err, out, want)
		}
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "w.pass"), []byte("kq3vX9pL2mZ7rT5wYb8n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const base = `buildbot_url = "http://127.0.0.1/"
[[workers]]
name = "w"
`
	for _, c := range []struct {
		name, conf string
		mode       os.FileMode
		warn       string // "" means no warning
	}{
		{"inline password, 0644", base + `password = "kq3vX9pL2mZ7rT5wYb8n"` + "\n", 0o644, "holds secrets (workers.password) and is readable by its group or others (mode 0644)"},
		{"inline password, 0640", base + `password = "kq3vX9pL2mZ7rT5wYb8n"` + "\n", 0o640, "(mode 0640)"},
		{"inline password, 0600", base + `password = "kq3vX9pL2mZ7rT5wYb8n"` + "\n", 0o600, ""},
		{"password_file, 0644", base + `password_file = "w.pass"` + "\n", 0o644, ""},
	} {
		p := filepath.Join(dir, configFile)
		if err := os.WriteFile(p, []byte(c.conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, c.mode); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "checkconfig", dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: checkconfig: %v\n%s", c.name, err, stderr.String())
		}
		got := stderr.String()
		if c.warn == "" && got != "" || c.warn != "" && !strings.Contains(got, "warning: "+p) || !strings.Contains(got, c.warn) {
			t.Errorf("%s: checkconfig's stderr = %q, want a warning with %q (none if empty)", c.name, got, c.warn)
		}
	}
}
