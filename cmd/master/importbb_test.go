package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testdeb"
)

// -o naming the master.cfg itself is refused before anything runs: the
// buildbot config is neither overwritten nor chmodded.
func TestImportBuildbotRefusesOverwritingInput(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "master.cfg")
	const text = "c = BuildmasterConfig = {}\n"
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// The same file by another name, too.
	if err := os.Symlink(cfg, filepath.Join(dir, "link.cfg")); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{cfg, filepath.Join(dir, "link.cfg"), filepath.Join(dir, ".", "master.cfg")} {
		err := importBuildbot([]string{"-o", out, cfg})
		if err == nil || !strings.Contains(err.Error(), "is the master.cfg itself") {
			t.Errorf("-o %s: %v", out, err)
		}
	}
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != text || st.Mode().Perm() != 0o644 {
		t.Errorf("master.cfg changed: %q, mode %o", data, st.Mode().Perm())
	}
}

// -timeout 0 or less is refused with a reason, before anything runs
// (LoadWith would take it as its default of two minutes).
func TestImportBuildbotRefusesNonPositiveTimeout(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "master.cfg")
	if err := os.WriteFile(cfg, []byte("c = BuildmasterConfig = {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"0", "-1s"} {
		err := importBuildbot([]string{"-timeout", d, cfg})
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "must be more than 0") {
			t.Errorf("-timeout %s: %v", d, err)
		}
	}
}

// SIGHUP (the terminal closed) stops an import as SIGTERM does: the
// loader's process group, children of master.cfg included, is killed and
// the command ends with an error. Unhandled, SIGHUP would kill
// gbb-master (here: this test) and leave master.cfg's children running.
func TestImportBuildbotSIGHUPKillsLoader(t *testing.T) {
	testdeb.Need(t, "buildbot", "buildbot")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "master.cfg")
	src := `import subprocess, os
p = subprocess.Popen(["sleep", "600"])
open("child.pid.tmp", "w").write(str(p.pid))
os.rename("child.pid.tmp", "child.pid")
while True:
    pass
`
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- importBuildbot([]string{"-o", filepath.Join(dir, "master.toml"), cfg}) }()
	var pid int
	deadline := time.Now().Add(60 * time.Second)
	for pid == 0 && time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(dir, "child.pid")); err == nil {
			pid, _ = strconv.Atoi(string(b))
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if pid == 0 {
		t.Fatal("master.cfg's child never started")
	}
	defer func() { _ = syscall.Kill(pid, syscall.SIGKILL) }()
	// The handler is in place: the loader (and so master.cfg) runs
	// only after importBuildbot took the signals.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "loader was killed") {
			t.Errorf("import after SIGHUP: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("import-buildbot still runs a minute after SIGHUP")
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("master.cfg's child %d still runs after SIGHUP", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
