package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// controlPGConfig is both masters' config but for their ports: one
// PostgreSQL store, worker w1 (each test connects it to master a only), a
// "long" builder whose build runs until stopped, a "flaky" one
// whose first build runs until its worker is lost and whose second
// succeeds, and a "quick" one.
const controlPGConfig = loopback + `
[db]
url = "{{.DB}}"
heartbeat_interval = "1s"
master_timeout = "6s"

[[workers]]
name = "w1"
password = "secret-secret-secret"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["long", "flaky", "quick"]

[[builders]]
name = "long"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "sleep"
  command = "sleep 1000"
  [[builders.steps]]
  type = "shell"
  name = "after"
  command = "true"

[[builders]]
name = "flaky"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "test -e {{.Dir}}/second || { touch {{.Dir}}/second; sleep 1000; }"

[[builders]]
name = "quick"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "echo quick"
`

// startControlMasters starts masters a and b on one new PostgreSQL
// database with controlPGConfig, and workers (their names) connected to a
// alone; it returns a, b and a's master id.
func startControlMasters(t *testing.T, workers ...string) (a, b *env, aID int64) {
	t.Helper()
	db := startPG(t).NewDatabase(t)
	a, b = newEnv(t), newEnv(t)
	for _, e := range []*env{a, b} {
		e.writeConfigData(controlPGConfig, map[string]any{
			"WebPort": e.WebPort, "WorkerPort": e.WorkerPort, "DB": db, "Dir": a.Dir,
		})
	}
	t.Cleanup(func() {
		if t.Failed() {
			for name, e := range map[string]*env{"a": a, "b": b} {
				data, _ := os.ReadFile(filepath.Join(e.masterDir, "master.log"))
				if len(data) > 20000 {
					data = data[len(data)-20000:]
				}
				t.Logf("master %s's log (its end):\n%s", name, data)
			}
		}
	})
	a.startMaster()
	waitFor(t, "master a to lead", time.Minute, func() bool { return leader(a) != 0 })
	aID = leader(a)
	b.startMaster()
	waitFor(t, "master b active", time.Minute, func() bool {
		for _, m := range masters(a) {
			if m.MasterID != aID && m.Active {
				return true
			}
		}
		return false
	})
	for _, w := range workers {
		startWorkerAt(t, a, w, fmt.Sprintf("127.0.0.1:%d", a.WorkerPort))
		waitFor(t, w+" connected to a", time.Minute, func() bool { return connectedTo(b, w) == aID })
	}
	return a, b, aID
}

// connectedTo returns the id of the master that e's API says worker name
// is connected to; 0 when none.
func connectedTo(e *env, name string) int64 {
	var r struct {
		Workers []struct {
			ConnectedTo []struct {
				MasterID int64 `json:"masterid"`
			} `json:"connected_to"`
		}
	}
	e.get("/api/v2/workers/"+name, &r)
	if len(r.Workers) != 1 || len(r.Workers[0].ConnectedTo) != 1 {
		return 0
	}
	return r.Workers[0].ConnectedTo[0].MasterID
}

// apiBuilderID returns the id of builder name, from e's API.
func apiBuilderID(t *testing.T, e *env, name string) int64 {
	t.Helper()
	var r struct {
		Builders []struct {
			BuilderID int64 `json:"builderid"`
		} `json:"builders"`
	}
	e.get("/api/v2/builders/"+name, &r)
	if len(r.Builders) != 1 {
		t.Fatalf("builder %s: %+v", name, r)
	}
	return r.Builders[0].BuilderID
}

// TestControlBuildsAcrossMasters: with two masters on PostgreSQL, a stop
// asked of master b (the UI's JSON-RPC call) stops a build that runs on
// master a: it ends CANCELLED with the reason, its later steps do not run;
// and a cancel asked of b of a request a claimed stops its build.
func TestControlBuildsAcrossMasters(t *testing.T) {
	t.Parallel()
	a, b, aID := startControlMasters(t, "w1")
	long := apiBuilderID(t, b, "long")

	brid := b.force("force", long, "stop me from b")
	bld := b.runningBuild(brid)
	var full struct{ Builds []fullBuild }
	b.get(fmt.Sprintf("/api/v2/builds/%d", bld.BuildID), &full)
	if len(full.Builds) != 1 || full.Builds[0].MasterID != aID {
		t.Fatalf("the build does not run on master a (%d): %+v", aID, full)
	}
	b.rpc(fmt.Sprintf("/api/v2/builds/%d", bld.BuildID), "stop", `{"reason":"enough, said b"}`)
	bld = b.waitBuild(brid, time.Minute)
	if *bld.Results != 6 || !strings.Contains(bld.StateString, "enough, said b") {
		t.Errorf("build stopped through b: results %d, state %q; want 6 (cancelled) and the reason", *bld.Results, bld.StateString)
	}
	if got := strings.Join(stepNames(b.steps(bld.BuildID)), ","); got != "worker_preparation,sleep" {
		t.Errorf("steps of the stopped build: %s", got)
	}

	brid = a.force("force", long, "cancel me from b")
	bld = b.runningBuild(brid)
	b.rpc(fmt.Sprintf("/api/v2/buildrequests/%d", brid), "cancel", `{"reason":"not needed, said b"}`)
	bld = b.waitBuild(brid, time.Minute)
	if *bld.Results != 6 || !strings.Contains(bld.StateString, "not needed, said b") {
		t.Errorf("build of the request cancelled through b: results %d, state %q", *bld.Results, bld.StateString)
	}
	var br struct{ Buildrequests []struct{ Results *int } }
	b.get(fmt.Sprintf("/api/v2/buildrequests/%d", brid), &br)
	if len(br.Buildrequests) != 1 || br.Buildrequests[0].Results == nil || *br.Buildrequests[0].Results != 6 {
		t.Errorf("request cancelled through b: %+v", br)
	}
}

// TestControlWorkersAcrossMasters: with two masters on PostgreSQL, a
// worker connected to master a is paused through master b: a starts no
// build on it until it is unpaused through b; killed through b while it
// runs a build, a disconnects it, the build ends RETRY and runs again;
// shut down gracefully through b, a disconnects it, and starts no build on
// it when it is back until it is unpaused through b.
func TestControlWorkersAcrossMasters(t *testing.T) {
	t.Parallel()
	a, b, aID := startControlMasters(t, "w1")
	quick, flaky := apiBuilderID(t, b, "quick"), apiBuilderID(t, b, "flaky")

	b.rpc("/api/v2/workers/w1", "pause", `{"reason":"maintenance"}`)
	brid := b.force("force", quick, "while paused")
	// A build would start within a distribution round of the force.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		var r struct{ Builds []apiBuild }
		a.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", brid), &r)
		if len(r.Builds) > 0 {
			t.Fatalf("master a started a build on a worker paused through master b")
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.rpc("/api/v2/workers/w1", "unpause", `{}`)
	if bld := b.waitBuild(brid, time.Minute); *bld.Results != 0 {
		t.Errorf("build after the unpause through b: %+v", bld)
	}

	brid = a.force("force", flaky, "kill its worker from b")
	first := b.runningBuild(brid)
	waitFor(t, "the flaky step started", time.Minute, func() bool {
		_, err := os.Stat(filepath.Join(a.Dir, "second"))
		return err == nil
	})
	b.rpc("/api/v2/workers/w1", "kill", `{"reason":"stuck, said b"}`)
	var done apiBuild
	waitFor(t, "a rerun succeeds", 90*time.Second, func() bool {
		var r struct{ Builds []apiBuild }
		b.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", brid), &r)
		for _, x := range r.Builds {
			if x.BuildID == first.BuildID {
				first = x
			} else if x.Complete {
				done = x
			}
		}
		return done.Complete
	})
	if !first.Complete || *first.Results != 5 {
		t.Errorf("build on the worker killed through b: %+v, want results 5 (retry)", first)
	}
	if *done.Results != 0 {
		t.Errorf("rerun: %+v", done)
	}
	waitFor(t, "w1 back on a after the kill", time.Minute, func() bool { return connectedTo(b, "w1") == aID })

	b.rpc("/api/v2/workers/w1", "stop", `{}`)
	waitFor(t, "a to disconnect w1, shut down gracefully through b", time.Minute, func() bool {
		return strings.Contains(a.masterLog(), "disconnecting gracefully shut down worker")
	})
	waitFor(t, "w1 back on a after its graceful shutdown", time.Minute, func() bool { return connectedTo(b, "w1") == aID })
	brid = b.force("force", quick, "after a graceful shutdown")
	deadline = time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		var r struct{ Builds []apiBuild }
		a.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", brid), &r)
		if len(r.Builds) > 0 {
			t.Fatalf("master a started a build on a worker shut down gracefully through master b")
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.rpc("/api/v2/workers/w1", "unpause", `{}`)
	if bld := b.waitBuild(brid, time.Minute); *bld.Results != 0 {
		t.Errorf("build after the unpause through b: %+v", bld)
	}
}
