package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTutorial runs the README's by-hand sequence: create-master, the
// sample config (ports changed to free ones, the steps to ones that run
// here), checkconfig, start, create-worker, info/admin, worker start, a
// forced build through the API, stop.
func TestTutorial(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	created := mustRun(t, e.master, "create-master", e.masterDir)
	// The sample serves the worker port over TLS (tls = "auto"):
	// create-master printed its CA's fingerprint, for the workers.
	fingerprint := regexp.MustCompile(`-tls-fingerprint (sha256:[0-9a-f]{64}) `).FindStringSubmatch(created)
	if fingerprint == nil {
		t.Fatalf("create-master printed no fingerprint:\n%s", created)
	}
	sample, err := os.ReadFile(filepath.Join(e.masterDir, "master.toml.sample"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(sample)
	for old, repl := range map[string]string{
		"port = 9989": fmt.Sprintf("port = %d\ninterface = \"127.0.0.1\"", e.WorkerPort),
		"port = 8010": fmt.Sprintf("port = %d\ninterface = \"127.0.0.1\"", e.WebPort),
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("sample lacks %q", old)
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	// The sample checks out hello-world from GitHub and runs trial; here the
	// git step checks out a local repository and the shell step runs its
	// test script.
	repo := makeRepo(t, filepath.Join(e.Dir, "hello-world"), map[string]string{
		"test.sh": "echo PASS: hello\n",
	})
	const github = "https://github.com/buildbot/hello-world.git"
	if strings.Count(cfg, github) != 2 || !strings.Contains(cfg, `command = ["trial", "hello"]`) {
		t.Fatal("the sample's git step or trial command changed")
	}
	cfg = strings.ReplaceAll(cfg, github, repo)
	cfg = strings.Replace(cfg, `command = ["trial", "hello"]`, `command = ["sh", "./test.sh"]`, 1)
	if err := os.WriteFile(filepath.Join(e.masterDir, "master.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, e.master, "checkconfig", e.masterDir); !strings.Contains(out, "no errors") {
		t.Errorf("checkconfig: %s", out)
	}
	if out := mustRun(t, e.master, "start", e.masterDir); !strings.Contains(out, "started") {
		t.Errorf("start: %s", out)
	}
	t.Cleanup(func() { run(t, e.master, "stop", e.masterDir) })

	wdir := filepath.Join(e.Dir, "worker")
	mustRun(t, e.worker, "create-worker", "-tls-fingerprint", fingerprint[1], wdir, fmt.Sprintf("127.0.0.1:%d", e.WorkerPort), "example-worker", "pass")
	if err := os.WriteFile(filepath.Join(wdir, "info", "admin"), []byte("Your Name <you@example.org>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, e.worker, "start", wdir)
	t.Cleanup(func() { run(t, e.worker, "stop", wdir) })

	waitFor(t, "worker attached", 60*time.Second, func() bool {
		var r struct {
			Workers []struct {
				ConnectedTo []map[string]any  `json:"connected_to"`
				Info        map[string]string `json:"workerinfo"`
			}
		}
		e.get("/api/v2/workers", &r)
		return len(r.Workers) == 1 && len(r.Workers[0].ConnectedTo) == 1 &&
			strings.TrimSpace(r.Workers[0].Info["admin"]) == "Your Name <you@example.org>"
	})
	b := e.waitBuild(e.force("force", 1, "try"), 60*time.Second)
	if b.Results == nil || *b.Results != 0 {
		t.Fatalf("build: %+v", b)
	}
	steps := e.steps(b.BuildID)
	if len(steps) != 3 || steps[1].Name != "git" || steps[2].Name != "shell" {
		t.Fatalf("steps: %+v", steps)
	}
	if out := channelLines(e.stdio(steps[2].StepID), "o"); out != "oPASS: hello\n" {
		t.Errorf("test step output %q", out)
	}
	var last struct{ Builds []apiBuild }
	e.get("/api/v2/builds?order=-buildid&limit=1", &last)
	if len(last.Builds) != 1 || last.Builds[0].BuildID != b.BuildID {
		t.Errorf("last build: %+v", last.Builds)
	}
	if out := mustRun(t, e.master, "stop", e.masterDir); !strings.Contains(out, "stopped") {
		t.Errorf("stop: %s", out)
	}
	if _, err := os.Stat(filepath.Join(e.masterDir, "master.pid")); !os.IsNotExist(err) {
		t.Errorf("master.pid left after stop: %v", err)
	}
}

// TestReconfig: a valid new config adds a builder without a restart; an
// invalid one, or one that changes a port, is refused and the running
// config stays.
func TestReconfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(oneBuilderConfig)
	e.startMaster()
	e.startWorker("w1", "secret")

	cfgPath := filepath.Join(e.masterDir, "master.toml")
	good, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(string(good)+"\n[[builders]]\nnme = \"typo\"\n"), 0o644)
	out, err := run(t, e.master, "reconfig", e.masterDir)
	if err == nil || !strings.Contains(out, "nme") {
		t.Errorf("reconfig of a bad config: %v\n%s", err, out)
	}

	added := strings.Replace(string(good), `builder_names = ["runtests"]`, `builder_names = ["runtests", "second"]`, 1) +
		"\n[[builders]]\nname = \"second\"\nworker_names = [\"w1\"]\n  [[builders.steps]]\n  type = \"shell\"\n  command = \"echo second\"\n"
	// A port change needs a restart: the master refuses it and says so.
	moved := strings.Replace(string(good), fmt.Sprintf("port = %d", e.WebPort), fmt.Sprintf("port = %d", freePort(t)), 1)
	os.WriteFile(cfgPath, []byte(moved), 0o644)
	out, err = run(t, e.master, "reconfig", e.masterDir)
	if err == nil || !strings.Contains(out, "needs a restart") {
		t.Errorf("reconfig of the web port: %v\n%s", err, out)
	}

	// reconfig returns once the master has applied the config, so the new
	// builder is there at once.
	os.WriteFile(cfgPath, []byte(added), 0o644)
	if out := mustRun(t, e.master, "reconfig", e.masterDir); !strings.Contains(out, "completed successfully") {
		t.Errorf("reconfig: %s", out)
	}
	var r struct {
		Builders []struct {
			BuilderID int64 `json:"builderid"`
		}
	}
	if e.get("/api/v2/builders/second", &r); len(r.Builders) != 1 {
		t.Fatalf("builder second after reconfig: %+v", r)
	}
	id := r.Builders[0].BuilderID
	b := e.waitBuild(e.force("force", id, "after reconfig"), 60*time.Second)
	if *b.Results != 0 {
		t.Errorf("build of the new builder: %+v", b)
	}
}
