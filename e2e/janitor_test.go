package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"
)

const janitorConfig = loopback + workerW1 + `
[janitor]
log_horizon = "1s"
build_horizon = "2s"
interval = "1s"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["quick"]

[[builders]]
name = "quick"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "echo hello"
`

// TestJanitorEvents: a client following /sse/ hears of the logs and builds
// the janitor deletes: each log as updated (type "d"), each build as it
// was; the builder's newest build is kept, as buildbot's janitor keeps it.
func TestJanitorEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(janitorConfig)
	e.startMaster()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	events, id := listenSSE(ctx, t, e.url("/sse/listen/logs/*/deleted"))
	if s := e.getText("/sse/add/" + id + "/builds/*/deleted"); s != "ok" {
		t.Fatalf("sse add: %q", s)
	}
	e.startWorker("w1", "secret")
	var builds []apiBuild
	for i := range 2 {
		b := e.waitBuild(e.force("force", 1, fmt.Sprint("build ", i)), 60*time.Second)
		if *b.Results != 0 {
			t.Fatalf("build %d: %+v", i, b)
		}
		builds = append(builds, b)
	}
	logOf := map[int64]bool{} // log id → seen deleted
	for _, b := range builds {
		for _, s := range e.steps(b.BuildID) {
			var r struct{ Logs []apiLog }
			e.get(fmt.Sprintf("/api/v2/steps/%d/logs", s.StepID), &r)
			for _, l := range r.Logs {
				logOf[l.LogID] = false
			}
		}
	}
	oldDeleted := false
	for !oldDeleted || !allTrue(logOf) {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the event stream ended")
			}
			switch ev.Key {
			case fmt.Sprintf("builds/%d/deleted", builds[0].BuildID):
				if ev.Msg["number"] != float64(builds[0].Number) {
					t.Errorf("%s: %v", ev.Key, ev.Msg)
				}
				oldDeleted = true
			case fmt.Sprintf("builds/%d/deleted", builds[1].BuildID):
				t.Errorf("the builder's newest build was deleted: %v", ev.Msg)
			default:
				var lid int64
				if _, err := fmt.Sscanf(ev.Key, "logs/%d/deleted", &lid); err != nil {
					t.Errorf("unexpected event %s", ev.Key)
					continue
				}
				if ev.Msg["type"] != "d" {
					t.Errorf("%s: %v, want type d", ev.Key, ev.Msg)
				}
				logOf[lid] = true
			}
		case <-ctx.Done():
			t.Fatalf("janitor events: old build deleted %v, logs deleted %v", oldDeleted, logOf)
		}
	}
	if status := e.get(fmt.Sprintf("/api/v2/builds/%d", builds[0].BuildID), nil); status != 404 {
		t.Errorf("deleted build: GET answers %d", status)
	}
}

func allTrue(m map[int64]bool) bool {
	for _, v := range m {
		if !v {
			return false
		}
	}
	return true
}
