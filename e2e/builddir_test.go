package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const builderDirConfig = loopback + `
[[workers]]
name = "w1"
password = "secret"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["linux/amd64 (go 1.26)"]

[[builders]]
name = "linux/amd64 (go 1.26)"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "pwd > here && echo builddir=%(prop:builddir)s"
`

// TestBuilderNameWithSlash: a builder whose name holds "/", blanks and
// brackets builds, in one directory on the worker named as buildbot's
// safeTranslate names it, and its builddir property says where. (The
// worker refused such a name as its directory before: the step failed.)
func TestBuilderNameWithSlash(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(builderDirConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	b := e.waitBuild(e.force("force", 1, "slash"), 60*time.Second)
	steps := e.steps(b.BuildID)
	if *b.Results != 0 {
		t.Fatalf("build results %d (%s)\n%s", *b.Results, b.StateString, e.stdio(steps[len(steps)-1].StepID))
	}
	dir := filepath.Join(e.Dir, "worker-w1", "linux_amd64__go_1_26_")
	here, err := os.ReadFile(filepath.Join(dir, "build", "here"))
	if err != nil {
		t.Fatalf("the step did not run in %s: %v", dir, err)
	}
	if got := strings.TrimSpace(string(here)); got != filepath.Join(dir, "build") {
		t.Errorf("the step ran in %s, want %s", got, filepath.Join(dir, "build"))
	}
	if out := e.stdio(steps[len(steps)-1].StepID); !strings.Contains(out, "builddir="+dir+"\n") {
		t.Errorf("builddir property is not %s:\n%s", dir, out)
	}
}
