package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// globalCollapseConfig: the top-level collapse_requests = true, which
// builder "inherit" (id 2) takes and builder "own" (id 3) overrides; "hold"
// (id 1) keeps the only build slot until the test writes {{.Dir}}/go.
const globalCollapseConfig = "collapse_requests = true\n" + loopback + `
[[workers]]
name = "w1"
password = "secret"
max_builds = 1

[[schedulers]]
type = "force"
name = "force"
builder_names = ["hold", "inherit", "own"]

[[builders]]
name = "hold"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "while [ ! -f {{.Dir}}/go ]; do sleep 0.05; done"

[[builders]]
name = "inherit"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "true"

[[builders]]
name = "own"
worker_names = ["w1"]
collapse_requests = false
  [[builders.steps]]
  type = "shell"
  command = "true"
`

// TestGlobalCollapseRequests: a builder without collapse_requests takes
// the global one; a builder's own key wins. Collapsing follows buildbot's
// rule: of forced requests (no changes), only those of the same revision
// collapse, into the newer.
func TestGlobalCollapseRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(globalCollapseConfig)
	e.startMaster()
	e.startWorker("w1", "secret")

	hold := e.forceWith(1, "")
	e.runningBuild(hold)
	a1 := e.forceWith(2, `,"revision":"aaa"`)
	a2 := e.forceWith(2, `,"revision":"aaa"`)
	b1 := e.forceWith(2, `,"revision":"bbb"`)
	o1, o2 := e.forceWith(3, ""), e.forceWith(3, "")
	if err := os.WriteFile(filepath.Join(e.Dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{a2, b1, o1, o2} {
		if b := e.waitBuild(id, 60*time.Second); *b.Results != 0 {
			t.Errorf("request %d: build results %d", id, *b.Results)
		}
	}
	var r struct{ Buildrequests []apiRequest }
	waitFor(t, "the collapsed request to complete", 30*time.Second, func() bool {
		e.get(fmt.Sprintf("/api/v2/buildrequests/%d", a1), &r)
		return len(r.Buildrequests) == 1 && r.Buildrequests[0].Complete
	})
	if res := r.Buildrequests[0].Results; res == nil || *res != 3 {
		t.Errorf("request %d: results %v, want SKIPPED (3), collapsed into %d", a1, res, a2)
	}
	var b struct{ Builds []apiBuild }
	e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", a1), &b)
	if len(b.Builds) != 0 {
		t.Errorf("collapsed request %d was built", a1)
	}
}
