package e2e

import (
	"testing"
	"time"
)

const triggerConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["wait", "nowait"]

[[schedulers]]
type = "triggerable"
name = "downstream"
builder_names = ["down-ok", "down-fail"]

[[builders]]
name = "wait"
worker_names = ["w1"]
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["downstream"]
  wait_for_finish = true
  set_properties = { color = "blue" }

  [[builders.steps]]
  type = "shell"
  name = "after"
  command = "echo after"
  always_run = true

[[builders]]
name = "nowait"
worker_names = ["w1"]
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["downstream"]

[[builders]]
name = "down-ok"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "echo ok"

[[builders]]
name = "down-fail"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "exit 1"
`

// TestTrigger: a trigger step that waits takes the worst result of the
// builds it triggered, which get its set_properties; one that does not wait
// succeeds at once.
func TestTrigger(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(triggerConfig)
	e.startMaster()
	e.startWorker("w1", "secret")

	up := e.waitBuild(e.force("force", 1, "upstream"), 60*time.Second)
	if up.Results == nil || *up.Results != 2 {
		t.Errorf("waiting upstream build: %+v, want failure (a downstream build failed)", up)
	}
	steps := e.steps(up.BuildID)
	if len(steps) != 3 || steps[1].Name != "trigger" || *steps[1].Results != 2 || steps[2].Name != "after" {
		t.Errorf("upstream steps: %+v", steps)
	}
	// Both downstream builds ran, before the upstream one ended, with the
	// trigger's properties.
	all := e.waitBuilds(3)
	for _, b := range all[1:] {
		if got := e.property(b.BuildID, "color"); got != "blue" {
			t.Errorf("downstream build %d: color %v, want blue", b.BuildID, got)
		}
		if *b.CompleteAt > *up.CompleteAt {
			t.Errorf("downstream build %d ended after the build that waited for it", b.BuildID)
		}
	}

	nowait := e.waitBuild(e.force("force", 2, "no wait"), 60*time.Second)
	if nowait.Results == nil || *nowait.Results != 0 {
		t.Errorf("non-waiting upstream build: %+v, want success", nowait)
	}
	e.waitBuilds(6)
}
