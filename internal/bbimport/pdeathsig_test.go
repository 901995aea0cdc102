//go:build linux

package bbimport

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// loaderParentEnv, set, makes the test binary a gbb-master stand-in: it
// loads the master.cfg it names, as import-buildbot does, and is killed.
const loaderParentEnv = "GBB_BBIMPORT_LOADER_PARENT"

func TestMain(m *testing.M) {
	if p := os.Getenv(loaderParentEnv); p != "" {
		_, err := LoadWith(context.Background(), p, Options{Timeout: 10 * time.Minute})
		fmt.Fprintln(os.Stderr, "load ended:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// A gbb-master killed by SIGKILL while buildbot's loader runs (no
// handler runs, the timeout never comes) takes the loader with it: the
// loader gets SIGKILL when its parent dies, and runs no longer.
func TestImportLoaderDiesWithParent(t *testing.T) {
	needBuildbot(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "master.cfg")
	src := `import os
open("loader.pid.tmp", "w").write(str(os.getpid()))
os.rename("loader.pid.tmp", "loader.pid")
while True:
    pass
`
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(os.Args[0], "-test.run=^$")
	parent.Env = append(os.Environ(), loaderParentEnv+"="+cfg)
	parent.Stderr = os.Stderr
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- parent.Wait() }()
	var pid int
	deadline := time.Now().Add(60 * time.Second)
	for pid == 0 && time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(dir, "loader.pid")); err == nil {
			pid, _ = strconv.Atoi(string(b))
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if pid == 0 {
		_ = parent.Process.Kill()
		<-waited
		t.Fatal("buildbot's loader never ran master.cfg")
	}
	// The loader is in a process group of its own: this kills the
	// stand-in only.
	if err := parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-waited
	gone(t, pid)
	if t.Failed() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
