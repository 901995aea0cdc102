package e2e

import (
	"testing"
	"time"
)

// Two builders on two workers share an exclusive master lock; each build's
// step takes a directory as a lock, so overlapping builds would fail.
const locksConfig = loopback + workerW1 + `
[[workers]]
name = "w2"
password = "secret"

[[locks]]
name = "db"
type = "master"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["a", "b", "c"]

[[builders]]
name = "a"
worker_names = ["w1"]
locks = [{name = "db", access = "exclusive"}]
  [[builders.steps]]
  type = "shell"
  command = "mkdir {{.Dir}}/running && sleep 1 && rmdir {{.Dir}}/running"

[[builders]]
name = "b"
worker_names = ["w2"]
  [[builders.steps]]
  type = "shell"
  command = "echo before"
  [[builders.steps]]
  type = "shell"
  command = "mkdir {{.Dir}}/running && sleep 1 && rmdir {{.Dir}}/running"
  locks = [{name = "db"}]

[[builders]]
name = "c"
worker_names = ["w2"]
locks = [{name = "db", access = "exclusive"}]
  [[builders.steps]]
  type = "shell"
  command = "mkdir {{.Dir}}/running && sleep 1 && rmdir {{.Dir}}/running"
`

// TestExclusiveLock: builds sharing an exclusive master lock (held by a
// build or by one step) never overlap, though their workers are free.
func TestExclusiveLock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(locksConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	e.startWorker("w2", "secret")
	var reqs []int64
	for range 2 {
		for id := int64(1); id <= 3; id++ {
			reqs = append(reqs, e.force("force", id, "lock"))
		}
	}
	for _, r := range reqs {
		if b := e.waitBuild(r, 90*time.Second); *b.Results != 0 {
			t.Errorf("build %d of request %d: results %d (overlap?)", b.BuildID, r, *b.Results)
		}
	}
}
