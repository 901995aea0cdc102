package e2e

import (
	"testing"
	"time"
)

const maxBuildsConfig = `
[protocols.grpc]
port = {{.WorkerPort}}
interface = "127.0.0.1"

[www]
port = {{.WebPort}}
interface = "127.0.0.1"

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
  command = "sleep 1"

[[builders]]
name = "b"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "sleep 1"
`

// TestMaxBuilds: a worker with max_builds = 1 runs one build at a time, even
// across builders; the second request waits, then runs.
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
	// Whichever ran first ended before the other started (times in the API
	// are whole seconds, and each build sleeps a second).
	first, second := b1, b2
	if b2.BuildID < b1.BuildID {
		first, second = b2, b1
	}
	if *second.StartedAt < *first.CompleteAt {
		t.Errorf("builds overlapped on a max_builds=1 worker: %+v then %+v", first, second)
	}
}
