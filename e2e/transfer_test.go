package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const transferConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["transfer", "shellopts"]

[[builders]]
name = "transfer"
worker_names = ["w1"]
  [[builders.steps]]
  type = "string_download"
  s = "hello from the master\n"
  workerdest = "in/hello.txt"
  mode = 0o640
  [[builders.steps]]
  type = "shell"
  command = "cat in/hello.txt && mkdir -p dist/sub && cp in/hello.txt dist/sub/copy.txt && ln -s sub/copy.txt dist/link"
  [[builders.steps]]
  type = "file_upload"
  workersrc = "in/hello.txt"
  masterdest = "artifacts/hello.txt"
  [[builders.steps]]
  type = "directory_upload"
  workersrc = "dist"
  masterdest = "artifacts/dist"
  [[builders.steps]]
  type = "file_download"
  mastersrc = "artifacts/dist/sub/copy.txt"
  workerdest = "back/copy.txt"
  [[builders.steps]]
  type = "mkdir"
  dir = "build/made"
  [[builders.steps]]
  type = "remove_file"
  path = "build/in/hello.txt"
  [[builders.steps]]
  type = "file_upload"
  name = "too big"
  workersrc = "back/copy.txt"
  masterdest = "artifacts/big.txt"
  max_size = 4

[[builders]]
name = "shellopts"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "logfile"
  command = "echo one > test.log; sleep 0.5; echo two >> test.log; echo done"
  logfiles = { test = "test.log" }
  [[builders.steps]]
  type = "shell"
  name = "quiet"
  command = "echo to-stdout; echo to-stderr >&2"
  want_stdout = false
  [[builders.steps]]
  type = "shell"
  name = "decoded"
  command = "exit 1"
  decode_rc = { "0" = "success", "1" = "warnings" }
`

// logText returns a step's log by name, as its lines with channel letters.
func (e *env) logText(stepid int64, name string) string {
	e.t.Helper()
	var r struct {
		Logchunks []struct {
			Content string `json:"content"`
		}
	}
	e.get(fmt.Sprintf("/api/v2/steps/%d/logs/%s/contents", stepid, name), &r)
	var b strings.Builder
	for _, c := range r.Logchunks {
		b.WriteString(c.Content)
	}
	return b.String()
}

func TestTransferRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(transferConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	b := e.waitBuild(e.force("force", 1, "transfer"), 60*time.Second)
	steps := e.steps(b.BuildID)
	want := map[string]int{
		"string_download": 0, "shell": 0, "file_upload": 0, "directory_upload": 0,
		"file_download": 0, "mkdir": 0, "remove_file": 0, "too big": 2,
	}
	for _, s := range steps {
		if w, ok := want[s.Name]; ok && (s.Results == nil || *s.Results != w) {
			t.Errorf("step %s: results %v (%s), want %d\n%s", s.Name, s.Results, s.StateString, w, e.stdio(s.StepID))
		}
	}
	wdir := filepath.Join(e.Dir, "worker-w1", "transfer", "build")
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Error(err)
		}
		return string(b)
	}
	const hello = "hello from the master\n"
	for p, want := range map[string]string{
		filepath.Join(e.masterDir, "artifacts/hello.txt"):         hello,
		filepath.Join(e.masterDir, "artifacts/dist/sub/copy.txt"): hello,
		filepath.Join(e.masterDir, "artifacts/dist/link"):         hello,
		filepath.Join(wdir, "back/copy.txt"):                      hello,
	} {
		if got := read(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(e.masterDir, "artifacts/dist/link")); err != nil || l != "sub/copy.txt" {
		t.Errorf("symlink in the uploaded directory: %q, %v", l, err)
	}
	if fi, err := os.Stat(filepath.Join(wdir, "made")); err != nil || !fi.IsDir() {
		t.Errorf("mkdir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(wdir, "in/hello.txt")); !os.IsNotExist(err) {
		t.Errorf("remove_file left in/hello.txt: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.masterDir, "artifacts/big.txt")); !os.IsNotExist(err) {
		t.Errorf("an upload over max_size left a file: %v", err)
	}
	for _, s := range steps {
		switch s.Name {
		case "shell":
			if log := e.stdio(s.StepID); !strings.Contains(log, "o"+hello) {
				t.Errorf("cat did not show the downloaded string:\n%s", log)
			}
		case "too big":
			if log := e.stdio(s.StepID); !strings.Contains(log, "maximum size exceeded") {
				t.Errorf("max_size failure not explained:\n%s", log)
			}
		}
	}
}

func TestShellOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(transferConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	b := e.waitBuild(e.force("force", 2, "shellopts"), 60*time.Second)
	if b.Results == nil || *b.Results != 1 {
		t.Errorf("build results %v, want WARNINGS (1)", b.Results)
	}
	for _, s := range e.steps(b.BuildID) {
		log := e.stdio(s.StepID)
		switch s.Name {
		case "logfile":
			if got := e.logText(s.StepID, "test"); got != "oone\notwo\n" {
				t.Errorf("logfile test = %q, want its two lines", got)
			}
			if !strings.Contains(log, "odone\n") || strings.Contains(log, "oone\n") {
				t.Errorf("stdio of the logfile step:\n%s", log)
			}
		case "quiet":
			if strings.Contains(log, "oto-stdout") || !strings.Contains(log, "eto-stderr\n") {
				t.Errorf("want_stdout = false: stdio\n%s", log)
			}
		case "decoded":
			if s.Results == nil || *s.Results != 1 {
				t.Errorf("decode_rc: exit 1 gave results %v, want WARNINGS (1)", s.Results)
			}
		}
	}
}
