package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stoppedMasterConfig is longBuildConfig with finish_steps_on_restart and
// a short wait.
const stoppedMasterConfig = `finish_steps_on_restart = true
finish_steps_wait = "3s"
` + longBuildConfig

// TestStoppedMasterNotBack: with finish_steps_on_restart, master a is
// stopped cleanly (`gbb-master stop`) while its build runs, and is not
// started again: it left the build running and its request claimed, to
// resume them. Once it has been stopped longer than master_timeout +
// finish_steps_wait, master b ends that build RETRY and runs the request
// again on its own worker, to SUCCESS, once.
func TestStoppedMasterNotBack(t *testing.T) {
	t.Parallel()
	pg := startPG(t)
	db := pg.NewDatabase(t)
	a, b := newEnv(t), newEnv(t)
	goFile := filepath.Join(t.TempDir(), "go")
	for _, e := range []*env{a, b} {
		e.writeConfigData(stoppedMasterConfig, map[string]any{"WebPort": e.WebPort, "WorkerPort": e.WorkerPort, "DB": db, "Go": goFile, "Timeout": "5s"})
	}
	logMastersOnFailure(t, a, b)
	aID, bID := startLeaderThenOther(t, a, b)
	startWorkerAt(t, a, "w1", fmt.Sprintf("127.0.0.1:%d", a.WorkerPort))
	brid := a.force("force", builderID(t, a, "long"), "long")
	waitFor(t, "the build running on master a", 2*time.Minute, func() bool {
		for _, bd := range allBuilds(a) {
			if bd.BuildRequestID == brid && !bd.Complete && bd.MasterID == aID {
				return true
			}
		}
		return false
	})
	startWorkerAt(t, b, "w2", fmt.Sprintf("127.0.0.1:%d", b.WorkerPort))

	stopping := time.Now()
	a.stopMaster()
	data, _ := os.ReadFile(filepath.Join(a.masterDir, "master.log"))
	if !strings.Contains(string(data), "step left to its worker") {
		t.Fatalf("master a did not leave its build to its worker when it stopped (finish_steps_on_restart)")
	}
	// master_timeout + finish_steps_wait after a's stop, b ends the build
	// RETRY; then it runs the request on w2.
	const grace = 5*time.Second + 3*time.Second
	var ended fullBuild
	waitFor(t, "master b to end master a's build", 2*time.Minute, func() bool {
		for _, bd := range allBuilds(b) {
			if bd.BuildRequestID == brid && bd.MasterID == aID && bd.Complete {
				ended = bd
				return true
			}
		}
		return false
	})
	if ended.Results == nil || *ended.Results != 5 {
		t.Errorf("master a's build ended with results %v, want RETRY (5)", ended.Results)
	}
	if ended.CompleteAt == nil || *ended.CompleteAt < stopping.Add(grace).Unix()-1 {
		t.Errorf("master a's build ended at %v, before master_timeout + finish_steps_wait (%v) after its stop at %d", ended.CompleteAt, grace, stopping.Unix())
	}
	for _, m := range masters(b) {
		if m.MasterID == aID && m.Active {
			t.Errorf("master a shown active after its stop: %+v", m)
		}
	}
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitRequestComplete(t, b, brid)
	checkOnce(t, b, brid, aID, bID, ended)

	// Master a starts again: it finds its build ended, does not resume
	// it, nor end it again, nor build the request again.
	a.startMaster()
	waitFor(t, "master a to find its build ended", 2*time.Minute, func() bool {
		data, _ := os.ReadFile(filepath.Join(a.masterDir, "master.log"))
		return strings.Contains(string(data), "the build is not running")
	})
	waitFor(t, "w1 connected to master a again", 2*time.Minute, func() bool {
		var r struct {
			Workers []struct {
				Name        string             `json:"name"`
				ConnectedTo []map[string]int64 `json:"connected_to"`
			}
		}
		a.get("/api/v2/workers", &r)
		for _, w := range r.Workers {
			for _, c := range w.ConnectedTo {
				if w.Name == "w1" && c["masterid"] == aID {
					return true
				}
			}
		}
		return false
	})
	// w1 kept the command of a's build (finish_steps_wait is short, so
	// it keeps it for about a minute from a's stop): a has it killed.
	waitFor(t, "master a to have w1's kept command killed", 2*time.Minute, func() bool {
		data, _ := os.ReadFile(filepath.Join(a.masterDir, "master.log"))
		return strings.Contains(string(data), "worker kept commands this master does not resume")
	})
	t.Logf("w1's kept command killed by master a %s after its stop", time.Since(stopping).Round(time.Second))
	checkOnce(t, a, brid, aID, bID, ended)
}

// checkOnce checks, through e's API, that request brid ended SUCCESS
// once: master a's build ended RETRY as ended says, and b's SUCCESS.
func checkOnce(t *testing.T, e *env, brid, aID, bID int64, ended fullBuild) {
	t.Helper()
	var got []string
	for _, bd := range allBuilds(e) {
		if bd.BuildRequestID == brid && bd.MasterID == aID && (bd.CompleteAt == nil || ended.CompleteAt == nil || *bd.CompleteAt != *ended.CompleteAt) {
			t.Errorf("master a's build changed: complete at %v, was %v", bd.CompleteAt, ended.CompleteAt)
		}
		if bd.BuildRequestID == brid {
			res := -1
			if bd.Results != nil {
				res = *bd.Results
			}
			who := fmt.Sprint(bd.MasterID)
			switch bd.MasterID {
			case aID:
				who = "a"
			case bID:
				who = "b"
			}
			got = append(got, fmt.Sprintf("%s:%v:%d", who, bd.Complete, res))
		}
	}
	if want := []string{"a:true:5", "b:true:0"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("builds of the request (master:complete:results) = %v, want %v", got, want)
	}
	var r struct {
		Buildrequests []struct {
			Results *int `json:"results"`
		}
	}
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d", brid), &r)
	if len(r.Buildrequests) != 1 || r.Buildrequests[0].Results == nil || *r.Buildrequests[0].Results != 0 {
		t.Errorf("request %+v, want complete SUCCESS", r.Buildrequests)
	}
}
