package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestConfigNotTOML: a master.toml that is not TOML at all is refused by
// checkconfig and start with the file and line of the first error.
func TestConfigNotTOML(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mustRun(t, e.master, "create-master", e.masterDir)
	cfg := filepath.Join(e.masterDir, "master.toml")
	tests := []struct {
		name, text string
		line       int
	}{
		{"python master.cfg", "# -*- python -*-\nfrom buildbot.plugins import *\nc = BuildmasterConfig = {}\n", 2},
		{"yaml", "title: hello\nworkers:\n  - name: w1\n", 1},
		{"unterminated string", "title = \"hello\n[www]\nport = 8010\n", 1},
		{"binary", "title = \"x\"\n\x00\x01\x02\xff\xfe\n", 2},
		{"not utf-8", "title = \"caf\xe9\"\n", 1},
		{"duplicate table", "[www]\nport = 1\n[www]\nport = 2\n", 3},
	}
	for _, tt := range tests {
		if err := os.WriteFile(cfg, []byte(tt.text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, e.master, "checkconfig", e.masterDir)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("%s: checkconfig: %v, want exit 1\n%s", tt.name, err, out)
			continue
		}
		if want := fmt.Sprintf("master.toml:%d:", tt.line); !strings.Contains(out, want) || strings.Contains(out, "panic") {
			t.Errorf("%s: checkconfig does not name %s:\n%s", tt.name, want, out)
		}
		out, err = run(t, e.master, "start", e.masterDir)
		if err == nil || !strings.Contains(out, "master.toml:") {
			t.Errorf("%s: start: %v\n%s", tt.name, err, out)
		}
	}
}

// badPathsConfig has a builder whose transfers aim out of the master's
// basedir or the worker's build directory, by ".." (through a property,
// as a config's literal ".." is refused by checkconfig) and by symlinks.
const badPathsConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["escape"]

[[builders]]
name = "escape"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "prepare"
  command = "echo payload > in.txt && ln -sfn {{.Outside}} out && ln -sfn {{.Outside}}/secret.txt secret.txt"
  [[builders.steps]]
  type = "set_property"
  property = "up"
  value = "../up.txt"
  [[builders.steps]]
  type = "file_upload"
  name = "masterdest dotdot"
  workersrc = "in.txt"
  masterdest = "%(prop:up)s"
  [[builders.steps]]
  type = "file_upload"
  name = "masterdest symlink"
  workersrc = "in.txt"
  masterdest = "link/evil.txt"
  [[builders.steps]]
  type = "file_download"
  name = "mastersrc symlink"
  mastersrc = "link/secret.txt"
  workerdest = "got.txt"
  [[builders.steps]]
  type = "set_property"
  property = "down"
  value = "../../../down.txt"
  [[builders.steps]]
  type = "string_download"
  name = "workerdest dotdot"
  s = "x"
  workerdest = "%(prop:down)s"
  [[builders.steps]]
  type = "string_download"
  name = "workerdest symlink"
  s = "x"
  workerdest = "out/evil.txt"
  [[builders.steps]]
  type = "file_upload"
  name = "workersrc symlink"
  workersrc = "secret.txt"
  masterdest = "stolen.txt"
  [[builders.steps]]
  type = "shell"
  name = "still runs"
  command = "echo done"
`

// TestTransferPathsRefused: every transfer that would leave the master's
// basedir or the worker's build directory fails its step with a message,
// touches nothing outside, and the build goes on to its next steps.
func TestTransferPathsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	outside := filepath.Join(e.Dir, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.writeConfigData(badPathsConfig, struct {
		*env
		Outside string
	}{e, outside})
	if err := os.Symlink(outside, filepath.Join(e.masterDir, "link")); err != nil {
		t.Fatal(err)
	}
	e.startMaster()
	e.startWorker("w1", "secret")
	b := e.waitBuild(e.force("force", 1, "escape"), 60*time.Second)
	if *b.Results != 2 {
		t.Errorf("build: %+v, want FAILURE", b)
	}
	steps := e.steps(b.BuildID)
	byName := map[string]apiStep{}
	for _, s := range steps {
		byName[s.Name] = s
	}
	refuse := regexp.MustCompile(`leaves|outside|escapes|not allowed|refus|symlink|path escapes`)
	for _, name := range []string{"masterdest dotdot", "masterdest symlink", "mastersrc symlink", "workerdest dotdot", "workerdest symlink", "workersrc symlink"} {
		s, ok := byName[name]
		if !ok {
			t.Errorf("step %q did not run: %+v", name, steps)
			continue
		}
		log := e.stdio(s.StepID)
		if *s.Results != 2 || !refuse.MatchString(log) {
			t.Errorf("step %q: results %d, log:\n%s\nwant FAILURE and a refusal", name, *s.Results, log)
		}
	}
	if s := byName["still runs"]; s.Results == nil || *s.Results != 0 {
		t.Errorf("the step after the refused transfers: %+v", s)
	}
	// Nothing escaped.
	for _, p := range []string{
		filepath.Join(e.Dir, "up.txt"),
		filepath.Join(outside, "evil.txt"),
		filepath.Join(e.Dir, "down.txt"),
		filepath.Join(e.masterDir, "stolen.txt"),
		filepath.Join(e.Dir, "worker-w1", "got.txt"),
		filepath.Join(e.Dir, "worker-w1", "escape", "build", "got.txt"),
	} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was written", p)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret.txt")); string(b) != "secret\n" {
		t.Errorf("outside secret.txt changed: %q", b)
	}
}

// badBytesConfig prints bytes that are not UTF-8, then a 10 MB line with no
// newline at all.
const badBytesConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["bytes"]

[[builders]]
name = "bytes"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "latin1"
  command = '''printf 'ok \377\376 bad\ncaf\303\251\n'; printf 'err \300\n' >&2'''
  [[builders.steps]]
  type = "shell"
  name = "huge line"
  command = '''head -c 10485760 /dev/zero | tr '\0' x'''
  [[builders.steps]]
  type = "shell"
  name = "after"
  command = "echo after"
`

// TestLogBadBytes: output that is not UTF-8 is stored and served as valid
// UTF-8 with U+FFFD (API JSON, raw download, page), a 10 MB line without a
// newline is cut into bounded lines without losing a byte nor holding the
// master's memory, and the build ends normally.
func TestLogBadBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(badBytesConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	b := e.waitBuild(e.force("force", 1, "bytes"), 120*time.Second)
	if *b.Results != 0 {
		t.Errorf("build: %+v, want SUCCESS", b)
	}
	steps := e.steps(b.BuildID)
	if len(steps) != 4 {
		t.Fatalf("steps: %+v", steps)
	}

	// Invalid UTF-8: valid JSON with U+FFFD, and a valid raw download.
	contents := e.rawGet(fmt.Sprintf("/api/v2/steps/%d/logs/stdio/contents", steps[1].StepID))
	if !json.Valid(contents) || !utf8.Valid(contents) {
		t.Errorf("log contents are not valid JSON in UTF-8: %q", contents)
	}
	log := e.stdio(steps[1].StepID)
	for _, want := range []string{"ook \uFFFD bad\n", "ocafé\n", "eerr \uFFFD\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("latin1 log lacks %q:\n%q", want, log)
		}
	}
	raw := e.rawGet(fmt.Sprintf("/api/v2/steps/%d/logs/stdio/raw", steps[1].StepID))
	if !utf8.Valid(raw) || !strings.Contains(string(raw), "ok \uFFFD bad\n") {
		t.Errorf("raw log: %q", raw)
	}
	page := e.rawGet(fmt.Sprintf("/builders/1/builds/%d/steps/1/logs/stdio", b.Number))
	if !utf8.Valid(page) {
		t.Errorf("the log page is not valid UTF-8")
	}

	// The 10 MB line: every byte kept, in lines no longer than 64 KiB.
	raw = e.rawGet(fmt.Sprintf("/api/v2/steps/%d/logs/stdio/raw", steps[2].StepID))
	xs, longest := 0, 0
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.Trim(l, "x") == "" {
			xs += len(l)
			longest = max(longest, len(l))
		}
	}
	if xs != 10<<20 || longest > 64<<10 {
		t.Errorf("huge line: %d x in lines of at most %d bytes; want %d in lines of at most %d", xs, longest, 10<<20, 64<<10)
	}
	if steps[3].Results == nil || *steps[3].Results != 0 {
		t.Errorf("step after the huge line: %+v", steps[3])
	}
	// Bounded memory: the master's peak resident set stays well below what
	// holding the line a few times over would take.
	if hwm := e.masterPeakRSS(); hwm > 200<<20 {
		t.Errorf("master's peak RSS %d MB after a 10 MB line", hwm>>20)
	} else {
		t.Logf("master's peak RSS: %d MB", hwm>>20)
	}

	// Bad API input through the real master: refused, and it still serves.
	resp, err := http.Post(e.url(fmt.Sprintf("/api/v2/builds/%d", b.BuildID)), "application/json",
		strings.NewReader(`{"jsonrpc":"2.0","method":"stop","id":1,"params":{"reason":"`+strings.Repeat("x", 8<<20)+`"}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "larger than") {
		t.Errorf("8 MB JSON-RPC body: %s %.200s", resp.Status, body)
	}
	for _, q := range []string{"complete=maybe", "limit=-1", "order=nosuchfield", "buildid__gt=x"} {
		var r struct{ Error string }
		if status := e.get("/api/v2/builds?"+q, &r); status != 400 || r.Error == "" {
			t.Errorf("GET /api/v2/builds?%s: %d %q, want 400 with a reason", q, status, r.Error)
		}
	}
	if status := e.get("/api/v2/builds", nil); status != 200 {
		t.Errorf("GET /api/v2/builds after bad input: %d", status)
	}
}

// rawGet fetches a path that must answer 200 and returns its bytes.
func (e *env) rawGet(path string) []byte {
	e.t.Helper()
	resp, err := http.Get(e.url(path))
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		e.t.Fatalf("GET %s: %s: %.300s", path, resp.Status, b)
	}
	return b
}

// masterPeakRSS is the running master's peak resident set (VmHWM), in bytes.
func (e *env) masterPeakRSS() int64 {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.masterDir, "master.pid"))
	if err != nil {
		e.t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/status")
	if err != nil {
		e.t.Fatal(err)
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(status)
	if m == nil {
		e.t.Fatalf("no VmHWM in /proc/PID/status:\n%s", status)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}
