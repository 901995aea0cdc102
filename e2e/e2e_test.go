// Package e2e tests gbb with its real binaries: a master started as an admin
// starts it, real workers, real commands, and the HTTP API.
package e2e

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const stepsConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["pass", "fail", "timeout"]

[[builders]]
name = "pass"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  name = "hello"
  command = ["echo", "hello world"]

  [[builders.steps]]
  type = "shell"
  name = "script"
  command = "printf 'a\\nb\\n'; echo to-stderr >&2; printf 'no newline'"

  [[builders.steps]]
  type = "shell"
  name = "tolerated"
  command = "exit 1"
  flunk_on_failure = false

  [[builders.steps]]
  type = "shell"
  name = "env"
  workdir = "sub/dir"
  command = "echo $GREETING from $(basename $(pwd))"
  env = { GREETING = "hi" }

[[builders]]
name = "fail"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  name = "bad"
  command = "echo failing; exit 3"
  halt_on_failure = true

  [[builders.steps]]
  type = "shell"
  name = "never"
  command = "echo should not run"

  [[builders.steps]]
  type = "shell"
  name = "cleanup"
  command = "echo cleaning"
  always_run = true

[[builders]]
name = "timeout"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  name = "sleepy"
  command = "echo before; sleep 60; echo after"
  timeout = "1s"
`

type stepWant struct {
	Name    string
	Results int
	Out     string // the log's stdout lines ('o')
	Err     string // its stderr lines ('e'): the two streams interleave as they come
}

// TestForcedBuilds forces builds whose steps succeed, fail and time out, on
// a master started with `gbb-master start` and a worker in the foreground;
// then restarts the master and reads the same builds.
func TestForcedBuilds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(stepsConfig)
	mustRun(t, e.master, "checkconfig", e.masterDir)
	e.startMaster()
	e.startWorker("w1", "secret")

	// Builder ids follow the config's order.
	var builders struct {
		Builders []struct {
			BuilderID int64  `json:"builderid"`
			Name      string `json:"name"`
		}
	}
	e.get("/api/v2/builders", &builders)
	ids := map[string]int64{}
	for _, b := range builders.Builders {
		ids[b.Name] = b.BuilderID
	}
	if len(ids) != 3 {
		t.Fatalf("builders: %+v", builders)
	}

	tests := []struct {
		builder string
		results int
		state   string
		steps   []stepWant
	}{
		{"pass", 0, "build successful", []stepWant{
			{"worker_preparation", 0, "", ""},
			{"hello", 0, "ohello world\n", ""},
			{"script", 0, "oa\nob\nono newline\n", "eto-stderr\n"},
			{"tolerated", 2, "", ""},
			{"env", 0, "ohi from dir\n", ""},
		}},
		{"fail", 2, "failed", []stepWant{
			{"worker_preparation", 0, "", ""},
			{"bad", 2, "ofailing\n", ""},
			{"cleanup", 0, "ocleaning\n", ""},
		}},
		{"timeout", 2, "failed", []stepWant{
			{"worker_preparation", 0, "", ""},
			{"sleepy", 2, "obefore\n", ""},
		}},
	}
	brids := map[string]int64{}
	for _, tc := range tests {
		brids[tc.builder] = e.force("force", ids[tc.builder], "e2e "+tc.builder)
	}
	var before []apiBuild
	for _, tc := range tests {
		b := e.waitBuild(brids[tc.builder], 60*time.Second)
		before = append(before, b)
		if b.Results == nil || *b.Results != tc.results || b.StateString != tc.state {
			t.Errorf("%s: build results %v %q, want %d %q", tc.builder, b.Results, b.StateString, tc.results, tc.state)
		}
		steps := e.steps(b.BuildID)
		var got []stepWant
		for _, s := range steps {
			sw := stepWant{Name: s.Name, Results: -1}
			if s.Results != nil {
				sw.Results = *s.Results
			}
			if s.Name != "worker_preparation" {
				log := e.stdio(s.StepID)
				sw.Out, sw.Err = channelLines(log, "o"), channelLines(log, "e")
			}
			got = append(got, sw)
			if !s.Complete {
				t.Errorf("%s: step %s not complete", tc.builder, s.Name)
			}
		}
		if diff := cmp.Diff(tc.steps, got); diff != "" {
			t.Errorf("%s: steps (-want +got):\n%s", tc.builder, diff)
		}
	}

	// Headers say how each command ended.
	steps := e.steps(before[2].BuildID)
	sleepy := e.stdio(steps[1].StepID)
	for _, want := range []string{"hcommand timed out: 1 seconds without output", "hprocess killed by signal", "hprogram finished with exit code"} {
		if !strings.Contains(sleepy, want) {
			t.Errorf("timeout log lacks %q:\n%s", want, sleepy)
		}
	}
	if !strings.Contains(steps[1].StateString, "timed out") {
		t.Errorf("timeout step state %q", steps[1].StateString)
	}
	hello := e.stdio(e.steps(before[0].BuildID)[1].StepID)
	if !strings.Contains(hello, "hprogram finished with exit code 0\n") || !strings.HasPrefix(hello, "h['echo', 'hello world']\n") {
		t.Errorf("hello log:\n%s", hello)
	}
	// The raw download strips the channel letters.
	raw := e.getText(fmt.Sprintf("/api/v2/logs/%d/raw", logID(t, e, e.steps(before[0].BuildID)[2].StepID)))
	if !strings.Contains(raw, "\na\nb\n") || !strings.Contains(raw, "\nto-stderr\n") || !strings.Contains(raw, "\nno newline\nprogram finished with exit code 0\n") {
		t.Errorf("raw log:\n%s", raw)
	}

	// A restart keeps every build, step and log.
	var all1, all2 map[string]any
	e.get("/api/v2/builds?order=buildid", &all1)
	log1 := e.getText(fmt.Sprintf("/api/v2/steps/%d/logs/stdio/contents", steps[1].StepID))
	e.stopMaster()
	e.startMaster()
	e.get("/api/v2/builds?order=buildid", &all2)
	if diff := cmp.Diff(all1, all2); diff != "" {
		t.Errorf("builds after restart (-before +after):\n%s", diff)
	}
	if log2 := e.getText(fmt.Sprintf("/api/v2/steps/%d/logs/stdio/contents", steps[1].StepID)); log1 != log2 {
		t.Errorf("log after restart:\n%s\nwant:\n%s", log2, log1)
	}
	// The worker comes back by itself and builds again.
	b := e.waitBuild(e.force("force", ids["pass"], "after restart"), 60*time.Second)
	if b.Results == nil || *b.Results != 0 || b.Number != 2 {
		t.Errorf("build after restart: %+v", b)
	}
}

func logID(t *testing.T, e *env, stepid int64) int64 {
	var r struct{ Logs []apiLog }
	e.get(fmt.Sprintf("/api/v2/steps/%d/logs", stepid), &r)
	if len(r.Logs) == 0 {
		t.Fatalf("step %d has no logs", stepid)
	}
	return r.Logs[0].LogID
}

const oneBuilderConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["runtests"]

[[builders]]
name = "runtests"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  command = ["true"]
`

// TestWorkerBeforeMaster starts the worker first: it keeps trying and
// attaches when the master comes up; a request made while no worker is
// connected waits and then runs.
func TestWorkerBeforeMaster(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(oneBuilderConfig)
	e.startWorker("w1", "secret")
	e.startMaster()
	waitFor(t, "worker attached", 60*time.Second, func() bool {
		var r struct {
			Workers []struct {
				ConnectedTo []map[string]any `json:"connected_to"`
			}
		}
		e.get("/api/v2/workers", &r)
		return len(r.Workers) == 1 && len(r.Workers[0].ConnectedTo) == 1
	})
	b := e.waitBuild(e.force("force", 1, "worker first"), 60*time.Second)
	if *b.Results != 0 {
		t.Errorf("results %d", *b.Results)
	}
}

// TestRequestWaitsForWorker forces a build with no worker connected; it
// runs once one connects.
func TestRequestWaitsForWorker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(oneBuilderConfig)
	e.startMaster()
	brid := e.force("force", 1, "no worker yet")
	var r struct{ Builds []apiBuild }
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", brid), &r)
	if len(r.Builds) != 0 {
		t.Fatalf("a build started with no worker: %+v", r.Builds)
	}
	e.startWorker("w1", "secret")
	if b := e.waitBuild(brid, 60*time.Second); *b.Results != 0 {
		t.Errorf("results %d", *b.Results)
	}
}

// TestWrongPassword: the worker is refused, says why and exits 1; the master
// logs it.
func TestWrongPassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(oneBuilderConfig)
	e.startMaster()
	cmd := exec.Command(e.worker, "-master", fmt.Sprintf("127.0.0.1:%d", e.WorkerPort),
		"-name", "w1", "-password", "wrong", "-basedir", filepath.Join(e.Dir, "w"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 {
			t.Errorf("worker exit: %v, want exit status 1\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("worker with a wrong password kept running:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "wrong") {
		t.Errorf("worker output does not say the password is wrong:\n%s", out.String())
	}
	waitFor(t, "master log of the refusal", 10*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(e.masterDir, "master.log"))
		return bytes.Contains(b, []byte("w1")) && bytes.Contains(b, []byte("wrong"))
	})
}

// TestSecondMasterFailsFast: a second master on the same basedir does not
// start, and says why.
func TestSecondMasterFailsFast(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(oneBuilderConfig)
	e.startMaster()
	out, err := run(t, e.master, "start", "--nodaemon", e.masterDir)
	if err == nil {
		t.Fatalf("second master started:\n%s", out)
	}
	if !strings.Contains(out, "running") {
		t.Errorf("second master's message does not say another is running:\n%s", out)
	}
}

// TestCheckconfig: a bad config exits 1 naming file, line and key.
func TestCheckconfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mustRun(t, e.master, "create-master", e.masterDir)
	sample, err := os.ReadFile(filepath.Join(e.masterDir, "master.toml.sample"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(e.masterDir, "master.toml")
	os.WriteFile(cfg, sample, 0o644)
	mustRun(t, e.master, "checkconfig", e.masterDir)

	os.WriteFile(cfg, []byte("[[workers]]\nname = \"w\"\npasword = \"x\"\n"), 0o644)
	out, err := run(t, e.master, "checkconfig", e.masterDir)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("checkconfig of a bad config: %v\n%s", err, out)
	}
	if !strings.Contains(out, "master.toml:3:") || !strings.Contains(out, "pasword") {
		t.Errorf("checkconfig does not name file, line and key:\n%s", out)
	}
	// start refuses it too, and says why.
	out, err = run(t, e.master, "start", e.masterDir)
	if err == nil || !strings.Contains(out, "pasword") {
		t.Errorf("start with a bad config: %v\n%s", err, out)
	}
}

// TestCross builds both binaries for every platform DESIGN.md names with
// `make cross`, and checks each is a static executable for its OS and arch.
func TestCross(t *testing.T) {
	t.Parallel()
	dist := t.TempDir()
	cmd := exec.Command("make", "cross", "DIST="+dist)
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make cross: %v\n%s", err, out)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, p := range []string{"freebsd-amd64", "freebsd-arm64", "linux-amd64", "linux-arm64"} {
		os, arch, _ := strings.Cut(p, "-")
		for _, b := range []string{"gbb-master", "gbb-worker"} {
			f, err := elf.Open(filepath.Join(dist, p, b))
			if err != nil {
				t.Errorf("%s/%s: %v", p, b, err)
				continue
			}
			if f.Machine != machines[arch] {
				t.Errorf("%s/%s: machine %v", p, b, f.Machine)
			}
			if os == "freebsd" && f.OSABI != elf.ELFOSABI_FREEBSD {
				t.Errorf("%s/%s: OS ABI %v, want FreeBSD", p, b, f.OSABI)
			}
			for _, prog := range f.Progs {
				if prog.Type == elf.PT_INTERP {
					t.Errorf("%s/%s: dynamically linked (has an interpreter)", p, b)
				}
			}
			f.Close()
		}
	}
}
