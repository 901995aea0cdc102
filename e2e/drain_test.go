package e2e

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// drainConfig: w1 and w2 take two builds each. Builder "long" runs only on
// w1: its step "work" waits for DIR/release on its first run (and writes
// its pid to DIR/pid), then "after" runs. Builder "other" runs on w1 or w2.
const drainConfig = loopback + `
[[workers]]
name = "w1"
password = "secret"
max_builds = 2

[[workers]]
name = "w2"
password = "secret"
max_builds = 2

[[schedulers]]
type = "force"
name = "force"
builder_names = ["long", "other"]

[[builders]]
name = "long"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  name = "work"
  command = '''
if [ -e {{.Dir}}/ran ]; then echo rerun; exit 0; fi
touch {{.Dir}}/ran
echo $$ > {{.Dir}}/pid
while [ ! -e {{.Dir}}/release ]; do sleep 0.05; done
'''

  [[builders.steps]]
  type = "shell"
  name = "after"
  command = ["true"]

[[builders]]
name = "other"
worker_names = ["w1", "w2"]

  [[builders.steps]]
  type = "shell"
  name = "quick"
  command = ["true"]
`

// apiWorker is a worker as /api/v2/workers shows it.
type apiWorker struct {
	WorkerID    int64  `json:"workerid"`
	Name        string `json:"name"`
	Graceful    bool   `json:"graceful"`
	Paused      bool   `json:"paused"`
	ConnectedTo []any  `json:"connected_to"`
}

// apiWorker returns worker name as the API shows it.
func (e *env) apiWorker(name string) apiWorker {
	e.t.Helper()
	var r struct{ Workers []apiWorker }
	e.get("/api/v2/workers/"+name, &r)
	if len(r.Workers) != 1 {
		e.t.Fatalf("worker %s: %+v", name, r)
	}
	return r.Workers[0]
}

// TestWorkerDrainTakesNoBuild: a worker told to stop (a first SIGTERM)
// while a long step of builder "long" runs on it tells its master, which
// shows it graceful and starts no new build there: a build forced for
// "other" (w1 has room: max_builds 2) waits, then runs on w2 once w2
// connects. The long step ends, the worker detaches, the long build ends
// RETRY; once w1 is back, it is no longer graceful and builds it again.
func TestWorkerDrainTakesNoBuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(drainConfig)
	e.startMaster()
	w1 := e.startWorkerAt("w1", "w1")
	waitFor(t, "w1 connected", 30*time.Second, func() bool { return e.workerConnected("w1") })
	long := e.force("force", builderID(t, e, "long"), "a long step")
	waitPids(t, filepath.Join(e.Dir, "pid"), 1)

	if err := w1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, w1, "the running commands finish first")
	waitFor(t, "the API to show w1 graceful", 30*time.Second, func() bool { return e.apiWorker("w1").Graceful })
	if w := e.apiWorker("w1"); len(w.ConnectedTo) == 0 || w.Paused {
		t.Fatalf("draining w1 in the API: %+v, want connected, not paused", w)
	}

	other := e.force("force", builderID(t, e, "other"), "while w1 drains")
	e.startWorkerAt("w2", "w2")
	b := e.waitBuild(other, 60*time.Second)
	if b.Results == nil || *b.Results != 0 {
		t.Fatalf("build of other: %+v, want SUCCESS", b)
	}
	if want := e.apiWorker("w2").WorkerID; b.WorkerID != want {
		t.Fatalf("build of other ran on worker %d, want w2 (%d)", b.WorkerID, want)
	}
	if bs := e.buildsOf(other); len(bs) != 1 {
		t.Fatalf("builds of other's request: %+v, want the one on w2", bs)
	}
	if w := e.apiWorker("w1"); !w.Graceful {
		t.Fatalf("w1 in the API while its step runs: %+v, want graceful", w)
	}

	if err := os.WriteFile(filepath.Join(e.Dir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, w1); code != 0 {
		t.Fatalf("w1 exit code %d, want 0", code)
	}
	first := e.firstBuildRetry(long)
	if got := e.stepResults(first.BuildID); got["work"] != 0 {
		t.Fatalf("steps of the long build: %v, want work SUCCESS (0)", got)
	}
	waitFor(t, "w1 disconnected, not graceful", 30*time.Second, func() bool {
		w := e.apiWorker("w1")
		return len(w.ConnectedTo) == 0 && !w.Graceful
	})
	e.rerunSucceeds(long)
	if w := e.apiWorker("w1"); w.Graceful || w.Paused {
		t.Fatalf("w1 back: %+v, want neither graceful nor paused", w)
	}
}

// TestWorkerDrainKeepsAskedGraceful: a graceful shutdown asked of a
// worker that drains by itself is the user's, and outlasts the drain: back,
// the worker stays graceful (no build) until unpaused.
func TestWorkerDrainKeepsAskedGraceful(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(drainConfig)
	e.startMaster()
	w1 := e.startWorkerAt("w1", "w1")
	waitFor(t, "w1 connected", 30*time.Second, func() bool { return e.workerConnected("w1") })
	long := e.force("force", builderID(t, e, "long"), "a long step")
	waitPids(t, filepath.Join(e.Dir, "pid"), 1)
	if err := w1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the API to show w1 graceful", 30*time.Second, func() bool { return e.apiWorker("w1").Graceful })
	e.rpc("/api/v2/workers/w1", "graceful", `{}`)

	if err := os.WriteFile(filepath.Join(e.Dir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, w1); code != 0 {
		t.Fatalf("w1 exit code %d, want 0", code)
	}
	e.firstBuildRetry(long)
	e.startWorkerAt("w1", "w1")
	waitFor(t, "w1 back", 30*time.Second, func() bool { return e.workerConnected("w1") })
	if w := e.apiWorker("w1"); !w.Graceful {
		t.Fatalf("w1 back after a graceful shutdown asked during its drain: %+v, want graceful", w)
	}
	if bs := e.buildsOf(long); len(bs) != 1 {
		t.Fatalf("builds of the long request with w1 graceful: %+v, want only the first", bs)
	}
	e.rpc("/api/v2/workers/w1", "unpause", `{}`)
	if b := e.waitBuildN(long, 2); b.Results == nil || *b.Results != 0 {
		t.Fatalf("the long request's build after unpause: %+v, want SUCCESS", b)
	}
}

// waitBuildN waits for the request's nth build to complete and returns it.
func (e *env) waitBuildN(brid int64, n int) apiBuild {
	e.t.Helper()
	var b apiBuild
	waitFor(e.t, "the request's build to end", 60*time.Second, func() bool {
		bs := e.buildsOf(brid)
		if len(bs) >= n && bs[n-1].Complete {
			b = bs[n-1]
			return true
		}
		return false
	})
	return b
}
