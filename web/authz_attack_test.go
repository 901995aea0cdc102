package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/pkg/build"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/api"
	"github.com/gbb-ci/gbb/web/auth"
)

// The probe of issue 13 (item 1): the authorization check parsed the body
// its own way, ignored its parse error and allowed a call in which it
// found no action, while the handler read the first JSON value only. A
// refused call followed by " x" was then done. These tests send that
// attack for every control method, as an anonymous user and as users
// logged in (basic auth, and a session with its CSRF token) without the
// role.

// attackers are the users of testAuthz who may do none of the calls of
// TestTrailingDataRefused: anonymous, bob (devs) by basic auth and by a
// session.
func attackers(t *testing.T, f *authFixture) map[string][]string {
	t.Helper()
	sess := f.login(t, "bob", "pw-bob")
	// The session's token, as its pages carry it (TestLoginSessionCSRF).
	token := f.s.acc().auth.Session(sess.Value).CSRF
	return map[string][]string{
		"anonymous":    {""},
		"bob":          {"bob"},
		"bob's cookie": {"cookie=" + sess.Value, auth.CSRFHeader, token},
	}
}

func (f *authFixture) calls() []string {
	f.ctl.mu.Lock()
	defer f.ctl.mu.Unlock()
	return append([]string(nil), f.ctl.calls...)
}

func TestTrailingDataRefused(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	build := fmt.Sprintf("/api/v2/builds/%d", f.running.ID)
	byNumber := fmt.Sprintf("/api/v2/builders/runtests/builds/%d", f.running.Number)
	request := fmt.Sprintf("/api/v2/buildrequests/%d", f.brid)
	worker := fmt.Sprintf("/api/v2/workers/%d", f.worker.ID)
	calls := []struct{ path, method string }{
		{build, "stop"}, {build, "rebuild"}, {byNumber, "stop"}, {byNumber, "rebuild"},
		{request, "cancel"},
		{worker, "pause"}, {worker, "unpause"}, {worker, "kill"}, {worker, "stop"}, {worker, "graceful"},
		{"/api/v2/forceschedulers/force-all", "force"}, // noop is for admins only
	}
	tails := []string{" x", "x", "\n{}", " ]", `{"jsonrpc":"2.0","method":"stop","id":2,"params":{}}`, " null", "\x00"}
	before := len(must(f.db.Buildsets(nil))(t))
	for who, args := range attackers(t, f) {
		for _, c := range calls {
			body := rpcBody(c.method, `{"reason":"x"}`)
			// The call alone is refused 403 ...
			resp, reply := f.do(t, args[0], "POST", c.path, "application/json", body, args[1:]...)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: %s %s: %d %s, want 403", who, c.method, c.path, resp.StatusCode, reply)
			}
			// ... and with anything after it, 400 with a reason.
			for _, tail := range tails {
				resp, reply := f.do(t, args[0], "POST", c.path, "application/json", body+tail, args[1:]...)
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(reply, "after the JSON-RPC call") {
					t.Errorf("%s: %s %s + %q: %d %s, want 400 naming the trailing data", who, c.method, c.path, tail, resp.StatusCode, reply)
				}
			}
		}
	}
	if got := f.calls(); len(got) > 0 {
		t.Errorf("refused calls reached the controller: %q", got)
	}
	if after := len(must(f.db.Buildsets(nil))(t)); after != before {
		t.Errorf("refused forces added %d buildsets", after-before)
	}
	// root may do them all, but not with trailing data either.
	resp, reply := f.do(t, "root", "POST", build, "application/json", rpcBody("stop", `{"reason":"x"}`)+" x")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("root's stop with trailing data: %d %s, want 400", resp.StatusCode, reply)
	}
	if got := f.calls(); len(got) > 0 {
		t.Errorf("a call with trailing data reached the controller: %q", got)
	}
}

// TestOwnerNotSpoofed: a logged-in user's force is theirs, whatever
// params.username or params.owner say, and with data after the call too
// (the check used to give up rewriting the owner of a body it could not
// parse, and the handler then took params.username).
func TestOwnerNotSpoofed(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	who := attackers(t, f)
	for name, args := range map[string][]string{"bob": who["bob"], "bob's cookie": who["bob's cookie"], "token": {"token"}} {
		for _, tail := range []string{"", " x", "\n{}"} {
			before := must(f.db.Buildsets(nil))(t)
			body := rpcBody("force", `{"username":"alice","owner":"alice","reason":"spoof"}`) + tail
			resp, reply := f.do(t, args[0], "POST", "/api/v2/forceschedulers/force-runtests", "application/json", body, args[1:]...)
			after := must(f.db.Buildsets(nil))(t)
			want := map[string]string{"bob's cookie": "bob", "bob": "bob", "token": "bot"}[name]
			if len(after) > len(before) {
				if got := api.PropString(after[len(after)-1].Properties, "owner"); got != want {
					t.Errorf("%s: force with %q after it recorded as %q's, want %q's", name, tail, got, want)
				}
			}
			if tail != "" {
				if resp.StatusCode != http.StatusBadRequest || len(after) != len(before) {
					t.Errorf("%s: force with %q after it: %d %s and %d new buildsets, want 400 and none", name, tail, resp.StatusCode, reply, len(after)-len(before))
				}
				continue
			}
			if resp.StatusCode != http.StatusOK || len(after) != len(before)+1 {
				t.Fatalf("%s: force: %d %s", name, resp.StatusCode, reply)
			}
		}
	}
	// bob owns nothing of alice's: his spoofed force gave him no owner
	// role on her running build.
	if resp, reply := f.do(t, "bob", "POST", fmt.Sprintf("/api/v2/builds/%d", f.running.ID), "application/json", rpcBody("stop", `{"username":"alice"}`)); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob stops alice's build: %d %s", resp.StatusCode, reply)
	}
	// The form's username is overridden too.
	resp, reply := f.do(t, who["bob's cookie"][0], "POST", fmt.Sprintf("/builders/%d/force/force-runtests", f.runtests.ID), "application/x-www-form-urlencoded",
		url.Values{auth.CSRFField: {who["bob's cookie"][2]}, "username": {"alice"}, "reason": {"form spoof"}}.Encode())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("bob's force form: %d %s", resp.StatusCode, reply)
	}
	for _, bs := range must(f.db.Buildsets(nil))(t) {
		if bs.Reason == "form spoof" {
			if got := api.PropString(bs.Properties, "owner"); got != "bob" {
				t.Errorf("owner of the form's buildset = %q, want bob", got)
			}
		}
	}
	if got := f.calls(); len(got) > 0 {
		t.Errorf("controller calls: %q", got)
	}
}

// TestEveryPostRoute: every POST route of the router has its entry in
// postRoutes and goes through the one guard, sameOrigin; and each control
// route, called by a user without the role (anonymous, by basic auth, by
// a session with its token; with the call alone and with data after it),
// is refused and changes nothing, while the same call by root is done. A
// POST route added later fails this test until it is listed here.
func TestEveryPostRoute(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, config.Authz{Rules: []config.Rule{{Actions: []string{"*"}, Roles: []string{"admins"}}}})
	rt, w := f.runtests.ID, f.worker.ID
	// samples gives paths of each POST route pattern.
	samples := map[string][]string{
		"/login":                                      nil,
		"/logout":                                     nil,
		"/change_hook/{dialect}":                      nil, // checks its own secrets (pkg/changesource/hooks)
		"/change_hook":                                nil, // and /change_hook/: the base dialect
		"/api/v2/forceschedulers/{scheduler}":         {"/api/v2/forceschedulers/force-runtests"},
		"/api/v2/schedulers/{schedulerid}":            {"/api/v2/schedulers/1"},
		"/api/v2/builds/{buildid}":                    {fmt.Sprintf("/api/v2/builds/%d", f.running.ID)},
		"/api/v2/builders/{builder}/builds/{number}":  {fmt.Sprintf("/api/v2/builders/%d/builds/%d", rt, f.running.Number)},
		"/api/v2/buildrequests/{brid}":                {fmt.Sprintf("/api/v2/buildrequests/%d", f.brid)},
		"/api/v2/workers/{worker}":                    {fmt.Sprintf("/api/v2/workers/%d", w), "/api/v2/workers/bench-worker"},
		"/force/{scheduler}":                          {"/force/force-runtests"},
		"/builders/{builder}/force/{scheduler}":       {fmt.Sprintf("/builders/%d/force/force-runtests", rt)},
		"/builders/{builder}/builds/{number}/stop":    {fmt.Sprintf("/builders/%d/builds/%d/stop", rt, f.running.Number)},
		"/builders/{builder}/builds/{number}/rebuild": {fmt.Sprintf("/builders/runtests/builds/%d/rebuild", f.ok.Number)},
		"/buildrequests/{brid}/cancel":                {fmt.Sprintf("/buildrequests/%d/cancel", f.brid)},
		"/workers/{worker}/{action}":                  {fmt.Sprintf("/workers/%d/pause", w), fmt.Sprintf("/workers/%d/unpause", w), fmt.Sprintf("/workers/%d/graceful", w)},
	}
	postRoutes := api.PostRoutes()
	routed := map[string]bool{}
	err := chi.Walk(f.s.handler.(chi.Routes), func(method, route string, _ http.Handler, mws ...func(http.Handler) http.Handler) error {
		if method == http.MethodGet || method == http.MethodHead {
			return nil
		}
		pattern := route
		if pattern != "/" {
			pattern = strings.TrimSuffix(pattern, "/")
		}
		routed[pattern] = true
		if _, ok := postRoutes[pattern]; !ok {
			t.Errorf("%s %s has no entry in postRoutes (web/api/authz.go): add it, with its kind and action", method, route)
		}
		if _, ok := samples[pattern]; !ok {
			t.Errorf("%s %s has no sample here: add one", method, route)
		}
		guarded := false
		for _, mw := range mws {
			if strings.HasSuffix(runtime.FuncForPC(reflect.ValueOf(mw).Pointer()).Name(), ".(*Server).sameOrigin-fm") {
				guarded = true
			}
		}
		if !guarded {
			t.Errorf("%s %s is not guarded by sameOrigin", method, route)
		}
		return nil
	})
	check(t, err)
	for pattern := range postRoutes {
		if !routed[pattern] {
			t.Errorf("postRoutes has %s, which the router does not route", pattern)
		}
	}

	who := attackers(t, f)
	sessToken := who["bob's cookie"][2]
	buildsets := func() int { return len(must(f.db.Buildsets(nil))(t)) }
	// send posts one call of route to path as args (a who of f.do and its
	// header pairs), with tail after a JSON-RPC call.
	send := func(args []string, rpcMethods []string, path, method, tail string) (*http.Response, string) {
		if rpcMethods != nil {
			params := `{"reason":"x","username":"alice"}`
			if method == "enable" {
				params = `{"enabled":false}`
			}
			return f.do(t, args[0], "POST", path, "application/json", rpcBody(method, params)+tail, args[1:]...)
		}
		tok, hdr := testFormToken, append(args[1:len(args):len(args)], anonCookie...)
		if strings.HasPrefix(args[0], "cookie=") {
			tok, hdr = sessToken, nil
		}
		return f.do(t, args[0], "POST", path, "application/x-www-form-urlencoded",
			url.Values{auth.CSRFField: {tok}, "reason": {"x"}, "username": {"alice"}}.Encode(), hdr...)
	}
	for pattern, paths := range samples {
		route := postRoutes[pattern]
		methods := []string{""}
		if route != nil {
			methods = route
		}
		for _, path := range paths {
			for _, method := range methods {
				for name, args := range who {
					for _, tail := range []string{"", " x"} {
						if tail != "" && route == nil {
							continue
						}
						n := buildsets()
						resp, body := send(args, route, path, method, tail)
						if resp.StatusCode < 400 || resp.StatusCode >= 500 {
							t.Errorf("%s: POST %s %s%q: %d, want refused\n%.300s", name, path, method, tail, resp.StatusCode, body)
						}
						if got := f.calls(); len(got) > 0 || buildsets() != n {
							t.Errorf("%s: POST %s %s%q acted: calls %q, %d new buildsets", name, path, method, tail, got, buildsets()-n)
						}
						f.ctl.mu.Lock()
						f.ctl.calls = nil
						f.ctl.mu.Unlock()
					}
				}
				// root may: the route is a real control, refused above
				// for who asked.
				n := buildsets()
				resp, body := send([]string{"root"}, route, path, method, "")
				if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusSeeOther {
					t.Errorf("root: POST %s %s: %d, want it done\n%.300s", path, method, resp.StatusCode, body)
				}
				if len(f.calls())+buildsets()-n != 1 {
					t.Errorf("root: POST %s %s: calls %q, %d new buildsets, want one action", path, method, f.calls(), buildsets()-n)
				}
				f.ctl.mu.Lock()
				f.ctl.calls = nil
				f.ctl.mu.Unlock()
			}
		}
	}
	// A form action the route does not know is refused before any
	// handler: kill has no button.
	if resp, body := send([]string{"root"}, postRoutes["/workers/{worker}/{action}"], fmt.Sprintf("/workers/%d/kill", w), "", ""); resp.StatusCode != http.StatusNotFound || len(f.calls()) > 0 {
		t.Errorf("root: kill form: %d %q\n%.300s", resp.StatusCode, f.calls(), body)
	}
}

// storeState is what the control calls can change in the store, as text.
func storeState(t *testing.T, db *store.DB) string {
	t.Helper()
	state := map[string]any{
		"buildsets": must(db.Buildsets(nil))(t),
		"requests":  must(db.BuildRequests(store.BuildRequestFilter{}))(t),
		"builds":    must(db.Builds(store.BuildFilter{}))(t),
		"workers":   must(db.Workers())(t),
	}
	return string(must(json.Marshal(state))(t))
}

// TestAttackWithTheEngine sends the probe's attack to the real build
// engine over the real store: each call, alone or with data after it, by
// users without the role, leaves the store as it was; root's call alone
// changes it.
func TestAttackWithTheEngine(t *testing.T) {
	t.Parallel()
	// The engine's control methods need no Run: they act on the store.
	f := newAuthServerWith(t, testAuthz, func(f *fixture) Controller {
		return build.New(build.Config{Store: f.db, MasterID: f.master.ID})
	})
	_, brids := must2(f.db.AddBuildset(store.NewBuildset{Reason: "waiting", BuilderIDs: []int64{f.runtests.ID}}))(t)
	worker := fmt.Sprintf("/api/v2/workers/%d", f.worker.ID)
	calls := []struct{ path, method string }{
		{fmt.Sprintf("/api/v2/builds/%d", f.ok.ID), "rebuild"},
		{fmt.Sprintf("/api/v2/buildrequests/%d", brids[f.runtests.ID]), "cancel"},
		{worker, "pause"},
		{worker, "stop"},
		// stop needs a build that this engine runs: TestTrailingDataRefused
		// and the e2e control tests.
	}
	who := attackers(t, f)
	for _, c := range calls {
		before := storeState(t, f.db)
		for name, args := range who {
			for _, tail := range []string{"", " x", "\n{}"} {
				resp, body := f.do(t, args[0], "POST", c.path, "application/json", rpcBody(c.method, `{"reason":"x"}`)+tail, args[1:]...)
				if resp.StatusCode < 400 || resp.StatusCode >= 500 {
					t.Errorf("%s: %s %s + %q: %d %s, want refused", name, c.method, c.path, tail, resp.StatusCode, body)
				}
				if after := storeState(t, f.db); after != before {
					t.Fatalf("%s: refused %s %s + %q changed the store:\n%s\n%s", name, c.method, c.path, tail, before, after)
				}
			}
		}
		resp, body := f.do(t, "root", "POST", c.path, "application/json", rpcBody(c.method, `{"reason":"x"}`))
		if resp.StatusCode != http.StatusOK {
			t.Errorf("root: %s %s: %d %s", c.method, c.path, resp.StatusCode, body)
		}
		if storeState(t, f.db) == before {
			t.Errorf("root: %s %s changed nothing in the store", c.method, c.path)
		}
	}
}
