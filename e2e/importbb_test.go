package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testdeb"
)

// TestImportBuildbotSampleBuilds imports buildbot's own sample master.cfg
// with gbb-master import-buildbot, starts a master on the TOML and builds
// with a real gbb-worker: the sample's git checkout and its `trial hello`.
// The sample is changed only where this machine needs it: its repository
// is a local one made here (no network), its ports are the test's, and
// Debian names twisted's trial "trial3".
func TestImportBuildbotSampleBuilds(t *testing.T) {
	testdeb.Need(t, "buildbot", "buildbot")
	testdeb.Need(t, "trial3", "python3-twisted")
	e := newEnv(t)
	repo := makeRepo(t, filepath.Join(e.Dir, "hello-world"), map[string]string{
		"README": "hello\n",
	})
	if err := os.MkdirAll(filepath.Join(repo, "hello"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"hello/__init__.py": "def hello():\n    return 'hello'\n",
		"hello/test_hello.py": "import unittest\nfrom hello import hello\n\n" +
			"class T(unittest.TestCase):\n    def test_hello(self):\n        self.assertEqual(hello(), 'hello')\n",
	} {
		if err := os.WriteFile(filepath.Join(repo, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := []string{"-C", repo, "-c", "user.name=A U Thor", "-c", "user.email=a@example.com"}
	mustRun(t, "git", append(git, "add", ".")...)
	mustRun(t, "git", append(git, "commit", "-q", "-m", "hello")...)

	sample, err := os.ReadFile("/usr/lib/python3/dist-packages/buildbot/scripts/sample.cfg")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(sample)
	// buildbot-workers' port, in strports form: the import keeps it as
	// [protocols.pb], on loopback.
	pbPort := freePort(t)
	for old, new := range map[string]string{
		"https://github.com/buildbot/hello-world.git": repo,
		"{'pb': {'port': 9989}}":                      fmt.Sprintf("{'pb': {'port': 'tcp:%d:interface=127.0.0.1'}}", pbPort),
		`command=["trial", "hello"]`:                  `command=["trial3", "hello"]`,
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("buildbot's sample.cfg has no %q any more", old)
		}
		cfg = strings.ReplaceAll(cfg, old, new)
	}
	cfg += fmt.Sprintf("\nc['www'] = {'port': 'tcp:port=%d:interface=127.0.0.1'}\nc['buildbotURL'] = 'http://127.0.0.1:%d/'\n", e.WebPort, e.WebPort)
	bbDir := filepath.Join(e.Dir, "bb")
	if err := os.MkdirAll(bbDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(bbDir, "master.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	mustRun(t, e.master, "create-master", e.masterDir)
	tomlPath := filepath.Join(e.masterDir, "master.toml")
	// An older file others could read is made 0600 too.
	if err := os.WriteFile(tomlPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, e.master, "import-buildbot", "-o", tomlPath, cfgPath)
	if !strings.Contains(out, "import-buildbot: 0 untranslatable item(s)") {
		t.Errorf("summary line: %q", out)
	}
	if fi, err := os.Stat(tomlPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("-o FILE: %v %v, want mode 0600 (it holds passwords)", fi, err)
	}
	data, err := os.ReadFile(tomlPath)
	if err != nil {
		t.Fatal(err)
	}
	// The strports ports with their interface; gbb-workers' own port
	// beside buildbot-workers', with TLS: this test's worker dials the
	// harness's port in plaintext.
	grpc := "[protocols.grpc]\n"
	for _, want := range []string{
		fmt.Sprintf("[protocols.pb]\n"), fmt.Sprintf("port = %d\ninterface = \"127.0.0.1\"\n", pbPort),
		fmt.Sprintf("[www]\nport = %d\ninterface = \"127.0.0.1\"\n", e.WebPort), grpc,
	} {
		if !strings.Contains(string(data), want) {
			t.Fatalf("no %q in the import:\n%s", want, data)
		}
	}
	i := strings.Index(string(data), grpc) + len(grpc)
	j := i + strings.Index(string(data)[i:], "tls = \"auto\"\n") + len("tls = \"auto\"\n")
	if j < i+len("tls") {
		t.Fatalf("[protocols.grpc] has no tls = \"auto\":\n%s", data)
	}
	toml := string(data)[:i] + fmt.Sprintf("port = %d\ninterface = \"127.0.0.1\"\ntls = \"off\"\n", e.WorkerPort) + string(data)[j:]
	if err := os.WriteFile(tomlPath, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, e.master, "checkconfig", e.masterDir)
	e.startMaster()
	e.startWorker("example-worker", "pass")

	var r struct {
		Builders []struct {
			BuilderID int64  `json:"builderid"`
			Name      string `json:"name"`
		} `json:"builders"`
	}
	e.get("/api/v2/builders", &r)
	if len(r.Builders) != 1 || r.Builders[0].Name != "runtests" {
		t.Fatalf("builders %+v, want the sample's runtests", r.Builders)
	}
	var workers struct {
		Workers []struct {
			ConnectedTo []any `json:"connected_to"`
		} `json:"workers"`
	}
	waitFor(t, "the worker to connect", 30*time.Second, func() bool {
		e.get("/api/v2/workers", &workers)
		return len(workers.Workers) == 1 && len(workers.Workers[0].ConnectedTo) > 0
	})
	brid := e.force("force", r.Builders[0].BuilderID, "imported")
	b := e.waitBuild(brid, 2*time.Minute)
	steps := e.steps(b.BuildID)
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
	}
	if b.Results == nil || *b.Results != 0 {
		for _, s := range steps {
			t.Logf("step %s: %s\n%s", s.Name, s.StateString, e.stdio(s.StepID))
		}
		t.Fatalf("build %+v of the imported sample did not succeed", b)
	}
	if strings.Join(names, ",") != "worker_preparation,git,shell" {
		t.Fatalf("steps %v, want the sample's git and shell", names)
	}
	if log := e.stdio(steps[2].StepID); !strings.Contains(log, "PASSED") {
		t.Errorf("trial's log has no PASSED:\n%s", log)
	}
}

// TestImportBuildbotErrors: a master.cfg buildbot refuses gives buildbot's
// own error text and exit 1; no buildbot gives what to install.
func TestImportBuildbotErrors(t *testing.T) {
	testdeb.Need(t, "buildbot", "buildbot")
	master, _ := buildBinaries(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "master.cfg")
	if err := os.WriteFile(cfg, []byte("c = BuildmasterConfig = {}\nc['workers'] = ['not a worker']\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, master, "import-buildbot", cfg)
	if code := exitCode(err); code != 1 || !strings.Contains(out, "buildbot could not load") || !strings.Contains(out, "c['workers'] must be a list of Worker instances") {
		t.Errorf("a master.cfg buildbot refuses: exit %d, %q; want 1 and buildbot's error", code, out)
	}
	out, err = run(t, master, "import-buildbot", "-python", filepath.Join(dir, "no-python3"), cfg)
	if code := exitCode(err); code != 1 || !strings.Contains(out, "buildbot is not installed") || !strings.Contains(out, "apt-get install buildbot") {
		t.Errorf("no buildbot: exit %d, %q; want 1 and what to install", code, out)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestImportBuildbotSignalKillsLoader: SIGTERM (as SIGINT) to gbb-master
// import-buildbot kills buildbot's loader and what master.cfg started,
// rather than leave them running under init; master.cfg's prints go to
// stderr, never into the TOML.
func TestImportBuildbotSignalKillsLoader(t *testing.T) {
	testdeb.Need(t, "buildbot", "buildbot")
	master, _ := buildBinaries(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "master.cfg")
		src := "print('hello from master.cfg')\nimport os, subprocess\n" +
			"p = subprocess.Popen(['sleep', '600'])\n" +
			"open('pids.tmp', 'w').write('%d %d' % (os.getpid(), p.pid))\nos.rename('pids.tmp', 'pids')\n" +
			"while True:\n    pass\n"
		if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(master, "import-buildbot", cfg)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		// A loader left running holds the output pipes: do not wait on it.
		cmd.WaitDelay = 10 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		var pids []int
		waitFor(t, "master.cfg to start its child", 60*time.Second, func() bool {
			b, err := os.ReadFile(filepath.Join(dir, "pids"))
			if err != nil {
				return false
			}
			for _, f := range strings.Fields(string(b)) {
				n, _ := strconv.Atoi(f)
				pids = append(pids, n)
			}
			return true
		})
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if exitCode(err) == 0 {
			t.Errorf("%v: exit 0", sig)
		}
		for _, pid := range pids {
			waitFor(t, fmt.Sprintf("process %d to end after %v", pid, sig), 30*time.Second, func() bool {
				stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
				return err != nil || strings.Contains(string(stat), ") Z ")
			})
		}
		if stdout.Len() != 0 || !strings.Contains(stderr.String(), "hello from master.cfg") {
			t.Errorf("%v: stdout %q, stderr %q: want master.cfg's print on stderr only", sig, stdout.String(), stderr.String())
		}
	}
}
