package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// forceParams forces with the JSON-RPC params and returns the build
// request id of builderid.
func (e *env) forceParams(scheduler string, builderid int64, params string) int64 {
	e.t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":1,"params":%s}`, params)
	resp, err := http.Post(e.url("/api/v2/forceschedulers/"+scheduler), "application/json", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Result []json.RawMessage `json:"result"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &r); err != nil || resp.StatusCode != 200 || len(r.Result) != 2 {
		e.t.Fatalf("force: %s: %s", resp.Status, raw)
	}
	var brids map[string]int64
	if err := json.Unmarshal(r.Result[1], &brids); err != nil {
		e.t.Fatal(err)
	}
	return brids[fmt.Sprint(builderid)]
}

const workerChoiceConfig = loopback + workerW1 + `
[[workers]]
name = "w2"
password = "secret"

[[schedulers]]
type = "force"
name = "force"
builder_names = ["pick"]
  [[schedulers.params]]
  name = "workername"
  type = "worker_choice"

[[builders]]
name = "pick"
worker_names = ["w1", "w2"]
  [[builders.steps]]
  type = "shell"
  command = "sleep 0.3"
`

// TestWorkerChoice: a build forced with a worker_choice runs on the worker
// chosen, though the builder's other worker is idle; "-any-" lets the
// distributor choose.
func TestWorkerChoice(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(workerChoiceConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	e.startWorker("w2", "secret")
	ids := map[string]int64{}
	waitFor(t, "both workers connected", time.Minute, func() bool {
		var r struct {
			Workers []struct {
				WorkerID           int64            `json:"workerid"`
				Name               string           `json:"name"`
				ConnectedToMasters []map[string]any `json:"connected_to"`
			}
		}
		e.get("/api/v2/workers", &r)
		for _, w := range r.Workers {
			if len(w.ConnectedToMasters) > 0 {
				ids[w.Name] = w.WorkerID
			}
		}
		return len(ids) == 2
	})
	var reqs []int64
	for range 4 {
		reqs = append(reqs, e.forceParams("force", 1, `{"builderid":1,"workername":"w2"}`))
	}
	any := e.forceParams("force", 1, `{"builderid":1,"workername":"-any-"}`)
	for _, r := range reqs {
		b := e.waitBuild(r, 90*time.Second)
		if *b.Results != 0 || b.WorkerID != ids["w2"] {
			t.Errorf("build %d of request %d: results %d on worker %d, want 0 on w2 (%d)", b.BuildID, r, *b.Results, b.WorkerID, ids["w2"])
		}
	}
	if b := e.waitBuild(any, 90*time.Second); *b.Results != 0 {
		t.Errorf("build with -any-: results %d", *b.Results)
	}
}
