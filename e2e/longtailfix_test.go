package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// envSteps are the steps TestEnvOnWorkers runs on each worker: the
// builder's env (a list, ${NAME} from the worker's environment, a name the
// worker has not) under a shell and a shell_sequence, one step's own env
// on top.
const envSteps = `
  [builders.env]
  PATH = ["/gbb-env-test/bin", "${PATH}"]
  WHERE = "${GBB_T_WHERE}"
  NONE = "a${GBB_T_UNSET_NOWHERE}b"
  [[builders.steps]]
  type = "shell"
  name = "shell"
  command = 'echo "P=$PATH W=$WHERE N=$NONE"'
  [[builders.steps]]
  type = "shell"
  name = "own"
  command = 'echo "W=$WHERE L=$L"'
  env = { WHERE = "step-${GBB_T_WHERE}", L = ["x", "${GBB_T_WHERE}"] }
  [[builders.steps]]
  type = "shell_sequence"
  name = "seq"
  decode_rc = { "0" = "success", "3" = "warnings" }
  commands = [
    { command = 'echo "P=$PATH W=$WHERE N=$NONE"' },
    { command = "%(prop:nothing:-)s" },
    { command = "exit 3", warn_on_warnings = true, logname = "three" },
  ]
`

const envConfig = loopback + workerW1 + `
[protocols.pb]
port = {{.BBPort}}
interface = "127.0.0.1"

[[workers]]
name = "bb"
password = "bbpass"
protocol = "pb"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["ongbb", "onbb"]

[[builders]]
name = "ongbb"
worker_names = ["w1"]
` + envSteps + `
  [[builders.steps]]
  type = "master_shell_command"
  name = "onmaster"
  command = 'echo "W=$WHERE L=$L"'
  env = { WHERE = "${GBB_T_WHERE}", L = ["x", "${GBB_T_WHERE}"] }

[[builders]]
name = "onbb"
worker_names = ["bb"]
` + envSteps

// TestEnvOnWorkers (issue 23's long tail, as buildbot-worker does it): a
// builder's and a step's env reach shell and shell_sequence commands with
// each ${NAME} expanded from the environment of the worker (not the
// master's) and lists joined with ":", the same on gbb's worker and on
// buildbot-worker (which expands them itself: gbb passes them as they
// are, lists as lists); master_shell_command expands from the master's.
// A shell_sequence command that renders empty is skipped, and the step's
// decode_rc and a command's warn_on_warnings apply.
func TestEnvOnWorkers(t *testing.T) {
	t.Parallel()
	e := newBBEnv(t, "pb")
	e.masterEnv = []string{"GBB_T_WHERE=master"}
	e.workerEnv = []string{"GBB_T_WHERE=worker"}
	e.writeConfigData(envConfig, e)
	e.startMaster()
	e.startWorker("w1", "secret")
	e.startBBWorker("bb", "bbpass")
	waitFor(t, "buildbot-worker connected", 60*time.Second, func() bool { return e.connected("bb") })

	path := "/gbb-env-test/bin:" + os.Getenv("PATH")
	for i, builder := range []string{"ongbb", "onbb"} {
		b := e.waitBuild(e.force("force", int64(i+1), "env"), 120*time.Second)
		byName := map[string]apiStep{}
		for _, s := range e.steps(b.BuildID) {
			byName[s.Name] = s
		}
		want := map[string]struct {
			results int
			log     string
			out     string
		}{
			"shell": {0, "stdio", fmt.Sprintf("oP=%s W=worker N=ab\n", path)},
			"own":   {0, "stdio", "oW=step-worker L=x:worker\n"},
			"seq":   {1, "stdio", fmt.Sprintf("oP=%s W=worker N=ab\n", path)},
		}
		if builder == "ongbb" {
			want["onmaster"] = struct {
				results int
				log     string
				out     string
			}{0, "stdio", "oW=master L=x:master\n"}
		}
		for name, w := range want {
			s, ok := byName[name]
			if !ok || s.Results == nil || *s.Results != w.results {
				e.logSteps(b.BuildID)
				t.Fatalf("%s: step %s: %+v, want results %d", builder, name, s, w.results)
			}
			if got := channelLines(e.logText(s.StepID, w.log), "o"); got != w.out {
				t.Errorf("%s: step %s: stdout %q, want %q", builder, name, got, w.out)
			}
		}
		var logs struct{ Logs []apiLog }
		e.get(fmt.Sprintf("/api/v2/steps/%d/logs", byName["seq"].StepID), &logs)
		var names []string
		for _, l := range logs.Logs {
			names = append(names, l.Name)
		}
		if !slices.Equal(names, []string{"stdio", "three"}) {
			t.Errorf("%s: seq's logs %q, want stdio and three (the empty command skipped)", builder, names)
		}
	}
}

const multiUploadConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["up"]

[[builders]]
name = "up"
worker_names = ["w1"]
  [builders.properties]
  parent = ".."
  [[builders.steps]]
  type = "shell"
  command = "mkdir -p dist/sub && echo h > dist/.hidden && echo s > dist/sub/s.txt && echo a > a.txt && echo x > master.toml"
  [[builders.steps]]
  type = "multiple_file_upload"
  name = "dots"
  workersrcs = ["dist/.*"]
  glob = true
  masterdest = "up/dots"
  [[builders.steps]]
  type = "multiple_file_upload"
  name = "parent"
  workersrcs = ["dist/sub/%(prop:parent)s"]
  masterdest = "up/parent"
  always_run = true
  [[builders.steps]]
  type = "multiple_file_upload"
  name = "nodest"
  workersrcs = ["a.txt"]
  masterdest = "%(prop:nothing:-)s"
  always_run = true
  [[builders.steps]]
  type = "multiple_file_upload"
  name = "guarded"
  workersrcs = ["master.toml"]
  masterdest = "%(prop:nothing:-.)s"
  always_run = true
  [[builders.steps]]
  type = "shell_sequence"
  name = "duplog"
  always_run = true
  commands = [{ command = "true", logname = "l-%(prop:nothing:-x)s" }, { command = "true", logname = "l-x" }]
  [[builders.steps]]
  type = "shell_sequence"
  name = "emptylog"
  always_run = true
  commands = [{ command = "true", logname = "%(prop:nothing:-)s" }]
`

// TestMultipleUploadStaysInMasterdest: a multiple_file_upload never writes
// outside masterdest: sh's .* matches . and .., which are skipped as
// Python's glob (buildbot's) never gives them; a source that renders to a
// base name ".." and an empty masterdest fail the step, with the reason in
// the step's log. So does a shell_sequence whose log names render empty
// or twice the same.
func TestMultipleUploadStaysInMasterdest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(multiUploadConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	b := e.waitBuild(e.force("force", 1, "up"), 90*time.Second)
	byName := map[string]apiStep{}
	for _, s := range e.steps(b.BuildID) {
		byName[s.Name] = s
	}
	want := map[string]int{"dots": 0, "parent": 2, "nodest": 2, "guarded": 2, "duplog": 2, "emptylog": 2}
	for name, w := range want {
		if s, ok := byName[name]; !ok || s.Results == nil || *s.Results != w {
			e.logSteps(b.BuildID)
			t.Fatalf("step %s: %+v, want results %d", name, s, w)
		}
	}
	ls := func(dir string) []string {
		t.Helper()
		ents, err := os.ReadDir(filepath.Join(e.masterDir, dir))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		var names []string
		for _, d := range ents {
			names = append(names, d.Name())
		}
		return names
	}
	if got := ls("up/dots"); !slices.Equal(got, []string{".hidden"}) {
		t.Errorf("up/dots holds %q, want only .hidden", got)
	}
	if got := ls("up"); !slices.Equal(got, []string{"dots"}) {
		t.Errorf("up holds %q, want only dots", got)
	}
	// The master's guard refuses the upload onto master.toml after the
	// listing wrote the stdio log: the reason is in err.text.
	if got := e.logText(byName["guarded"].StepID, "err_text"); !strings.Contains(got, "masterdest refused") {
		t.Errorf("step guarded: err.text %q does not say masterdest refused", got)
	}
	if _, err := os.Stat(filepath.Join(e.masterDir, "a.txt")); !os.IsNotExist(err) {
		t.Errorf("a.txt was uploaded into the master's basedir: %v", err)
	}
	for name, reason := range map[string]string{
		"parent":   `workersrc "dist/sub/..": its base name is ".."`,
		"nodest":   "masterdest is empty after rendering",
		"duplog":   `the logname of command 2 renders "l-x", command 1's`,
		"emptylog": "the logname of command 1 renders empty",
	} {
		if got := e.logText(byName[name].StepID, "stdio"); !strings.Contains(got, reason) {
			t.Errorf("step %s: stdio %q does not say %q", name, got, reason)
		}
	}
}
