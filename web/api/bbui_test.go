package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/scheduler"
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

