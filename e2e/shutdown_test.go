package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// shutdownConfig has a builder whose build runs until the test writes the
// file "go", and one that passes at once.
const shutdownConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["hold", "quick"]

[[builders]]
name = "hold"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "while [ ! -f {{.Dir}}/go ]; do sleep 0.05; done"

[[builders]]
name = "quick"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "true"
`

// Builder ids in shutdownConfig, in the order the master registers them.
const (
	holdBuilder  = 1
	quickBuilder = 2
)

// bgStop runs `gbb-master ARGS...` (a stop or a restart) in the background;
// wait returns its output and error.
type bgStop struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

func (e *env) startStop(args ...string) *bgStop {
	e.t.Helper()
	s := &bgStop{cmd: exec.Command(e.master, args...), done: make(chan error, 1)}
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	e.t.Cleanup(func() {
		select {
		case <-s.done:
		case <-time.After(90 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

func (s *bgStop) wait(t *testing.T, timeout time.Duration) (string, error) {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return s.out.String(), err
	case <-time.After(timeout):
		t.Fatalf("%v still running after %v", s.cmd.Args, timeout)
		return "", nil
	}
}

// exited reports, without waiting, whether the command has returned.
func (s *bgStop) exited() bool {
	select {
	case err := <-s.done:
		s.done <- err
		return true
	default:
		return false
	}
}

// masterLog returns the master's log.
func (e *env) masterLog() string {
	b, _ := os.ReadFile(filepath.Join(e.masterDir, "master.log"))
	return string(b)
}

// waitLog waits until the master's log contains s, n times.
func (e *env) waitLog(s string, n int) {
	e.t.Helper()
	waitFor(e.t, fmt.Sprintf("%d× %q in master.log", n, s), 60*time.Second, func() bool {
		return strings.Count(e.masterLog(), s) >= n
	})
}

// requestBuilds returns the builds of a build request, oldest first.
func (e *env) requestBuilds(brid int64) []apiBuild {
	e.t.Helper()
	var r struct{ Builds []apiBuild }
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds?order=buildid", brid), &r)
	return r.Builds
}

// masterGone reports whether the master's pid file is gone.
func (e *env) masterGone() bool {
	_, err := os.Stat(filepath.Join(e.masterDir, "master.pid"))
	return os.IsNotExist(err)
}

// TestCleanStop: `stop --clean` starts no new build, lets the running one
// finish SUCCESS, accepts and keeps a forced build, then stops; after the
// next start the kept request runs.
func TestCleanStop(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(shutdownConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	hold := e.force("force", holdBuilder, "hold")
	e.runningBuild(hold)

	stop := e.startStop("stop", "--clean", e.masterDir)
	e.waitLog("clean shutdown: waiting for running builds", 1)
	if !strings.Contains(e.masterLog(), "hold (request ") {
		t.Errorf("the log does not name the build it waits for:\n%s", e.masterLog())
	}
	// Still serving: a forced build is accepted and stored, but does not
	// start (the worker has no build limit: it would start at once).
	quick := e.force("force", quickBuilder, "during the clean stop")
	var br struct {
		Buildrequests []struct {
			Claimed  bool `json:"claimed"`
			Complete bool `json:"complete"`
		}
	}
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d", quick), &br)
	if len(br.Buildrequests) != 1 || br.Buildrequests[0].Claimed || br.Buildrequests[0].Complete {
		t.Fatalf("request forced during the clean stop: %+v", br)
	}
	if stop.exited() {
		t.Fatalf("stop --clean returned while a build runs: %s", stop.out.String())
	}

	if err := os.WriteFile(filepath.Join(e.Dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := stop.wait(t, 60*time.Second)
	if err != nil || !strings.Contains(out, "gbb-master stopped cleanly") {
		t.Fatalf("stop --clean: %v\n%s", err, out)
	}
	if !e.masterGone() {
		t.Fatal("master.pid left after stop --clean")
	}
	log := e.masterLog()
	if !strings.Contains(log, "clean shutdown: no build running, stopping") {
		t.Errorf("master.log does not say the clean stop ended:\n%s", log)
	}

	// After the next start: the held build ended SUCCESS on the old run,
	// and the request forced during the clean stop runs now.
	e.startMaster()
	held := e.requestBuilds(hold)
	if len(held) != 1 || !held[0].Complete || *held[0].Results != 0 {
		t.Fatalf("the build running at the clean stop: %+v", held)
	}
	b := e.waitBuild(quick, 90*time.Second)
	if *b.Results != 0 || *b.StartedAt < *held[0].CompleteAt {
		t.Errorf("the request kept over the clean stop: %+v, want it built after the restart (the held build ended at %d)", b, *held[0].CompleteAt)
	}
}

// TestCleanStopSecondSignal: a plain stop during a clean stop stops at once;
// the running build ends RETRY and runs again after the next start.
func TestCleanStopSecondSignal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(shutdownConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	hold := e.force("force", holdBuilder, "hold")
	e.runningBuild(hold)

	clean := e.startStop("stop", "--clean", e.masterDir)
	e.waitLog("clean shutdown: waiting for running builds", 1)
	mustRun(t, e.master, "stop", e.masterDir)
	if out, err := clean.wait(t, 30*time.Second); err != nil || !strings.Contains(out, "not cleanly") {
		t.Errorf("stop --clean after a second stop: %v\n%s", err, out)
	}

	e.startMaster()
	bs := e.requestBuilds(hold)
	if len(bs) == 0 || !bs[0].Complete || *bs[0].Results != 5 {
		t.Fatalf("the build stopped by the second signal, want RETRY: %+v", bs)
	}
	// Its request runs again; let it pass.
	waitFor(t, "the retried build", 90*time.Second, func() bool { return len(e.requestBuilds(hold)) == 2 })
	if err := os.WriteFile(filepath.Join(e.Dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retried build to pass", 60*time.Second, func() bool {
		bs := e.requestBuilds(hold)
		return len(bs) == 2 && bs[1].Complete
	})
	if bs := e.requestBuilds(hold); *bs[1].Results != 0 {
		t.Errorf("the retried build: %+v", bs[1])
	}
}

// TestRestartCleanTimeout: `restart --clean --timeout` stops at once when
// the running build outlives the timeout (it ends RETRY), starts the master
// again, and the build runs again there.
func TestRestartCleanTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(shutdownConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	hold := e.force("force", holdBuilder, "hold")
	e.runningBuild(hold)

	out := mustRun(t, e.master, "restart", "--clean", "--timeout", "2s", e.masterDir)
	if !strings.Contains(out, "stopping at once") || !strings.Contains(out, "gbb-master started") {
		t.Errorf("restart --clean --timeout 2s:\n%s", out)
	}
	e.waitLog("clean shutdown: waiting for running builds", 1)
	if bs := e.requestBuilds(hold); len(bs) == 0 || *bs[0].Results != 5 {
		t.Fatalf("the build past the timeout, want RETRY: %+v", bs)
	}
	waitFor(t, "the retried build", 90*time.Second, func() bool { return len(e.requestBuilds(hold)) == 2 })
	if err := os.WriteFile(filepath.Join(e.Dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retried build to pass", 60*time.Second, func() bool {
		bs := e.requestBuilds(hold)
		return len(bs) == 2 && bs[1].Complete && *bs[1].Results == 0
	})
}
