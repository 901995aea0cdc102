package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// TestSecondWorkerOnBasedir: while a worker finishes its running command
// after a first SIGTERM, a second worker on the same basedir, started
// either way (flags, or start), is refused, exit 1, naming the basedir and
// the first's pid; it neither kills the first's command (which once was
// taken for one a dead run left running) nor replaces its worker.pid. The
// command finishes and is reported; the first worker exits 0, and then a
// worker starts on the basedir again.
func TestSecondWorkerOnBasedir(t *testing.T) {
	t.Parallel()
	addr, attach := startMaster(t)
	dir := filepath.Join(t.TempDir(), "w")
	if code, _, stderr := gbbWorker(t, "create-worker", dir, addr, "w1", "pw"); code != 0 {
		t.Fatalf("create-worker: %s", stderr)
	}
	first := exec.Command(binary, "start", "--nodaemon", dir)
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	var firstErr error
	firstDone := make(chan struct{})
	go func() { firstErr = first.Wait(); close(firstDone) }()
	t.Cleanup(func() {
		_ = first.Process.Kill()
		<-firstDone
	})
	c := waitAttach(t, attach)

	release := filepath.Join(t.TempDir(), "go")
	started := make(chan struct{})
	type result struct {
		res protocol.Result
		err error
	}
	running := make(chan result, 1)
	go func() {
		var once bool
		script := fmt.Sprintf("echo started; while [ ! -e %s ]; do sleep 0.05; done; echo finished", release)
		res, err := c.Run(context.Background(), protocol.Command{Builder: "b", Shell: &protocol.ShellCommand{Script: script}},
			func(o protocol.Output) {
				if o.Stream == protocol.Stdout && !once {
					once = true
					close(started)
				}
			})
		running <- result{res, err}
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the command did not start")
	}
	if err := first.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the first worker draining", func() bool {
		log, _ := os.ReadFile(filepath.Join(dir, "worker.log"))
		return bytes.Contains(log, []byte("the running commands finish first"))
	})

	want := fmt.Sprintf("basedir %s is in use by another gbb-worker (pid %d, ", dir, first.Process.Pid)
	if code, _, stderr := gbbWorker(t, "-master", addr, "-name", "w1", "-password", "pw", "-basedir", dir); code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("second worker (flags): exit %d, %q; want 1 and %q", code, stderr, want)
	}
	if code, _, stderr := gbbWorker(t, "start", dir); code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("second worker (start): exit %d, %q; want 1 and %q", code, stderr, want)
	}
	if pid, err := os.ReadFile(filepath.Join(dir, "worker.pid")); err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(first.Process.Pid) {
		t.Errorf("worker.pid = %q, %v; want the first worker's %d", pid, err, first.Process.Pid)
	}
	if log, _ := os.ReadFile(filepath.Join(dir, "worker.log")); bytes.Contains(log, []byte("killed a command")) {
		t.Errorf("a second worker killed the first's command:\n%s", log)
	}
	select {
	case r := <-running:
		t.Fatalf("the first worker's command ended while it ran: %+v, %v", r.res, r.err)
	default:
	}

	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-running:
		if r.err != nil || r.res.ExitCode != 0 || r.res.Interrupted {
			t.Errorf("the first worker's command: %+v, %v; want exit 0", r.res, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the first worker's command did not finish")
	}
	select {
	case <-firstDone:
		if firstErr != nil {
			t.Errorf("first worker: %v, want exit 0", firstErr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the first worker did not exit after its command")
	}

	// The first gone, its basedir is free.
	if code, stdout, stderr := gbbWorker(t, "start", dir); code != 0 {
		t.Fatalf("start after the first exited: exit %d: %s%s", code, stdout, stderr)
	}
	waitAttach(t, attach)
	if code, _, stderr := gbbWorker(t, "stop", dir); code != 0 {
		t.Errorf("stop: exit %d: %s", code, stderr)
	}
}
