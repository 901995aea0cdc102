package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/protocol"
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

// hostileUploadConfig runs directory uploads against a worker that answers
// each with a tar of its own making (hostileWorker), named by workersrc.
const hostileUploadConfig = loopback + `
[[workers]]
name = "evil"
password = "evil-pass"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["hostile"]

[[builders]]
name = "hostile"
worker_names = ["evil"]
  [[builders.steps]]
  type = "directory_upload"
  name = "planted"
  workersrc = "planted"
  masterdest = "up/planted"
  [[builders.steps]]
  type = "file_upload"
  name = "through the plant"
  workersrc = "file"
  masterdest = "up/planted/rootlink/evil.txt"
  [[builders.steps]]
  type = "directory_upload"
  name = "dotdot after a link"
  workersrc = "dotdot"
  masterdest = "up/dotdot"
  [[builders.steps]]
  type = "directory_upload"
  name = "parent is a link"
  workersrc = "parentlink"
  masterdest = "up/parentlink"
  [[builders.steps]]
  type = "directory_upload"
  name = "climbs too far"
  workersrc = "climb"
  masterdest = "up/climb"
  [[builders.steps]]
  type = "directory_upload"
  name = "absolute"
  workersrc = "absolute"
  masterdest = "up/absolute"
  [[builders.steps]]
  type = "directory_upload"
  name = "fine"
  workersrc = "fine"
  masterdest = "up/fine"
`

type tarEntry struct {
	name, link, data string
	dir              bool
}

// hostileWorker is a worker that speaks the real protocol and answers an
// upload with the tar archives[workersrc] (or, for a file, its bytes);
// every other command succeeds without doing anything.
type hostileWorker struct {
	archives map[string][]tarEntry
}

func (h hostileWorker) Run(ctx context.Context, cmd protocol.Command, out func(protocol.Output)) protocol.Result {
	u := cmd.Upload
	if u == nil {
		return protocol.Result{}
	}
	if !u.Directory {
		if _, err := u.Sink.Write([]byte("evil\n")); err != nil {
			return protocol.Result{ExitCode: 1, Err: err.Error()}
		}
		return protocol.Result{}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, en := range h.archives[u.Path] {
		hdr := &tar.Header{Name: en.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(en.data))}
		switch {
		case en.dir:
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o755, 0
		case en.link != "":
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeSymlink, en.link, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return protocol.Result{ExitCode: 1, Err: err.Error()}
		}
		if hdr.Size > 0 {
			tw.Write([]byte(en.data))
		}
	}
	tw.Close()
	if _, err := u.Sink.Write(buf.Bytes()); err != nil {
		return protocol.Result{ExitCode: 1, Err: err.Error()}
	}
	return protocol.Result{}
}

// TestHostileWorkerUploads: a worker (a modified one, a compromised host)
// answering directory uploads with archives that plant symlinks leading
// out of the master's upload directory gets each upload refused, with a
// log saying why, and nothing it sends leads out of the master's basedir;
// a tar with links that stay inside is unpacked whole.
func TestHostileWorkerUploads(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	outside := filepath.Join(e.Dir, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeConfig(hostileUploadConfig)
	e.startMaster()

	w := hostileWorker{archives: map[string][]tarEntry{
		// The probe's attack: "a" is the directory itself, so
		// a/a/a/rootlink is made at the top, and its target, checked as
		// text against "a/a/a", climbs three levels past it.
		"planted": {{name: "a", link: "."}, {name: "a/a/a/rootlink", link: "../../../outside"}},
		// x/u is the top again: x/u/x/u/../../../.. is "." as text, four
		// levels up on disk.
		"dotdot": {{name: "x", dir: true}, {name: "x/u", link: ".."},
			{name: "l", link: "x/u/x/u/../../../../" + filepath.Base(e.Dir) + "/outside"}},
		"parentlink": {{name: "real", dir: true}, {name: "l", link: "real"}, {name: "l/evil", data: "evil\n"}},
		"climb":      {{name: "sub", dir: true}, {name: "sub/up", link: "../.."}},
		"absolute":   {{name: "abs", link: outside}},
		"fine": {{name: "sub/", dir: true}, {name: "sub/f", data: "ok\n"}, {name: "sub/up", link: ".."},
			{name: "sub/self", link: "../sub"}, {name: "top", link: "./sub/f"}, {name: "deep/er/f", data: "deep\n"}},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	c := protocol.NewClient(protocol.ClientConfig{
		Master: fmt.Sprintf("127.0.0.1:%d", e.WorkerPort), Name: "evil", Password: "evil-pass",
		Info: protocol.WorkerInfo{OS: "linux", Basedir: "/nowhere"}, Executor: w,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
	})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hostile worker: %v", err)
		}
	})

	b := e.waitBuild(e.force("force", 1, "hostile"), 60*time.Second)
	byName := map[string]apiStep{}
	for _, s := range e.steps(b.BuildID) {
		byName[s.Name] = s
	}
	for _, tt := range []struct{ step, why string }{
		{"planted", `"a/a/a/rootlink": its parent "a" is a symlink`},
		{"dotdot after a link", `a ".." follows a name`},
		{"parent is a link", `"l/evil": its parent "l" is a symlink`},
		{"climbs too far", "lead out of the upload's directory"},
		{"absolute", "the target is absolute"},
	} {
		s, ok := byName[tt.step]
		if !ok || s.Results == nil {
			t.Errorf("step %q did not run", tt.step)
			continue
		}
		if log := e.logText(s.StepID, "err_text"); *s.Results != 2 || !strings.Contains(log, tt.why) {
			t.Errorf("step %q: results %d, log:\n%s\nwant FAILURE saying %q", tt.step, *s.Results, log, tt.why)
		}
	}
	if s := byName["fine"]; s.Results == nil || *s.Results != 0 {
		t.Errorf("step fine: %+v, log:\n%s", s, e.stdio(s.StepID))
	}
	fine := filepath.Join(e.masterDir, "up", "fine")
	for p, want := range map[string]string{"sub/f": "ok\n", "top": "ok\n", "sub/up/sub/self/f": "ok\n", "deep/er/f": "deep\n"} {
		if got, err := os.ReadFile(filepath.Join(fine, p)); err != nil || string(got) != want {
			t.Errorf("up/fine/%s = %q, %v; want %q", p, got, err, want)
		}
	}

	// Nothing under the basedir leads out of it, and nothing was
	// written outside.
	base, err := filepath.EvalSymlinks(e.masterDir)
	if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(e.masterDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		real, err := filepath.EvalSymlinks(p)
		if rel, rerr := filepath.Rel(base, real); err == nil && (rerr != nil || !filepath.IsLocal(rel)) {
			t.Errorf("%s leads out of the master's basedir, to %s", p, real)
		}
		return nil
	})
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("written outside the basedir: %v", entries)
	}
	for _, p := range []string{"up/dotdot", "up/parentlink", "up/climb", "up/absolute"} {
		if _, err := os.Lstat(filepath.Join(e.masterDir, p)); err == nil {
			t.Errorf("%s was made by a refused upload", p)
		}
	}
	// The file upload after the refused plant made real directories.
	if fi, err := os.Lstat(filepath.Join(e.masterDir, "up/planted/rootlink")); err != nil || !fi.IsDir() {
		t.Errorf("up/planted/rootlink: %v, %v; want the directory the file upload made", fi, err)
	}
}

// masterFilesConfig has transfers whose master paths are rendered from
// properties, so only the running step can refuse them.
const masterFilesConfig = loopback + workerW1 + `
[[secrets_providers]]
type = "file"
dirname = "{{.Dir}}/master/secrets"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["steal"]

[[builders]]
name = "steal"
worker_names = ["w1"]
properties = { cfg = "master.toml", db = "state.db", log = "master.log", pid = "master.pid", tok = "secrets/token", via = "link/master.toml", dotdot = "sub/../master.toml", abs = "{{.Dir}}/master/master.toml", here = "." }
  [[builders.steps]]
  type = "shell"
  command = "echo replaced > replaced.txt"
{{range .Reads}}
  [[builders.steps]]
  type = "file_download"
  name = "read {{.}}"
  mastersrc = "%(prop:{{.}})s"
  workerdest = "got-{{.}}"
{{end}}{{range .Writes}}
  [[builders.steps]]
  type = "{{if eq . "here"}}directory{{else}}file{{end}}_upload"
  name = "write {{.}}"
  workersrc = "{{if eq . "here"}}.{{else}}replaced.txt{{end}}"
  masterdest = "%(prop:{{.}})s"
{{end}}
  [[builders.steps]]
  type = "file_download"
  name = "allowed"
  mastersrc = "public/readme.txt"
  workerdest = "got-readme"
`

// TestTransfersKeepOffMasterFiles: transfers whose rendered master path is
// one of the master's own files (config, store, log, pid, a secret),
// directly, through a symlink, through "..", as an absolute path, or the
// basedir itself, fail saying so; the files are neither sent to the worker
// nor replaced. checkconfig refuses the same path written literally.
func TestTransfersKeepOffMasterFiles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reads := []string{"cfg", "db", "log", "pid", "tok", "via", "dotdot", "abs"}
	writes := []string{"cfg", "db", "tok", "via", "dotdot", "abs", "here"}
	e.writeConfigData(masterFilesConfig, struct {
		*env
		Reads, Writes []string
	}{e, reads, writes})
	for p, data := range map[string]string{"secrets/token": "s3cret-token\n", "public/readme.txt": "hello\n", "sub/.keep": ""} {
		p = filepath.Join(e.masterDir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(".", filepath.Join(e.masterDir, "link")); err != nil {
		t.Fatal(err)
	}
	config, err := os.ReadFile(filepath.Join(e.masterDir, "master.toml"))
	if err != nil {
		t.Fatal(err)
	}
	e.startMaster()
	e.startWorker("w1", "secret")
	b := e.waitBuild(e.force("force", 1, "steal"), 90*time.Second)
	byName := map[string]apiStep{}
	for _, s := range e.steps(b.BuildID) {
		byName[s.Name] = s
	}
	check := func(name string) {
		s, ok := byName[name]
		if !ok || s.Results == nil {
			t.Errorf("step %q did not run", name)
			return
		}
		log := e.stdio(s.StepID)
		if *s.Results != 2 || !strings.Contains(log, "the master's own files are out of reach of transfers") ||
			!strings.Contains(log, `step "`+name+`"`) {
			t.Errorf("step %q: results %d, log:\n%s\nwant FAILURE naming the step and the rule", name, *s.Results, log)
		}
	}
	for _, p := range reads {
		check("read " + p)
		if _, err := os.Lstat(filepath.Join(e.Dir, "worker-w1", "steal", "build", "got-"+p)); err == nil {
			t.Errorf("the worker got %s", p)
		}
	}
	for _, p := range writes {
		check("write " + p)
	}
	if s := byName["allowed"]; s.Results == nil || *s.Results != 0 {
		t.Errorf("a download of another file: %+v", s)
	}
	if got, _ := os.ReadFile(filepath.Join(e.masterDir, "master.toml")); !bytes.Equal(got, config) {
		t.Errorf("master.toml was replaced: %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(e.masterDir, "secrets/token")); string(got) != "s3cret-token\n" {
		t.Errorf("secrets/token was replaced: %q", got)
	}
	// The master runs on: its store was not replaced.
	if b2 := e.waitBuild(e.force("force", 1, "again"), 90*time.Second); b2.Results == nil {
		t.Errorf("second build: %+v", b2)
	}

	// The same paths written literally are refused by checkconfig.
	lit := strings.ReplaceAll(string(config), `"%(prop:cfg)s"`, `"master.toml"`)
	lit = strings.ReplaceAll(lit, `"%(prop:via)s"`, `"link/master.toml"`)
	if err := os.WriteFile(filepath.Join(e.masterDir, "master.toml"), []byte(lit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, e.master, "checkconfig", e.masterDir)
	for _, want := range []string{`step "read cfg": "master.toml" is the master's config file`, `step "write via": "link/master.toml" (master.toml, symlinks resolved) is the master's config file`} {
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("checkconfig: %v\n%s\nwant it to say %s", err, out, want)
		}
	}
}

// reconfigFilesConfig downloads keys/token; with Secrets set, keys/ is a
// secrets directory.
const reconfigFilesConfig = loopback + workerW1 + `
{{if .Secrets}}
[[secrets_providers]]
type = "file"
dirname = "keys"
{{end}}
[[schedulers]]
type = "force"
name = "force"
builder_names = ["get"]

[[builders]]
name = "get"
worker_names = ["w1"]
properties = { src = "keys/token" }
  [[builders.steps]]
  type = "file_download"
  mastersrc = "%(prop:src)s"
  workerdest = "token"
`

// TestTransfersMasterFilesReconfig: a directory that a reconfig makes a
// secrets directory is out of reach of transfers from then on.
func TestTransfersMasterFilesReconfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	write := func(secrets bool) {
		e.writeConfigData(reconfigFilesConfig, struct {
			*env
			Secrets bool
		}{e, secrets})
	}
	write(false)
	if err := os.MkdirAll(filepath.Join(e.masterDir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.masterDir, "keys", "token"), []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.startMaster()
	e.startWorker("w1", "secret")
	if b := e.waitBuild(e.force("force", 1, "before"), 60*time.Second); b.Results == nil || *b.Results != 0 {
		t.Fatalf("download of an ordinary file: %+v", b)
	}
	write(true)
	mustRun(t, e.master, "reconfig", e.masterDir)
	b := e.waitBuild(e.force("force", 1, "after"), 60*time.Second)
	steps := e.steps(b.BuildID)
	if b.Results == nil || *b.Results != 2 || len(steps) != 2 ||
		!strings.Contains(e.stdio(steps[1].StepID), "is the secrets directory of secrets_providers[0]") {
		t.Errorf("download from the secrets directory after the reconfig: %+v, %+v", b, steps)
	}
}
