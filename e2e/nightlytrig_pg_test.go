package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// nightlyTrigConfig is both masters' config but for their ports: one
// PostgreSQL store, w1 (which serves master b only), a forced "upb" build
// whose trigger step triggers the nightly_triggerable "nt", which builds
// "nightb" at the next minute.
const nightlyTrigConfig = loopback + `
[db]
url = "{{.DB}}"
heartbeat_interval = "1s"
master_timeout = "6s"

[[workers]]
name = "w1"
password = "secret-secret-secret"

[[schedulers]]
type = "force"
name = "up"
builder_names = ["upb"]

[[schedulers]]
type = "nightly_triggerable"
name = "nt"
cron = "* * * * *"
builder_names = ["nightb"]

[[builders]]
name = "upb"
worker_names = ["w1"]
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["nt"]
  wait_for_finish = true
  set_properties = { who = "%(prop:buildername)s" }

[[builders]]
name = "nightb"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "echo night %(prop:who)s"
`

// TestNightlyTriggerableFromOtherMaster: two masters on one PostgreSQL; a
// build on the master that does not lead triggers a nightly_triggerable
// scheduler (which runs on the leader). The trigger step succeeds at
// once, and the leader's scheduler builds the trigger at its next time,
// as buildbot's NightlyTriggerable builds its last trigger, whichever
// master recorded it.
func TestNightlyTriggerableFromOtherMaster(t *testing.T) {
	t.Parallel()
	pg := startPG(t)
	db := pg.NewDatabase(t)
	a, b := newEnv(t), newEnv(t)
	for _, e := range []*env{a, b} {
		e.writeConfigData(nightlyTrigConfig, map[string]any{"WebPort": e.WebPort, "WorkerPort": e.WorkerPort, "DB": db})
	}
	logMastersOnFailure(t, a, b)
	aID, bID := startLeaderThenOther(t, a, b)
	startWorkerAt(t, b, "w1", fmt.Sprintf("127.0.0.1:%d", b.WorkerPort))
	upID, nightID := builderID(t, b, "upb"), builderID(t, b, "nightb")

	up := b.waitBuild(b.force("up", upID, "on b"), 2*time.Minute)
	for _, bd := range allBuilds(b) {
		if bd.BuildID == up.BuildID && bd.MasterID != bID {
			t.Fatalf("the triggering build ran on master %d, want b (%d); a (%d) leads", bd.MasterID, bID, aID)
		}
	}
	if l := leader(b); l != aID {
		t.Fatalf("master %d leads, want a (%d)", l, aID)
	}
	step := func(buildID int64, name string) apiStep {
		t.Helper()
		steps := b.steps(buildID)
		for _, s := range steps {
			if s.Name == name {
				return s
			}
		}
		t.Fatalf("build %d has no step %s: %+v", buildID, name, steps)
		return apiStep{}
	}
	if tr := step(up.BuildID, "trigger"); *up.Results != 0 || tr.Results == nil || *tr.Results != 0 {
		t.Fatalf("the build on b that triggers nt: results %d, trigger step %+v; want SUCCESS", *up.Results, tr)
	}

	// The leader builds the trigger at the next minute.
	var night []apiBuild
	waitFor(t, "the nightly_triggerable build", 150*time.Second, func() bool {
		var r struct{ Builds []apiBuild }
		b.get(fmt.Sprintf("/api/v2/builders/%d/builds", nightID), &r)
		night = r.Builds
		return len(night) > 0 && night[0].Complete
	})
	if got := b.stdio(step(night[0].BuildID, "shell").StepID); !strings.Contains(got, "night upb") {
		t.Errorf("the nightly build's output %q, want the trigger's property", got)
	}
	if *night[0].Results != 0 {
		t.Errorf("the nightly build: results %d", *night[0].Results)
	}
}
