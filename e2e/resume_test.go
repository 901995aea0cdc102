package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// resumeConfig is a builder whose first step prints a line, waits for the
// file {{.Dir}}/go, and prints another; its second step prints "second".
// The step writes its shell's pid to {{.Dir}}/pid. Top-level keys come
// first: Opts is finish_steps_on_restart and the like.
const resumeConfig = `{{.Opts}}
` + loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["long"]

[[builders]]
name = "long"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "first"
  command = "echo $$ > {{.Dir}}/pid; echo before-restart; while [ ! -f {{.Dir}}/go ]; do sleep 0.05; done; echo first-done"

  [[builders.steps]]
  type = "shell"
  name = "second"
  command = "echo second"
`

type resumeEnv struct {
	*env
	Opts string
}

func newResumeEnv(t *testing.T, opts string) *resumeEnv {
	e := &resumeEnv{env: newEnv(t), Opts: opts}
	e.writeConfigData(resumeConfig, e)
	return e
}

// startFirstStep forces a build and waits until its first step has printed
// its first line; it returns the build request, the build and the step's
// shell pid.
func (e *resumeEnv) startFirstStep() (int64, apiBuild, int) {
	e.t.Helper()
	brid := e.force("force", 1, "resume")
	b := e.runningBuild(brid)
	pid := waitPids(e.t, filepath.Join(e.Dir, "pid"), 1)[0]
	waitFor(e.t, "the first step's first line", 30*time.Second, func() bool {
		st := e.stepNamed(b.BuildID, "first")
		return st != nil && strings.Contains(e.stdio(st.StepID), "obefore-restart\n")
	})
	return brid, b, pid
}

func (e *resumeEnv) stepNamed(buildid int64, name string) *apiStep {
	for _, s := range e.steps(buildid) {
		if s.Name == name {
			return &s
		}
	}
	return nil
}

func (e *resumeEnv) release() {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.Dir, "go"), nil, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *resumeEnv) requestBuildsOf(brid int64) []apiBuild {
	e.t.Helper()
	var r struct{ Builds []apiBuild }
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", brid), &r)
	return r.Builds
}

// waitMasterUp waits until the master's API answers.
func (e *resumeEnv) waitMasterUp() {
	e.t.Helper()
	waitFor(e.t, "the master's API", 30*time.Second, func() bool {
		resp, err := http.Get(e.url("/api/v2/builders"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// keptGone bounds the wait for a kept step's process to go: a worker may
// take its reconnection backoff to learn that it must kill it.
const keptGone = 60 * time.Second

// checkResumed checks that build b of request brid ended SUCCESS after the
// master's restart, with its first step's output from before and after the
// restart, its second step run, no other build, and the step's process
// gone.
func (e *resumeEnv) checkResumed(brid int64, b apiBuild, pid int) {
	e.t.Helper()
	got := e.waitBuild(brid, 60*time.Second)
	if got.BuildID != b.BuildID || got.Number != b.Number || got.Results == nil || *got.Results != 0 {
		e.t.Fatalf("build after the restart: %+v, want build %d (number %d) SUCCESS", got, b.BuildID, b.Number)
	}
	if bs := e.requestBuildsOf(brid); len(bs) != 1 {
		e.t.Errorf("request %d has %d builds, want 1 (no RETRY): %+v", brid, len(bs), bs)
	}
	var names []string
	for _, s := range e.steps(b.BuildID) {
		names = append(names, s.Name)
		if !s.Complete || s.Results == nil || *s.Results != 0 {
			e.t.Errorf("step %s: %+v, want SUCCESS", s.Name, s)
		}
	}
	if want := "worker_preparation first second"; strings.Join(names, " ") != want {
		e.t.Errorf("steps %q, want %q", strings.Join(names, " "), want)
	}
	first := e.stdio(e.stepNamed(b.BuildID, "first").StepID)
	if out := channelLines(first, "o"); out != "obefore-restart\nofirst-done\n" {
		e.t.Errorf("first step's output %q, want before-restart then first-done; log:\n%s", out, first)
	}
	for _, want := range []string{"hmaster stopping: the command goes on", "hmaster restarted: the command goes on", "hprogram finished with exit code 0"} {
		if !strings.Contains(first, want) {
			e.t.Errorf("first step's log lacks %q:\n%s", want, first)
		}
	}
	if i, j := strings.Index(first, "obefore-restart"), strings.Index(first, "hmaster restarted"); i < 0 || j < i {
		e.t.Errorf("first step's log: the output before the restart does not come first:\n%s", first)
	}
	if second := e.stdio(e.stepNamed(b.BuildID, "second").StepID); !strings.Contains(second, "osecond\n") {
		e.t.Errorf("second step's log:\n%s", second)
	}
	waitGone(e.t, keptGone, pid)
}

// TestResumeAfterRestart: with finish_steps_on_restart, `gbb-master
// restart` during a step leaves the step running on its worker; the
// restarted master takes it back (the output from before the restart,
// then the live rest), and the same build goes on to SUCCESS; twice.
func TestResumeAfterRestart(t *testing.T) {
	t.Parallel()
	e := newResumeEnv(t, `finish_steps_on_restart = true
finish_steps_wait = "60s"`)
	e.startMaster()
	e.startWorker("w1", "secret")
	brid, b, pid := e.startFirstStep()

	mustRun(t, e.master, "restart", e.masterDir)
	e.waitMasterUp()
	// The step goes on across the restart: the same shell is still there.
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the step's process %d after the restart: %v", pid, err)
	}
	waitFor(t, "the step reattached", 60*time.Second, func() bool {
		return strings.Count(e.stdio(e.stepNamed(b.BuildID, "first").StepID), "hmaster restarted") == 1
	})
	// A second restart, while the resumed step runs, resumes it again.
	mustRun(t, e.master, "restart", e.masterDir)
	e.waitMasterUp()
	waitFor(t, "the step reattached again", 60*time.Second, func() bool {
		return strings.Count(e.stdio(e.stepNamed(b.BuildID, "first").StepID), "hmaster restarted") == 2
	})
	e.release()
	e.checkResumed(brid, b, pid)
}

// TestResumeStepEndedWhileMasterDown: the step ends while the master is
// stopped; its output and exit status wait on the worker (spooled) for the
// master's start.
func TestResumeStepEndedWhileMasterDown(t *testing.T) {
	t.Parallel()
	e := newResumeEnv(t, `finish_steps_on_restart = true
finish_steps_wait = "60s"`)
	e.startMaster()
	e.startWorker("w1", "secret")
	brid, b, pid := e.startFirstStep()

	e.stopMaster()
	e.release()
	waitGone(t, keptGone, pid) // the step ended on the worker, master down
	mustRun(t, e.master, "start", e.masterDir)
	e.checkResumed(brid, b, pid)
}

// TestResumeWorkerGone: a worker that does not come back within
// finish_steps_wait leaves its build RETRY, and the request runs again
// when a worker is there.
func TestResumeWorkerGone(t *testing.T) {
	t.Parallel()
	e := newResumeEnv(t, `finish_steps_on_restart = true
finish_steps_wait = "2s"`)
	e.startMaster()
	w := e.startWorker("w1", "secret")
	brid, b, pid := e.startFirstStep()

	e.stopMaster()
	// A worker that stops kills the steps it kept.
	if err := w.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	waitGone(t, keptGone, pid)
	mustRun(t, e.master, "start", e.masterDir)
	got := e.waitBuild(brid, 60*time.Second)
	if got.BuildID != b.BuildID || got.Results == nil || *got.Results != 5 {
		t.Fatalf("build whose worker did not come back: %+v, want build %d RETRY", got, b.BuildID)
	}
	if err := os.Remove(filepath.Join(e.Dir, "pid")); err != nil {
		t.Fatal(err)
	}
	e.release()
	e.startWorker("w1", "secret")
	waitFor(t, "the request's second build SUCCESS", 60*time.Second, func() bool {
		bs := e.requestBuildsOf(brid)
		return len(bs) == 2 && bs[1].Complete && bs[1].Results != nil && *bs[1].Results == 0
	})
}

// TestResumeOff: without finish_steps_on_restart, a restart interrupts the
// step (its process is killed) and the build ends RETRY; the request runs
// again, as buildbot does.
func TestResumeOff(t *testing.T) {
	t.Parallel()
	e := newResumeEnv(t, "")
	e.startMaster()
	e.startWorker("w1", "secret")
	brid, b, pid := e.startFirstStep()

	mustRun(t, e.master, "restart", e.masterDir)
	waitGone(t, keptGone, pid)
	var first apiBuild
	waitFor(t, "the first build RETRY", 60*time.Second, func() bool {
		bs := e.requestBuildsOf(brid)
		if len(bs) == 0 || bs[0].Results == nil {
			return false
		}
		first = bs[0]
		return true
	})
	if first.BuildID != b.BuildID || *first.Results != 5 {
		t.Fatalf("build across a restart without the option: %+v, want build %d RETRY", first, b.BuildID)
	}
	e.release()
	waitFor(t, "the request's second build SUCCESS", 60*time.Second, func() bool {
		bs := e.requestBuildsOf(brid)
		return len(bs) == 2 && bs[1].Complete && bs[1].Results != nil && *bs[1].Results == 0
	})
}

// TestResumeAfterKill: a master killed with SIGKILL records nothing to
// resume: its build ends RETRY when it starts again, and the step its
// worker kept is killed when the worker reports it (no orphan process).
func TestResumeAfterKill(t *testing.T) {
	t.Parallel()
	e := newResumeEnv(t, `finish_steps_on_restart = true
finish_steps_wait = "60s"`)
	e.startMaster()
	e.startWorker("w1", "secret")
	brid, b, pid := e.startFirstStep()

	data, err := os.ReadFile(filepath.Join(e.masterDir, "master.pid"))
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
	waitGone(t, 10*time.Second, mpid)
	if err := os.Remove(filepath.Join(e.masterDir, "master.pid")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	mustRun(t, e.master, "start", e.masterDir)
	waitGone(t, keptGone, pid)
	got := e.waitBuild(brid, 60*time.Second)
	if got.BuildID != b.BuildID || got.Results == nil || *got.Results != 5 {
		t.Fatalf("build of a killed master: %+v, want build %d RETRY", got, b.BuildID)
	}
}

// TestResumeStopWaiting: a build that waits for its worker after the
// master's restart says so, and can be stopped: it ends CANCELLED, and does
// not run again.
func TestResumeStopWaiting(t *testing.T) {
	t.Parallel()
	e := newResumeEnv(t, `finish_steps_on_restart = true
finish_steps_wait = "5m"`)
	e.startMaster()
	w := e.startWorker("w1", "secret")
	brid, b, pid := e.startFirstStep()

	e.stopMaster()
	if err := w.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	waitGone(t, keptGone, pid)
	mustRun(t, e.master, "start", e.masterDir)
	e.waitMasterUp()
	var got apiBuild
	waitFor(t, "the build waiting for its worker", 30*time.Second, func() bool {
		bs := e.requestBuildsOf(brid)
		if len(bs) != 1 {
			return false
		}
		got = bs[0]
		return strings.Contains(got.StateString, "waiting for worker w1")
	})
	if got.Complete {
		t.Fatalf("build waiting for its worker: %+v", got)
	}
	e.rpc(fmt.Sprintf("/api/v2/builds/%d", b.BuildID), "stop", `{"reason":"not worth waiting"}`)
	got = e.waitBuild(brid, 30*time.Second)
	if got.BuildID != b.BuildID || got.Results == nil || *got.Results != 6 || !strings.Contains(got.StateString, "not worth waiting") {
		t.Fatalf("stopped waiting build: %+v, want build %d CANCELLED", got, b.BuildID)
	}
	var r struct {
		Buildrequests []struct {
			Complete bool `json:"complete"`
			Results  *int `json:"results"`
		}
	}
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d", brid), &r)
	if len(r.Buildrequests) != 1 || !r.Buildrequests[0].Complete || r.Buildrequests[0].Results == nil || *r.Buildrequests[0].Results != 6 {
		t.Errorf("request of the stopped build: %+v, want complete CANCELLED", r)
	}
}

// resumeWarningsConfig is a builder whose step counts warnings (one
// suppressed) and waits for {{.Dir}}/go with half a warning line printed;
// the rest of that line and one more warning come after (the counted
// warnings all on stdout: the order across stdout and stderr is the
// pipes'). log_max_size keeps the first three lines (66 bytes) in the
// stored log and cuts the rest, so that only a count kept across the
// restart, not one made again from the log, is right.
const resumeWarningsConfig = `{{.Opts}}
log_max_size = 70
` + loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["warn"]

[[builders]]
name = "warn"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "compile"
  command = "echo $$ > {{.Dir}}/pid; echo 'a.c:1: warning: one'; echo 'b.c:2: warning: deprecated two' >&2; echo before-restart; printf 'c.c:3: warn'; touch {{.Dir}}/printed; while [ ! -f {{.Dir}}/go ]; do sleep 0.05; done; echo 'ing: three'; echo 'd.c:4: warning: four'; echo done"
  warning_pattern = "warning:"
  suppress = [{ regex = "deprecated" }]
  max_warn_count = 3

  [[builders.steps]]
  type = "shell"
  name = "second"
  command = "echo second"
`

func newResumeEnvConfig(t *testing.T, tmpl, opts string) *resumeEnv {
	e := &resumeEnv{env: newEnv(t), Opts: opts}
	e.writeConfigData(tmpl, e)
	return e
}

// stepSummary is what a finished step shows of its warnings: its result,
// its state string, and its logs but stdio by name with their contents.
func (e *resumeEnv) stepSummary(st apiStep) string {
	e.t.Helper()
	var r struct{ Logs []apiLog }
	e.get(fmt.Sprintf("/api/v2/steps/%d/logs", st.StepID), &r)
	res := -1
	if st.Results != nil {
		res = *st.Results
	}
	s := fmt.Sprintf("results %d, state %q", res, st.StateString)
	for _, l := range r.Logs {
		if l.Name == "stdio" {
			continue
		}
		var c struct {
			Logchunks []struct {
				Content string `json:"content"`
			}
		}
		e.get(fmt.Sprintf("/api/v2/logs/%d/contents", l.LogID), &c)
		s += fmt.Sprintf(", log %q:", l.Name)
		for _, ch := range c.Logchunks {
			s += fmt.Sprintf(" %q", ch.Content)
		}
	}
	return s
}

func (e *resumeEnv) warningsCount(buildid int64) string {
	e.t.Helper()
	var r struct {
		Properties []map[string][]any `json:"properties"`
	}
	e.get(fmt.Sprintf("/api/v2/builds/%d/properties", buildid), &r)
	if len(r.Properties) != 1 || len(r.Properties[0]["warnings-count"]) == 0 {
		return fmt.Sprintf("no warnings-count in %v", r.Properties)
	}
	return fmt.Sprint(r.Properties[0]["warnings-count"][0])
}

// TestResumeCountsWarnings: a step counting warnings is kept across a
// restart that comes in the middle of a warning line, with the stored log
// cut by log_max_size; its warnings, result, state string and the
// build's warnings-count are those of the same build run without a
// restart.
func TestResumeCountsWarnings(t *testing.T) {
	t.Parallel()
	e := newResumeEnvConfig(t, resumeWarningsConfig, `finish_steps_on_restart = true
finish_steps_wait = "60s"`)
	e.startMaster()
	e.startWorker("w1", "secret")
	brid := e.force("force", 1, "restarted")
	b := e.runningBuild(brid)
	pid := waitPids(t, filepath.Join(e.Dir, "pid"), 1)[0]
	// The master has the first warning (it comes before before-restart
	// on stdout); the half line it may have or not.
	waitFor(t, "the first lines in the master's log", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(e.Dir, "printed"))
		st := e.stepNamed(b.BuildID, "compile")
		return err == nil && st != nil && strings.Contains(e.stdio(st.StepID), "obefore-restart\n")
	})
	mustRun(t, e.master, "restart", e.masterDir)
	e.waitMasterUp()
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the step's process %d after the restart: %v", pid, err)
	}
	waitFor(t, "the build resumed", 60*time.Second, func() bool {
		bs := e.requestBuildsOf(brid)
		return len(bs) == 1 && bs[0].StateString == "compile"
	})
	e.release()
	got := e.waitBuild(brid, 60*time.Second)
	if got.BuildID != b.BuildID || got.Results == nil || *got.Results != 1 {
		t.Fatalf("build after the restart: %+v, want build %d WARNINGS", got, b.BuildID)
	}
	if bs := e.requestBuildsOf(brid); len(bs) != 1 {
		t.Errorf("request %d has %d builds, want 1 (no RETRY)", brid, len(bs))
	}
	waitGone(t, keptGone, pid)

	// The same build without a restart ({{.Dir}}/go is there now).
	ref := e.waitBuild(e.force("force", 1, "reference"), 60*time.Second)
	if ref.Results == nil || *ref.Results != 1 {
		t.Fatalf("reference build: %+v, want WARNINGS", ref)
	}
	gotSteps, refSteps := e.steps(got.BuildID), e.steps(ref.BuildID)
	if len(gotSteps) != len(refSteps) || len(gotSteps) != 3 {
		t.Fatalf("steps %+v, reference %+v", gotSteps, refSteps)
	}
	for i := range gotSteps {
		g, r := e.stepSummary(gotSteps[i]), e.stepSummary(refSteps[i])
		if g != r {
			t.Errorf("step %s after the restart: %s\nwithout a restart: %s", gotSteps[i].Name, g, r)
		}
	}
	g := e.stepSummary(gotSteps[1])
	if !strings.HasPrefix(g, "results 1,") || !strings.Contains(g, `(warnings)", log "warnings (3)"`) ||
		!strings.Contains(g, `warning: one\nc.c:3: warning: three\nd.c:4: warning: four`) {
		t.Errorf("compile step after the restart: %s\nwant WARNINGS with the warnings one, three and four", g)
	}
	if g, r := e.warningsCount(got.BuildID), e.warningsCount(ref.BuildID); g != "3" || r != "3" {
		t.Errorf("warnings-count %s after the restart, %s without; want 3", g, r)
	}
	if !got.Complete || got.StateString != ref.StateString {
		t.Errorf("build state %q after the restart, %q without", got.StateString, ref.StateString)
	}
}

// resumeLocksConfig: builder "long" holds the exclusive master lock "db"
// for the whole build; its first step waits for {{.Dir}}/go. Builder
// "other", on another worker, takes the lock for its one step. Each
// step holding the lock takes the directory {{.Dir}}/held too, so two
// holders at once make one fail.
const resumeLocksConfig = `{{.Opts}}
` + loopback + workerW1 + `
[[workers]]
name = "w2"
password = "secret"

[[locks]]
name = "db"
type = "master"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["long", "other"]

[[builders]]
name = "long"
worker_names = ["w1"]
locks = [{name = "db", access = "exclusive"}]
  [[builders.steps]]
  type = "shell"
  name = "first"
  command = "mkdir {{.Dir}}/held || exit 1; echo $$ > {{.Dir}}/pid; echo before-restart; while [ ! -f {{.Dir}}/go ]; do sleep 0.05; done; rmdir {{.Dir}}/held; echo first-done"

  [[builders.steps]]
  type = "shell"
  name = "second"
  command = "mkdir {{.Dir}}/held || exit 1; sleep 0.5; rmdir {{.Dir}}/held; echo second"

[[builders]]
name = "other"
worker_names = ["w2"]
  [[builders.steps]]
  type = "shell"
  name = "locked"
  command = "mkdir {{.Dir}}/held || exit 1; rmdir {{.Dir}}/held"
  locks = [{name = "db", access = "exclusive"}]
`

// TestResumeKeepsLocks: a build holding an exclusive master lock is kept
// across a restart, and keeps the lock throughout: a build of another
// builder that wants it waits before the restart, and again after it,
// while the kept step goes on; it runs once the kept build has ended.
func TestResumeKeepsLocks(t *testing.T) {
	t.Parallel()
	e := newResumeEnvConfig(t, resumeLocksConfig, `finish_steps_on_restart = true
finish_steps_wait = "60s"`)
	e.startMaster()
	e.startWorker("w1", "secret")
	e.startWorker("w2", "secret")
	brid, b, pid := e.startFirstStep()
	other := e.force("force", 2, "wants the lock")
	waitOtherWaiting := func(what string, after int64) {
		t.Helper()
		waitFor(t, what, 60*time.Second, func() bool {
			bs := e.requestBuildsOf(other)
			if len(bs) == 0 || bs[len(bs)-1].BuildID <= after {
				return false
			}
			last := bs[len(bs)-1]
			if last.Complete {
				t.Fatalf("build %+v of the other builder ended while the lock was held", last)
			}
			return strings.Contains(last.StateString, "waiting for locks")
		})
	}
	waitOtherWaiting("the other build waiting for the lock", 0)

	mustRun(t, e.master, "restart", e.masterDir)
	e.waitMasterUp()
	// The other build ended RETRY with the old master; its request runs
	// again, and waits for the lock the kept build holds.
	waitOtherWaiting("the other request's new build waiting for the lock", e.requestBuildsOf(other)[0].BuildID)
	waitFor(t, "the step reattached", 60*time.Second, func() bool {
		return strings.Contains(e.stdio(e.stepNamed(b.BuildID, "first").StepID), "hmaster restarted")
	})
	if bs := e.requestBuildsOf(other); bs[len(bs)-1].Complete {
		t.Fatalf("the other build ended while the kept build held the lock: %+v", bs[len(bs)-1])
	}
	e.release()
	got := e.waitBuild(brid, 60*time.Second)
	if got.BuildID != b.BuildID || got.Results == nil || *got.Results != 0 {
		t.Fatalf("kept build: %+v, want build %d SUCCESS", got, b.BuildID)
	}
	if bs := e.requestBuildsOf(brid); len(bs) != 1 {
		t.Errorf("request %d has %d builds, want 1 (no RETRY)", brid, len(bs))
	}
	var bs []apiBuild
	waitFor(t, "the other request's second build ended", 60*time.Second, func() bool {
		bs = e.requestBuildsOf(other)
		return len(bs) == 2 && bs[1].Complete
	})
	if bs[0].Results == nil || *bs[0].Results != 5 || bs[1].Results == nil || *bs[1].Results != 0 {
		t.Errorf("other request's builds %+v, want one RETRY (the old master's) then one SUCCESS (never with the lock held by the kept build)", bs)
	}
	waitGone(t, keptGone, pid)
}

// resumeLogfilesConfig: a step tailing the logfile "test" writes a line
// to it before waiting for {{.Dir}}/go, and another after.
const resumeLogfilesConfig = `{{.Opts}}
` + loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["tail"]

[[builders]]
name = "tail"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "first"
  command = "echo $$ > {{.Dir}}/pid; echo one > test.log; echo before-restart; while [ ! -f {{.Dir}}/go ]; do sleep 0.05; done; echo two >> test.log; echo first-done"
  logfiles = { test = "test.log" }
`

// TestResumeLogfiles: a step tailing a logfile is kept across a restart;
// the file's lines from before and after the restart are in the step's
// log of that name, once each, and the log is finished.
func TestResumeLogfiles(t *testing.T) {
	t.Parallel()
	e := newResumeEnvConfig(t, resumeLogfilesConfig, `finish_steps_on_restart = true
finish_steps_wait = "60s"`)
	e.startMaster()
	e.startWorker("w1", "secret")
	brid, b, pid := e.startFirstStep()
	waitFor(t, "the logfile's first line", 30*time.Second, func() bool {
		return e.logText(e.stepNamed(b.BuildID, "first").StepID, "test") == "oone\n"
	})

	mustRun(t, e.master, "restart", e.masterDir)
	e.waitMasterUp()
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the step's process %d after the restart: %v", pid, err)
	}
	waitFor(t, "the step reattached", 60*time.Second, func() bool {
		return strings.Contains(e.stdio(e.stepNamed(b.BuildID, "first").StepID), "hmaster restarted")
	})
	e.release()
	got := e.waitBuild(brid, 60*time.Second)
	if got.BuildID != b.BuildID || got.Results == nil || *got.Results != 0 {
		t.Fatalf("build after the restart: %+v, want build %d SUCCESS", got, b.BuildID)
	}
	if bs := e.requestBuildsOf(brid); len(bs) != 1 {
		t.Errorf("request %d has %d builds, want 1 (no RETRY)", brid, len(bs))
	}
	st := e.stepNamed(b.BuildID, "first")
	if log := e.logText(st.StepID, "test"); log != "oone\notwo\n" {
		t.Errorf("logfile test after the restart: %q, want its two lines", log)
	}
	var r struct{ Logs []apiLog }
	e.get(fmt.Sprintf("/api/v2/steps/%d/logs", st.StepID), &r)
	var names []string
	for _, l := range r.Logs {
		names = append(names, l.Name)
		if !l.Complete {
			t.Errorf("log %s of the resumed step is not finished: %+v", l.Name, l)
		}
	}
	if strings.Join(names, " ") != "stdio test" {
		t.Errorf("logs of the resumed step: %q, want stdio and test", names)
	}
	if out := channelLines(e.stdio(st.StepID), "o"); out != "obefore-restart\nofirst-done\n" {
		t.Errorf("stdio of the resumed step: %q", out)
	}
	waitGone(t, keptGone, pid)
}
