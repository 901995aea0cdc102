package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const bbuiConfig = loopback + workerW1 + `
[www.change_hook.base]

[[schedulers]]
type = "single_branch"
name = "on-main"
branch = "main"
builder_names = ["echo"]

[[schedulers]]
type = "force"
name = "force"
builder_names = ["echo"]

[[builders]]
name = "echo"
worker_names = ["w1"]

  [[builders.steps]]
  type = "shell"
  command = "echo building"
`

// TestBuildbotUIJoins: what buildbot's UI joins, on a real master and
// worker. A pushed change and its build share one sourcestamp (console,
// grid), /changes/N/builds lists the build, and the build's owners
// property is the change's author (the blamelist), or who forced it.
func TestBuildbotUIJoins(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(bbuiConfig)
	e.startMaster()
	e.startWorker("w1", "secret")

	form := url.Values{"author": {"Jane Doe <jane@example.org>"}, "branch": {"main"}, "revision": {"abc123"},
		"repository": {"https://example.org/r.git"}, "comments": {"fix"}}
	resp, err := http.PostForm(e.url("/change_hook/base"), form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("change hook: %s", resp.Status)
	}
	b := e.waitBuilds(1)[0]

	var ch struct {
		Changes []struct {
			ChangeID    int64 `json:"changeid"`
			SourceStamp struct {
				SSID int64 `json:"ssid"`
			} `json:"sourcestamp"`
		}
	}
	e.get("/api/v2/changes", &ch)
	if len(ch.Changes) != 1 {
		t.Fatalf("changes: %+v", ch)
	}
	var br struct {
		Buildrequests []struct {
			BuildsetID int64 `json:"buildsetid"`
		}
	}
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d", b.BuildRequestID), &br)
	var bs struct {
		Buildsets []struct {
			Sourcestamps []struct {
				SSID int64 `json:"ssid"`
			}
		}
	}
	e.get(fmt.Sprintf("/api/v2/buildsets/%d", br.Buildrequests[0].BuildsetID), &bs)
	if got, want := bs.Buildsets[0].Sourcestamps[0].SSID, ch.Changes[0].SourceStamp.SSID; got != want {
		t.Errorf("the build's sourcestamp is %d, its change's %d: want one", got, want)
	}
	var cb struct{ Builds []apiBuild }
	e.get(fmt.Sprintf("/api/v2/changes/%d/builds", ch.Changes[0].ChangeID), &cb)
	if len(cb.Builds) != 1 || cb.Builds[0].BuildID != b.BuildID {
		t.Errorf("builds of the change: %+v, want build %d", cb.Builds, b.BuildID)
	}
	if diff := cmp.Diff([]any{"Jane Doe <jane@example.org>"}, e.property(b.BuildID, "owners")); diff != "" {
		t.Errorf("owners of the change's build (-want +got):\n%s", diff)
	}

	// A rebuild's buildset names the build it builds again (buildbot 4's
	// rebuilt_buildid, which its UI filters on).
	res := e.rpc(fmt.Sprintf("/api/v2/builds/%d", b.BuildID), "rebuild", `{}`)
	var rb []json.RawMessage
	var rbsid int64
	if err := json.Unmarshal(res, &rb); err != nil || len(rb) != 2 || json.Unmarshal(rb[0], &rbsid) != nil {
		t.Fatalf("rebuild result %s", res)
	}
	var rbs struct {
		Buildsets []struct {
			BSID int64 `json:"bsid"`
		}
	}
	e.get(fmt.Sprintf("/api/v2/buildsets?rebuilt_buildid=%d", b.BuildID), &rbs)
	if len(rbs.Buildsets) != 1 || rbs.Buildsets[0].BSID != rbsid {
		t.Errorf("buildsets rebuilding build %d: %+v, want %d", b.BuildID, rbs, rbsid)
	}
	e.waitBuilds(2)

	e.rpc("/api/v2/forceschedulers/force", "force", fmt.Sprintf(`{"builderid":%d,"username":"bob <bob@example.org>","reason":"again"}`, b.BuilderID))
	forced := e.waitBuilds(3)
	i := slices.IndexFunc(forced, func(x apiBuild) bool { return x.BuildRequestID > b.BuildRequestID+1 })
	if diff := cmp.Diff([]any{"bob <bob@example.org>"}, e.property(forced[i].BuildID, "owners")); diff != "" {
		t.Errorf("owners of the forced build (-want +got):\n%s", diff)
	}
}

// TestSchedulerDisabledAcrossRestart: buildbot's scheduler switch on a
// real master: a disabled change scheduler builds no pushed change, the
// disabled force scheduler refuses, and both stay disabled after a
// restart, as buildbot keeps the flag in its database.
func TestSchedulerDisabledAcrossRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(bbuiConfig)
	e.startMaster()
	e.startWorker("w1", "secret")

	var sc struct {
		Schedulers []struct {
			ID      int64 `json:"schedulerid"`
			Name    string
			Enabled bool
		}
	}
	e.get("/api/v2/schedulers", &sc)
	ids := map[string]int64{}
	for _, s := range sc.Schedulers {
		ids[s.Name] = s.ID
	}
	for _, name := range []string{"on-main", "force"} {
		e.rpc(fmt.Sprintf("/api/v2/schedulers/%d", ids[name]), "enable", `{"enabled":false}`)
	}
	check := func(when string) {
		t.Helper()
		e.get("/api/v2/schedulers", &sc)
		for _, s := range sc.Schedulers {
			if s.Enabled {
				t.Errorf("%s: scheduler %s enabled", when, s.Name)
			}
		}
		resp, err := http.PostForm(e.url("/change_hook/base"), url.Values{"author": {"x <x@example.org>"}, "branch": {"main"}, "revision": {when}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderid":1,"reason":%q}}`, when)
		resp, err = http.Post(e.url("/api/v2/forceschedulers/force"), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("%s: force of the disabled scheduler: %s, want 409", when, resp.Status)
		}
		var bs struct{ Buildsets []any }
		e.get("/api/v2/buildsets", &bs)
		if len(bs.Buildsets) != 0 {
			t.Errorf("%s: %d buildsets, want none", when, len(bs.Buildsets))
		}
	}
	check("disabled")
	e.stopMaster()
	e.startMaster()
	check("after-restart")
}

// TestChangePropertiesInBuild: as buildbot's setupProperties, a change's
// properties (sendchange -p) are its build's, with source "Change", and
// the builder's properties override them.
func TestChangePropertiesInBuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(bbuiConfig + `
  [builders.properties]
  shared = "builder"
`)
	e.startMaster()
	e.startWorker("w1", "secret")
	mustRun(t, e.master, "sendchange", "--master", e.url("/"), "--who", "Me <me@example.com>",
		"--branch", "main", "--revision", "abc123", "-p", "evil:1", "-p", "shared:change", "a.txt")
	b := e.waitBuilds(1)[0]
	var r struct {
		Properties []map[string][]any
	}
	e.get(fmt.Sprintf("/api/v2/builds/%d/properties", b.BuildID), &r)
	if len(r.Properties) != 1 {
		t.Fatalf("properties of build %d: %+v", b.BuildID, r)
	}
	for name, want := range map[string][]any{"evil": {"1", "Change"}, "shared": {"builder", "Builder"}} {
		if diff := cmp.Diff(want, r.Properties[0][name]); diff != "" {
			t.Errorf("property %s of the change's build (-want +got):\n%s", name, diff)
		}
	}
}
