package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const controlConfig = loopback + workerW1 + `
[[workers]]
name = "w2"
password = "secret"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["slow", "quick", "nowhere", "flaky"]

[[builders]]
name = "slow"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  name = "sleep"
  command = "sleep 1000 & echo $! >> {{.Dir}}/pids; sleep 1000 & echo $! >> {{.Dir}}/pids; wait"
  [[builders.steps]]
  type = "shell"
  name = "after"
  command = "touch {{.Dir}}/after"
  [[builders.steps]]
  type = "shell"
  name = "cleanup"
  always_run = true
  command = "touch {{.Dir}}/cleanup"

[[builders]]
name = "quick"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "echo quick"

[[builders]]
name = "nowhere"
worker_names = ["w2"]
  [[builders.steps]]
  type = "shell"
  command = "echo never"

[[builders]]
name = "flaky"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "test -e {{.Dir}}/second || { touch {{.Dir}}/second; sleep 1000; }"
`

// Builder ids follow the config's order on a new master.
const (
	slowID    = 1
	quickID   = 2
	nowhereID = 3
	flakyID   = 4
)

// rpc posts a JSON-RPC call to path and returns its result, failing the
// test on an error reply.
func (e *env) rpc(path, method, params string) json.RawMessage {
	e.t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":%q,"id":1,"params":%s}`, method, params)
	resp, err := http.Post(e.url(path), "application/json", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  any             `json:"error"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || resp.StatusCode != 200 || r.Error != nil {
		e.t.Fatalf("%s on %s: %s: %s", method, path, resp.Status, raw)
	}
	return r.Result
}

// runningBuild waits for the build of a request to start.
func (e *env) runningBuild(brid int64) apiBuild {
	e.t.Helper()
	var b apiBuild
	waitFor(e.t, fmt.Sprintf("a build of request %d", brid), 60*time.Second, func() bool {
		var r struct{ Builds []apiBuild }
		e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", brid), &r)
		if len(r.Builds) > 0 {
			b = r.Builds[0]
			return true
		}
		return false
	})
	return b
}

func stepNames(steps []apiStep) []string {
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
	}
	return names
}

// TestStopBuild: a stop interrupts the running step and kills every process
// of its group; the build ends CANCELLED with the reason, later steps do not
// run but always_run ones do, as buildbot's stopBuild.
func TestStopBuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(controlConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	brid := e.force("force", slowID, "stop me")
	b := e.runningBuild(brid)
	pids := waitPids(t, filepath.Join(e.Dir, "pids"), 2)
	e.rpc(fmt.Sprintf("/api/v2/builds/%d", b.BuildID), "stop", `{"reason":"enough"}`)
	b = e.waitBuild(brid, 60*time.Second)
	if *b.Results != 6 || !strings.Contains(b.StateString, "enough") {
		t.Errorf("stopped build: results %d, state %q; want 6 (cancelled) and the reason", *b.Results, b.StateString)
	}
	waitGone(t, 10*time.Second, pids...)
	steps := e.steps(b.BuildID)
	if got := strings.Join(stepNames(steps), ","); got != "worker_preparation,sleep,cleanup" {
		t.Errorf("steps %s", got)
	}
	if len(steps) > 1 && (steps[1].Results == nil || *steps[1].Results != 6) {
		t.Errorf("interrupted step %+v", steps[1])
	}
	if _, err := os.Stat(filepath.Join(e.Dir, "after")); err == nil {
		t.Error("a step after the stop ran")
	}
	if _, err := os.Stat(filepath.Join(e.Dir, "cleanup")); err != nil {
		t.Error("the always_run step did not run after the stop")
	}
	var br struct{ Buildrequests []struct{ Results *int } }
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d", brid), &br)
	if len(br.Buildrequests) != 1 || br.Buildrequests[0].Results == nil || *br.Buildrequests[0].Results != 6 {
		t.Errorf("request of the stopped build: %+v", br)
	}
}

// TestCancelRunningRequest: cancelling a claimed request stops its build,
// as buildbot does.
func TestCancelRunningRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(controlConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	brid := e.force("force", slowID, "cancel me")
	e.runningBuild(brid)
	e.rpc(fmt.Sprintf("/api/v2/buildrequests/%d", brid), "cancel", `{"reason":"not needed"}`)
	b := e.waitBuild(brid, 60*time.Second)
	if *b.Results != 6 || !strings.Contains(b.StateString, "not needed") {
		t.Errorf("build of the cancelled request: results %d, state %q", *b.Results, b.StateString)
	}
}

// TestRebuild: a rebuild runs the build again with the same source stamp
// and properties, and answers as buildbot: [bsid, {builderid: brid}].
func TestRebuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(controlConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	res := e.rpc("/api/v2/forceschedulers/force", "force",
		fmt.Sprintf(`{"builderid":%d,"reason":"first","branch":"dev","myprop":"forty-two"}`, quickID))
	var first []json.RawMessage
	var brids map[string]int64
	if err := json.Unmarshal(res, &first); err != nil || len(first) != 2 || json.Unmarshal(first[1], &brids) != nil {
		t.Fatalf("force result %s", res)
	}
	b1 := e.waitBuild(brids[fmt.Sprint(quickID)], 60*time.Second)

	res = e.rpc(fmt.Sprintf("/api/v2/builds/%d", b1.BuildID), "rebuild", `{}`)
	var again []json.RawMessage
	var brids2 map[string]int64
	var bsid int64
	if err := json.Unmarshal(res, &again); err != nil || len(again) != 2 ||
		json.Unmarshal(again[0], &bsid) != nil || json.Unmarshal(again[1], &brids2) != nil || len(brids2) != 1 {
		t.Fatalf("rebuild result %s", res)
	}
	b2 := e.waitBuild(brids2[fmt.Sprint(quickID)], 60*time.Second)
	if b2.BuildID == b1.BuildID || *b2.Results != 0 {
		t.Fatalf("rebuild: %+v", b2)
	}
	props := func(id int64) map[string]json.RawMessage {
		var r struct{ Properties []map[string]json.RawMessage }
		e.get(fmt.Sprintf("/api/v2/builds/%d/properties", id), &r)
		if len(r.Properties) != 1 {
			t.Fatalf("properties of build %d: %+v", id, r)
		}
		return r.Properties[0]
	}
	p1, p2 := props(b1.BuildID), props(b2.BuildID)
	for _, name := range []string{"myprop", "branch", "owner", "reason", "scheduler"} {
		if string(p1[name]) != string(p2[name]) {
			t.Errorf("property %s: first %s, rebuild %s", name, p1[name], p2[name])
		}
	}
	if string(p2["myprop"]) == "" {
		t.Errorf("rebuild lost myprop: %v", p2)
	}
	var bs struct{ Buildsets []struct{ Reason string } }
	e.get(fmt.Sprintf("/api/v2/buildsets/%d", bsid), &bs)
	if len(bs.Buildsets) != 1 || bs.Buildsets[0].Reason != "rebuild" {
		t.Errorf("rebuild buildset %+v", bs)
	}
}

// TestCancelPendingRequest: a request no worker can take is cancelled: it
// and its buildset complete CANCELLED and it is never built.
func TestCancelPendingRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(controlConfig)
	e.startMaster()
	brid := e.force("force", nowhereID, "never")
	e.rpc(fmt.Sprintf("/api/v2/buildrequests/%d", brid), "cancel", `{"reason":"no worker"}`)
	var r struct {
		Buildrequests []struct {
			Complete   bool
			Results    *int
			BuildsetID int64 `json:"buildsetid"`
		}
	}
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d", brid), &r)
	if len(r.Buildrequests) != 1 || !r.Buildrequests[0].Complete || *r.Buildrequests[0].Results != 6 {
		t.Fatalf("cancelled request %+v", r)
	}
	var bs struct {
		Buildsets []struct {
			Complete bool
			Results  *int
		}
	}
	e.get(fmt.Sprintf("/api/v2/buildsets/%d", r.Buildrequests[0].BuildsetID), &bs)
	if len(bs.Buildsets) != 1 || !bs.Buildsets[0].Complete || *bs.Buildsets[0].Results != 6 {
		t.Errorf("buildset of the cancelled request %+v", bs)
	}
	// The worker connects: the cancelled request does not run.
	e.startWorker("w2", "secret")
	quick := e.force("force", nowhereID, "after")
	e.waitBuild(quick, 60*time.Second)
	var builds struct{ Builds []apiBuild }
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", brid), &builds)
	if len(builds.Builds) != 0 {
		t.Errorf("the cancelled request was built: %+v", builds.Builds)
	}
}

// TestPauseWorker: a paused worker takes no build until unpaused.
func TestPauseWorker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(controlConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	waitFor(t, "w1 connected", 30*time.Second, func() bool {
		var r struct {
			Workers []struct {
				ConnectedTo []any `json:"connected_to"`
			}
		}
		e.get("/api/v2/workers/w1", &r)
		return len(r.Workers) == 1 && len(r.Workers[0].ConnectedTo) > 0
	})
	e.rpc("/api/v2/workers/w1", "pause", `{"reason":"maintenance"}`)
	var w struct{ Workers []struct{ Paused bool } }
	e.get("/api/v2/workers/w1", &w)
	if len(w.Workers) != 1 || !w.Workers[0].Paused {
		t.Fatalf("paused worker %+v", w)
	}
	brid := e.force("force", quickID, "while paused")
	// A build would start within a distribution round of the force.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		var r struct{ Builds []apiBuild }
		e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", brid), &r)
		if len(r.Builds) > 0 {
			t.Fatalf("a paused worker started a build")
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.rpc("/api/v2/workers/w1", "unpause", `{}`)
	if b := e.waitBuild(brid, 60*time.Second); *b.Results != 0 {
		t.Errorf("build after unpause: %+v", b)
	}
}

// TestKillWorker: a killed worker's build ends RETRY and its request runs
// again once the worker is back (it reconnects by itself).
func TestKillWorker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(controlConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	brid := e.force("force", flakyID, "kill its worker")
	first := e.runningBuild(brid)
	waitFor(t, "the step started", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(e.Dir, "second"))
		return err == nil
	})
	e.rpc("/api/v2/workers/w1", "kill", `{"reason":"stuck"}`)
	var done apiBuild
	waitFor(t, "a rerun succeeds", 90*time.Second, func() bool {
		var r struct{ Builds []apiBuild }
		e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", brid), &r)
		for _, b := range r.Builds {
			if b.BuildID == first.BuildID {
				first = b
			} else if b.Complete {
				done = b
			}
		}
		return done.Complete
	})
	if !first.Complete || *first.Results != 5 {
		t.Errorf("build on the killed worker: %+v, want results 5 (retry)", first)
	}
	if *done.Results != 0 {
		t.Errorf("rerun: %+v", done)
	}
}
