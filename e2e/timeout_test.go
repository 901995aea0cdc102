package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const timeoutConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["sleepy"]

[[builders]]
name = "sleepy"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "sleep 1000 & echo $! >> {{.Dir}}/pids; (sleep 1000; echo never) & echo $! >> {{.Dir}}/pids; wait"
  timeout = "1s"
`

// TestTimeoutLeavesNoProcess: a step whose command and its children print
// nothing for its timeout is killed, children and grandchildren included.
func TestTimeoutLeavesNoProcess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(timeoutConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	b := e.waitBuild(e.force("force", 1, "timeout"), 60*time.Second)
	pids := waitPids(t, filepath.Join(e.Dir, "pids"), 2)
	waitGone(t, 10*time.Second, pids...)
	if *b.Results != 2 {
		t.Errorf("build results %d, want failure", *b.Results)
	}
	steps := e.steps(b.BuildID)
	if log := e.stdio(steps[1].StepID); !strings.Contains(log, "command timed out: 1 seconds without output") {
		t.Errorf("log does not say the command timed out:\n%s", log)
	}
}
