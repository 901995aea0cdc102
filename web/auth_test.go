package web

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/web/api"
	"github.com/gbb-ci/gbb/web/auth"
)

// testToken is the bearer token of the user "bot" (groups devs).
const testToken = "0123456789abcdef-token"

// testAuthz lets devs force runtests, admins do everything, and a build's
// owner stop it.
var testAuthz = config.Authz{Rules: []config.Rule{
	{Actions: []string{"force"}, Builders: []string{"run*"}, Roles: []string{"devs", "admins"}},
	{Actions: []string{"stop"}, Roles: []string{"owner", "admins"}},
	{Actions: []string{"*"}, Roles: []string{"admins"}},
}}

// authFixture is the fixture's store served with [www.auth]: users alice
// and bob (devs; alice owns the fixture's builds), root (admins), each
// with the password "pw-" and their name, and the token of "bot".
type authFixture struct {
	*fixture
	ctl *testController
	s   *Server
	cfg config.Auth // the [www.auth] it started with
}

func newAuthServer(t testing.TB, authz config.Authz) *authFixture {
	t.Helper()
	ctl := &testController{}
	f := newAuthServerWith(t, authz, func(*fixture) Controller { return ctl })
	f.ctl = ctl
	return f
}

// newAuthServerWith is newAuthServer with the Controller that mk makes on
// the fixture's store (its ctl is then nil).
func newAuthServerWith(t testing.TB, authz config.Authz, mk func(*fixture) Controller) *authFixture {
	t.Helper()
	f := newTestServer(t)
	ctl := mk(f)
	var users []config.User
	for _, u := range []struct {
		name  string
		group string
	}{{"alice", "devs"}, {"bob", "devs"}, {"root", "admins"}} {
		h := string(must(bcrypt.GenerateFromPassword([]byte("pw-"+u.name), bcrypt.MinCost))(t))
		users = append(users, config.User{Username: u.name, PasswordHash: h, Groups: []string{u.group}})
	}
	sum := sha256.Sum256([]byte(testToken))
	forcer := &testForcer{db: f.db, scheds: []scheduler.ForceInfo{
		{Name: "force-runtests", BuilderNames: []string{"runtests"}},
		{Name: "force-all", BuilderNames: []string{"runtests", "noop"}},
	}}
	auth := config.Auth{Type: "users", Users: users, SessionTimeout: config.DefaultSessionTimeout,
		Tokens: []config.Token{{Name: "bot", SHA256: hex.EncodeToString(sum[:]), Groups: []string{"devs"}}}}
	s := New(Config{
		Store: f.db, Forcer: forcer, Controller: ctl, MasterID: f.master.ID, MasterName: "master-1",
		BuildbotURL: "http://ci.example.org/buildbot/",
		Auth:        auth,
		Authz:       authz,
		Schedulers:  func() []SchedulerInfo { return []SchedulerInfo{{ID: 1, Name: "force-runtests", Enabled: true}} },
		EnableScheduler: func(name string, enabled bool) error {
			if tc, ok := ctl.(*testController); ok {
				return tc.record("enable %s %v", name, enabled)
			}
			return nil
		},
	})
	f.srv.Close()
	f.srv = httptest.NewServer(s.Handler())
	t.Cleanup(f.srv.Close)
	return &authFixture{fixture: f, s: s, cfg: auth}
}

// noRedirect is a client that shows redirects rather than follows them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// do sends a request as who: "" for anonymous, "token" for the bot's
// token, "cookie=ID" for a session, else a user name with basic auth.
func (f *authFixture) do(t testing.TB, who, method, path, ctype, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req := must(http.NewRequest(method, f.srv.URL+path, strings.NewReader(body)))(t)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	switch {
	case who == "":
	case who == "token":
		req.Header.Set("Authorization", "Bearer "+testToken)
	case strings.HasPrefix(who, "cookie="):
		req.AddCookie(&http.Cookie{Name: auth.SessionCookie, Value: strings.TrimPrefix(who, "cookie=")})
	default:
		req.SetBasicAuth(who, "pw-"+who)
	}
	resp := must(noRedirect.Do(req))(t)
	defer resp.Body.Close()
	return resp, string(must(io.ReadAll(resp.Body))(t))
}

func rpcBody(method, params string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","method":%q,"id":9,"params":%s}`, method, params)
}

func TestAuthzRPC(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	running := fmt.Sprintf("/api/v2/builds/%d", f.running.ID)
	worker := fmt.Sprintf("/api/v2/workers/%d", f.worker.ID)
	tests := []struct {
		who, path, method string
		want              int
	}{
		{"", "/api/v2/forceschedulers/force-runtests", "force", 403},
		{"bob", "/api/v2/forceschedulers/force-runtests", "force", 200},
		{"token", "/api/v2/forceschedulers/force-runtests", "force", 200},
		{"bob", "/api/v2/forceschedulers/force-all", "force", 403}, // noop is for admins
		{"root", "/api/v2/forceschedulers/force-all", "force", 200},
		{"bob", running, "stop", 403},
		{"alice", running, "stop", 200}, // her own build
		{"root", running, "stop", 200},
		{"alice", running, "rebuild", 403},
		{"root", running, "rebuild", 200},
		{"bob", fmt.Sprintf("/api/v2/buildrequests/%d", f.brid), "cancel", 403},
		{"root", fmt.Sprintf("/api/v2/buildrequests/%d", f.brid), "cancel", 200},
		{"bob", worker, "pause", 403},
		{"", worker, "kill", 403},
		{"root", worker, "pause", 200},
		{"root", worker, "stop", 200},
	}
	for _, tt := range tests {
		resp, body := f.do(t, tt.who, "POST", tt.path, "application/json", rpcBody(tt.method, "{}"))
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s %s: %d %s, want %d", tt.who, tt.method, tt.path, resp.StatusCode, body, tt.want)
			continue
		}
		if tt.want == 403 {
			var reply struct {
				ID    int
				Error struct {
					Code    int
					Message string
				}
			}
			if err := json.Unmarshal([]byte(body), &reply); err != nil || reply.ID != 9 || reply.Error.Code != api.RPCInvalidRequest || !strings.Contains(reply.Error.Message, "may not "+tt.method) {
				t.Errorf("%s %s %s: reply %s, want a JSON-RPC error", tt.who, tt.method, tt.path, body)
			}
		}
	}

	// A wrong password or token is refused outright, not taken as
	// anonymous.
	req := must(http.NewRequest("GET", f.srv.URL+"/api/v2/builders", nil))(t)
	req.SetBasicAuth("bob", "wrong")
	resp := must(http.DefaultClient.Do(req))(t)
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("a wrong password: %d %v", resp.StatusCode, resp.Header)
	}

	// A forced build's owner is the user who forced it, whatever the call
	// says.
	resp, body := f.do(t, "bob", "POST", "/api/v2/forceschedulers/force-runtests", "application/json", rpcBody("force", `{"owner":"mallory","username":"eve"}`))
	var reply struct{ Result []json.RawMessage }
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &reply) != nil || len(reply.Result) != 2 {
		t.Fatalf("force: %d %s", resp.StatusCode, body)
	}
	var bsid int64
	check(t, json.Unmarshal(reply.Result[0], &bsid))
	bs := must(f.db.Buildset(bsid))(t)
	if got := api.PropString(bs.Properties, "owner"); got != "bob" {
		t.Errorf("owner of the forced buildset = %q, want bob", got)
	}
}

func TestAuthzNoRules(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, config.Authz{})
	worker := fmt.Sprintf("/api/v2/workers/%d", f.worker.ID)
	// Without rules, every logged-in user may act, anonymous ones not.
	for who, want := range map[string]int{"": 403, "bob": 200, "token": 200} {
		if resp, body := f.do(t, who, "POST", worker, "application/json", rpcBody("pause", "{}")); resp.StatusCode != want {
			t.Errorf("%q pause: %d %s, want %d", who, resp.StatusCode, body, want)
		}
	}
}

var csrfRE = regexp.MustCompile(`<input type="hidden" name="csrf_token" value="([0-9a-f]+)">`)

// login logs in with the form and returns the session cookie's value.
func (f *authFixture) login(t testing.TB, name, password string) *http.Cookie {
	t.Helper()
	resp, body := f.do(t, "", "POST", "/login", "application/x-www-form-urlencoded",
		url.Values{"username": {name}, "password": {password}, "next": {"builders"}, auth.CSRFField: {testFormToken}}.Encode(), anonCookie...)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "./builders" {
		t.Fatalf("login %s: %d %v %s", name, resp.StatusCode, resp.Header, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == auth.SessionCookie {
			return c
		}
	}
	t.Fatalf("login %s: no session cookie in %v", name, resp.Header)
	return nil
}

func TestLoginSessionCSRF(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)

	resp, body := f.do(t, "", "GET", "/builders", "", "", "Accept", "text/html")
	if resp.StatusCode != 200 || !strings.Contains(body, `id="login" href="./login?next=builders"`) {
		t.Errorf("anonymous builders page: %d, no login link:\n%s", resp.StatusCode, body)
	}
	resp, body = f.do(t, "", "GET", "/login?next=builders", "", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `id="login-form"`) || !strings.Contains(body, `name="next" value="builders"`) {
		t.Errorf("login page: %d\n%s", resp.StatusCode, body)
	}
	resp, body = f.do(t, "", "POST", "/login", "application/x-www-form-urlencoded", "username=bob&password=nope&csrf_token="+testFormToken, anonCookie...)
	if resp.StatusCode != 401 || !strings.Contains(body, "Wrong user name or password") || len(resp.Cookies()) != 0 {
		t.Errorf("wrong password: %d %v\n%s", resp.StatusCode, resp.Cookies(), body)
	}

	c := f.login(t, "root", "pw-root")
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/buildbot/" || c.Secure || len(c.Value) != 64 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/buildbot/, not Secure on http", c)
	}
	who := "cookie=" + c.Value

	// The build page names the user and carries the token in its forms.
	page := fmt.Sprintf("/builders/%d/builds/%d", f.runtests.ID, f.running.Number)
	resp, body = f.do(t, who, "GET", page, "", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `<span id="auth-user">root</span>`) {
		t.Fatalf("build page: %d\n%s", resp.StatusCode, body)
	}
	m := csrfRE.FindAllStringSubmatch(body, -1)
	if len(m) < 2 || strings.Count(body, `method="post"`) != len(m) {
		t.Fatalf("build page: %d CSRF fields for %d forms", len(m), strings.Count(body, `method="post"`))
	}
	token := m[0][1]

	stop := page + "/stop"
	form := "application/x-www-form-urlencoded"
	for _, tt := range []struct {
		name, body string
		hdr        []string
		want       int
	}{
		{"no token", "reason=x", nil, 403},
		{"wrong token", "reason=x&csrf_token=" + strings.Repeat("0", 64), nil, 403},
		{"form token", "reason=x&csrf_token=" + token, nil, 303},
		{"header token", "reason=x", []string{auth.CSRFHeader, token}, 303},
	} {
		resp, body := f.do(t, who, "POST", stop, form, tt.body, tt.hdr...)
		if resp.StatusCode != tt.want {
			t.Errorf("stop form, %s: %d, want %d\n%s", tt.name, resp.StatusCode, tt.want, body)
		}
	}
	// A cookie's JSON-RPC call needs the header too; basic auth does not.
	running := fmt.Sprintf("/api/v2/builds/%d", f.running.ID)
	if resp, body := f.do(t, who, "POST", running, "application/json", rpcBody("stop", "{}")); resp.StatusCode != 403 || !strings.Contains(body, "CSRF") {
		t.Errorf("JSON-RPC with a cookie and no token: %d %s", resp.StatusCode, body)
	}
	if resp, body := f.do(t, who, "POST", running, "application/json", rpcBody("stop", "{}"), auth.CSRFHeader, token); resp.StatusCode != 200 {
		t.Errorf("JSON-RPC with a cookie and the token: %d %s", resp.StatusCode, body)
	}

	// bob may not stop alice's build: her build page shows him no stop
	// form (his token comes from the force form of the builder page), and
	// posting it anyway answers a 403 page.
	bob := "cookie=" + f.login(t, "bob", "pw-bob").Value
	if _, body := f.do(t, bob, "GET", page, "", "", "Accept", "text/html"); strings.Contains(body, `id="stop-build"`) {
		t.Errorf("alice's build page shows bob a stop form")
	}
	_, body = f.do(t, bob, "GET", fmt.Sprintf("/builders/%d", f.runtests.ID), "", "", "Accept", "text/html")
	bobToken := csrfRE.FindStringSubmatch(body)[1]
	resp, body = f.do(t, bob, "POST", stop, form, "csrf_token="+bobToken)
	if resp.StatusCode != 403 || !strings.Contains(body, "bob may not stop on builder runtests") || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("bob's stop: %d\n%s", resp.StatusCode, body)
	}

	// Log out: the cookie is cleared and the session is gone.
	resp, _ = f.do(t, who, "POST", "/logout", form, "csrf_token="+token)
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 {
		t.Errorf("logout: %d %v", resp.StatusCode, resp.Cookies())
	}
	if resp, body := f.do(t, who, "POST", stop, form, "csrf_token="+testFormToken, anonCookie...); resp.StatusCode != 403 || !strings.Contains(body, "anonymous users may not stop") {
		t.Errorf("stop after logout: %d\n%s", resp.StatusCode, body)
	}
	f.ctl.mu.Lock()
	defer f.ctl.mu.Unlock()
	want := []string{fmt.Sprintf("stop %d %q", f.running.ID, "x"), fmt.Sprintf("stop %d %q", f.running.ID, "x"), fmt.Sprintf("stop %d %q", f.running.ID, "")}
	if diff := cmp.Diff(want, f.ctl.calls); diff != "" {
		t.Errorf("controller calls (-want +got):\n%s", diff)
	}
}

func TestAnonymousView(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, config.Authz{NoAnonymousView: true})
	tests := []struct {
		who, path string
		want      int
		location  string
	}{
		{"", "/builders/1", 303, "../login?next=builders%2F1"},
		{"", "/", 303, "./login?next="},
		{"", "/api/v2/builders", 401, ""},
		{"", "/sse/listen/builds", 401, ""},
		{"", "/ws", 401, ""},
		{"", "/login", 200, ""},
		{"", "/static/style.css", 200, ""},
		{"", "/favicon.ico", 200, ""},
		{"bob", "/api/v2/builders", 200, ""},
		{"token", "/builders", 200, ""},
	}
	for _, tt := range tests {
		resp, body := f.do(t, tt.who, "GET", tt.path, "", "")
		if resp.StatusCode != tt.want || resp.Header.Get("Location") != tt.location {
			t.Errorf("%q GET %s: %d %q, want %d %q\n%s", tt.who, tt.path, resp.StatusCode, resp.Header.Get("Location"), tt.want, tt.location, body)
		}
	}
}

func TestNoAuthIsOpen(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	status, page := f.page(t, "/builders")
	if status != 200 || !strings.Contains(page, `id="auth-open"`) || strings.Contains(page, "csrf_token") {
		t.Errorf("builders page without auth: %d\n%s", status, page)
	}
	if status, _ := f.page(t, "/login"); status != 404 {
		t.Errorf("login without auth: %d, want 404", status)
	}
}

// The force form posts with the logged-in user as its owner.
func TestForceFormOwner(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	who := "cookie=" + f.login(t, "bob", "pw-bob").Value
	_, body := f.do(t, who, "GET", "/builders/runtests", "", "", "Accept", "text/html")
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF field on the builder page:\n%s", body)
	}
	resp, body := f.do(t, who, "POST", fmt.Sprintf("/builders/%d/force/force-runtests", f.runtests.ID), "application/x-www-form-urlencoded",
		url.Values{"csrf_token": {m[1]}, "username": {"mallory"}, "reason": {"owned"}}.Encode())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("force form: %d\n%s", resp.StatusCode, body)
	}
	bss := must(f.db.Buildsets(nil))(t)
	var owner string
	for _, bs := range bss {
		if bs.Reason == "owned" {
			owner = api.PropString(bs.Properties, "owner")
		}
	}
	if owner != "bob" {
		t.Errorf("owner = %q, want bob", owner)
	}
}

// TestPagesShowAllowedControls: each page shows its user only the controls
// the server would accept from them (testAuthz): the forms of the others
// are not there to be refused.
func TestPagesShowAllowedControls(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	// A request waiting, forced by bob: only admins may cancel it.
	if resp, body := f.do(t, "bob", "POST", "/api/v2/forceschedulers/force-runtests", "application/json", rpcBody("force", "{}")); resp.StatusCode != 200 {
		t.Fatalf("force: %d %s", resp.StatusCode, body)
	}
	build := fmt.Sprintf("/builders/%d/builds/%d", f.runtests.ID, f.running.Number)
	builder := fmt.Sprintf("/builders/%d", f.runtests.ID)
	allOption := `<option value="">all</option>`
	for _, tt := range []struct {
		who, path string
		want      map[string]bool // a marker in the page: whether it must be there
	}{
		{"", build, map[string]bool{`id="stop-build"`: false, `id="rebuild-build"`: false}},
		{"bob", build, map[string]bool{`id="stop-build"`: false, `id="rebuild-build"`: false}},
		{"alice", build, map[string]bool{`id="stop-build"`: true, `id="rebuild-build"`: false}}, // her own build
		{"root", build, map[string]bool{`id="stop-build"`: true, `id="rebuild-build"`: true}},
		{"", builder, map[string]bool{`id="force-force-runtests"`: false, `class="cancel-request"`: false}},
		{"bob", builder, map[string]bool{`id="force-force-runtests"`: true, `class="cancel-request"`: false}},
		{"root", builder, map[string]bool{`id="force-force-runtests"`: true, `class="cancel-request"`: true}},
		{"", "/pending", map[string]bool{`class="cancel-request"`: false}},
		{"bob", "/pending", map[string]bool{`class="cancel-request"`: false}},
		{"root", "/pending", map[string]bool{`class="cancel-request"`: true}},
		// force-all builds runtests and noop; bob may force runtests only:
		// his form has it fixed, and no "all".
		{"", "/", map[string]bool{`id="force-force-all"`: false}},
		{"bob", "/", map[string]bool{`id="force-force-all"`: true, allOption: false,
			fmt.Sprintf(`<input type="hidden" name="builderid" value="%d">`, f.runtests.ID): true}},
		{"root", "/", map[string]bool{`id="force-force-all"`: true, allOption: true}},
		{"bob", "/workers", map[string]bool{`class="worker-pause"`: false, `class="worker-unpause"`: false, `class="worker-graceful"`: false}},
		{"root", "/workers", map[string]bool{`class="worker-graceful"`: true}},
	} {
		resp, body := f.do(t, tt.who, "GET", tt.path, "", "", "Accept", "text/html")
		if resp.StatusCode != 200 {
			t.Errorf("%q GET %s: %d", tt.who, tt.path, resp.StatusCode)
			continue
		}
		for marker, want := range tt.want {
			if got := strings.Contains(body, marker); got != want {
				t.Errorf("%q GET %s: %s there = %v, want %v", tt.who, tt.path, marker, got, want)
			}
		}
	}
	// bob's home form, as shown (runtests fixed), is accepted.
	bob := "cookie=" + f.login(t, "bob", "pw-bob").Value
	_, body := f.do(t, bob, "GET", "/", "", "", "Accept", "text/html")
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF field on bob's home page:\n%s", body)
	}
	resp, body := f.do(t, bob, "POST", "/force/force-all", "application/x-www-form-urlencoded",
		url.Values{"csrf_token": {m[1]}, "builderid": {fmt.Sprint(f.runtests.ID)}, "reason": {"home"}}.Encode())
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("bob's home force form: %d\n%s", resp.StatusCode, body)
	}
	// root sees pause or unpause, whichever the worker's state offers.
	if _, body := f.do(t, "root", "GET", "/workers", "", "", "Accept", "text/html"); !strings.Contains(body, `class="worker-pause"`) && !strings.Contains(body, `class="worker-unpause"`) {
		t.Errorf("root's workers page has neither pause nor unpause:\n%s", body)
	}
}

// TestSetAccess: a reconfig's [www.authz] applies to the next request and
// keeps login sessions; a changed [www.auth] ends them and its users are
// the ones checked from then on.
func TestSetAccess(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	running := fmt.Sprintf("/api/v2/builds/%d", f.running.ID)
	rebuild := func(who string) int {
		t.Helper()
		resp, _ := f.do(t, who, "POST", running, "application/json", rpcBody("rebuild", "{}"), auth.CSRFHeader, "")
		return resp.StatusCode
	}
	if got := rebuild("bob"); got != 403 {
		t.Fatalf("bob's rebuild before the reconfig: %d, want 403", got)
	}
	session := "cookie=" + f.login(t, "bob", "pw-bob").Value
	whoAmI := func(who string) string {
		t.Helper()
		_, body := f.do(t, who, "GET", "/", "", "", "Accept", "text/html")
		if strings.Contains(body, ">bob<") || strings.Contains(body, "bob ·") {
			return "bob"
		}
		return ""
	}
	if whoAmI(session) != "bob" {
		t.Fatalf("bob's session does not show him logged in")
	}

	// devs may now rebuild.
	rules := append([]config.Rule{{Actions: []string{"rebuild"}, Roles: []string{"devs"}}}, testAuthz.Rules...)
	f.s.SetAccess(f.cfg, config.Authz{Rules: rules})
	if got := rebuild("bob"); got != 200 {
		t.Errorf("bob's rebuild after the reconfig: %d, want 200", got)
	}
	if whoAmI(session) != "bob" {
		t.Errorf("an [www.authz] change ended bob's session")
	}

	// bob is removed from the users: his password and his session no
	// longer count.
	auth := f.cfg
	auth.Users = slices.DeleteFunc(slices.Clone(auth.Users), func(u config.User) bool { return u.Username == "bob" })
	f.s.SetAccess(auth, config.Authz{Rules: rules})
	if resp, _ := f.do(t, "bob", "GET", "/api/v2/builders", "", ""); resp.StatusCode != 401 {
		t.Errorf("removed bob's basic auth: %d, want 401", resp.StatusCode)
	}
	if whoAmI(session) != "" {
		t.Errorf("removed bob's session still logs him in")
	}
	if got := rebuild("alice"); got != 200 {
		t.Errorf("alice's rebuild after the second reconfig: %d, want 200", got)
	}
}

// The scheduler switch (enable) came after rules that name every action
// there was: under such rules it is refused to everyone, admins too, until
// a rule names it, so an upgrade opens it to no one. With no rules at
// all, every logged-in user may use it, as every other action.
func TestEnableNeedsRule(t *testing.T) {
	t.Parallel()
	older := []string{"force", "stop", "rebuild", "cancel", "pause", "unpause", "graceful", "kill"}
	off := rpcBody("enable", `{"enabled":false}`)
	for _, tc := range []struct {
		name  string
		rules []config.Rule
		want  map[string]int
	}{
		{"rules naming the eight older actions", []config.Rule{{Actions: older, Roles: []string{"admins"}}},
			map[string]int{"bob": 403, "root": 403, "": 403}},
		{"a rule naming enable", []config.Rule{{Actions: older, Roles: []string{"admins"}}, {Actions: []string{"enable"}, Roles: []string{"admins"}}},
			map[string]int{"bob": 403, "root": 200, "": 403}},
		{"a rule naming *", []config.Rule{{Actions: []string{"*"}, Roles: []string{"devs"}}},
			map[string]int{"bob": 200, "root": 403, "": 403}},
		{"no rules", nil, map[string]int{"bob": 200, "root": 200, "": 403}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newAuthServer(t, config.Authz{Rules: tc.rules})
			allowed := 0
			for _, who := range []string{"bob", "root", ""} {
				resp, body := f.do(t, who, "POST", "/api/v2/schedulers/1", "application/json", off)
				if resp.StatusCode != tc.want[who] {
					t.Errorf("enable as %q: %s, want %d\n%s", who, resp.Status, tc.want[who], body)
				}
				if tc.want[who] == 200 {
					allowed++
				}
			}
			if got := f.calls(); len(got) != allowed {
				t.Errorf("controller calls %q, want %d", got, allowed)
			}
		})
	}
}
