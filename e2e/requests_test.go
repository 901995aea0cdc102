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

const requestsConfig = loopback + `
[[workers]]
name = "w1"
password = "secret"
max_builds = 1

[[schedulers]]
type = "force"
name = "force"
builder_names = ["hold", "collapsing", "plain"]

[[builders]]
name = "hold"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "while [ ! -f {{.Dir}}/go ]; do sleep 0.05; done"

[[builders]]
name = "collapsing"
worker_names = ["w1"]
collapse_requests = true
  [[builders.steps]]
  type = "shell"
  command = "true"

[[builders]]
name = "plain"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "true"
`

// forceWith forces builderid with extra JSON-RPC params and returns the
// build request id.
func (e *env) forceWith(builderid int64, params string) int64 {
	e.t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderid":%d%s}}`, builderid, params)
	resp, err := http.Post(e.url("/api/v2/forceschedulers/force"), "application/json", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r struct{ Result []json.RawMessage }
	if err := json.Unmarshal(raw, &r); err != nil || resp.StatusCode != 200 || len(r.Result) != 2 {
		e.t.Fatalf("force: %s: %s", resp.Status, raw)
	}
	var brids map[string]int64
	json.Unmarshal(r.Result[1], &brids)
	return brids[fmt.Sprint(builderid)]
}

type apiRequest struct {
	Complete bool `json:"complete"`
	Results  *int `json:"results"`
}

// TestCollapseAndPriority: while the only worker slot is held, three
// requests of a collapsing builder become one build (the newest; the others
// end SKIPPED), and of two requests of a plain builder the one with the
// higher priority builds first.
func TestCollapseAndPriority(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(requestsConfig)
	e.startMaster()
	e.startWorker("w1", "secret")

	hold := e.forceWith(1, "")
	waitFor(t, "the holding build to start", 60*time.Second, func() bool {
		var r struct{ Builds []apiBuild }
		e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", hold), &r)
		return len(r.Builds) == 1
	})
	c1, c2, c3 := e.forceWith(2, ""), e.forceWith(2, ""), e.forceWith(2, "")
	low := e.forceWith(3, `,"priority":0`)
	high := e.forceWith(3, `,"priority":5`)
	if err := os.WriteFile(filepath.Join(e.Dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	last := e.waitBuild(c3, 60*time.Second)
	if *last.Results != 0 {
		t.Errorf("newest collapsing request: %+v", last)
	}
	for _, id := range []int64{c1, c2} {
		var r struct{ Buildrequests []apiRequest }
		waitFor(t, "collapsed request to complete", 30*time.Second, func() bool {
			e.get(fmt.Sprintf("/api/v2/buildrequests/%d", id), &r)
			return len(r.Buildrequests) == 1 && r.Buildrequests[0].Complete
		})
		if res := r.Buildrequests[0].Results; res == nil || *res != 3 {
			t.Errorf("request %d: results %v, want SKIPPED (3)", id, res)
		}
		var b struct{ Builds []apiBuild }
		e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", id), &b)
		if len(b.Builds) != 0 {
			t.Errorf("collapsed request %d was built", id)
		}
	}
	lo, hi := e.waitBuild(low, 60*time.Second), e.waitBuild(high, 60*time.Second)
	if hi.BuildID > lo.BuildID {
		t.Errorf("priority 5 built after priority 0: builds %d and %d", hi.BuildID, lo.BuildID)
	}
}
