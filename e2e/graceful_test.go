package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const gracefulConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["hold", "quick"]

[[builders]]
name = "hold"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "while [ ! -f {{.Dir}}/go ]; do sleep 0.05; done"

[[builders]]
name = "quick"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "true"
`

// TestGracefulWorker: a worker told to shut down gracefully finishes its
// running build, takes no new one, is disconnected once idle, and builds
// again after unpause.
func TestGracefulWorker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(gracefulConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	hold := e.force("force", 1, "hold")
	e.runningBuild(hold)
	e.rpc("/api/v2/workers/w1", "graceful", `{}`)
	var w struct{ Workers []struct{ Graceful bool } }
	e.get("/api/v2/workers/w1", &w)
	if len(w.Workers) != 1 || !w.Workers[0].Graceful {
		t.Fatalf("worker after graceful: %+v", w)
	}
	// The worker has no build limit: without graceful, this would start at
	// once beside the running one.
	quick := e.force("force", 2, "while graceful")
	if err := os.WriteFile(filepath.Join(e.Dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if b := e.waitBuild(hold, 60*time.Second); *b.Results != 0 {
		t.Errorf("running build under graceful: %+v", b)
	}
	waitFor(t, "the idle worker disconnected", 30*time.Second, func() bool {
		log, _ := os.ReadFile(filepath.Join(e.masterDir, "master.log"))
		return bytes.Contains(log, []byte("disconnecting gracefully shut down worker"))
	})
	var r struct{ Builds []apiBuild }
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", quick), &r)
	if len(r.Builds) != 0 {
		t.Fatalf("a gracefully stopping worker started a new build: %+v", r.Builds)
	}
	e.rpc("/api/v2/workers/w1", "unpause", `{}`)
	if b := e.waitBuild(quick, 60*time.Second); *b.Results != 0 {
		t.Errorf("build after unpause: %+v", b)
	}
}
