package e2e

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testdeb"
	"github.com/gorilla/websocket"
)

// Issue 20: buildbot's own workers (Debian's buildbot-worker 3.7, run as
// a user runs it) build for gbb-master over PB and msgpack.

// bbProtocols are the buildbot-worker protocols the tests run, with the
// --protocol create-worker takes for each, and what master.log says of a
// refused login.
var bbProtocols = []struct{ name, flag, refused string }{
	{"pb", "pb", "pb: refused login"},
	{"msgpack", "msgpack_experimental_v7", "buildbot-worker refused"},
}

// bbEnv is an env with a buildbot-worker port.
type bbEnv struct {
	*env
	Protocol string // "pb" or "msgpack"
	BBPort   int
	Repo     string
}

func newBBEnv(t *testing.T, protocol string) *bbEnv {
	t.Helper()
	needBuildbotWorker(t)
	return &bbEnv{env: newEnv(t), Protocol: protocol, BBPort: freePort(t)}
}

func needBuildbotWorker(t *testing.T) {
	t.Helper()
	testdeb.Need(t, "buildbot-worker", "buildbot-worker")
	testdeb.Need(t, "wamp", "python3-autobahn")
	if out, err := exec.Command("/usr/bin/python3", "-c", "import msgpack, autobahn").CombinedOutput(); err != nil {
		t.Fatalf("buildbot-worker's msgpack protocol needs python3-msgpack and python3-autobahn: %v\n%s", err, out)
	}
}

// bbWorker is a buildbot-worker process.
type bbWorker struct {
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startBBWorker creates a buildbot-worker with create-worker, as a user
// would, and starts it in the foreground until the test ends.
func (e *bbEnv) startBBWorker(name, password string) *bbWorker {
	e.t.Helper()
	flag := ""
	for _, p := range bbProtocols {
		if p.name == e.Protocol {
			flag = p.flag
		}
	}
	dir := filepath.Join(e.Dir, "bbworker-"+name)
	out, err := exec.Command("buildbot-worker", "create-worker", "--protocol", flag, "--umask=0o22", "--maxdelay=2",
		"--keepalive=600", dir, fmt.Sprintf("127.0.0.1:%d", e.BBPort), name, password).CombinedOutput()
	if err != nil {
		e.t.Fatalf("create-worker: %v\n%s", err, out)
	}
	w := &bbWorker{dir: dir, done: make(chan struct{})}
	w.cmd = exec.Command("buildbot-worker", "start", "--nodaemon", dir)
	w.cmd.Dir = dir
	w.cmd.Env = append(os.Environ(), e.workerEnv...)
	w.cmd.Stdout, w.cmd.Stderr = io.Discard, io.Discard
	// Its own process group: a SIGKILL of the group takes its commands too.
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := w.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { w.cmd.Wait(); close(w.done) }()
	e.t.Cleanup(func() {
		w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
			<-w.done
		}
		if e.t.Failed() {
			l := w.logText()
			e.t.Logf("buildbot-worker %s log (its end):\n%s", name, l[max(0, len(l)-4000):])
		}
	})
	return w
}

func (w *bbWorker) logText() string {
	b, _ := os.ReadFile(filepath.Join(w.dir, "twistd.log"))
	return string(b)
}

// bbSteps is one build's steps, run on both kinds of worker: a shell
// step, a git checkout of a local repository, uploads and downloads, the
// file operations.
const bbSteps = `
  [[builders.steps]]
  type = "git"
  repourl = "REPO"
  branch = "master"
  [[builders.steps]]
  type = "shell"
  name = "shell"
  command = ["sh", "-c", "cat hello.txt; echo to-stderr >&2; mkdir -p dist/sub; cp hello.txt dist/sub/copy.txt"]
  [[builders.steps]]
  type = "shell"
  name = "script"
  command = "printf 'a\nb\n'; exit 3"
  decode_rc = { "3" = "warnings" }
  [[builders.steps]]
  type = "shell"
  name = "options"
  command = "echo one > test.log; echo $FOO; echo to-stderr >&2; sleep 0.3; echo two >> test.log"
  env = { FOO = "bar" }
  want_stderr = false
  logfiles = { test = "test.log" }
  [[builders.steps]]
  type = "shell"
  name = "timeout"
  command = "trap 'echo got TERM; exit 7' TERM; echo start; sleep 30 & wait"
  timeout = 2
  interrupt_signal = "TERM"
  sigterm_time = 5
  [[builders.steps]]
  type = "string_download"
  s = "from the master\n"
  workerdest = "in/s.txt"
  [[builders.steps]]
  type = "file_upload"
  workersrc = "hello.txt"
  masterdest = "up/WHO/hello.txt"
  [[builders.steps]]
  type = "directory_upload"
  workersrc = "dist"
  masterdest = "up/WHO/dist"
  [[builders.steps]]
  type = "file_download"
  mastersrc = "up/WHO/hello.txt"
  workerdest = "back/hello.txt"
  [[builders.steps]]
  type = "shell"
  name = "check"
  command = "cat in/s.txt back/hello.txt"
  [[builders.steps]]
  type = "mkdir"
  dir = "build/made"
  [[builders.steps]]
  type = "remove_file"
  path = "build/back/hello.txt"
  [[builders.steps]]
  type = "rmdir"
  dir = "build/made"
`

func (e *bbEnv) config(extra string) string {
	steps := func(w string) string {
		return strings.ReplaceAll(strings.ReplaceAll(bbSteps, "WHO", w), "REPO", e.Repo)
	}
	return loopback + fmt.Sprintf(`
[protocols.%s]
port = %d
interface = "127.0.0.1"

[[workers]]
name = "w1"
password = "secret"

[[workers]]
name = "bb"
password = "bbpass"
protocol = "%s"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["onbb", "ongbb"]

[[builders]]
name = "onbb"
worker_names = ["bb"]
%s
[[builders]]
name = "ongbb"
worker_names = ["w1"]
%s
`, e.Protocol, e.BBPort, e.Protocol, steps("bb"), steps("gbb")) + extra
}

// stepHeaders are the header lines of a step's log that do not describe
// a shell command the worker's own way (each worker writes its argv, its
// directory, and a buildbot-worker its PTY use, differently): the git
// step's own lines, the transfers' and file operations', and the
// master's.
var stepHeaders = regexp.MustCompile(`^h(mode |rm -rf |cp -a |program finished|sending |sent |receiving |received |mkdir |rmdir |rmfile |command interrupted|command timed out|worker lost)`)

// killedRunning is the command in a timeout's or an interrupt's header,
// written each worker's way.
var killedRunning = regexp.MustCompile(` running .*, attempting to kill`)

// bbComparable is a step log with the worker's basedir and builder
// written as BASEDIR/BUILDER, its header lines reduced to stepHeaders
// (the command a timeout killed left out),
// and a tar's size left out (Python's tarfile pads to 10 KiB).
//
// Each channel is compared on its own: stdout and stderr are two pipes, so
// how their lines interleave varies from run to run on either worker.
func bbComparable(log, basedir string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(log, "\n") {
		l = strings.ReplaceAll(l, basedir, "BASEDIR")
		l = strings.NewReplacer("BASEDIR/onbb/", "BASEDIR/BUILDER/", "BASEDIR/ongbb/", "BASEDIR/BUILDER/").Replace(l)
		if l == "" || l[0] == 'h' && !stepHeaders.MatchString(l) {
			continue
		}
		l = killedRunning.ReplaceAllString(l, " running COMMAND, attempting to kill")
		b.WriteString(l)
	}
	// Channel by channel, each in its order.
	var sorted []string
	for _, ch := range "hoe" {
		for _, l := range strings.SplitAfter(b.String(), "\n") {
			if l != "" && rune(l[0]) == ch {
				sorted = append(sorted, l)
			}
		}
	}
	return strings.Join(sorted, "")
}

func TestBBWorkerBuild(t *testing.T) {
	t.Parallel()
	for _, p := range bbProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			e := newBBEnv(t, p.name)
			e.Repo = makeRepo(t, filepath.Join(e.Dir, "repo"), map[string]string{"hello.txt": "hello from git\n"})
			e.writeConfig(e.config(""))
			e.startMaster()
			e.startWorker("w1", "secret")
			e.startBBWorker("bb", "bbpass")
			waitFor(t, "buildbot-worker connected", 60*time.Second, func() bool { return e.connected("bb") })
			// The gbb-worker too: its info is stored when it attaches.
			waitFor(t, "gbb-worker connected", 60*time.Second, func() bool { return e.connected("w1") })

			// The worker in the API and the UI, with its protocol and version.
			var ws struct {
				Workers []struct {
					Name       string           `json:"name"`
					WorkerInfo map[string]any   `json:"workerinfo"`
					Connected  []map[string]any `json:"connected_to"`
				}
			}
			e.get("/api/v2/workers", &ws)
			for _, w := range ws.Workers {
				want := map[string]string{"bb": p.name, "w1": "gbb"}[w.Name]
				if w.WorkerInfo["protocol"] != want {
					t.Errorf("worker %s: workerinfo.protocol = %v, want %q (%v)", w.Name, w.WorkerInfo["protocol"], want, w.WorkerInfo)
				}
				if w.Name == "bb" && !strings.HasPrefix(fmt.Sprint(w.WorkerInfo["version"]), "3.") {
					t.Errorf("buildbot-worker's workerinfo.version = %v, want buildbot-worker's 3.x", w.WorkerInfo["version"])
				}
			}
			page := e.getText("/workers")
			if !regexp.MustCompile(`<td class="worker-protocol">` + p.name + `</td><td class="worker-version">3\.`).MatchString(page) {
				t.Errorf("workers page does not show protocol %s and a 3.x version:\n%s", p.name, page)
			}

			bbBuild := e.waitBuild(e.force("force", 1, "on bb"), 120*time.Second)
			gbbBuild := e.waitBuild(e.force("force", 2, "on gbb"), 120*time.Second)
			for _, b := range []apiBuild{bbBuild, gbbBuild} {
				if b.Results == nil || *b.Results != 2 { // FAILURE: the timed out step
					e.logSteps(b.BuildID)
					t.Fatalf("build %d: results %v (%s), want FAILURE", b.BuildID, b.Results, b.StateString)
				}
			}
			bbSteps, gbbSteps := e.steps(bbBuild.BuildID), e.steps(gbbBuild.BuildID)
			if len(bbSteps) != len(gbbSteps) {
				t.Fatalf("%d steps on bb, %d on gbb", len(bbSteps), len(gbbSteps))
			}
			bbBase := filepath.Join(e.Dir, "bbworker-bb")
			gbbBase := filepath.Join(e.Dir, "worker-w1")
			for i := range bbSteps {
				bs, gs := bbSteps[i], gbbSteps[i]
				sameState := bs.StateString == gs.StateString || bs.Name == "worker_preparation" // it names the worker
				if bs.Name != gs.Name || *bs.Results != *gs.Results || !sameState {
					t.Errorf("step %d: bb %s %d %q, gbb %s %d %q", i, bs.Name, *bs.Results, bs.StateString, gs.Name, *gs.Results, gs.StateString)
				}
				if bs.Name == "worker_preparation" {
					continue
				}
				// Each log: stdout, stderr and logfiles exactly; the headers
				// as far as both write them.
				bl, gl := e.stepLogs(bs.StepID), e.stepLogs(gs.StepID)
				if len(bl) != len(gl) {
					t.Errorf("step %s: logs %v on bb, %v on gbb", bs.Name, slices.Sorted(maps.Keys(bl)), slices.Sorted(maps.Keys(gl)))
				}
				for name := range gl {
					got, want := bbComparable(bl[name], bbBase), bbComparable(gl[name], gbbBase)
					if bs.Name == "directory_upload" {
						tarSize := regexp.MustCompile(`(?m)^hsent \d+ bytes$`)
						got, want = tarSize.ReplaceAllString(got, "hsent (a tar) bytes"), tarSize.ReplaceAllString(want, "hsent (a tar) bytes")
					}
					if got != want {
						t.Errorf("step %s, log %s on bb:\n%s\non gbb:\n%s\nwhole logs:\n%s\n---\n%s", bs.Name, name, got, want, bl[name], gl[name])
					}
				}
			}
			// The files, where gbb's transfer code put them.
			for _, w := range []string{"bb", "gbb"} {
				for f, want := range map[string]string{"hello.txt": "hello from git\n", "dist/sub/copy.txt": "hello from git\n"} {
					got, err := os.ReadFile(filepath.Join(e.masterDir, "up", w, f))
					if err != nil || string(got) != want {
						t.Errorf("%s: upload %s = %q, %v; want %q", w, f, got, err, want)
					}
				}
			}
			for f, want := range map[string]string{"in/s.txt": "from the master\n"} {
				got, err := os.ReadFile(filepath.Join(bbBase, "onbb", "build", f))
				if err != nil || string(got) != want {
					t.Errorf("download %s = %q, %v; want %q", f, got, err, want)
				}
			}
		})
	}
}

// connected reports whether the worker name is connected, by the API.
func (e *env) connected(name string) bool {
	var ws struct {
		Workers []struct {
			Name      string           `json:"name"`
			Connected []map[string]any `json:"connected_to"`
		}
	}
	e.get("/api/v2/workers", &ws)
	for _, w := range ws.Workers {
		if w.Name == name {
			return len(w.Connected) > 0
		}
	}
	return false
}

// logSteps logs every step of a build with its logs.
func (e *env) logSteps(buildid int64) {
	e.t.Helper()
	for _, s := range e.steps(buildid) {
		var logs struct{ Logs []apiLog }
		e.get(fmt.Sprintf("/api/v2/steps/%d/logs", s.StepID), &logs)
		var b strings.Builder
		for _, l := range logs.Logs {
			fmt.Fprintf(&b, "--- %s\n%s", l.Name, e.logText(s.StepID, l.Slug))
		}
		res := -1
		if s.Results != nil {
			res = *s.Results
		}
		e.t.Logf("step %s: results %d, %q\n%s", s.Name, res, s.StateString, b.String())
	}
}

// bbHoldConfig has a builder on the buildbot-worker alone whose step
// records its shell's and its child's pids, then waits, the first time;
// and a builder on both workers.
const bbHoldConfig = `
[protocols.PROTO]
port = BBPORT
interface = "127.0.0.1"

[[workers]]
name = "w1"
password = "secret"

[[workers]]
name = "bb"
password = "bbpass"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["hold", "mixed"]

[[builders]]
name = "hold"
worker_names = ["bb"]
  [[builders.steps]]
  type = "shell"
  command = "test -e {{.Dir}}/second && exit 0; touch {{.Dir}}/second; echo $$ >> {{.Dir}}/pids; sleep 1000 & echo $! >> {{.Dir}}/pids; wait"

[[builders]]
name = "mixed"
worker_names = ["w1", "bb"]
  [[builders.steps]]
  type = "shell"
  command = "echo $(basename $(dirname $(dirname $PWD))) >> {{.Dir}}/ran; while [ ! -e {{.Dir}}/release ]; do sleep 0.1; done"
`

const (
	holdID  = 1
	mixedID = 2
)

func (e *bbEnv) holdConfig(keepalive bool) string {
	cfg := loopback + strings.NewReplacer("PROTO", e.Protocol, "BBPORT", fmt.Sprint(e.BBPort)).Replace(bbHoldConfig)
	if keepalive {
		cfg = livenessKeepalive(cfg, "1s", "1s")
	}
	return cfg
}

// TestBBWorkerStop: stopping a build interrupts its command on the
// buildbot-worker (remote_interruptCommand), whose processes die.
func TestBBWorkerStop(t *testing.T) {
	t.Parallel()
	for _, p := range bbProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			e := newBBEnv(t, p.name)
			e.writeConfig(e.holdConfig(false))
			e.startMaster()
			e.startBBWorker("bb", "bbpass")
			brid := e.force("force", holdID, "stop me")
			b := e.runningBuild(brid)
			pids := waitPids(t, filepath.Join(e.Dir, "pids"), 2)
			e.rpc(fmt.Sprintf("/api/v2/builds/%d", b.BuildID), "stop", `{"reason":"no more"}`)
			done := e.waitBuild(brid, 60*time.Second)
			if done.Results == nil || *done.Results != 6 {
				e.logSteps(done.BuildID)
				t.Errorf("stopped build: results %v, want CANCELLED (6)", done.Results)
			}
			defer func() {
				if t.Failed() {
					e.logSteps(done.BuildID)
					out, _ := exec.Command("ps", "-eo", "pid,pgid,stat,args").CombinedOutput()
					t.Logf("processes:\n%s", out)
				}
			}()
			waitGone(t, 30*time.Second, pids...)
			log := e.stdio(e.steps(done.BuildID)[1].StepID)
			if !strings.Contains(log, "command interrupted, attempting to kill") {
				t.Errorf("the step's log does not say the worker interrupted the command:\n%s", log)
			}
		})
	}
}

// TestBBWorkerKilled: a SIGKILLed buildbot-worker is found gone within
// keepalive_interval + keepalive_timeout, its build ends RETRY, and the
// request runs again once the worker is back.
func TestBBWorkerKilled(t *testing.T) {
	t.Parallel()
	for _, p := range bbProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			e := newBBEnv(t, p.name)
			e.writeConfig(e.holdConfig(true))
			e.startMaster()
			w := e.startBBWorker("bb", "bbpass")
			brid := e.force("force", holdID, "kill the worker")
			e.runningBuild(brid)
			pids := waitPids(t, filepath.Join(e.Dir, "pids"), 2)

			const bound = 2 * time.Second  // keepalive_interval + keepalive_timeout
			const slack = 10 * time.Second // a loaded machine
			if err := syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			for _, pid := range pids { // its command is in its own process group
				syscall.Kill(pid, syscall.SIGKILL)
			}
			killed := time.Now()
			waitFor(t, "the master to find the worker gone", bound+slack+5*time.Second, func() bool { return !e.connected("bb") })
			gone := time.Since(killed)
			t.Logf("SIGKILL: the master found the buildbot-worker gone after %v (bound %v)", gone.Round(time.Millisecond), bound)
			if gone > bound+slack {
				t.Errorf("found gone after %v, want within %v (+%v slack)", gone, bound, slack)
			}
			var first apiBuild
			waitFor(t, "the build to end", 30*time.Second, func() bool {
				bs := e.requestBuilds(brid)
				if len(bs) > 0 {
					first = bs[0]
				}
				return first.Complete
			})
			if first.Results == nil || *first.Results != 5 {
				e.logSteps(first.BuildID)
				t.Fatalf("build on the killed worker: results %v, want RETRY (5)", first.Results)
			}
			<-w.done
			// The worker comes back (its buildbot.tac unchanged) and the
			// request runs again on it.
			again := exec.Command("buildbot-worker", "start", "--nodaemon", w.dir)
			again.Dir = w.dir
			if err := again.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { again.Process.Signal(syscall.SIGTERM); again.Wait() })
			waitFor(t, "the request's second build", 90*time.Second, func() bool {
				bs := e.requestBuilds(brid)
				return len(bs) == 2 && bs[1].Complete
			})
			if bs := e.requestBuilds(brid); bs[1].Results == nil || *bs[1].Results != 0 {
				e.logSteps(bs[1].BuildID)
				t.Errorf("the retried build: results %v, want SUCCESS", bs[1].Results)
			}
		})
	}
}

// TestBBWorkerWrongPassword: a buildbot-worker with a wrong password is
// refused, and master.log says so.
func TestBBWorkerWrongPassword(t *testing.T) {
	t.Parallel()
	for _, p := range bbProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			e := newBBEnv(t, p.name)
			e.writeConfig(e.holdConfig(false))
			e.startMaster()
			w := e.startBBWorker("bb", "not-the-password")
			e.waitLog(p.refused, 1)
			if e.connected("bb") {
				t.Error("the worker with a wrong password is connected")
			}
			if !strings.Contains(e.masterLog(), "bb") {
				t.Errorf("master.log does not name the refused worker:\n%s", e.masterLog())
			}
			_ = w
		})
	}
}

// TestBBWorkerMixedBuilder: a builder with a gbb-worker and a
// buildbot-worker runs its builds on both at once.
func TestBBWorkerMixedBuilder(t *testing.T) {
	t.Parallel()
	for _, p := range bbProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			e := newBBEnv(t, p.name)
			e.writeConfig(e.holdConfig(false))
			e.startMaster()
			e.startWorker("w1", "secret")
			e.startBBWorker("bb", "bbpass")
			waitFor(t, "both workers connected", 60*time.Second, func() bool { return e.connected("bb") && e.connected("w1") })
			a, b := e.force("force", mixedID, "one"), e.force("force", mixedID, "two")
			// One build at a time per (builder, worker): both run at once
			// only when each worker has one.
			waitFor(t, "a build on each worker", 60*time.Second, func() bool {
				data, _ := os.ReadFile(filepath.Join(e.Dir, "ran"))
				return len(strings.Fields(string(data))) == 2
			})
			data, _ := os.ReadFile(filepath.Join(e.Dir, "ran"))
			ran := strings.Fields(string(data))
			slices.Sort(ran)
			if want := []string{"bbworker-bb", "worker-w1"}; !slices.Equal(ran, want) {
				t.Errorf("builds ran in %v, want one in each of %v", ran, want)
			}
			if err := os.WriteFile(filepath.Join(e.Dir, "release"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, brid := range []int64{a, b} {
				if r := e.waitBuild(brid, 60*time.Second).Results; r == nil || *r != 0 {
					t.Errorf("request %d: results %v, want SUCCESS", brid, r)
				}
			}
		})
	}
}

// TestBBWorkerHung: a buildbot-worker that stops answering without closing
// its connection (SIGSTOP: no FIN, no RST) is found gone by the master's
// keepalives within keepalive_interval + keepalive_timeout, as a
// gbb-worker, and its build ends RETRY.
func TestBBWorkerHung(t *testing.T) {
	t.Parallel()
	for _, p := range bbProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			e := newBBEnv(t, p.name)
			e.writeConfig(e.holdConfig(true))
			e.startMaster()
			w := e.startBBWorker("bb", "bbpass")
			brid := e.force("force", holdID, "hang the worker")
			e.runningBuild(brid)
			waitPids(t, filepath.Join(e.Dir, "pids"), 2)

			const bound = 2 * time.Second  // keepalive_interval + keepalive_timeout
			const slack = 10 * time.Second // a loaded machine
			if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { w.cmd.Process.Signal(syscall.SIGCONT) })
			hung := time.Now()
			waitFor(t, "the master to find the worker gone", bound+slack+5*time.Second, func() bool { return !e.connected("bb") })
			gone := time.Since(hung)
			t.Logf("SIGSTOP: the master found the buildbot-worker gone after %v (bound %v)", gone.Round(time.Millisecond), bound)
			if gone > bound+slack {
				t.Errorf("found gone after %v, want within %v (+%v slack)", gone, bound, slack)
			}
			if gone < time.Second {
				t.Errorf("found gone after %v: too soon for a silent worker", gone)
			}
			b := e.waitBuild(brid, 30*time.Second)
			if b.Results == nil || *b.Results != 5 {
				e.logSteps(b.BuildID)
				t.Errorf("build on the hung worker: results %v, want RETRY (5)", b.Results)
			}
			if !strings.Contains(e.masterLog(), "no answer to a keepalive") {
				t.Errorf("master.log does not say the keepalive went unanswered:\n%s", e.masterLog())
			}
		})
	}
}

// stepLogs returns a step's logs by name.
func (e *env) stepLogs(stepid int64) map[string]string {
	e.t.Helper()
	var logs struct{ Logs []apiLog }
	e.get(fmt.Sprintf("/api/v2/steps/%d/logs", stepid), &logs)
	out := map[string]string{}
	for _, l := range logs.Logs {
		out[l.Name] = e.logText(stepid, l.Slug)
	}
	return out
}

// TestBBWorkerReconfig: a builder a reconfig adds to a buildbot-worker
// runs on it at once (the master gives the worker its new builder list,
// as buildbot's does), and so does one whose name is not its directory's
// ("late one" in late_one).
func TestBBWorkerReconfig(t *testing.T) {
	t.Parallel()
	for _, p := range bbProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			e := newBBEnv(t, p.name)
			e.writeConfig(e.holdConfig(false))
			e.startMaster()
			e.startBBWorker("bb", "bbpass")
			waitFor(t, "buildbot-worker connected", 60*time.Second, func() bool { return e.connected("bb") })
			e.writeConfig(strings.Replace(e.holdConfig(false), `builder_names = ["hold", "mixed"]`, `builder_names = ["hold", "mixed", "late one"]`, 1) + `
[[builders]]
name = "late one"
worker_names = ["bb"]
  [[builders.steps]]
  type = "shell"
  command = "pwd"
`)
			mustRun(t, e.master, "reconfig", e.masterDir)
			b := e.waitBuild(e.force("force", e.builderIDs()["late one"], "after the reconfig"), 60*time.Second)
			if b.Results == nil || *b.Results != 0 {
				e.logSteps(b.BuildID)
				t.Fatalf("build of the builder the reconfig added: results %v, want SUCCESS", b.Results)
			}
			want := filepath.Join(e.Dir, "bbworker-bb", "late_one", "build")
			if log := e.stdio(e.steps(b.BuildID)[1].StepID); !strings.Contains(log, "o"+want+"\n") {
				t.Errorf("the step did not run in %s:\n%s", want, log)
			}
		})
	}
}

// TestBBWorkerDuplicateAcrossProtocols: a worker name is connected over
// one protocol at a time. While a real buildbot-worker is connected over
// PB, a msgpack login with its name and password is refused (its old
// connection answers), so is a gbb-worker's, and the PB worker stays
// connected.
func TestBBWorkerDuplicateAcrossProtocols(t *testing.T) {
	t.Parallel()
	e := newBBEnv(t, "pb")
	mpPort := freePort(t)
	e.writeConfig(e.holdConfig(false) + fmt.Sprintf("\n[protocols.msgpack]\nport = %d\ninterface = \"127.0.0.1\"\n", mpPort))
	e.startMaster()
	e.startBBWorker("bb", "bbpass")
	waitFor(t, "bb connected over pb", 60*time.Second, func() bool { return e.connected("bb") })
	e.waitLog("buildbot-worker attached", 1)

	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("bb:bbpass")))
	ws, resp, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://127.0.0.1:%d/ws", mpPort), h)
	if err != nil {
		t.Fatalf("msgpack dial: %v (%v)", err, resp)
	}
	defer ws.Close()
	// Refused: the master closes it without a message, well within the
	// attach timeout (60s) a stalled attach would take.
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, msg, err := ws.ReadMessage()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the msgpack login of a name connected over pb was not refused: message %q, err %v", msg, err)
	}
	e.waitLog("worker refused: a connection of that name answers", 1)
	if !strings.Contains(e.masterLog(), `connected over pb`) {
		t.Errorf("the refusal does not say which connection holds the name:\n%s", e.masterLog())
	}
	// So is a gbb-worker of that name on gbb's own port.
	e.startWorker("bb", "bbpass")
	waitFor(t, "the gbb-worker's login refused", 60*time.Second, func() bool {
		for _, l := range strings.Split(e.masterLog(), "\n") {
			if strings.Contains(l, "worker refused: a connection of that name answers") && strings.Contains(l, "protocol=gbb") {
				return true
			}
		}
		return false
	})
	// The PB worker is still the one connected, and still builds.
	if !e.connected("bb") {
		t.Fatal("bb is not connected after the refused duplicate")
	}
	if n := strings.Count(e.masterLog(), "buildbot-worker attached"); n != 1 {
		t.Errorf("%d attachments, want the PB worker's only", n)
	}
	brid := e.force("force", holdID, "after the duplicate")
	e.runningBuild(brid)
}
