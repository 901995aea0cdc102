package e2e

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// siteConfig has buildbot_url {{.URL}}, the [www] lines {{.Proxies}}, and
// {{.Comment}} above [www.auth].
const siteConfig = `
buildbot_url = "{{.URL}}"

[protocols.grpc]
port = {{.WorkerPort}}
interface = "127.0.0.1"

[www]
port = {{.WebPort}}
interface = "127.0.0.1"
{{.Proxies}}
{{.Comment}}` + authUsers

// TestReconfigSite: a reconfig applies buildbot_url (the WebSocket origin
// check and the session cookie's Secure flag) and trusted_proxies, which
// it used to report applied while the old values stayed until a restart;
// and a comment added above [www.auth] no longer logs everyone out.
func TestReconfigSite(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	data := struct {
		*env
		AdminHash, ViewerHash, URL, Proxies, Comment string
	}{e, e.hashpw("admin-pw"), e.hashpw("viewer-pw"), e.url("/"), "", ""}
	e.writeConfigData(siteConfig, data)
	e.startMaster()

	const publicOrigin = "https://ci.example.org"
	wsStatus := func() int {
		t.Helper()
		req, _ := http.NewRequest("GET", e.url("/ws"), nil)
		req.Header.Set("Origin", publicOrigin)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET /ws: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// login logs admin in through the login form, from a client the
	// header X-Forwarded-For names, and returns the session cookie.
	login := func() *http.Cookie {
		t.Helper()
		resp, err := http.Get(e.url("/login"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var csrf *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == "gbb_csrf" {
				csrf = c
			}
		}
		if csrf == nil {
			t.Fatalf("GET /login set no gbb_csrf cookie: %v", resp.Header["Set-Cookie"])
		}
		form := url.Values{"username": {"admin"}, "password": {"admin-pw"}, "csrf_token": {csrf.Value}}
		req, _ := http.NewRequest("POST", e.url("/login"), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		req.AddCookie(csrf)
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err = client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Name == "gbb_session" && c.Value != "" {
				return c
			}
		}
		t.Fatalf("login: %s, no session cookie: %v", resp.Status, resp.Header["Set-Cookie"])
		return nil
	}
	loggedIn := func(c *http.Cookie) bool {
		t.Helper()
		req, _ := http.NewRequest("GET", e.url("/"), nil)
		req.AddCookie(c)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(b), `id="auth-user">admin<`)
	}
	logLogins := func() string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(e.masterDir, "master.log"))
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for l := range strings.Lines(string(data)) {
			if strings.Contains(l, "msg=login ") {
				lines = append(lines, l)
			}
		}
		return strings.Join(lines, "")
	}

	if code := wsStatus(); code != http.StatusForbidden {
		t.Fatalf("WebSocket from %s before the reconfig: %d, want 403", publicOrigin, code)
	}
	sess := login()
	if sess.Secure {
		t.Errorf("session cookie of http://127.0.0.1 is Secure")
	}
	if !loggedIn(sess) {
		t.Fatal("the session shows no user")
	}
	if l := logLogins(); strings.Contains(l, "203.0.113.7") || !strings.Contains(l, "remote=127.0.0.1") {
		t.Errorf("with no trusted proxy, the login is logged as from:\n%s", l)
	}

	data.URL = publicOrigin + "/"
	data.Proxies = `trusted_proxies = ["127.0.0.1"]`
	data.Comment = "# Who may log in.\n# (A comment moves [www.auth] down.)\n"
	e.writeConfigData(siteConfig, data)
	out := mustRun(t, e.master, "reconfig", e.masterDir)
	if strings.Contains(out, "restart") {
		t.Errorf("reconfig asks for a restart:\n%s", out)
	}
	if !loggedIn(sess) {
		t.Error("a comment above [www.auth] ended the login session at the reconfig")
	}
	if code := wsStatus(); code != http.StatusSwitchingProtocols {
		t.Errorf("WebSocket from %s after buildbot_url became it: %d, want 101", publicOrigin, code)
	}
	if c := login(); !c.Secure {
		t.Errorf("session cookie after buildbot_url became https is not Secure")
	}
	if l := logLogins(); !strings.Contains(l, "remote=203.0.113.7") {
		t.Errorf("after trusted_proxies named 127.0.0.1, the login is not logged as from X-Forwarded-For's 203.0.113.7:\n%s", l)
	}
}
