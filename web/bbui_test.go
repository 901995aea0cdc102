package web

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/gbb-ci/gbb/internal/masterfiles"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/web/auth"
)

// bbuiIndex is the part of buildbot's index.html that gbb fills.
const bbuiIndex = `<!DOCTYPE html>
<html><head><title>Buildbot</title></head>
<body><div id="root"></div></body>
  <!-- BUILDBOT_CONFIG_PLACEHOLDER -->
  <script type="module" src="assets/index.js"></script>
</html>`

// installUI lays out buildbot's UI as pip installs it, with the
// waterfall plugin beside it, and returns its static directory.
func installUI(t *testing.T) string {
	t.Helper()
	site := t.TempDir()
	for path, body := range map[string]string{
		"buildbot_www_react/static/index.html":         bbuiIndex,
		"buildbot_www_react/static/assets/index.js":    "console.log('ui')",
		"buildbot_waterfall_view/static/scripts.js":    "console.log('waterfall')",
		"buildbot_waterfall_view/static/styles.css":    "body{}",
		"buildbot_www_react/static/assets/sub/keep.js": "x",
	} {
		p := filepath.Join(site, path)
		check(t, os.MkdirAll(filepath.Dir(p), 0o755))
		check(t, os.WriteFile(p, []byte(body), 0o644))
	}
	return filepath.Join(site, "buildbot_www_react", "static")
}

// newBBUIServer is the fixture's store served with buildbot's UI and
// [www.auth] users alice (devs) and root (admins); the rules are authz.
func newBBUIServer(t *testing.T, ui config.BuildbotUI, withAuth bool) *authFixture {
	t.Helper()
	return newBBUIServerGuarded(t, ui, withAuth, nil)
}

// newBBUIServerGuarded is newBBUIServer with the master's own files
// guarded.
func newBBUIServerGuarded(t *testing.T, ui config.BuildbotUI, withAuth bool, files *masterfiles.Guard) *authFixture {
	t.Helper()
	f := newTestServer(t)
	var a config.Auth
	if withAuth {
		var users []config.User
		for _, u := range []struct{ name, group string }{{"alice", "devs"}, {"root", "admins"}} {
			h := string(must(bcrypt.GenerateFromPassword([]byte("pw-"+u.name), bcrypt.MinCost))(t))
			users = append(users, config.User{Username: u.name, PasswordHash: h, Groups: []string{u.group}})
		}
		a = config.Auth{Type: "users", Users: users, SessionTimeout: config.DefaultSessionTimeout}
	}
	ctl := &testController{}
	s := New(Config{
		Store: f.db, Controller: ctl, MasterID: f.master.ID, MasterName: "master-1",
		Forcer: &testForcer{db: f.db, scheds: []scheduler.ForceInfo{{Name: "force-runtests", BuilderNames: []string{"runtests"}}}},
		Title:  "Hello </script> CI", BuildbotURL: "http://ci.example.org/",
		Auth: a, Authz: config.Authz{Rules: []config.Rule{{Actions: []string{"*"}, Roles: []string{"admins"}}}},
		BuildbotUI: ui, Version: "1.2.3", MasterFiles: files,
	})
	f.srv.Close()
	f.srv = httptest.NewServer(s.Handler())
	t.Cleanup(f.srv.Close)
	return &authFixture{fixture: f, s: s, ctl: ctl, cfg: a}
}

// frontendConfig fetches the UI's index as who and returns its
// window.buildbotFrontendConfig.
func (f *authFixture) frontendConfig(t *testing.T, who string) map[string]any {
	t.Helper()
	resp, body := f.do(t, who, "GET", "/buildbot-ui/", "", "")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /buildbot-ui/: %s %s", resp.Status, body)
	}
	const start = "window.buildbotFrontendConfig = "
	i := strings.Index(body, start)
	if i < 0 || strings.Contains(body, "BUILDBOT_CONFIG_PLACEHOLDER") {
		t.Fatalf("index has no config:\n%s", body)
	}
	rest := body[i+len(start):]
	end := strings.Index(rest, ";\n</script>")
	if end < 0 {
		t.Fatalf("config not ended in a script:\n%s", body)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(rest[:end]), &cfg); err != nil {
		t.Fatalf("config %q: %v", rest[:end], err)
	}
	return cfg
}

// Buildbot's UI at /buildbot-ui/: its index with the frontend config as
// buildbot's www service makes it, its files, its plugins found beside
// it, and its API, live streams and avatars relative to its own URL.
func TestBuildbotUIServed(t *testing.T) {
	t.Parallel()
	f := newBBUIServer(t, config.BuildbotUI{Dir: installUI(t)}, false)
	cfg := f.frontendConfig(t, "")
	for k, want := range map[string]any{
		"title": "Hello </script> CI", "buildbotURL": "http://ci.example.org/buildbot-ui/",
		"user_any_access_allowed": true, "multiMaster": false,
	} {
		if cfg[k] != want {
			t.Errorf("config %s = %#v, want %#v", k, cfg[k], want)
		}
	}
	if u := cfg["user"].(map[string]any); u["anonymous"] != true {
		t.Errorf("user %v, want anonymous", u)
	}
	if a := cfg["auth"].(map[string]any); a["name"] != "NoAuth" {
		t.Errorf("auth %v", a)
	}
	if p := cfg["plugins"].(map[string]any); len(p) != 1 || p["waterfall_view"] == nil {
		t.Errorf("plugins %v, want waterfall_view", p)
	}
	if m := cfg["avatar_methods"].([]any); len(m) != 1 || m[0].(map[string]any)["name"] != "identicon" {
		t.Errorf("avatar_methods %v", m)
	}
	for path, want := range map[string]int{
		"/buildbot-ui/assets/index.js":                   200,
		"/buildbot-ui/plugins/waterfall_view/scripts.js": 200,
		"/buildbot-ui/plugins/waterfall_view/styles.css": 200,
		"/buildbot-ui/plugins/nosuch/scripts.js":         404,
		"/buildbot-ui/assets/":                           404, // no listings
		"/buildbot-ui/assets/sub":                        404,
		"/buildbot-ui/../../etc/passwd":                  404,
		"/buildbot-ui/api/v2/builders":                   200,
		"/buildbot-ui/api/v2/application.spec":           200,
		"/buildbot-ui/avatar?email=a@example.org":        200,
	} {
		resp, body := f.do(t, "", "GET", path, "", "")
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d\n%.200s", path, resp.StatusCode, want, body)
		}
	}
	resp, _ := f.do(t, "", "GET", "/buildbot-ui", "", "")
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "buildbot-ui/" {
		t.Errorf("GET /buildbot-ui: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	// Without buildbot_ui_dir there is none.
	g := newBBUIServer(t, config.BuildbotUI{}, false)
	if resp, _ := g.do(t, "", "GET", "/buildbot-ui/", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("no UI configured: GET /buildbot-ui/: %d, want 404", resp.StatusCode)
	}
}

// Nothing outside buildbot_ui_dir is served, whatever symlink in it
// leads out (to /etc/passwd, to the master's config and store), nor any
// of the master's own files inside it (a UI dir that is, or holds, the
// basedir; a hard link to the store); the UI's own files still are.
func TestBuildbotUIConfined(t *testing.T) {
	t.Parallel()
	basedir := t.TempDir()
	write := func(p, body string) {
		check(t, os.MkdirAll(filepath.Dir(p), 0o755))
		check(t, os.WriteFile(p, []byte(body), 0o600))
	}
	link := func(target, p string) { check(t, os.Symlink(target, p)) }
	write(filepath.Join(basedir, "master.toml"), "SECRET-CONFIG")
	write(filepath.Join(basedir, "master.toml.bak"), "SECRET-CONFIG")
	write(filepath.Join(basedir, "state.db"), "SECRET-DB")
	cfg := &config.Config{DB: config.DB{URL: config.DefaultDBURL}}
	guard := masterfiles.New(basedir, cfg.MasterFiles(basedir))

	// The UI installed under the basedir, with links out of it.
	ui := filepath.Join(basedir, "www", "buildbot_www_react", "static")
	write(filepath.Join(ui, "index.html"), bbuiIndex)
	write(filepath.Join(ui, "assets", "index.js"), "console.log('ui')")
	plugin := filepath.Join(basedir, "www", "buildbot_waterfall_view", "static")
	write(filepath.Join(plugin, "scripts.js"), "console.log('waterfall')")
	link("/etc/passwd", filepath.Join(ui, "passwd"))
	link("../../../master.toml", filepath.Join(ui, "cfg"))
	link("../../..", filepath.Join(ui, "up"))
	link(filepath.Join(basedir, "state.db"), filepath.Join(ui, "db"))
	link("../../../state.db", filepath.Join(plugin, "db"))
	check(t, os.Link(filepath.Join(basedir, "state.db"), filepath.Join(ui, "assets", "db.bin")))
	// Hard links the guard cannot tell: a key in a protected directory
	// (worker-tls/, protected whatever tls says), and the config replaced
	// (a new inode, as sed -i or an editor makes) after the guard looked.
	write(filepath.Join(basedir, config.AutoTLSDir, "ca.key"), "SECRET-KEY")
	check(t, os.Link(filepath.Join(basedir, config.AutoTLSDir, "ca.key"), filepath.Join(ui, "assets", "ca.bin")))
	write(filepath.Join(basedir, "master.toml.new"), "SECRET-CONFIG")
	check(t, os.Rename(filepath.Join(basedir, "master.toml.new"), filepath.Join(basedir, "master.toml")))
	check(t, os.Link(filepath.Join(basedir, "master.toml"), filepath.Join(ui, "assets", "cfg.bin")))
	f := newBBUIServerGuarded(t, config.BuildbotUI{Dir: ui}, false, guard)
	for path, want := range map[string]int{
		"/buildbot-ui/":                                  200,
		"/buildbot-ui/assets/index.js":                   200,
		"/buildbot-ui/plugins/waterfall_view/scripts.js": 200,
		"/buildbot-ui/passwd":                            403,
		"/buildbot-ui/cfg":                               403,
		"/buildbot-ui/up/master.toml":                    403,
		"/buildbot-ui/up/state.db":                       403,
		"/buildbot-ui/db":                                403,
		"/buildbot-ui/assets/db.bin":                     403,
		"/buildbot-ui/plugins/waterfall_view/db":         403,
		"/buildbot-ui/assets/ca.bin":                     403,
		"/buildbot-ui/assets/cfg.bin":                    403,
		"/buildbot-ui/up/worker-tls/ca.key":              403,
	} {
		resp, body := f.do(t, "", "GET", path, "", "")
		if resp.StatusCode != want || strings.Contains(body, "SECRET") || strings.Contains(body, "root:") {
			t.Errorf("GET %s: %d, want %d\n%.200s", path, resp.StatusCode, want, body)
		}
	}

	// A UI dir that is the basedir itself: the master's files in it are
	// not the UI's, nor a link to one inside it.
	write(filepath.Join(basedir, "index.html"), bbuiIndex)
	link("master.toml", filepath.Join(basedir, "inside"))
	g := newBBUIServerGuarded(t, config.BuildbotUI{Dir: basedir}, false, guard)
	for path, want := range map[string]int{
		"/buildbot-ui/": 200,
		"/buildbot-ui/www/buildbot_www_react/static/assets/index.js": 200,
		"/buildbot-ui/master.toml":                                   403,
		"/buildbot-ui/master.toml.bak":                               403,
		"/buildbot-ui/state.db":                                      403,
		"/buildbot-ui/inside":                                        403,
		"/buildbot-ui/www/buildbot_www_react/static/assets/db.bin":   403,
	} {
		resp, body := g.do(t, "", "GET", path, "", "")
		if resp.StatusCode != want || strings.Contains(body, "SECRET") {
			t.Errorf("basedir as the UI dir: GET %s: %d, want %d\n%.200s", path, resp.StatusCode, want, body)
		}
	}
}

// /avatar as buildbot's: an identicon by default, offline; a gravatar
// redirect when configured; nothing without methods.
func TestAvatar(t *testing.T) {
	t.Parallel()
	f := newBBUIServer(t, config.BuildbotUI{}, false)
	get := func(f *authFixture, path string) (*http.Response, string) {
		resp, body := f.do(t, "", "GET", path, "", "")
		return resp, body
	}
	resp, a1 := get(f, "/avatar?email=Jane@Example.org&size=48")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/svg+xml" || !strings.Contains(a1, `width="48"`) {
		t.Fatalf("identicon: %s %s\n%s", resp.Status, resp.Header.Get("Content-Type"), a1)
	}
	_, a2 := get(f, "/avatar?email=jane@example.org&size=48")
	_, b := get(f, "/avatar?email=bob@example.org&size=48")
	if a1 != a2 || a1 == b {
		t.Errorf("identicons: the same address must draw the same picture, another another one")
	}
	_, a32 := get(f, "/avatar?email=jane@example.org")
	if _, u := get(f, "/avatar?username=jane&amp;email=jane@example.org"); u != a32 {
		t.Errorf("the login bar's URL (&amp;email=): %s", u)
	}

	g := newBBUIServer(t, config.BuildbotUI{AvatarMethods: []string{"gravatar", "identicon"}}, false)
	resp, _ = get(g, "/avatar?email=Jane@Example.org")
	// md5("jane@example.org")
	if want := "https://www.gravatar.com/avatar/18385ac57d9b171dc3fe83a5a92b68d9?d=retro&s=32"; resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
		t.Errorf("gravatar: %s %q, want %q", resp.Status, resp.Header.Get("Location"), want)
	}
	if resp, body := get(g, "/avatar?username=jane"); resp.StatusCode != 200 || !strings.HasPrefix(body, "<svg") {
		t.Errorf("no email: the identicon after gravatar: %s %.80s", resp.Status, body)
	}
	h := newBBUIServer(t, config.BuildbotUI{AvatarMethods: []string{}}, false)
	if resp, _ := get(h, "/avatar?email=a@b"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("no methods: %s, want 404", resp.Status)
	}
}

// Logging in as buildbot's UI does: auth/login asks for basic auth and
// starts a session, the config then names the user, the UI's JSON-RPC
// calls with the cookie and no CSRF token are taken from the site's own
// pages only, and auth/logout ends the session.
func TestBuildbotUILogin(t *testing.T) {
	t.Parallel()
	f := newBBUIServer(t, config.BuildbotUI{Dir: installUI(t)}, true)
	if a := f.frontendConfig(t, "")["auth"].(map[string]any); a["name"] != "UserPasswordAuth" {
		t.Errorf("auth %v", a)
	}
	resp, _ := f.do(t, "", "GET", "/buildbot-ui/auth/login?redirect=/builders", "", "")
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("login without credentials: %s %v", resp.Status, resp.Header)
	}
	resp, _ = f.do(t, "root", "GET", "/buildbot-ui/auth/login?redirect=/builders", "", "")
	var sess *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "gbb_session" && c.Value != "" {
			sess = c
		}
	}
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "../#/builders" || sess == nil {
		t.Fatalf("login: %s, Location %q, cookies %v", resp.Status, resp.Header.Get("Location"), resp.Cookies())
	}
	cookie := "cookie=" + sess.Value
	if u := f.frontendConfig(t, cookie)["user"].(map[string]any); u["anonymous"] != false || u["username"] != "root" {
		t.Errorf("user after login: %v", u)
	}

	stop := rpcBody("stop", `{"reason":"ui"}`)
	path := "/buildbot-ui/api/v2/builds/" + jsonNum(f.running.ID)
	host := strings.TrimPrefix(f.srv.URL, "http://")
	for _, tc := range []struct {
		name string
		hdr  []string
		want int
	}{
		{"no token, no origin", nil, 403},
		{"another site's origin", []string{"Origin", "http://evil.example"}, 403},
		{"another site, says the browser", []string{"Sec-Fetch-Site", "cross-site", "Origin", "http://" + host}, 403},
		{"same-site, says the browser", []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"the site's own origin", []string{"Origin", "http://" + host}, 200},
		{"same-origin, says the browser", []string{"Sec-Fetch-Site", "same-origin", "Origin", "http://ci.example.org"}, 200},
	} {
		resp, body := f.do(t, cookie, "POST", path, "application/json", stop, tc.hdr...)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d\n%s", tc.name, resp.StatusCode, tc.want, body)
		}
	}
	if got := f.calls(); len(got) != 2 {
		t.Errorf("calls %q, want the two same-origin stops", got)
	}
	// Forms still need their token, whatever the origin.
	resp, _ = f.do(t, cookie, "POST", "/buildrequests/1/cancel", "application/x-www-form-urlencoded", "reason=x", "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("form without token from the same origin: %s, want 403", resp.Status)
	}

	// Another site cannot log the user out; the UI can.
	if resp, _ := f.do(t, cookie, "GET", "/buildbot-ui/auth/logout", "", "", "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site logout: %s", resp.Status)
	}
	resp, _ = f.do(t, cookie, "GET", "/buildbot-ui/auth/logout?redirect=/", "", "", "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "../#/" {
		t.Errorf("logout: %s %q", resp.Status, resp.Header.Get("Location"))
	}
	if f.s.acc().auth.Session(sess.Value) != nil {
		t.Error("the session outlived the logout")
	}
}

// Another site's page cannot log its visitor in as someone else (a login
// CSRF, with credentials in the URL): auth/login refuses what the browser
// says is cross-site, or whose Origin is not the site's; the site's own
// pages log in.
func TestBuildbotUILoginCrossSite(t *testing.T) {
	t.Parallel()
	f := newBBUIServer(t, config.BuildbotUI{Dir: installUI(t)}, true)
	host := strings.TrimPrefix(f.srv.URL, "http://")
	for _, tc := range []struct {
		name string
		hdr  []string
		want int
	}{
		{"another site, says the browser", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"same-site, says the browser", []string{"Sec-Fetch-Site", "same-site"}, http.StatusForbidden},
		{"another site's origin", []string{"Origin", "http://evil.example"}, http.StatusForbidden},
		{"same-origin, says the browser", []string{"Sec-Fetch-Site", "same-origin"}, http.StatusFound},
		{"typed in, says the browser", []string{"Sec-Fetch-Site", "none"}, http.StatusFound},
		{"the site's own origin", []string{"Origin", "http://" + host}, http.StatusFound},
		{"buildbot_url's origin", []string{"Origin", "http://ci.example.org"}, http.StatusFound},
	} {
		resp, body := f.do(t, "root", "GET", "/buildbot-ui/auth/login?redirect=/builders", "", "", tc.hdr...)
		session := false
		for _, c := range resp.Cookies() {
			session = session || (c.Name == "gbb_session" && c.Value != "")
		}
		if resp.StatusCode != tc.want || session != (tc.want == http.StatusFound) {
			t.Errorf("%s: %s, session cookie %v, want %d\n%s", tc.name, resp.Status, session, tc.want, body)
		}
	}
}

func jsonNum(n int64) string { b, _ := json.Marshal(n); return string(b) }

// Buildbot's UI gets its own Content-Security-Policy: the one inline
// script gbb writes, the config, is allowed by its hash and no other;
// the UI's inline styles, data: and blob: images, and gravatar only when
// avatar_methods has it. gbb's own pages keep the strict policy.
func TestBuildbotUIPolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		methods  []string
		gravatar bool
	}{{nil, false}, {[]string{"identicon"}, false}, {[]string{"gravatar", "identicon"}, true}} {
		f := newBBUIServer(t, config.BuildbotUI{Dir: installUI(t), AvatarMethods: tc.methods}, false)
		resp, body := f.do(t, "", "GET", "/buildbot-ui/", "", "")
		csp := resp.Header.Get("Content-Security-Policy")
		const open = `<script id="bb-config">`
		i := strings.Index(body, open)
		j := strings.Index(body[i:], "</script>")
		if i < 0 || j < 0 {
			t.Fatalf("no config script in\n%s", body)
		}
		sum := sha256.Sum256([]byte(body[i+len(open) : i+j]))
		hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		if want := "script-src 'self' " + hash + ";"; !strings.Contains(csp, want) {
			t.Errorf("index's policy %q: want %q, the config script's hash", csp, want)
		}
		for _, want := range []string{"default-src 'none';", "style-src 'self' 'unsafe-inline';", "connect-src 'self';", "frame-ancestors 'none'", "base-uri 'none'", "img-src 'self' data: blob:"} {
			if !strings.Contains(csp, want) {
				t.Errorf("index's policy %q has no %q", csp, want)
			}
		}
		if got := strings.Contains(csp, "https://www.gravatar.com"); got != tc.gravatar {
			t.Errorf("avatar_methods %q: policy %q: gravatar allowed %v, want %v", tc.methods, csp, got, tc.gravatar)
		}
		for _, bad := range []string{"unsafe-eval", "script-src 'self' 'unsafe-inline'", "*"} {
			if strings.Contains(csp, bad) {
				t.Errorf("index's policy %q allows %q", csp, bad)
			}
		}
		// The UI's files get its policy without the hash; the API it
		// calls, and gbb's pages, keep gbb's.
		for path, want := range map[string]string{
			"/buildbot-ui/assets/index.js":                   f.s.bbui.Policy(""),
			"/buildbot-ui/plugins/waterfall_view/styles.css": f.s.bbui.Policy(""),
			"/buildbot-ui/api/v2/builders":                   ContentSecurityPolicy,
			"/builders":                                      ContentSecurityPolicy,
			"/":                                              ContentSecurityPolicy,
		} {
			if resp, _ := f.do(t, "", "GET", path, "", ""); resp.Header.Get("Content-Security-Policy") != want {
				t.Errorf("GET %s: policy %q, want %q", path, resp.Header.Get("Content-Security-Policy"), want)
			}
		}
	}
}

// frontendConfigAt is frontendConfig of the UI's index at path.
func (f *authFixture) frontendConfigAt(t *testing.T, who, path string) map[string]any {
	t.Helper()
	resp, body := f.do(t, who, "GET", path, "", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "window.buildbotFrontendConfig = ") {
		t.Fatalf("GET %s: %s, no config:\n%.300s", path, resp.Status, body)
	}
	i := strings.Index(body, "window.buildbotFrontendConfig = ") + len("window.buildbotFrontendConfig = ")
	end := strings.Index(body[i:], ";\n</script>")
	var cfg map[string]any
	if end < 0 || json.Unmarshal([]byte(body[i:i+end]), &cfg) != nil {
		t.Fatalf("GET %s: config not JSON in a script:\n%s", path, body)
	}
	return cfg
}

// With buildbot_ui_at_root, buildbot's UI is at / and gbb's pages under
// /gbb/: every link of gbb's pages leads to a page of gbb under /gbb/,
// their forms keep their CSRF check, the API and what the UI and forges
// call stay at the root, and an old link to a page is sent to /gbb/.
func TestBuildbotUIAtRoot(t *testing.T) {
	t.Parallel()
	f := newBBUIServer(t, config.BuildbotUI{Dir: installUI(t), AtRoot: true}, true)
	cfg := f.frontendConfigAt(t, "", "/")
	if cfg["buildbotURL"] != "http://ci.example.org/" {
		t.Errorf("the UI's buildbotURL %v, want the site's root", cfg["buildbotURL"])
	}
	if resp, _ := f.do(t, "", "GET", "/", "", ""); !strings.Contains(resp.Header.Get("Content-Security-Policy"), "'sha256-") {
		t.Errorf("the UI's index at / has policy %q, want the UI's", resp.Header.Get("Content-Security-Policy"))
	}
	build := "builders/" + jsonNum(f.running.BuilderID) + "/builds/" + jsonNum(f.running.Number)
	for _, tc := range []struct {
		method, path string
		status       int
		location     string
	}{
		{"GET", "/index.html", 200, ""},
		{"GET", "/assets/index.js", 200, ""},
		{"HEAD", "/assets/index.js", 200, ""},
		{"GET", "/plugins/waterfall_view/scripts.js", 200, ""},
		{"GET", "/api/v2/builders", 200, ""},
		{"GET", "/api/v2/application.spec", 200, ""},
		{"GET", "/avatar?email=a@example.org", 200, ""},
		{"GET", "/auth/login", 401, ""},
		{"GET", "/gbb/", 200, ""},
		{"GET", "/gbb/builders", 200, ""},
		{"GET", "/gbb/" + build, 200, ""},
		{"GET", "/gbb/static/style.css", 200, ""},
		{"GET", "/gbb/api/v2/builders", 200, ""},
		{"GET", "/gbb", 302, "gbb/"},
		{"GET", "/builders", 302, "./gbb/builders"},
		{"GET", "/" + build + "?x=1", 302, "../../../gbb/" + build + "?x=1"},
		{"GET", "/badges/runtests.svg", 302, "../gbb/badges/runtests.svg"},
		{"GET", "/login?next=builders", 302, "./gbb/login?next=builders"},
		{"GET", "/buildbot-ui/", 302, "../"},
		{"GET", "/buildbot-ui", 302, "./"},
		{"GET", "/buildbot-ui/assets/index.js", 404, ""},
		{"GET", "/buildbot-ui/api/v2/builders", 404, ""},
		{"GET", "/nosuch", 404, ""},
		{"GET", "/gbb/buildbot-ui/", 404, ""},
		{"GET", "/gbb/buildbot-ui", 404, ""},
		{"GET", "/gbb/buildbot-ui/assets/index.js", 404, ""},
		{"GET", "/assets/", 404, ""},
		{"GET", "/assets/../../../etc/passwd", 404, ""},
		// gbb's forms answer under /gbb/ only.
		{"POST", "/login", 404, ""},
		{"POST", "/" + build + "/stop", 404, ""},
	} {
		resp, body := f.do(t, "", tc.method, tc.path, "application/x-www-form-urlencoded", "", anonCookie...)
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
			t.Errorf("%s %s: %d, Location %q; want %d, %q\n%.200s", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location, body)
		}
	}

	// Log in with gbb's form under /gbb/, with its CSRF token; without
	// it the login is refused.
	form := url.Values{"username": {"root"}, "password": {"pw-root"}, "next": {"builders"}}
	if resp, _ := f.do(t, "", "POST", "/gbb/login", "application/x-www-form-urlencoded", form.Encode()); resp.StatusCode != http.StatusForbidden {
		t.Errorf("login without a token: %s, want 403", resp.Status)
	}
	form.Set(auth.CSRFField, testFormToken)
	resp, _ := f.do(t, "", "POST", "/gbb/login", "application/x-www-form-urlencoded", form.Encode(), anonCookie...)
	var sess *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == auth.SessionCookie {
			sess = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "./builders" || sess == nil {
		t.Fatalf("login under /gbb/: %s, Location %q, cookies %v", resp.Status, resp.Header.Get("Location"), resp.Cookies())
	}
	who := "cookie=" + sess.Value

	// Every link of gbb's pages, as root sees them, is a page of gbb
	// under /gbb/ that answers.
	base := must(url.Parse(f.srv.URL))(t)
	seen := map[string]bool{}
	queue := []string{"/gbb/", "/gbb/" + build, "/gbb/workers", "/gbb/console", "/gbb/grid", "/gbb/changes", "/gbb/pending"}
	var page string
	for len(queue) > 0 && len(seen) < 60 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		resp, body := f.do(t, who, "GET", p, "", "")
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s (linked from %s): %s\n%.200s", p, page, resp.Status, body)
			continue
		}
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			continue
		}
		page = p
		for _, m := range linkRE.FindAllStringSubmatch(body, -1) {
			u, err := base.ResolveReference(must(url.Parse(p))(t)).Parse(html.UnescapeString(m[1]))
			if err != nil || u.Host != base.Host {
				continue
			}
			if !strings.HasPrefix(u.Path, "/gbb/") {
				t.Errorf("%s links to %s, outside /gbb/", p, u.Path)
				continue
			}
			if strings.Contains(m[0], "action=") {
				continue // forms: checked below
			}
			u.Fragment = ""
			queue = append(queue, u.RequestURI())
		}
	}
	if len(seen) < 10 {
		t.Errorf("only %d pages reached from gbb's pages: %v", len(seen), seen)
	}

	// A form of the build page, with the page's token, works; without
	// it, it is refused.
	_, body := f.do(t, who, "GET", "/gbb/"+build, "", "")
	m := csrfRE.FindStringSubmatch(body)
	if m == nil || !strings.Contains(body, `action="../../../`+build+`/stop"`) {
		t.Fatalf("build page under /gbb/: no stop form with a token:\n%s", body)
	}
	if resp, _ := f.do(t, who, "POST", "/gbb/"+build+"/stop", "application/x-www-form-urlencoded", "reason=x"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("stop form without a token: %s, want 403", resp.Status)
	}
	resp, _ = f.do(t, who, "POST", "/gbb/"+build+"/stop", "application/x-www-form-urlencoded", "reason=x&"+auth.CSRFField+"="+m[1])
	if loc := must(base.Parse("/gbb/" + build + "/stop"))(t).ResolveReference(must(url.Parse(resp.Header.Get("Location")))(t)); resp.StatusCode != http.StatusSeeOther || loc.Path != "/gbb/"+build {
		t.Errorf("stop form with the page's token: %s, Location %q (%s), want back to /gbb/%s", resp.Status, resp.Header.Get("Location"), loc, build)
	}
	if got := f.calls(); len(got) != 1 || !strings.HasPrefix(got[0], "stop ") {
		t.Errorf("calls %q, want the one stop", got)
	}
}
