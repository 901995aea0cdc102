package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// workerStopConfig's builder runs two worker steps. "work" records its
// process group leader in DIR/pid, then, on its first run, waits for
// DIR/release (touched by the test) before it writes DIR/made and exits
// 0, or (with DIR/long) sleeps in a child it waits for; on a rerun it
// ends at once. "after" is the step a stopping worker cannot run.
const workerStopConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["stop"]

[[builders]]
name = "stop"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  name = "work"
  command = '''
if [ -e {{.Dir}}/ran ]; then echo rerun; exit 0; fi
touch {{.Dir}}/ran
if [ -e {{.Dir}}/long ]; then
  sleep 300 &
  echo $! > {{.Dir}}/pid
  wait
  exit 0
fi
echo $$ > {{.Dir}}/pid
while [ ! -e {{.Dir}}/release ]; do sleep 0.05; done
echo made > {{.Dir}}/made
'''

  [[builders.steps]]
  type = "shell"
  name = "after"
  command = ["true"]
`

// waitLog waits until the worker's log says what.
func waitLog(t *testing.T, w *workerProc, what string) {
	t.Helper()
	waitFor(t, "the worker's log to say "+what, 30*time.Second, func() bool {
		b, _ := os.ReadFile(w.Log)
		return strings.Contains(string(b), what)
	})
}

// waitExit waits for the worker process to exit and returns its code.
func waitExit(t *testing.T, w *workerProc) int {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(60 * time.Second):
		b, _ := os.ReadFile(w.Log)
		t.Fatalf("the worker did not exit; its log:\n%s", b)
	}
	return w.cmd.ProcessState.ExitCode()
}

// stepResults returns the results of a build's steps by name.
func (e *env) stepResults(buildid int64) map[string]int {
	out := map[string]int{}
	for _, s := range e.steps(buildid) {
		if s.Results != nil {
			out[s.Name] = *s.Results
		}
	}
	return out
}

// rerunSucceeds starts the worker again and waits for the request's
// second build, which must end SUCCESS.
func (e *env) rerunSucceeds(brid int64) {
	e.t.Helper()
	e.startWorkerAt("w1", "worker")
	var rerun apiBuild
	waitFor(e.t, "the request built again", 60*time.Second, func() bool {
		bs := e.buildsOf(brid)
		if len(bs) > 1 && bs[1].Complete {
			rerun = bs[1]
			return true
		}
		return false
	})
	if rerun.Results == nil || *rerun.Results != 0 {
		e.t.Fatalf("the request's second build: %+v, want SUCCESS", rerun)
	}
}

// firstBuild waits for the request's first build to end RETRY and returns it.
func (e *env) firstBuildRetry(brid int64) apiBuild {
	e.t.Helper()
	var first apiBuild
	waitFor(e.t, "the first build to end", 60*time.Second, func() bool {
		bs := e.buildsOf(brid)
		if len(bs) > 0 {
			first = bs[0]
		}
		return first.Complete
	})
	if first.Results == nil || *first.Results != 5 {
		e.t.Fatalf("build of the stopped worker: %+v, want RETRY (5)", first)
	}
	return first
}

// TestWorkerStopFinishesStep: a first SIGTERM during a step lets it run
// to its end (it writes its file, and ends SUCCESS), then the worker
// detaches and exits 0; the build, whose next step cannot run, ends RETRY
// and is built again, SUCCESS, when the worker comes back.
func TestWorkerStopFinishesStep(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(workerStopConfig)
	e.startMaster()
	w := e.startWorkerAt("w1", "worker")
	waitFor(t, "w1 connected", 30*time.Second, func() bool { return e.workerConnected("w1") })
	brid := e.force("force", builderID(t, e, "stop"), "stop its worker")
	waitPids(t, filepath.Join(e.Dir, "pid"), 1)

	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, w, "the running commands finish first")
	if err := os.WriteFile(filepath.Join(e.Dir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, w); code != 0 {
		t.Fatalf("worker exit code %d, want 0", code)
	}
	if _, err := os.Stat(filepath.Join(e.Dir, "made")); err != nil {
		t.Fatalf("the step did not run to its end: %v", err)
	}
	first := e.firstBuildRetry(brid)
	if got := e.stepResults(first.BuildID); got["work"] != 0 {
		t.Fatalf("steps of the first build: %v, want work SUCCESS (0)", got)
	}
	e.rerunSucceeds(brid)
}

// TestWorkerStopTwice: a second SIGTERM interrupts the running step (its
// process group is killed), the worker reports it and exits 0; the build
// ends RETRY, not CANCELLED (nobody cancelled it), and is built again.
func TestWorkerStopTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(workerStopConfig)
	if err := os.WriteFile(filepath.Join(e.Dir, "long"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.startMaster()
	w := e.startWorkerAt("w1", "worker")
	waitFor(t, "w1 connected", 30*time.Second, func() bool { return e.workerConnected("w1") })
	brid := e.force("force", builderID(t, e, "stop"), "stop its worker twice")
	child := waitPids(t, filepath.Join(e.Dir, "pid"), 1)[0]
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })

	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, w, "the running commands finish first")
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, w); code != 0 {
		t.Fatalf("worker exit code %d, want 0", code)
	}
	waitGone(t, 10*time.Second, child)
	first := e.firstBuildRetry(brid)
	if got := e.stepResults(first.BuildID); got["work"] != 5 {
		t.Fatalf("steps of the first build: %v, want work RETRY (5)", got)
	}
	e.rerunSucceeds(brid)
}
