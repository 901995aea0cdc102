package e2e

import (
	"testing"
	"time"
)

const maxBuildsConfig = loopback + `
[[workers]]
name = "w1"
password = "secret"
max_builds = 1

[[schedulers]]
type = "force"
name = "force"
builder_names = ["a", "b"]

[[builders]]
name = "a"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "mkdir {{.Dir}}/running && sleep 1 && rmdir {{.Dir}}/running"

[[builders]]
name = "b"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "mkdir {{.Dir}}/running && sleep 1 && rmdir {{.Dir}}/running"
`

// TestMaxBuilds: a worker with max_builds = 1 runs one build at a time, even
// across builders; the second request waits, then runs. Each build's step
// takes a directory as a lock, so overlapping builds would fail.
func TestMaxBuilds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(maxBuildsConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	r1 := e.force("force", 1, "first")
	r2 := e.force("force", 2, "second")
	b1 := e.waitBuild(r1, 60*time.Second)
	b2 := e.waitBuild(r2, 60*time.Second)
	if *b1.Results != 0 || *b2.Results != 0 {
		t.Fatalf("results %d %d", *b1.Results, *b2.Results)
	}
	// Each build holds {{.Dir}}/running for a second: a build that started
	// while the other ran would have failed its mkdir.
}
