package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const includePlantConfig = `include = ["builders/*.toml"]
` + loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["up"]
`

const includePlantBuilders = `
[[builders]]
name = "up"
worker_names = ["w1"]
  [[builders.steps]]
  type = "string_download"
  s = "[[builders]]\nname = \"evil\"\n"
  workerdest = "evil.toml"
  [[builders.steps]]
  type = "file_upload"
  workersrc = "evil.toml"
  masterdest = "artifacts/%(prop:fn)s"
`

// TestIncludePatternPlantRefused: probe-cfg1 #3. A build's file_upload
// could write builders/99-evil.toml through a rendered masterdest; the next
// reconfig read it as config (a builder running commands on the master).
// The step is now refused: no file appears where the include pattern
// reads, while artifacts/ still takes uploads.
func TestIncludePatternPlantRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(includePlantConfig)
	// artifacts/ is there, as after a first upload.
	for _, d := range []string{"builders", "artifacts"} {
		if err := os.MkdirAll(filepath.Join(e.masterDir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(e.masterDir, "builders", "10-up.toml"), []byte(includePlantBuilders), 0o600); err != nil {
		t.Fatal(err)
	}
	e.startMaster()
	e.startWorker("w1", "secret")
	id := e.builderIDs()["up"]

	b := e.waitBuild(e.forceParams("force", id, fmt.Sprintf(`{"builderid":%d,"fn":"../builders/99-evil.toml"}`, id)), 2*time.Minute)
	if b.Results == nil || *b.Results != 2 {
		t.Errorf("planting build: %s, want failure", b.StateString)
	}
	if _, err := os.Stat(filepath.Join(e.masterDir, "builders", "99-evil.toml")); err == nil {
		t.Fatal("builders/99-evil.toml was written: the next reconfig would load it")
	}
	steps := e.steps(b.BuildID)
	logs := e.stepLogs(steps[len(steps)-1].StepID)
	if !strings.Contains(fmt.Sprint(logs), `(builders/99-evil.toml, symlinks resolved) is a file an include pattern reads`) {
		t.Errorf("upload step's logs do not say why: %q", logs)
	}

	b = e.waitBuild(e.forceParams("force", id, fmt.Sprintf(`{"builderid":%d,"fn":"ok.toml"}`, id)), 2*time.Minute)
	if b.Results == nil || *b.Results != 0 {
		t.Errorf("upload to artifacts/: %s, want success", b.StateString)
	}
	if _, err := os.Stat(filepath.Join(e.masterDir, "artifacts", "ok.toml")); err != nil {
		t.Errorf("artifacts/ok.toml: %v", err)
	}
}
