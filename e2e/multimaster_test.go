package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// workerSeveralMasters is each master's config: w1 and a force scheduler
// "force" of one builder "quick" (builder id 1) on it.
const workerSeveralMasters = loopback + workerW1 + forceQuick

// TestWorkerSeveralMasters: one gbb-worker names two gbb-masters (each
// with its own store, both configured with w1). It serves the first; when
// the first is SIGKILLed it serves the second, which builds on it; when
// the first is back and the second stops, it serves the first again.
func TestWorkerSeveralMasters(t *testing.T) {
	t.Parallel()
	a, b := newEnv(t), newEnv(t)
	for _, e := range []*env{a, b} {
		e.writeConfig(workerSeveralMasters)
		e.startMaster()
	}
	basedir := filepath.Join(a.Dir, "worker-w1")
	cmd := exec.Command(a.worker, "-master", fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", a.WorkerPort, b.WorkerPort),
		"-name", "w1", "-password", "secret", "-basedir", basedir)
	logPath := filepath.Join(a.Dir, "worker-w1.stderr")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		stopWorkerProcess(cmd.Process, done)
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("worker log:\n%s", log)
		}
	})

	connected := func(e *env) bool {
		var r struct {
			Workers []struct {
				ConnectedTo []any `json:"connected_to"`
			}
		}
		e.get("/api/v2/workers/w1", &r)
		return len(r.Workers) == 1 && len(r.Workers[0].ConnectedTo) > 0
	}
	build := func(e *env, reason string) {
		t.Helper()
		bd := e.waitBuild(e.force("force", 1, reason), 60*time.Second)
		if bd.Results == nil || *bd.Results != 0 {
			t.Fatalf("build %q: results %v, want SUCCESS", reason, bd.Results)
		}
	}

	waitFor(t, "w1 at the first master", 30*time.Second, func() bool { return connected(a) })
	if connected(b) {
		t.Fatal("w1 is connected to both masters")
	}
	build(a, "on the first")

	// SIGKILL the first master: the worker moves to the second at once
	// (no backoff before the next master of a round).
	data, err := os.ReadFile(filepath.Join(a.masterDir, "master.pid"))
	if err != nil {
		t.Fatal(err)
	}
	mpid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(mpid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitGone(t, 10*time.Second, mpid)
	if err := os.Remove(filepath.Join(a.masterDir, "master.pid")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	// The bound: the dead master noticed (its connection reset, or at
	// worst the keepalive's 10s + 10s), then the second at once.
	waitFor(t, "w1 at the second master", 25*time.Second, func() bool { return connected(b) })
	t.Logf("w1 at the second master %s after the first was SIGKILLed", time.Since(killed).Round(time.Millisecond))
	build(b, "on the second")

	// The first is back; the second stops: the worker goes back.
	mustRun(t, a.master, "start", a.masterDir)
	b.stopMaster()
	stopped := time.Now()
	waitFor(t, "w1 back at the first master", 25*time.Second, func() bool { return connected(a) })
	t.Logf("w1 back at the first master %s after the second stopped", time.Since(stopped).Round(time.Millisecond))
	build(a, "on the first again")

	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), "connection to master lost; trying the next") {
		t.Errorf("the worker's log does not say it moved on:\n%s", log)
	}
}
