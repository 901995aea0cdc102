package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
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
		stopWorkerProcess(w.cmd.Process, w.done)
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
	t.Logf("the stopped worker's build ended RETRY %v after the second worker started (keepalive_timeout 3s)", took.Round(time.Millisecond))
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

// linkCutConfig is the master of TestLinkCut, in its namespace, with a
// detection bound of 1s + 2s.
const linkCutConfig = `
title = "link cut"
buildbot_url = "http://10.1.1.2:8010/"

[protocols.grpc]
port = 9989
interface = "10.1.1.2"
keepalive_interval = "1s"
keepalive_timeout = "2s"

[www]
port = 8010
interface = "10.1.1.2"

[[workers]]
name = "w1"
password = "secret"
` + `
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

// TestLinkCut: the worker's network is cut without a word (its veth link
// brought down: no FIN, no RST) while a build runs. The master finds the
// worker gone within keepalive_interval + keepalive_timeout, ends the
// build RETRY and requeues it; the worker finds its master gone within the
// same bound. Once the link is up, the worker reconnects by itself and the
// requeued build runs on it to SUCCESS.
func TestLinkCut(t *testing.T) {
	ns := netnsJails(t)
	masterBin, workerBin := buildBinaries(t)
	mns, wns, wveth := ns.master, ns.worker, ns.workerVeth

	dir := t.TempDir()
	mdir := filepath.Join(dir, "master")
	mustRun(t, masterBin, "create-master", mdir)
	cfg := strings.ReplaceAll(linkCutConfig, "{{.Dir}}", dir)
	if err := os.WriteFile(filepath.Join(mdir, "master.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, masterBin, "checkconfig", mdir)
	netnsProc(t, filepath.Join(dir, "master.out"), "ip", "netns", "exec", mns, masterBin, "start", "--nodaemon", mdir)
	netnsProc(t, filepath.Join(dir, "worker.out"), "ip", "netns", "exec", wns, workerBin,
		"-master", netnsMasterAddr+":9989", "-name", "w1", "-password", "secret", "-basedir", filepath.Join(dir, "worker"))
	logOf := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return string(b)
	}
	defer func() {
		if t.Failed() {
			t.Logf("--- master.out:\n%s\n--- worker.out:\n%s", logOf("master.out"), logOf("worker.out"))
		}
	}()

	base := "http://" + netnsMasterAddr + ":8010"
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string, v any) bool {
		resp, err := client.Get(base + path)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(v) == nil
	}
	connected := func() bool {
		var r struct {
			Workers []struct {
				ConnectedTo []json.RawMessage `json:"connected_to"`
			}
		}
		return get("/api/v2/workers", &r) && len(r.Workers) == 1 && len(r.Workers[0].ConnectedTo) > 0
	}
	builds := func() []apiBuild {
		var r struct{ Builds []apiBuild }
		get("/api/v2/builds", &r)
		return r.Builds
	}
	started := func() []string {
		b, _ := os.ReadFile(filepath.Join(dir, "started"))
		return strings.Fields(string(b))
	}
	waitFor(t, "w1 connected", 60*time.Second, connected)
	// A plaintext link off the loopback (tls = "off", as the jails' lo1):
	// both ends warn.
	waitFor(t, "the warnings of a plaintext link off the loopback", 30*time.Second, func() bool {
		return strings.Contains(logOf("master.out"), "worker connected without TLS from an address that is not a loopback one") &&
			strings.Contains(logOf("worker.out"), "connecting to the master without TLS")
	})
	var builders struct {
		Builders []struct {
			BuilderID int64 `json:"builderid"`
		}
	}
	if !get("/api/v2/builders", &builders) || len(builders.Builders) != 1 {
		t.Fatalf("builders: %+v", builders)
	}
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderid":%d,"reason":"cut"}}`, builders.Builders[0].BuilderID)
	resp, err := client.Post(base+"/api/v2/forceschedulers/force", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, "the step running on the worker", 60*time.Second, func() bool { return len(started()) == 1 })

	// Cut the worker's link: its packets go nowhere, nobody says a word.
	const bound = 3 * time.Second  // keepalive_interval + keepalive_timeout
	const slack = 10 * time.Second // a loaded machine; still under the 20s default
	netnsIP(t, "link", "set", wveth, "down")
	cut := time.Now()
	waitFor(t, "the master to find the worker gone", bound+slack+5*time.Second, func() bool { return !connected() })
	detected := time.Since(cut)
	var first apiBuild
	waitFor(t, "the build to end", 30*time.Second, func() bool {
		if bs := builds(); len(bs) > 0 {
			first = bs[0]
		}
		return first.Complete
	})
	t.Logf("link down: the master found the worker gone after %v (bound %v)", detected.Round(time.Millisecond), bound)
	if detected > bound+slack {
		t.Errorf("the master found the worker gone after %v; want within %v (+%v slack)", detected, bound, slack)
	}
	if detected < time.Second {
		t.Errorf("the master found the worker gone after %v: too soon for a silent cut", detected)
	}
	if first.Results == nil || *first.Results != 5 {
		t.Errorf("build on the cut worker: %+v, want results 5 (RETRY)", first)
	}
	// The worker, on its side, finds its master gone within the bound too.
	waitFor(t, "the worker to find its master gone", bound+slack, func() bool {
		return strings.Contains(logOf("worker.out"), "nothing from the master for 3s")
	})
	if n := len(builds()); n != 1 {
		t.Errorf("%d builds while the link is down, want 1 (the request waits for a worker)", n)
	}

	// The link comes back: the worker reconnects by itself, and the
	// requeued request runs on it.
	netnsIP(t, "link", "set", wveth, "up")
	up := time.Now()
	waitFor(t, "w1 reconnected", 90*time.Second, connected)
	t.Logf("link up: the worker reconnected after %v", time.Since(up).Round(time.Millisecond))
	waitFor(t, "the requeued build running", 60*time.Second, func() bool { return len(started()) == 2 })
	if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var rerun apiBuild
	waitFor(t, "the requeued build to end", 60*time.Second, func() bool {
		for _, b := range builds() {
			if b.BuildID != first.BuildID && b.Complete {
				rerun = b
				return true
			}
		}
		return false
	})
	if rerun.Results == nil || *rerun.Results != 0 || rerun.BuildRequestID != first.BuildRequestID {
		t.Errorf("requeued build: %+v, want SUCCESS for request %d", rerun, first.BuildRequestID)
	}
}
