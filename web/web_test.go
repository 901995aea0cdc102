package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/internal/teststore"
	"github.com/gbb-ci/gbb/pkg/changesource/hooks"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/api"
)

// testForcer is a small force scheduler over the real store, as the
// scheduler package's would be.
type testForcer struct {
	db     *store.DB
	scheds []scheduler.ForceInfo
}

func (f *testForcer) ForceSchedulers() []scheduler.ForceInfo { return f.scheds }

func (f *testForcer) Force(ctx context.Context, name string, req scheduler.ForceRequest) (int64, map[int64]int64, error) {
	i := slices.IndexFunc(f.scheds, func(fi scheduler.ForceInfo) bool { return fi.Name == name })
	if i < 0 {
		return 0, nil, fmt.Errorf("%w: %q", scheduler.ErrNoScheduler, name)
	}
	if req.Reason == "" {
		req.Reason = "force build"
	}
	if req.Reason == "forbidden" {
		return 0, nil, &scheduler.ParamError{Field: "reason", Msg: "is forbidden"}
	}
	var ids []int64
	for _, n := range f.scheds[i].BuilderNames {
		b, err := f.db.BuilderByName(n)
		if err != nil {
			return 0, nil, err
		}
		if req.BuilderID == 0 || req.BuilderID == b.ID {
			ids = append(ids, b.ID)
		}
	}
	if len(ids) == 0 {
		return 0, nil, &scheduler.ParamError{Field: "builderid", Msg: "not a builder of this scheduler"}
	}
	props := store.Properties{"owner": {Value: json.RawMessage(fmt.Sprintf("%q", req.Owner)), Source: "force"}}
	for k, v := range req.Properties {
		data, err := json.Marshal(v)
		if err != nil {
			return 0, nil, err
		}
		props[k] = store.Property{Value: data, Source: "force"}
	}
	return f.db.AddBuildset(store.NewBuildset{
		Reason:        req.Reason,
		SchedulerName: name,
		SourceStamps:  []store.SourceStamp{{Branch: req.Branch, Revision: req.Revision, Repository: req.Repository, Project: req.Project}},
		Properties:    props,
		BuilderIDs:    ids,
	})
}

// fixture is what newTestServer put in the store.
type fixture struct {
	db                    *store.DB
	srv                   *httptest.Server
	master                store.Master
	runtests, noop        store.Builder
	worker                store.Worker
	bsid                  int64
	brid                  int64
	ok, failed, running   store.Build // builds 1, 2, 3 of runtests
	other                 store.Build // build 1 of noop
	gitStep, testStep     store.Step  // steps of ok
	stdio, textLog        store.Log   // logs of testStep
	stdioStored, stdioRaw string
}

var t0 = time.Unix(1795861479, 0)

// must(f())(t) is f's value, or a fatal error.
func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newTestServer(t testing.TB) *fixture {
	t.Helper()
	db := teststore.Open(t)
	f := &fixture{db: db}
	f.master = must(db.EnsureMaster("master-1"))(t)
	f.runtests = must(db.EnsureBuilder("runtests"))(t)
	f.noop = must(db.EnsureBuilder("noop"))(t)
	check(t, db.UpdateBuilder(f.runtests.ID, "runs the tests", []string{"unit", "slow"}, []int64{f.master.ID}))
	check(t, db.UpdateBuilder(f.noop.ID, "", nil, []int64{f.master.ID}))
	f.runtests = must(db.Builder(f.runtests.ID))(t)
	f.noop = must(db.Builder(f.noop.ID))(t)

	w := must(db.EnsureWorker("bench-worker"))(t)
	check(t, db.SetWorkerConfiguredOn(w.ID, []store.BuilderMaster{{BuilderID: f.runtests.ID, MasterID: f.master.ID}}))
	check(t, db.WorkerConnected(w.ID, f.master.ID, map[string]string{"admin": "Your Name Here", "host": "bench"}))
	must(db.EnsureWorker("idle-worker"))(t)
	f.worker = must(db.Worker(w.ID))(t)

	addBuild := func(b store.Builder, results int, finish bool) store.Build {
		bsid, brids, err := db.AddBuildset(store.NewBuildset{
			Reason:       "test",
			SourceStamps: []store.SourceStamp{{Branch: "main", Repository: "https://example.org/r.git", Project: "p"}},
			BuilderIDs:   []int64{b.ID},
			SubmittedAt:  t0,
		})
		check(t, err)
		brid := brids[b.ID]
		check(t, db.ClaimBuildRequest(brid, f.master.ID, t0))
		if got := must(db.BuildRequest(brid))(t).BuildsetID; got != bsid {
			t.Fatalf("buildrequest %d in buildset %d, want %d", brid, got, bsid)
		}
		bd := must(db.AddBuild(store.NewBuild{
			BuilderID: b.ID, BuildRequestID: brid, WorkerID: f.worker.ID, MasterID: f.master.ID,
			StartedAt: t0, StateString: "building",
			Properties: store.Properties{
				"owner":     {Value: json.RawMessage(`"alice"`), Source: "force"},
				"buildnumb": {Value: json.RawMessage(`7`), Source: "Build"},
			},
		}))(t)
		if finish {
			check(t, db.SetBuildStateString(bd.ID, "build done"))
			check(t, db.FinishBuild(bd.ID, results, t0.Add(time.Second)))
			check(t, db.CompleteBuildRequest(brid, results, t0.Add(time.Second)))
		}
		return must(db.Build(bd.ID))(t)
	}
	f.ok = addBuild(f.runtests, store.Success, true)
	f.failed = addBuild(f.runtests, store.Failure, true)
	f.running = addBuild(f.runtests, 0, false)
	f.other = addBuild(f.noop, store.Success, true)
	f.brid = f.ok.BuildRequestID
	f.bsid = must(db.BuildRequest(f.brid))(t).BuildsetID

	f.gitStep = must(db.AddStep(f.ok.ID, "git"))(t)
	check(t, db.StartStep(f.gitStep.ID, t0))
	check(t, db.FinishStep(f.gitStep.ID, store.Success, t0))
	f.testStep = must(db.AddStep(f.ok.ID, "test"))(t)
	check(t, db.StartStep(f.testStep.ID, t0))

	f.stdioStored = string(must(os.ReadFile("testdata/stdio_stored.txt"))(t))
	f.stdioRaw = string(must(os.ReadFile("testdata/stdio_raw.txt"))(t))
	f.stdio = must(db.AddLog(f.testStep.ID, "stdio", "s"))(t)
	must(db.AppendLog(f.stdio.ID, f.stdioStored[:100]+lineEnd(f.stdioStored[100:])))(t)
	must(db.AppendLog(f.stdio.ID, f.stdioStored[len(f.stdioStored[:100]+lineEnd(f.stdioStored[100:])):]))(t)
	check(t, db.FinishLog(f.stdio.ID))
	f.textLog = must(db.AddLog(f.testStep.ID, "summary", "t"))(t)
	must(db.AppendLog(f.textLog.ID, "one\ntwo\n"))(t)
	f.stdio = must(db.Log(f.stdio.ID))(t)
	f.textLog = must(db.Log(f.textLog.ID))(t)
	f.gitStep = must(db.Step(f.gitStep.ID))(t)
	f.testStep = must(db.Step(f.testStep.ID))(t)

	forcer := &testForcer{db: db, scheds: []scheduler.ForceInfo{
		{Name: "force-runtests", Label: "force-runtests", ButtonName: "force-runtests", BuilderNames: []string{"runtests"}},
		{Name: "force-all", BuilderNames: []string{"runtests", "noop"}},
	}}
	s := New(Config{
		Store: db, Forcer: forcer, MasterID: f.master.ID, MasterName: "master-1",
		Title: "Hello <CI>", TitleURL: "https://example.org/hello/", BuildbotURL: "http://ci.example.org/buildbot/",
		Changes:     hooks.StoreSink{DB: db},
		ChangeHooks: testHooks,
		Schedulers: func() []SchedulerInfo {
			return []SchedulerInfo{{ID: 1, Name: "all", Enabled: true}, {ID: 2, Name: "force-runtests", Enabled: true}}
		},
	})
	f.srv = httptest.NewServer(s.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

// lineEnd is s up to and including its first "\n".
func lineEnd(s string) string {
	i := 0
	for s[i] != '\n' {
		i++
	}
	return s[:i+1]
}

// get fetches path and decodes its JSON body.
func (f *fixture) get(t *testing.T, path string) (int, map[string]any) {
	t.Helper()
	resp := must(http.Get(f.srv.URL + path))(t)
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: status %d, body not JSON: %v", path, resp.StatusCode, err)
	}
	return resp.StatusCode, body
}

// getOK fetches path, which must answer 200, and returns its list and meta.
func (f *fixture) getOK(t *testing.T, path, plural string) ([]map[string]any, map[string]any) {
	t.Helper()
	status, body := f.get(t, path)
	if status != http.StatusOK {
		t.Fatalf("GET %s: status %d: %v", path, status, body)
	}
	return objects(t, body[plural]), body["meta"].(map[string]any)
}

func objects(t *testing.T, v any) []map[string]any {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("not a list: %#v", v)
	}
	out := make([]map[string]any, len(list))
	for i, o := range list {
		out[i] = o.(map[string]any)
	}
	return out
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// ints reads field of each object as integers.
func ints(objs []map[string]any, field string) []int64 {
	out := []int64{}
	for _, o := range objs {
		out = append(out, int64(o[field].(float64)))
	}
	return out
}

func TestShapesMatchBuildbot(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	var want map[string][]string
	check(t, json.Unmarshal(must(os.ReadFile("testdata/keys.json"))(t), &want))
	tests := []struct {
		path, plural, keys string
	}{
		{"/api/v2/builders", "builders", "builders"},
		{"/api/v2/builders/runtests", "builders", "builders"},
		{"/api/v2/builds", "builds", "builds"},
		{fmt.Sprintf("/api/v2/builds/%d", f.ok.ID), "builds", "builds"},
		{fmt.Sprintf("/api/v2/builds/%d/steps", f.ok.ID), "steps", "steps"},
		{fmt.Sprintf("/api/v2/steps/%d/logs", f.testStep.ID), "logs", "logs"},
		{fmt.Sprintf("/api/v2/logs/%d/contents", f.stdio.ID), "logchunks", "logchunks"},
		{"/api/v2/workers", "workers", "workers"},
		{"/api/v2/buildrequests", "buildrequests", "buildrequests"},
		{"/api/v2/forceschedulers", "forceschedulers", "forceschedulers"},
	}
	for _, tt := range tests {
		objs, _ := f.getOK(t, tt.path, tt.plural)
		if len(objs) == 0 {
			t.Fatalf("GET %s: no %s", tt.path, tt.plural)
		}
		for _, o := range objs {
			if diff := cmp.Diff(sortedStrings(append(slices.Clone(want[tt.keys]), buildbot4Keys[tt.keys]...)), keys(o)); diff != "" {
				t.Errorf("GET %s: keys (-buildbot +gbb):\n%s", tt.path, diff)
			}
		}
	}

	workers, _ := f.getOK(t, "/api/v2/workers/bench-worker", "workers")
	w := workers[0]
	if diff := cmp.Diff(want["workers.configured_on"], keys(objects(t, w["configured_on"])[0])); diff != "" {
		t.Errorf("configured_on keys:\n%s", diff)
	}
	if diff := cmp.Diff(want["workers.connected_to"], keys(objects(t, w["connected_to"])[0])); diff != "" {
		t.Errorf("connected_to keys:\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"admin": "Your Name Here", "host": "bench"}, w["workerinfo"]); diff != "" {
		t.Errorf("workerinfo:\n%s", diff)
	}

	// The default force parameters are buildbot's, field for field.
	fs, _ := f.getOK(t, "/api/v2/forceschedulers/force-runtests", "forceschedulers")
	var wantFields any
	check(t, json.Unmarshal(must(os.ReadFile("testdata/force_all_fields.json"))(t), &wantFields))
	if diff := cmp.Diff(wantFields, withoutTooltips(t, fs[0]["all_fields"])); diff != "" {
		t.Errorf("all_fields (-buildbot +gbb):\n%s", diff)
	}
}

// buildbot4Keys are the fields buildbot 4 added, which its UI reads
// (issue 21), beyond buildbot 3.7's in testdata/keys.json.
var buildbot4Keys = map[string][]string{
	"builders": {"description_format", "description_html", "projectid"},
	"builds":   {"locks_duration_s"},
	"steps":    {"locks_acquired_at"},
	"workers":  {"pause_reason"},
}

// withoutTooltips is force fields without buildbot 4's tooltip (""), to
// compare with buildbot 3.7's.
func withoutTooltips(t *testing.T, v any) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = withoutTooltips(t, x)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			if k == "tooltip" {
				if x != "" {
					t.Errorf("tooltip %v, want \"\"", x)
				}
				continue
			}
			out[k] = withoutTooltips(t, x)
		}
		return out
	}
	return v
}

func TestValues(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	status, body := f.get(t, fmt.Sprintf("/api/v2/builds/%d", f.ok.ID))
	want := map[string]any{
		"builds": []any{map[string]any{
			"builderid": float64(f.runtests.ID), "buildid": float64(f.ok.ID), "buildrequestid": float64(f.ok.BuildRequestID),
			"complete": true, "complete_at": float64(t0.Unix() + 1), "masterid": float64(f.master.ID),
			"number": float64(1), "properties": map[string]any{}, "results": float64(0),
			"started_at": float64(t0.Unix()), "state_string": "build done", "workerid": float64(f.worker.ID),
			"locks_duration_s": float64(0),
		}},
		"meta": map[string]any{},
	}
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("build (-want +got):\n%s", diff)
	}

	running, _ := f.getOK(t, fmt.Sprintf("/api/v2/builders/runtests/builds/%d", f.running.Number), "builds")
	if r := running[0]; r["results"] != nil || r["complete_at"] != nil || r["complete"] != false {
		t.Errorf("running build: %v", r)
	}
	steps, _ := f.getOK(t, fmt.Sprintf("/api/v2/builds/%d/steps/test", f.ok.ID), "steps")
	if s := steps[0]; s["results"] != nil || s["hidden"] != false || s["number"] != float64(1) || len(s["urls"].([]any)) != 0 {
		t.Errorf("running step: %v", s)
	}
	builders, _ := f.getOK(t, "/api/v2/builders?order=builderid", "builders")
	if diff := cmp.Diff([]map[string]any{
		{"builderid": float64(f.runtests.ID), "description": "runs the tests", "masterids": []any{float64(f.master.ID)}, "name": "runtests", "tags": []any{"unit", "slow"},
			"description_format": nil, "description_html": nil, "projectid": nil},
		{"builderid": float64(f.noop.ID), "description": nil, "masterids": []any{float64(f.master.ID)}, "name": "noop", "tags": []any{},
			"description_format": nil, "description_html": nil, "projectid": nil},
	}, builders); diff != "" {
		t.Errorf("builders (-want +got):\n%s", diff)
	}
	brs, _ := f.getOK(t, fmt.Sprintf("/api/v2/buildrequests/%d", f.running.BuildRequestID), "buildrequests")
	if br := brs[0]; br["results"] != nil || br["complete"] != false || br["claimed"] != true || br["properties"] != nil {
		t.Errorf("running buildrequest: %v", br)
	}
}

func TestPaths(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	ok, test, stdio := f.ok.ID, f.testStep.ID, f.stdio.ID
	tests := []struct {
		path, plural, field string
		want                []int64
	}{
		{"/api/v2/builders/runtests/builds", "builds", "buildid", []int64{f.ok.ID, f.failed.ID, f.running.ID}},
		{fmt.Sprintf("/api/v2/builders/%d/builds", f.noop.ID), "builds", "buildid", []int64{f.other.ID}},
		{"/api/v2/builders/runtests/builds/1", "builds", "buildid", []int64{ok}},
		{"/api/v2/builders/runtests/builds/1/steps", "steps", "stepid", []int64{f.gitStep.ID, test}},
		{"/api/v2/builders/runtests/builds/1/steps/1", "steps", "stepid", []int64{test}},
		{"/api/v2/builders/runtests/builds/1/steps/git", "steps", "stepid", []int64{f.gitStep.ID}},
		{"/api/v2/builders/runtests/builds/1/steps/test/logs", "logs", "logid", []int64{stdio, f.textLog.ID}},
		{"/api/v2/builders/runtests/builds/1/steps/test/logs/stdio", "logs", "logid", []int64{stdio}},
		{"/api/v2/builders/runtests/builds/1/steps/test/logs/stdio/contents", "logchunks", "logid", []int64{stdio}},
		{"/api/v2/builders/runtests/buildrequests", "buildrequests", "builderid", []int64{f.runtests.ID, f.runtests.ID, f.runtests.ID}},
		{"/api/v2/builders/runtests/workers", "workers", "workerid", []int64{f.worker.ID}},
		{"/api/v2/builders/noop/workers", "workers", "workerid", []int64{}},
		{fmt.Sprintf("/api/v2/builds/%d/steps/test/logs/summary", ok), "logs", "logid", []int64{f.textLog.ID}},
		{fmt.Sprintf("/api/v2/builds/%d/steps/0/logs", ok), "logs", "logid", []int64{}},
		{fmt.Sprintf("/api/v2/steps/%d", test), "steps", "stepid", []int64{test}},
		{fmt.Sprintf("/api/v2/steps/%d/logs/stdio", test), "logs", "logid", []int64{stdio}},
		{fmt.Sprintf("/api/v2/steps/%d/logs/stdio/contents", test), "logchunks", "logid", []int64{stdio}},
		{fmt.Sprintf("/api/v2/logs/%d", stdio), "logs", "num_lines", []int64{14}},
		{"/api/v2/workers", "workers", "workerid", []int64{f.worker.ID, f.worker.ID + 1}},
		{fmt.Sprintf("/api/v2/workers/%d", f.worker.ID), "workers", "workerid", []int64{f.worker.ID}},
		{fmt.Sprintf("/api/v2/buildrequests/%d/builds", f.failed.BuildRequestID), "builds", "buildid", []int64{f.failed.ID}},
		{fmt.Sprintf("/api/v2/buildsets/%d", f.bsid), "buildsets", "bsid", []int64{f.bsid}},
		{"/api/v2/buildsets?order=bsid&limit=1", "buildsets", "bsid", []int64{f.bsid}},
		{"/api/v2/masters", "masters", "masterid", []int64{f.master.ID}},
		{fmt.Sprintf("/api/v2/masters/%d", f.master.ID), "masters", "masterid", []int64{f.master.ID}},
	}
	for _, tt := range tests {
		objs, _ := f.getOK(t, tt.path, tt.plural)
		if diff := cmp.Diff(tt.want, ints(objs, tt.field)); diff != "" {
			t.Errorf("GET %s: %s (-want +got):\n%s", tt.path, tt.field, diff)
		}
	}

	fs, _ := f.getOK(t, "/api/v2/builders/runtests/forceschedulers", "forceschedulers")
	if len(fs) != 2 || fs[0]["name"] != "force-runtests" || fs[1]["label"] != "force-all" {
		t.Errorf("forceschedulers of runtests: %v", fs)
	}
	fs, _ = f.getOK(t, "/api/v2/builders/noop/forceschedulers", "forceschedulers")
	if len(fs) != 1 || fs[0]["name"] != "force-all" {
		t.Errorf("forceschedulers of noop: %v", fs)
	}
	bss, _ := f.getOK(t, fmt.Sprintf("/api/v2/buildsets/%d", f.bsid), "buildsets")
	sss := objects(t, bss[0]["sourcestamps"])
	if len(sss) != 1 || sss[0]["branch"] != "main" || sss[0]["revision"] != nil {
		t.Fatalf("sourcestamps: %v", sss)
	}
	ssid := int64(sss[0]["ssid"].(float64))
	ss, _ := f.getOK(t, fmt.Sprintf("/api/v2/sourcestamps/%d", ssid), "sourcestamps")
	if diff := cmp.Diff(sss[0], ss[0]); diff != "" {
		t.Errorf("sourcestamp:\n%s", diff)
	}
}

func TestQuery(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	ok, failed, running, other := f.ok.ID, f.failed.ID, f.running.ID, f.other.ID
	tests := []struct {
		query string
		want  []int64 // buildids
		total int
	}{
		{"", []int64{ok, failed, running, other}, 4},
		{fmt.Sprintf("builderid=%d", f.runtests.ID), []int64{ok, failed, running}, 3},
		{fmt.Sprintf("builderid__eq=%d", f.noop.ID), []int64{other}, 1},
		{"complete=false", []int64{running}, 1},
		{"complete=0", []int64{running}, 1},
		{"complete=true&results=2", []int64{failed}, 1},
		{"results=null", []int64{running}, 1},
		{"results__ne=null", []int64{ok, failed, other}, 3},
		{"results__ne=0", []int64{failed, running}, 2},
		{"results__lt=2", []int64{ok, other}, 2},
		{"results__le=2&results__gt=0", []int64{failed}, 1},
		{"results__ge=1", []int64{failed}, 1},
		{"number__in=2&number__in=3", []int64{failed, running}, 2},
		{"number=2&number=3", []int64{failed, running}, 2},
		{"state_string__contains=done", []int64{ok, failed, other}, 3},
		{"state_string=building", []int64{running}, 1},
		{"order=-buildid", []int64{other, running, failed, ok}, 4},
		{"order=-number&order=buildid", []int64{running, failed, ok, other}, 4},
		{"order=-number,buildid", []int64{running, failed, ok, other}, 4},
		{"order=results", []int64{running, ok, other, failed}, 4},
		{"order=buildid&limit=2", []int64{ok, failed}, 4},
		{"order=buildid&limit=2&offset=1", []int64{failed, running}, 4},
		{"order=buildid&offset=3", []int64{other}, 4},
		{"order=buildid&offset=9", []int64{}, 4},
		{"limit=0", []int64{}, 4},
		{fmt.Sprintf("builderid=%d&order=-buildid&limit=1", f.runtests.ID), []int64{running}, 3},
	}
	for _, tt := range tests {
		path := "/api/v2/builds?" + tt.query
		objs, meta := f.getOK(t, path, "builds")
		got := ints(objs, "buildid")
		if !strings.Contains(tt.query, "order=") {
			slices.Sort(got)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("GET %s (-want +got):\n%s", path, diff)
		}
		if diff := cmp.Diff(map[string]any{"total": float64(tt.total)}, meta); diff != "" {
			t.Errorf("GET %s meta:\n%s", path, diff)
		}
	}

	builders := []struct {
		query string
		want  []string
	}{
		{"name__contains=run", []string{"runtests"}},
		{"tags__contains=unit", []string{"runtests"}},
		{"tags__contains=nope&tags__contains=slow", []string{"runtests"}},
		{"description=null", []string{"noop"}},
		{"description__ne=null&order=name", []string{"runtests"}},
		{"name__in=noop&name__in=runtests&order=-name", []string{"runtests", "noop"}},
		{"order=name", []string{"noop", "runtests"}},
	}
	for _, tt := range builders {
		objs, _ := f.getOK(t, "/api/v2/builders?"+tt.query, "builders")
		var got []string
		for _, o := range objs {
			got = append(got, o["name"].(string))
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("builders?%s (-want +got):\n%s", tt.query, diff)
		}
	}

	for _, q := range []string{"field=buildid&field=number", "field=buildid,number", "field=number&field=buildid&order=buildid"} {
		objs, _ := f.getOK(t, "/api/v2/builds?"+q, "builds")
		for _, o := range objs {
			if diff := cmp.Diff([]string{"buildid", "number"}, keys(o)); diff != "" {
				t.Errorf("builds?%s keys:\n%s", q, diff)
			}
		}
	}
	one, _ := f.getOK(t, fmt.Sprintf("/api/v2/builds/%d?field=number", ok), "builds")
	if diff := cmp.Diff([]map[string]any{{"number": float64(1)}}, one); diff != "" {
		t.Errorf("single build with field:\n%s", diff)
	}
}

func TestBuildProperties(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	base := fmt.Sprintf("/api/v2/builds/%d", f.ok.ID)
	tests := []struct {
		query string
		want  map[string]any
	}{
		{"", map[string]any{}},
		{"?property=owner", map[string]any{"owner": []any{"alice", "force"}}},
		{"?property=owner&property=nope", map[string]any{"owner": []any{"alice", "force"}}},
		{"?property=*", map[string]any{"owner": []any{"alice", "force"}, "buildnumb": []any{float64(7), "Build"}}},
	}
	for _, tt := range tests {
		objs, _ := f.getOK(t, base+tt.query, "builds")
		if diff := cmp.Diff(tt.want, objs[0]["properties"]); diff != "" {
			t.Errorf("GET %s properties (-want +got):\n%s", base+tt.query, diff)
		}
		list, _ := f.getOK(t, "/api/v2/builds"+tt.query, "builds")
		if diff := cmp.Diff(tt.want, list[0]["properties"]); diff != "" {
			t.Errorf("GET /builds%s properties (-want +got):\n%s", tt.query, diff)
		}
	}
	status, body := f.get(t, base+"/properties")
	want := map[string]any{
		"properties": []any{map[string]any{"owner": []any{"alice", "force"}, "buildnumb": []any{float64(7), "Build"}}},
		"meta":       map[string]any{},
	}
	if diff := cmp.Diff(want, body); status != http.StatusOK || diff != "" {
		t.Errorf("GET %s/properties: status %d (-want +got):\n%s", base, status, diff)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	tests := []struct {
		path   string
		status int
		msg    string // the whole error message, when not empty
	}{
		{"/api/v2/builds/99", 404, "no such build 99"},
		{"/api/v2/builds/x", 404, "no such build x"},
		{"/api/v2/builders/nope", 404, "no such builder nope"},
		{"/api/v2/builders/99/builds", 404, "no such builder 99"},
		{"/api/v2/builders/runtests/builds/42", 404, "no such build 42 of builder runtests"},
		{fmt.Sprintf("/api/v2/builds/%d/steps/nope", f.ok.ID), 404, fmt.Sprintf("no such step nope of build %d", f.ok.ID)},
		{fmt.Sprintf("/api/v2/builds/%d/steps/7/logs", f.ok.ID), 404, ""},
		{fmt.Sprintf("/api/v2/steps/%d/logs/nope/raw", f.testStep.ID), 404, ""},
		{"/api/v2/logs/99/contents", 404, "no such log 99"},
		{"/api/v2/logs/99/raw", 404, "no such log 99"},
		{"/api/v2/workers/nobody", 404, "no such worker nobody"},
		{"/api/v2/buildrequests/99", 404, "no such buildrequest 99"},
		{"/api/v2/buildsets/99", 404, "no such buildset 99"},
		{"/api/v2/sourcestamps/99", 404, "no such sourcestamp 99"},
		{"/api/v2/masters/99", 404, "no such master 99"},
		{"/api/v2/forceschedulers/nope", 404, "no such forcescheduler nope"},
		{"/api/v2/nope", 404, "no such path /api/v2/nope"},
		{"/nope", 404, ""},
		{"/api/v2/builds?order=nope", 400, `unknown field "nope" in order`},
		{"/api/v2/builds?order=properties", 400, ""},
		{"/api/v2/builds?field=nope", 400, `unknown field "nope" in field`},
		{"/api/v2/builds?limit=x", 400, `limit must be a non-negative integer, not "x"`},
		{"/api/v2/builds?offset=-1", 400, ""},
		{"/api/v2/builds?nope=1", 400, `unknown field "nope" in filter "nope"`},
		{"/api/v2/builds?results__like=1", 400, ""},
		{"/api/v2/builds?results=abc", 400, ""},
		{"/api/v2/builds?complete=maybe", 400, ""},
		{"/api/v2/builds?results__lt=1&results__lt=2", 400, ""},
		{"/api/v2/builders?tags=unit", 400, ""},
		{"/api/v2/builds?properties=x", 400, ""},
		{"/api/v2/builds/1?field=nope", 400, ""},
		{fmt.Sprintf("/api/v2/logs/%d/contents?offset=x", f.stdio.ID), 400, ""},
		{fmt.Sprintf("/api/v2/logs/%d/contents?limit=-2", f.stdio.ID), 400, ""},
	}
	for _, tt := range tests {
		status, body := f.get(t, tt.path)
		msg, ok := body["error"].(string)
		if status != tt.status || !ok || tt.msg != "" && msg != tt.msg {
			t.Errorf("GET %s: %d %v, want %d %q", tt.path, status, body, tt.status, tt.msg)
		}
	}
}

func TestLogContents(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	lines := splitLines(f.stdioStored)
	base := fmt.Sprintf("/api/v2/logs/%d/contents", f.stdio.ID)
	tests := []struct {
		query     string
		firstline int
		content   string
	}{
		{"", 0, f.stdioStored},
		{"?offset=0&limit=1", 0, lines[0]},
		{"?offset=3&limit=2", 3, lines[3] + lines[4]},
		{"?offset=11", 11, lines[11] + lines[12] + lines[13]},
		{"?offset=12&limit=100", 12, lines[12] + lines[13]},
		{"?offset=14", 14, ""},
		{"?offset=500&limit=3", 500, ""},
		{"?limit=0", 0, ""},
	}
	for _, tt := range tests {
		status, body := f.get(t, base+tt.query)
		want := map[string]any{
			"logchunks": []any{map[string]any{"logid": float64(f.stdio.ID), "firstline": float64(tt.firstline), "content": tt.content}},
			"meta":      map[string]any{},
		}
		if diff := cmp.Diff(want, body); status != 200 || diff != "" {
			t.Errorf("GET %s: status %d (-want +got):\n%s", base+tt.query, status, diff)
		}
	}
}

func splitLines(s string) []string {
	var out []string
	for s != "" {
		l := lineEnd(s)
		out = append(out, l)
		s = s[len(l):]
	}
	return out
}

func TestLogRaw(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	tests := []struct {
		path, body, filename string
	}{
		{fmt.Sprintf("/api/v2/logs/%d/raw", f.stdio.ID), f.stdioRaw, "runtests_build_1_step_test_log_stdio"},
		{"/api/v2/builders/runtests/builds/1/steps/test/logs/stdio/raw", f.stdioRaw, "runtests_build_1_step_test_log_stdio"},
		{fmt.Sprintf("/api/v2/steps/%d/logs/summary/raw", f.testStep.ID), "one\ntwo", "runtests_build_1_step_test_log_summary"},
	}
	for _, tt := range tests {
		resp := must(http.Get(f.srv.URL + tt.path))(t)
		body := string(must(io.ReadAll(resp.Body))(t))
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", tt.path, resp.StatusCode, body)
		}
		if diff := cmp.Diff(tt.body, body); diff != "" {
			t.Errorf("GET %s body (-want +got):\n%s", tt.path, diff)
		}
		if got, want := resp.Header.Get("Content-Disposition"), "attachment; filename="+tt.filename; got != want {
			t.Errorf("GET %s: Content-Disposition %q, want %q", tt.path, got, want)
		}
		if got := resp.Header.Get("Content-Type"); got != "text/plain; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", tt.path, got)
		}
	}
}

// post sends body to path with the given Content-Type and decodes the JSON
// reply.
func (f *fixture) post(t *testing.T, path, ctype, body string) (int, map[string]any) {
	t.Helper()
	req := must(http.NewRequest("POST", f.srv.URL+path, strings.NewReader(body)))(t)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp := must(http.DefaultClient.Do(req))(t)
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("POST %s: status %d, body not JSON: %v", path, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

func TestForceRPC(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	for _, ctype := range []string{"application/json", "application/json; charset=utf-8"} {
		status, body := f.post(t, "/api/v2/forceschedulers/force-runtests", ctype,
			`{"jsonrpc":"2.0","method":"force","id":1,"params":{"reason":"api sample","owner":"sampler <s@localhost>","branch":"dev","revision":"abc","sleep_s":"60","builderid":`+fmt.Sprint(f.runtests.ID)+`}}`)
		if status != 200 {
			t.Fatalf("force with %q: %d %v", ctype, status, body)
		}
		if diff := cmp.Diff([]string{"id", "jsonrpc", "result"}, keys(body)); diff != "" {
			t.Errorf("reply keys:\n%s", diff)
		}
		res := body["result"].([]any)
		bsid := int64(res[0].(float64))
		brids := res[1].(map[string]any)
		brid := int64(brids[fmt.Sprint(f.runtests.ID)].(float64))
		if len(brids) != 1 || body["id"] != float64(1) || body["jsonrpc"] != "2.0" {
			t.Errorf("reply %v", body)
		}
		bs := must(f.db.Buildset(bsid))(t)
		if bs.Reason != "api sample" || len(bs.SourceStamps) != 1 || bs.SourceStamps[0].Branch != "dev" || bs.SourceStamps[0].Revision != "abc" {
			t.Errorf("buildset %+v", bs)
		}
		if got := string(bs.Properties["owner"].Value); got != `"sampler <s@localhost>"` {
			t.Errorf("owner property %s", got)
		}
		if got := string(bs.Properties["sleep_s"].Value); got != `"60"` {
			t.Errorf("sleep_s property %s", got)
		}
		br := must(f.db.BuildRequest(brid))(t)
		if br.BuildsetID != bsid || br.BuilderID != f.runtests.ID || br.Complete {
			t.Errorf("buildrequest %+v", br)
		}
	}

	// Another site's page cannot make a browser force a build: what it
	// may send without a preflight (a form's types, text/plain) is
	// refused, saying what to send; a browser that says the page is
	// another site's is refused whatever it sends.
	for _, ctype := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		status, body := f.post(t, "/api/v2/forceschedulers/force-runtests", ctype, `{"jsonrpc":"2.0","method":"force","id":1,"params":{}}`)
		if e, _ := body["error"].(map[string]any); status != http.StatusUnsupportedMediaType || e == nil || !strings.Contains(fmt.Sprint(e["message"]), "-H 'Content-Type: application/json'") {
			t.Errorf("force sent as %q: %d %v, want 415 saying what to send", ctype, status, body)
		}
	}
	req := must(http.NewRequest("POST", f.srv.URL+"/api/v2/forceschedulers/force-runtests",
		strings.NewReader(`{"jsonrpc":"2.0","method":"force","id":1,"params":{}}`)))(t)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp := must(http.DefaultClient.Do(req))(t)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("force from another site: %d", resp.StatusCode)
	}

	// Without builderid, every builder of the scheduler.
	status, body := f.post(t, "/api/v2/forceschedulers/force-all", "application/json", `{"jsonrpc":"2.0","method":"force","id":"x","params":{}}`)
	if status != 200 || body["id"] != "x" || len(body["result"].([]any)[1].(map[string]any)) != 2 {
		t.Errorf("force-all: %d %v", status, body)
	}
}

func TestForceRPCErrors(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	tests := []struct {
		name, path, ctype, body string
		status, code            int
		id                      any
	}{
		{"parse error", "force-runtests", "application/json", `{"jsonrpc":`, 400, -32700, nil},
		{"not an object", "force-runtests", "application/json", `[1]`, 400, -32600, nil},
		{"old jsonrpc", "force-runtests", "application/json", `{"jsonrpc":"1.0","method":"force","id":2,"params":{}}`, 400, -32600, float64(2)},
		{"no params", "force-runtests", "application/json", `{"jsonrpc":"2.0","method":"force","id":2}`, 400, -32600, float64(2)},
		{"unknown method", "force-runtests", "application/json", `{"jsonrpc":"2.0","method":"stop","id":3,"params":{}}`, 400, -32601, float64(3)},
		{"bad builderid", "force-runtests", "application/json", `{"jsonrpc":"2.0","method":"force","id":4,"params":{"builderid":"x"}}`, 400, -32602, float64(4)},
		{"bad reason", "force-runtests", "application/json", `{"jsonrpc":"2.0","method":"force","id":5,"params":{"reason":5}}`, 400, -32602, float64(5)},
		{"param error", "force-runtests", "application/json", `{"jsonrpc":"2.0","method":"force","id":6,"params":{"reason":"forbidden"}}`, 400, -32602, float64(6)},
		{"other builder", "force-runtests", "application/json", fmt.Sprintf(`{"jsonrpc":"2.0","method":"force","id":7,"params":{"builderid":%d}}`, f.noop.ID), 400, -32602, float64(7)},
		{"unknown scheduler", "nope", "application/json", `{"jsonrpc":"2.0","method":"force","id":8,"params":{}}`, 404, -32600, float64(8)},
		{"bad content type", "force-runtests", "text/xml", `{"jsonrpc":"2.0","method":"force","id":9,"params":{}}`, 415, -32600, nil},
		{"trailing data", "force-runtests", "application/json", `{"jsonrpc":"2.0","method":"force","id":9,"params":{}} x`, 400, -32700, nil},
		{"two calls", "force-runtests", "application/json", `{"jsonrpc":"2.0","method":"force","id":9,"params":{}}{}`, 400, -32700, nil},
		{"too large", "force-runtests", "application/json", `{"jsonrpc":"2.0","method":"force","id":10,"params":{"x":"` + strings.Repeat("a", api.MaxRPCBody) + `"}}`, 413, -32600, nil},
	}
	for _, tt := range tests {
		status, body := f.post(t, "/api/v2/forceschedulers/"+tt.path, tt.ctype, tt.body)
		e, _ := body["error"].(map[string]any)
		if status != tt.status || e == nil || e["code"] != float64(tt.code) || e["message"] == "" || body["jsonrpc"] != "2.0" || body["id"] != tt.id {
			t.Errorf("%s: %d %v, want %d code %d id %v", tt.name, status, body, tt.status, tt.code, tt.id)
		}
	}
	bss := must(f.db.Buildsets(nil))(t)
	if len(bss) != 4 {
		t.Errorf("%d buildsets after failed forces, want the fixture's 4", len(bss))
	}
}

func TestServe(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	s := New(Config{Store: f.db})
	lis := must(net.Listen("tcp", "127.0.0.1:0"))(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	resp := must(http.Get("http://" + lis.Addr().String() + "/api/v2/builders"))(t)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
	resp = must(http.Head("http://" + lis.Addr().String() + "/api/v2/builders"))(t)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("HEAD: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := http.Get("http://" + lis.Addr().String() + "/"); err == nil {
		t.Error("server still answers after Serve returned")
	}
}

func storeFilter(bsid int64) store.BuildRequestFilter {
	return store.BuildRequestFilter{BuildsetID: bsid}
}

// The real store and scheduler are what the server is made for.
var (
	_ Store  = (*store.DB)(nil)
	_ Forcer = (*scheduler.Set)(nil)
)
