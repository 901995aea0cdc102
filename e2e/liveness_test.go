package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// livenessConfig has one builder whose step records where it runs (its
// workdir, one line per run in DIR/started) and then waits for DIR/release.
const livenessConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["hold"]

[[builders]]
name = "hold"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  name = "hold"
  command = "pwd >> {{.Dir}}/started; while [ ! -e {{.Dir}}/release ]; do sleep 0.1; done; pwd"
`

// livenessKeepalive sets [protocols.grpc]'s keepalive keys in a config
// made from loopback.
func livenessKeepalive(cfg, interval, timeout string) string {
	return strings.Replace(cfg, "interface = \"127.0.0.1\"\n",
		fmt.Sprintf("interface = \"127.0.0.1\"\nkeepalive_interval = %q\nkeepalive_timeout = %q\n", interval, timeout), 1)
}

// workerProc is a gbb-worker process in the foreground (the direct form),
// with its own basedir; its output is in Log.
type workerProc struct {
	cmd     *exec.Cmd
	Basedir string
	Log     string
	done    chan struct{}
}

// startWorkerAt runs a worker named name with basedir DIR/basedir until the
// test ends; a stopped one is continued, then interrupted, then killed.
func (e *env) startWorkerAt(name, basedir string, args ...string) *workerProc {
	e.t.Helper()
	w := &workerProc{Basedir: filepath.Join(e.Dir, basedir), Log: filepath.Join(e.Dir, basedir+".stderr"), done: make(chan struct{})}
	w.cmd = exec.Command(e.worker, append([]string{"-master", fmt.Sprintf("127.0.0.1:%d", e.WorkerPort),
		"-name", name, "-password", "secret", "-basedir", w.Basedir}, args...)...)
	logf, err := os.Create(w.Log)
	if err != nil {
		e.t.Fatal(err)
	}
	w.cmd.Stdout, w.cmd.Stderr = logf, logf
	if err := w.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		w.cmd.Wait()
		logf.Close()
		close(w.done)
	}()
	e.t.Cleanup(func() {
		w.cmd.Process.Signal(syscall.SIGCONT)
		w.cmd.Process.Signal(os.Interrupt)
		select {
		case <-w.done:
		case <-time.After(20 * time.Second):
			w.cmd.Process.Kill()
			<-w.done
		}
	})
	return w
}

func (w *workerProc) log() string {
	b, _ := os.ReadFile(w.Log)
	return string(b)
}

// workerConnected reports whether the API shows the worker connected.
func (e *env) workerConnected(name string) bool {
	var r struct {
		Workers []struct {
			Name        string            `json:"name"`
			ConnectedTo []json.RawMessage `json:"connected_to"`
		}
	}
	e.get("/api/v2/workers", &r)
	for _, w := range r.Workers {
		if w.Name == name {
			return len(w.ConnectedTo) > 0
		}
	}
	return false
}

// startedLines waits until DIR/started has n lines and returns them.
func (e *env) startedLines(n int) []string {
	e.t.Helper()
	var lines []string
	waitFor(e.t, fmt.Sprintf("%d runs of the step started", n), 60*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(e.Dir, "started"))
		lines = strings.Fields(string(b))
		return len(lines) >= n
	})
	return lines
}

// buildsOf returns the builds of a build request, first one first.
func (e *env) buildsOf(brid int64) []apiBuild {
	e.t.Helper()
	var r struct{ Builds []apiBuild }
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", brid), &r)
	return r.Builds
}

// TestDuplicateWorkerStopped: a worker process is stopped (SIGSTOP: its
// TCP connection stays up, but it answers nothing) while its build runs;
// a second process with the same name connects. The master pings the old
// connection, gets no answer within keepalive_timeout, ends it (the build
// ends RETRY), and the new worker takes its place and runs the build again.
func TestDuplicateWorkerStopped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A long keepalive interval: only the duplicate's ping can find the
	// stopped worker within this test.
	e.writeConfig(livenessKeepalive(livenessConfig, "120s", "3s"))
	e.startMaster()
	old := e.startWorkerAt("w1", "worker-old")
	waitFor(t, "w1 connected", 30*time.Second, func() bool { return e.workerConnected("w1") })
	brid := e.force("force", builderID(t, e, "hold"), "stop its worker")
	if runs := e.startedLines(1); !strings.HasSuffix(runs[0], "worker-old/hold/build") {
		t.Fatalf("the step ran in %s, want the old worker's basedir", runs[0])
	}
	if err := old.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.startWorkerAt("w1", "worker-new")
	var first apiBuild
	waitFor(t, "the build on the stopped worker to end", 60*time.Second, func() bool {
		bs := e.buildsOf(brid)
		if len(bs) > 0 {
			first = bs[0]
		}
		return first.Complete
	})
	took := time.Since(start)
	if first.Results == nil || *first.Results != 5 {
		t.Errorf("build on the stopped worker: %+v, want results 5 (RETRY)", first)
	}
	// At least the ping's 3s; at most that with generous slack.
	if took < 3*time.Second || took > 33*time.Second {
		t.Errorf("the stopped worker's build ended %v after the second worker started; want between 3s and 33s", took)
	}
	if runs := e.startedLines(2); !strings.HasSuffix(runs[1], "worker-new/hold/build") {
		t.Errorf("the rerun ran in %s, want the new worker's basedir", runs[1])
	}
	if err := os.WriteFile(filepath.Join(e.Dir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var rerun apiBuild
	waitFor(t, "the rerun to succeed", 60*time.Second, func() bool {
		bs := e.buildsOf(brid)
		if len(bs) > 1 && bs[1].Complete {
			rerun = bs[1]
			return true
		}
		return false
	})
	if rerun.Results == nil || *rerun.Results != 0 {
		t.Errorf("rerun: %+v, want SUCCESS", rerun)
	}
	log := e.masterLog()
	for _, want := range []string{"did not answer a ping: ending it, the new connection replaces it", "old_remote=127.0.0.1:"} {
		if !strings.Contains(log, want) {
			t.Errorf("master log lacks %q:\n%s", want, log)
		}
	}
	// The new worker is attached, whole: the API shows it connected.
	if !e.workerConnected("w1") {
		t.Errorf("w1 is not shown connected after the replacement")
	}
}

// TestDuplicateWorkerAlive: a second process under the name of a worker
// that answers is refused, and the log says so with both addresses; the
// first one goes on running builds.
func TestDuplicateWorkerAlive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(livenessConfig)
	e.startMaster()
	e.startWorkerAt("w1", "worker-first")
	waitFor(t, "w1 connected", 30*time.Second, func() bool { return e.workerConnected("w1") })
	second := e.startWorkerAt("w1", "worker-second")
	waitFor(t, "the second worker refused", 30*time.Second, func() bool {
		return strings.Contains(second.log(), `worker \"w1\" is already connected (from 127.0.0.1:`)
	})
	waitFor(t, "the refusal in the master's log", 10*time.Second, func() bool {
		return strings.Contains(e.masterLog(), "worker refused: a worker of that name is connected and answers pings")
	})
	for _, l := range strings.Split(e.masterLog(), "\n") {
		if strings.Contains(l, "worker refused: a worker of that name is connected") &&
			(!strings.Contains(l, "remote=127.0.0.1:") || !strings.Contains(l, "connected_remote=127.0.0.1:")) {
			t.Errorf("refusal without both addresses: %s", l)
		}
	}
	if err := os.WriteFile(filepath.Join(e.Dir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	brid := e.force("force", builderID(t, e, "hold"), "the first one still works")
	if b := e.waitBuild(brid, 60*time.Second); b.Results == nil || *b.Results != 0 {
		t.Errorf("build: %+v, want SUCCESS", b)
	}
	if runs := e.startedLines(1); !strings.HasSuffix(runs[0], "worker-first/hold/build") {
		t.Errorf("the build ran in %s, want the first worker's basedir", runs[0])
	}
	select {
	case <-second.done:
		t.Errorf("the refused worker exited instead of retrying:\n%s", second.log())
	default:
	}
}
