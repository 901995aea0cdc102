package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/auth"
)

// uiFixture is the API over a real store and real schedulers, every POST
// through Authorize as the server's guard calls it: what buildbot's UI
// talks to.
type uiFixture struct {
	*fixture
	scheds *scheduler.Set
	access auth.Access
}

func newUIFixture(t *testing.T, access auth.Access) *uiFixture {
	t.Helper()
	f := newTestServer(t)
	f.srv.Close()
	u := &uiFixture{fixture: f, access: access}
	u.scheds = scheduler.New([]config.Scheduler{
		{Type: "single_branch", Name: "all", BuilderNames: []string{"runtests"}, Branch: "main"},
		{Type: "force", Name: "force", BuilderNames: []string{"runtests"}},
	}, f.db, nil, nil)
	var s *Server
	guard := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r, refused := s.Authorize(w, r)
			if refused != nil {
				refused.Write(w)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	s = New(Config{
		Store: f.db, MasterID: f.master.ID, Forcer: u.scheds,
		Schedulers: func() []SchedulerInfo {
			return []SchedulerInfo{
				{ID: 1, Name: "all", Enabled: u.scheds.Enabled("all")},
				{ID: 2, Name: "force", Enabled: u.scheds.Enabled("force")},
			}
		},
		EnableScheduler: u.scheds.SetEnabled,
		Access:          func() auth.Access { return u.access },
		Guard:           guard,
	})
	r := chi.NewRouter()
	r.Route("/api/v2", s.Routes)
	f.srv = httptest.NewServer(r)
	t.Cleanup(f.srv.Close)
	return u
}

// post sends a JSON-RPC call to path and returns its status and body.
func (f *fixture) post(t *testing.T, path, body string) (int, map[string]any) {
	t.Helper()
	resp := must(http.Post(f.srv.URL+path, "application/json", strings.NewReader(body)))(t)
	defer resp.Body.Close()
	b := must(io.ReadAll(resp.Body))(t)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("POST %s: status %d, body not JSON: %q", path, resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

// first is the first object of a collection reply.
func first(t *testing.T, body map[string]any, plural string) map[string]any {
	t.Helper()
	objs, _ := body[plural].([]any)
	if len(objs) == 0 {
		t.Fatalf("no %s in %v", plural, body)
	}
	return objs[0].(map[string]any)
}

// Buildbot's scheduler control: POST /schedulers/N {"method": "enable"},
// which the flag then means (the force scheduler refuses), and which the
// [www.authz] rules govern as the action "enable".
func TestSchedulerEnable(t *testing.T) {
	t.Parallel()
	u := newUIFixture(t, auth.Access{})
	const off = `{"jsonrpc":"2.0","method":"enable","id":1,"params":{"enabled":false}}`
	status, body := u.post(t, "/api/v2/schedulers/2", off)
	if status != http.StatusOK || body["result"] != nil || body["error"] != nil {
		t.Fatalf("enable false: %d %v", status, body)
	}
	if _, body := u.get(t, "/api/v2/schedulers/2"); first(t, body, "schedulers")["enabled"] != false {
		t.Errorf("scheduler 2 after disabling: %v", body)
	}
	if _, body := u.get(t, "/api/v2/forceschedulers/force"); first(t, body, "forceschedulers")["enabled"] != false {
		t.Errorf("forcescheduler after disabling: %v", body)
	}
	status, body = u.post(t, "/api/v2/forceschedulers/force", `{"jsonrpc":"2.0","method":"force","id":2,"params":{"builderid":`+jsonInt(u.runtests.ID)+`}}`)
	if status != http.StatusConflict {
		t.Errorf("force of a disabled scheduler: %d %v, want 409", status, body)
	}
	if _, body := u.get(t, "/api/v2/schedulers/1"); first(t, body, "schedulers")["enabled"] != true {
		t.Errorf("the other scheduler: %v", body)
	}
	status, _ = u.post(t, "/api/v2/schedulers/2", `{"jsonrpc":"2.0","method":"enable","id":3,"params":{"enabled":true}}`)
	if status != http.StatusOK || !u.scheds.Enabled("force") {
		t.Errorf("enable true: %d, enabled %v", status, u.scheds.Enabled("force"))
	}
	for _, tc := range []struct {
		path, body string
		status     int
	}{
		{"/api/v2/schedulers/2", `{"jsonrpc":"2.0","method":"enable","id":4,"params":{}}`, http.StatusBadRequest},
		{"/api/v2/schedulers/2", `{"jsonrpc":"2.0","method":"enable","id":4,"params":{"enabled":"no"}}`, http.StatusBadRequest},
		{"/api/v2/schedulers/2", `{"jsonrpc":"2.0","method":"enable","id":4,"params":{"enabled":null}}`, http.StatusBadRequest},
		{"/api/v2/schedulers/2", `{"jsonrpc":"2.0","method":"explode","id":4,"params":{}}`, http.StatusBadRequest},
		{"/api/v2/schedulers/99", off, http.StatusNotFound},
	} {
		if status, body := u.post(t, tc.path, tc.body); status != tc.status || body["error"] == nil {
			t.Errorf("POST %s %s: %d %v, want %d and an error", tc.path, tc.body, status, body, tc.status)
		}
	}
	if !u.scheds.Enabled("force") {
		t.Error("a refused call disabled the scheduler")
	}
}

// With [www.auth], "enable" is an action of the rules: anonymous callers
// are refused, and the scheduler stays as it was.
func TestSchedulerEnableAuthz(t *testing.T) {
	t.Parallel()
	users := auth.New(config.Auth{Type: "users", Users: []config.User{{Username: "admin", PasswordHash: "$2a$04$abcdefghijklmnopqrstuu"}}})
	u := newUIFixture(t, auth.Access{Users: users, Rules: config.Authz{Rules: []config.Rule{{Actions: []string{"enable"}, Roles: []string{"admins"}}}}})
	status, body := u.post(t, "/api/v2/schedulers/1", `{"jsonrpc":"2.0","method":"enable","id":1,"params":{"enabled":false}}`)
	if status != http.StatusForbidden {
		t.Errorf("anonymous enable: %d %v, want 403", status, body)
	}
	if !u.scheds.Enabled("all") {
		t.Error("a refused call disabled the scheduler")
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// addBuildFor makes the scheduler "all" build change c, and starts the
// build of its request; it returns the buildset and the build.
func (u *uiFixture) addBuildFor(t *testing.T, c store.Change) (store.Buildset, store.Build) {
	t.Helper()
	before := must(u.db.Buildsets(nil))(t)
	u.scheds.AddChanges([]store.Change{c})
	after := must(u.db.Buildsets(nil))(t)
	if len(after) != len(before)+1 {
		t.Fatalf("change %d made %d buildsets", c.ID, len(after)-len(before))
	}
	bs := after[len(after)-1]
	brs := must(u.db.BuildRequests(store.BuildRequestFilter{BuildsetID: bs.ID}))(t)
	check(t, u.db.ClaimBuildRequest(brs[0].ID, u.master.ID, t0))
	b := must(u.db.AddBuild(store.NewBuild{BuilderID: brs[0].BuilderID, BuildRequestID: brs[0].ID, WorkerID: u.worker.ID, MasterID: u.master.ID}))(t)
	return bs, b
}

// ids are the values of field in a collection reply.
func ids(t *testing.T, body map[string]any, plural, field string) []int64 {
	t.Helper()
	objs, ok := body[plural].([]any)
	if !ok {
		t.Fatalf("no %s in %v", plural, body)
	}
	out := []int64{}
	for _, o := range objs {
		out = append(out, int64(o.(map[string]any)[field].(float64)))
	}
	return out
}

// What buildbot's console and grid views and its change page read: a
// change and the buildset built for it name one sourcestamp, and
// /changes/N/builds lists the builds of that sourcestamp's buildsets.
func TestChangeBuilds(t *testing.T) {
	t.Parallel()
	u := newUIFixture(t, auth.Access{})
	c1 := must(u.db.AddChange(store.Change{Branch: "main", Revision: "aaa", Repository: "https://example.org/r.git"}))(t)
	c2 := must(u.db.AddChange(store.Change{Branch: "main", Revision: "bbb", Repository: "https://example.org/r.git"}))(t)
	bs1, b1 := u.addBuildFor(t, c1)
	_, b2 := u.addBuildFor(t, c2)

	_, body := u.get(t, fmt.Sprintf("/api/v2/changes/%d", c1.ID))
	changeSS := first(t, body, "changes")["sourcestamp"].(map[string]any)["ssid"]
	_, body = u.get(t, fmt.Sprintf("/api/v2/buildsets/%d", bs1.ID))
	bsSS := first(t, body, "buildsets")["sourcestamps"].([]any)[0].(map[string]any)["ssid"]
	if changeSS != bsSS {
		t.Errorf("change %d has sourcestamp %v, its buildset %v: want one", c1.ID, changeSS, bsSS)
	}

	for _, tc := range []struct {
		path string
		want []int64
	}{
		{fmt.Sprintf("/api/v2/changes/%d/builds", c1.ID), []int64{b1.ID}},
		{fmt.Sprintf("/api/v2/changes/%d/builds", c2.ID), []int64{b2.ID}},
		{fmt.Sprintf("/api/v2/changes/%d/builds?order=-buildid&field=buildid", c1.ID), []int64{b1.ID}},
	} {
		status, body := u.get(t, tc.path)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d %v", tc.path, status, body)
		}
		if diff := cmp.Diff(tc.want, ids(t, body, "builds", "buildid")); diff != "" {
			t.Errorf("GET %s (-want +got):\n%s", tc.path, diff)
		}
	}
	if status, _ := u.get(t, "/api/v2/changes/999/builds"); status != http.StatusNotFound {
		t.Errorf("builds of no change: %d, want 404", status)
	}

	status, body := u.get(t, fmt.Sprintf("/api/v2/buildsets/%d/properties", bs1.ID))
	want := map[string]any{"properties": []any{map[string]any{"scheduler": []any{"all", "Scheduler"}}}, "meta": map[string]any{}}
	if diff := cmp.Diff(want, body); status != http.StatusOK || diff != "" {
		t.Errorf("buildset properties: %d (-want +got):\n%s", status, diff)
	}
	if status, _ := u.get(t, "/api/v2/buildsets/999/properties"); status != http.StatusNotFound {
		t.Errorf("properties of no buildset: %d, want 404", status)
	}
}

// /application.spec describes every GET route of the data API, with its
// resource type, as buildbot's allEndpoints; only the downloads of a log
// (no resource) are left out.
func TestApplicationSpec(t *testing.T) {
	t.Parallel()
	u := newUIFixture(t, auth.Access{})
	status, body := u.get(t, "/api/v2/application.spec")
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	specs := map[string]map[string]any{}
	for _, o := range body["specs"].([]any) {
		o := o.(map[string]any)
		specs[o["path"].(string)] = o
	}
	if body["meta"].(map[string]any)["total"] != float64(len(specs)) {
		t.Errorf("meta %v, %d specs", body["meta"], len(specs))
	}
	// Every GET route of the API is there, but the raw logs.
	r := chi.NewRouter()
	New(Config{Store: u.db, Access: func() auth.Access { return auth.Access{} }, Guard: func(h http.Handler) http.Handler { return h }}).Routes(r)
	n := 0
	check(t, chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if method != http.MethodGet {
			return nil
		}
		for _, p := range specPaths(route) {
			if _, ok := specs[p]; !ok && !strings.HasSuffix(p, "/raw") && !strings.HasSuffix(p, "/raw_inline") {
				t.Errorf("GET %s is not in the spec as %s", route, p)
			}
		}
		n++
		return nil
	}))
	if n < 40 {
		t.Errorf("only %d GET routes walked", n)
	}
	for path, want := range map[string][2]string{
		"builders":                      {"builders", "builder"},
		"builders/n:builderid":          {"builders", "builder"},
		"builders/i:buildername":        {"builders", "builder"},
		"builders/n:builderid/builds":   {"builds", "build"},
		"builders/i:buildername/builds": {"builds", "build"},
		"builders/i:buildername/builds/n:build_number/steps/i:step_name/logs/i:log_slug": {"logs", "log"},
		"workers/i:name":                            {"workers", "worker"},
		"workers/n:workerid":                        {"workers", "worker"},
		"changes/n:changeid/builds":                 {"builds", "build"},
		"buildsets/n:bsid/properties":               {"properties", "property"},
		"logs/n:logid/contents":                     {"logchunks", "logchunk"},
		"application.spec":                          {"specs", "spec"},
		"schedulers/n:schedulerid":                  {"schedulers", "scheduler"},
		"forceschedulers/i:schedulername":           {"forceschedulers", "forcescheduler"},
		"buildrequests/n:brid/builds":               {"builds", "build"},
		"sourcestamps/n:ssid/changes":               {"changes", "change"},
		"builds/n:buildid/steps":                    {"steps", "step"},
		"builds/n:buildid/steps/i:step_name/logs":   {"logs", "log"},
		"builds/n:buildid/steps/n:step_number/logs": {"logs", "log"},
	} {
		s, ok := specs[path]
		if !ok {
			t.Errorf("no spec of %s", path)
			continue
		}
		if s["plural"] != want[0] || s["type"] != want[1] {
			t.Errorf("spec of %s: plural %v type %v, want %v", path, s["plural"], s["type"], want)
		}
	}
	ts := specs["builders"]["type_spec"].(map[string]any)
	if !slices.ContainsFunc(ts["fields"].([]any), func(f any) bool {
		m := f.(map[string]any)
		return m["name"] == "builderid" && m["type"] == "integer"
	}) {
		t.Errorf("builders' type_spec has no integer builderid: %v", ts)
	}
}

// The fields and endpoints of buildbot 4 that its UI reads: builders'
// projectid and description formats, /projects, buildsets'
// rebuilt_buildid (a field and a filter), /workers/N/builders,
// /logs/N/raw_inline, builds' locks_duration_s, steps' locks_acquired_at,
// workers' pause_reason, force fields' tooltip.
func TestBuildbot4Fields(t *testing.T) {
	t.Parallel()
	u := newUIFixture(t, auth.Access{})
	_, body := u.get(t, "/api/v2/builders")
	b := first(t, body, "builders")
	for _, k := range []string{"projectid", "description_format", "description_html"} {
		if v, ok := b[k]; !ok || v != nil {
			t.Errorf("builders[0].%s = %v (present %v), want null", k, v, ok)
		}
	}
	status, body := u.get(t, "/api/v2/projects")
	if diff := cmp.Diff(map[string]any{"projects": []any{}, "meta": map[string]any{"total": 0.0}}, body); status != 200 || diff != "" {
		t.Errorf("projects: %d (-want +got):\n%s", status, diff)
	}
	if status, _ := u.get(t, "/api/v2/projects/1"); status != http.StatusNotFound {
		t.Errorf("project 1: %d, want 404", status)
	}

	// A build, its step and its log; then its rebuild's buildset.
	brs := must(u.db.BuildRequests(store.BuildRequestFilter{}))(t)
	bld := must(u.db.AddBuild(store.NewBuild{BuilderID: brs[0].BuilderID, BuildRequestID: brs[0].ID, WorkerID: u.worker.ID, MasterID: u.master.ID}))(t)
	st := must(u.db.StartNewStep(bld.ID, "compile", t0))(t)
	lg := must(u.db.AddLog(st.ID, "html", "h"))(t)
	must(u.db.AppendLog(lg.ID, "<script>alert(1)</script>\n"))(t)
	rebuilt, _ := must2(u.db.AddBuildset(store.NewBuildset{Reason: "rebuild", BuilderIDs: []int64{u.runtests.ID}, RebuiltBuildID: bld.ID}))(t)

	_, body = u.get(t, fmt.Sprintf("/api/v2/buildsets?rebuilt_buildid=%d", bld.ID))
	if diff := cmp.Diff([]int64{rebuilt}, ids(t, body, "buildsets", "bsid")); diff != "" {
		t.Errorf("buildsets rebuilding build %d (-want +got):\n%s", bld.ID, diff)
	}
	_, body = u.get(t, fmt.Sprintf("/api/v2/buildsets/%d", rebuilt))
	if got := first(t, body, "buildsets")["rebuilt_buildid"]; got != float64(bld.ID) {
		t.Errorf("rebuilt_buildid %v, want %d", got, bld.ID)
	}
	_, body = u.get(t, "/api/v2/buildsets/1")
	if v, ok := first(t, body, "buildsets")["rebuilt_buildid"]; !ok || v != nil {
		t.Errorf("rebuilt_buildid of a buildset no rebuild made: %v (present %v), want null", v, ok)
	}
	_, body = u.get(t, fmt.Sprintf("/api/v2/builds/%d", bld.ID))
	if got := first(t, body, "builds")["locks_duration_s"]; got != 0.0 {
		t.Errorf("locks_duration_s %v", got)
	}
	_, body = u.get(t, fmt.Sprintf("/api/v2/steps/%d", st.ID))
	if got := first(t, body, "steps")["locks_acquired_at"]; got != float64(t0.Unix()) {
		t.Errorf("locks_acquired_at %v, want %d", got, t0.Unix())
	}
	_, body = u.get(t, fmt.Sprintf("/api/v2/workers/%d", u.worker.ID))
	if v, ok := first(t, body, "workers")["pause_reason"]; !ok || v != nil {
		t.Errorf("pause_reason %v (present %v)", v, ok)
	}
	_, body = u.get(t, "/api/v2/forceschedulers/force")
	for _, f := range first(t, body, "forceschedulers")["all_fields"].([]any) {
		if tt, ok := f.(map[string]any)["tooltip"]; !ok || tt != "" {
			t.Errorf("force field %v: tooltip %v", f, tt)
		}
	}

	check(t, u.db.SetWorkerConfiguredOn(u.worker.ID, []store.BuilderMaster{{BuilderID: u.noop.ID, MasterID: u.master.ID}, {BuilderID: u.runtests.ID, MasterID: u.master.ID}}))
	_, body = u.get(t, fmt.Sprintf("/api/v2/workers/%d/builders?order=builderid", u.worker.ID))
	if diff := cmp.Diff([]int64{u.runtests.ID, u.noop.ID}, ids(t, body, "builders", "builderid")); diff != "" {
		t.Errorf("worker's builders (-want +got):\n%s", diff)
	}
	if status, _ := u.get(t, "/api/v2/workers/nosuch/builders"); status != http.StatusNotFound {
		t.Errorf("builders of no worker: %d", status)
	}

	resp := must(http.Get(u.srv.URL + fmt.Sprintf("/api/v2/logs/%d/raw_inline", lg.ID)))(t)
	text := must(io.ReadAll(resp.Body))(t)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Disposition") != "" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") ||
		string(text) != "<script>alert(1)</script>" {
		t.Errorf("raw_inline: %s %v %q", resp.Status, resp.Header, text)
	}
	resp = must(http.Get(u.srv.URL + fmt.Sprintf("/api/v2/logs/%d/raw", lg.ID)))(t)
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Errorf("raw is no longer a download: %v", resp.Header)
	}
}
