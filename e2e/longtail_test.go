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

const moreStepsConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "force"
builder_names = ["more"]

[[builders]]
name = "more"
worker_names = ["w1"]
  [[builders.steps]]
  type = "json_string_download"
  s = { a = 1, who = "%(prop:buildername)s", l = [1, "x"] }
  workerdest = "in/v.json"
  [[builders.steps]]
  type = "json_properties_download"
  workerdest = "in/props.json"
  [[builders.steps]]
  type = "shell"
  command = "mkdir -p dist/sub && echo a > dist/a.txt && echo b > dist/b.log && echo c > dist/sub/c.txt && echo o > 'odd name.txt'"
  [[builders.steps]]
  type = "shell_sequence"
  name = "sequence"
  commands = [
    { command = "cat in/v.json", logname = "value" },
    { command = ["sh", "-c", "echo failing; exit 1"], flunk_on_failure = false, warn_on_failure = true },
    { command = "echo after" },
  ]
  [[builders.steps]]
  type = "shell_sequence"
  name = "halts"
  commands = [
    { command = "exit 1", halt_on_failure = true },
    { command = "touch never" },
  ]
  [[builders.steps]]
  type = "multiple_file_upload"
  name = "plain"
  workersrcs = ["in/v.json", "dist/sub"]
  masterdest = "up/plain"
  [[builders.steps]]
  type = "multiple_file_upload"
  name = "glob"
  workersrcs = ["dist/*.txt", "odd*"]
  glob = true
  masterdest = "up/glob"
  [[builders.steps]]
  type = "multiple_file_upload"
  name = "nomatch"
  workersrcs = ["nomatch-*"]
  glob = true
  masterdest = "up/none"
  [[builders.steps]]
  type = "multiple_file_upload"
  name = "missing"
  workersrcs = ["missing.txt"]
  masterdest = "up/missing"
`

// TestMoreSteps: shell_sequence, json_string_download,
// json_properties_download and multiple_file_upload on a real worker.
func TestMoreSteps(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(moreStepsConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	b := e.waitBuild(e.force("force", 1, "more"), 90*time.Second)
	byName := map[string]apiStep{}
	for _, s := range e.steps(b.BuildID) {
		byName[s.Name] = s
	}
	want := map[string]int{
		"json_string_download": 0, "json_properties_download": 0, "shell": 0,
		"sequence": 1, "halts": 2, "plain": 0, "glob": 0, "nomatch": 3, "missing": 2,
	}
	for name, w := range want {
		s, ok := byName[name]
		if !ok || s.Results == nil || *s.Results != w {
			t.Errorf("step %s: %+v, want results %d", name, s, w)
		}
	}
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Error(err)
		}
		return string(b)
	}
	wdir := filepath.Join(e.Dir, "worker-w1", "more", "build")
	if got, want := read(filepath.Join(wdir, "in", "v.json")), `{"a":1,"l":[1,"x"],"who":"more"}`; got != want {
		t.Errorf("v.json = %s, want %s", got, want)
	}
	var pj struct {
		Properties   map[string]any   `json:"properties"`
		Sourcestamps []map[string]any `json:"sourcestamps"`
	}
	if err := json.Unmarshal([]byte(read(filepath.Join(wdir, "in", "props.json"))), &pj); err != nil {
		t.Fatal(err)
	}
	if pj.Properties["buildername"] != "more" || pj.Properties["workername"] != "w1" || len(pj.Sourcestamps) != 1 {
		t.Errorf("props.json: %+v", pj)
	}
	for _, k := range []string{"branch", "revision", "repository", "project", "codebase", "patch_level", "patch_body", "patch_subdir", "patch_author", "patch_comment"} {
		if _, ok := pj.Sourcestamps[0][k]; !ok {
			t.Errorf("props.json source stamp has no %s: %v", k, pj.Sourcestamps[0])
		}
	}

	seq := byName["sequence"].StepID
	if got := channelLines(e.logText(seq, "value"), "o"); !strings.Contains(got, `{"a":1`) {
		t.Errorf("log value: %q", got)
	}
	if got := e.logText(seq, "stdio-2"); !strings.Contains(got, "failing") {
		t.Errorf("log stdio-2: %q", got)
	}
	if got := e.logText(seq, "stdio-3"); !strings.Contains(got, "after") {
		t.Errorf("log stdio-3: %q", got)
	}
	if _, err := os.Stat(filepath.Join(wdir, "never")); !os.IsNotExist(err) {
		t.Errorf("a command after a halting failure ran: %v", err)
	}

	for p, content := range map[string]string{
		"up/plain/v.json": `{"a":1,"l":[1,"x"],"who":"more"}`, "up/plain/sub/c.txt": "c\n",
		"up/glob/a.txt": "a\n", "up/glob/odd name.txt": "o\n",
	} {
		if got := read(filepath.Join(e.Dir, "master", p)); got != content {
			t.Errorf("%s = %q, want %q", p, got, content)
		}
	}
	if _, err := os.Stat(filepath.Join(e.Dir, "master", "up", "glob", "b.log")); !os.IsNotExist(err) {
		t.Errorf("b.log was uploaded though no pattern matches it: %v", err)
	}
	if got := e.logText(byName["missing"].StepID, "stderr"); !strings.Contains(got, "missing.txt not available at worker") {
		t.Errorf("missing: stderr %q", got)
	}
}

const followersConfig = loopback + workerW1 + `
[[schedulers]]
type = "force"
name = "up"
builder_names = ["upb"]

[[schedulers]]
type = "dependent"
name = "dep"
upstream = "up"
builder_names = ["downb"]

[[schedulers]]
type = "nightly_triggerable"
name = "nt"
cron = "* * * * *"
builder_names = ["nightb"]

[[builders]]
name = "upb"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "true"
  [[builders.steps]]
  type = "trigger"
  scheduler_names = ["nt"]
  wait_for_finish = true
  set_properties = { who = "%(prop:buildername)s" }

[[builders]]
name = "downb"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "echo down"

[[builders]]
name = "nightb"
worker_names = ["w1"]
  [[builders.steps]]
  type = "shell"
  command = "echo night %(prop:who)s"
`

// TestDependentAndNightlyTriggerable: through a real master, a dependent
// scheduler builds after its upstream's buildset succeeds, not while it
// is disabled through JSON-RPC (the API shows it so); a trigger step on a
// nightly_triggerable scheduler goes on at once, and the scheduler builds
// the trigger at its next time.
func TestDependentAndNightlyTriggerable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(followersConfig)
	e.startMaster()
	e.startWorker("w1", "secret")

	var sr struct {
		Schedulers []struct {
			ID      int64  `json:"schedulerid"`
			Name    string `json:"name"`
			Enabled bool   `json:"enabled"`
		}
	}
	depEnabled := func() (int64, bool) {
		e.get("/api/v2/schedulers", &sr)
		for _, s := range sr.Schedulers {
			if s.Name == "dep" {
				return s.ID, s.Enabled
			}
		}
		t.Fatalf("no scheduler dep: %+v", sr)
		return 0, false
	}
	enable := func(on bool) {
		id, _ := depEnabled()
		body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"enable","id":1,"params":{"enabled":%v}}`, on)
		resp, err := http.Post(e.url(fmt.Sprintf("/api/v2/schedulers/%d", id)), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("enable %v: %s", on, resp.Status)
		}
		if _, got := depEnabled(); got != on {
			t.Fatalf("after enable %v the API says enabled %v", on, got)
		}
	}
	enable(false)
	start := time.Now()
	if b := e.waitBuild(e.force("up", 1, "while disabled"), 90*time.Second); *b.Results != 0 {
		t.Fatalf("upstream build: results %d", *b.Results)
	}
	if steps := e.steps(1); len(steps) != 3 || steps[2].Name != "trigger" || *steps[2].Results != 0 {
		t.Fatalf("trigger step: %+v", steps)
	}
	enable(true)
	if b := e.waitBuild(e.force("up", 1, "enabled"), 90*time.Second); *b.Results != 0 {
		t.Fatalf("upstream build: results %d", *b.Results)
	}
	builds := func(builderid int64) []apiBuild {
		var r struct{ Builds []apiBuild }
		e.get(fmt.Sprintf("/api/v2/builders/%d/builds", builderid), &r)
		return r.Builds
	}
	waitFor(t, "the downstream build (woken by the buildset events, not the minute's rescan)", 40*time.Second, func() bool {
		bs := builds(2)
		return len(bs) > 0 && bs[0].Complete
	})
	if bs := builds(2); len(bs) != 1 {
		t.Errorf("%d downstream builds, want 1 (none for the upstream build while disabled)", len(bs))
	}
	// The two triggers are recorded; the next minute builds the last.
	waitFor(t, "the nightly_triggerable build", 150*time.Second, func() bool {
		bs := builds(3)
		return len(bs) > 0 && bs[0].Complete
	})
	nb := builds(3)[0]
	if got := e.stdio(e.steps(nb.BuildID)[1].StepID); !strings.Contains(got, "night upb") {
		t.Errorf("nightly build's output %q", got)
	}
	if time.Since(start) > 3*time.Minute {
		t.Logf("slow: %v", time.Since(start))
	}
}

const pinnedConfig = loopback + workerW1 + `
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
  [[schedulers.params]]
  name = "hold"
  default = "no"

[[builders]]
name = "pick"
worker_names = ["w1", "w2"]
  [[builders.steps]]
  type = "shell"
  command = "i=0; until [ %(prop:hold)s = no ] || [ -e {{.Dir}}/release ]; do i=$((i+1)); [ $i -lt 1200 ] || exit 1; sleep 0.1; done"
`

// TestWorkerChoiceHoldsUpNoOther: a request waiting for the busy worker it
// chose does not keep the builder's other, idle worker from the requests
// behind it.
func TestWorkerChoiceHoldsUpNoOther(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeConfig(pinnedConfig)
	e.startMaster()
	e.startWorker("w1", "secret")
	e.startWorker("w2", "secret")
	waitFor(t, "both workers connected", time.Minute, func() bool {
		var r struct {
			Workers []struct {
				Connected []map[string]any `json:"connected_to"`
			}
		}
		e.get("/api/v2/workers", &r)
		n := 0
		for _, w := range r.Workers {
			if len(w.Connected) > 0 {
				n++
			}
		}
		return n == 2
	})
	held := e.forceParams("force", 1, `{"builderid":1,"workername":"w2","hold":"yes"}`)
	waitFor(t, "the held build started", time.Minute, func() bool {
		var r struct{ Builds []apiBuild }
		e.get(fmt.Sprintf("/api/v2/buildrequests/%d/builds", held), &r)
		return len(r.Builds) == 1
	})
	waiting := e.forceParams("force", 1, `{"builderid":1,"workername":"w2"}`)
	free := e.forceParams("force", 1, `{"builderid":1}`)
	if b := e.waitBuild(free, 45*time.Second); *b.Results != 0 {
		t.Errorf("the unpinned build: results %d", *b.Results)
	}
	if err := os.WriteFile(filepath.Join(e.Dir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, r := range []int64{held, waiting} {
		if b := e.waitBuild(r, 90*time.Second); *b.Results != 0 {
			t.Errorf("request %d: results %d", r, *b.Results)
		}
	}
}
