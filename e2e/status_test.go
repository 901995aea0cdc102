package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStatusBelievesOnlyItsMaster: `gbb-master status` (systemd's
// ExecStartPost, the rc.d script's status) says "running and ready" of the
// running master only: not of another program answering 200 on the web
// port once the master is stopped, nor when the pid file names a live
// process but the server on the port cannot prove it holds the master's
// key of this start.
func TestStatusBelievesOnlyItsMaster(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(loopback + workerW1)
	e.startMaster()
	if out := mustRun(t, e.master, "status", "--wait", "30s", e.masterDir); !strings.Contains(out, "running as pid") || !strings.Contains(out, "ready") {
		t.Errorf("gbb-master status of the running master: %q", out)
	}
	keyPath := filepath.Join(e.masterDir, "master.readykey")
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the ready key %s: %v, mode %v, want 0600", keyPath, err, fi)
	}
	e.stopMaster()
	if _, err := os.Stat(keyPath); err == nil {
		t.Errorf("a stopped master leaves its ready key %s", keyPath)
	}

	// Another program, as `python3 -m http.server`, answers 200 on the
	// master's web port.
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", e.WebPort))
	if err != nil {
		t.Fatal(err)
	}
	other := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})}
	go other.Serve(l)
	t.Cleanup(func() { other.Close() })
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", e.WebPort)); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the other program does not answer: %v", err)
	} else {
		resp.Body.Close()
	}
	if out, err := run(t, e.master, "status", e.masterDir); err == nil || !strings.Contains(out, "not running") {
		t.Errorf("gbb-master status, the master stopped and another program on its port: %v %q, want exit 1 and \"not running\"", err, out)
	}

	// A pid file naming a live process (left, or its pid reused) and a
	// key file: the other program cannot prove it holds the key.
	sleeper := exec.Command("sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	pidPath := filepath.Join(e.masterDir, "master.pid")
	t.Cleanup(func() {
		os.Remove(pidPath) // before startMaster's cleanup would stop that pid
		sleeper.Process.Kill()
		sleeper.Wait()
	})
	if err := os.WriteFile(pidPath, []byte(strconv.Itoa(sleeper.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, []byte("a key the other program does not know"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, e.master, "status", e.masterDir); err == nil || !strings.Contains(out, "another program answers") {
		t.Errorf("gbb-master status, a live pid and another program on the port: %v %q, want exit 1 and \"another program answers\"", err, out)
	}
}
