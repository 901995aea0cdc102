package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// reuseMaster is TestConfigReuse's master.toml: its workers and builders
// are in included files, its steps in a factory.
const reuseMaster = `include = ["workers.toml", "builders/*.toml"]
` + loopback + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["test-freebsd", "test-linux"]

[factories.probe]
  [[factories.probe.steps]]
  type = "shell"
  name = "probe-%(kw:os)s"
  command = "echo os=%(prop:os)s reason=%(prop:reason)s scheduler=%(prop:scheduler)s level=%(prop:level)s GOOS=$GOOS CC=$CC dir=$(basename $(dirname $(pwd)))"
  env = { CC = "step-cc" }
`

// reuseBuilders is builders/test.toml: a matrix of two builders.
const reuseBuilders = `
[[builders]]
name = "test-%(kw:os)s"
factory = "probe"
worker_names = ["w1"]
workerbuilddir = "wb-%(kw:os)s"
env = { GOOS = "%(kw:os)s", CC = "builder-cc" }
properties = { reason = "builder" }
default_properties = { level = "default", scheduler = "default" }
  [builders.matrix]
  os = ["freebsd", "linux"]
`

// TestConfigReuse: a master whose builders come from an included file, a
// factory and a matrix runs a build on a real worker with the matrix's
// values, the builder's env, workerbuilddir and properties (the builder's
// override the scheduler's, default_properties only fill gaps, as
// buildbot's); checkconfig --dump prints a config that passes checkconfig
// with the same builders; and a reconfig re-reads the included files.
func TestConfigReuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(reuseMaster)
	write := func(name, data string) {
		t.Helper()
		p := filepath.Join(e.masterDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("workers.toml", workerW1)
	write("builders/test.toml", reuseBuilders)
	e.startMaster()
	e.startWorker("w1", "secret")

	ids := e.builderIDs()
	b := e.waitBuild(e.force("force", ids["test-linux"], "reuse"), 60*time.Second)
	if b.Results == nil || *b.Results != 0 {
		t.Fatalf("build: %+v\n%s", b, e.buildLog(b.BuildID))
	}
	steps := e.steps(b.BuildID)
	if len(steps) < 2 || steps[1].Name != "probe-linux" {
		t.Fatalf("steps %+v", steps)
	}
	// The force form's reason is overridden by the builder's; its
	// scheduler is not by default_properties.
	want := "os=linux reason=builder scheduler=force level=default GOOS=linux CC=step-cc dir=wb-linux"
	if got := e.stdio(steps[1].StepID); !strings.Contains(got, want) {
		t.Errorf("the factory's step in the matrix builder says\n%s\nwant %q", got, want)
	}

	// checkconfig --dump: the expanded config, which passes checkconfig
	// on its own (in a basedir with the same files beside it).
	out, err := exec.Command(e.master, "checkconfig", "--dump", e.masterDir).Output()
	if err != nil {
		t.Fatalf("checkconfig --dump: %v", err)
	}
	dump := string(out)
	for _, gone := range []string{"\ninclude", "[factories", "matrix", "%(kw:"} {
		if strings.Contains(dump, gone) {
			t.Errorf("the dump has %q:\n%s", gone, dump)
		}
	}
	other := filepath.Join(e.Dir, "dumped")
	mustRun(t, e.master, "create-master", other)
	if err := os.WriteFile(filepath.Join(other, "master.toml"), []byte(dump), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, e.master, "checkconfig", other)
	again, err := exec.Command(e.master, "checkconfig", "--dump", other).Output()
	if err != nil || !strings.Contains(string(again), `name = "test-freebsd"`) || strings.Count(string(again), "[[builders]]") != 2 {
		t.Errorf("the dump's own dump: %v\n%s", err, again)
	}

	// A reconfig re-reads the included files: a new one adds a builder.
	write("builders/more.toml", `
[[builders]]
name = "more"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "echo more"
`)
	mustRun(t, e.master, "reconfig", e.masterDir)
	waitFor(t, "builder more after the reconfig", 30*time.Second, func() bool {
		_, ok := e.builderIDs()["more"]
		return ok
	})
}
