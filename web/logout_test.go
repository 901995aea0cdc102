package web

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestLogoutNeedsPost: GET /logout, which any other site's page can make a
// browser load, ends no session: it shows the form that posts. POST
// /logout needs the session's CSRF token, which every page's logout form
// carries.
func TestLogoutNeedsPost(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	who := "cookie=" + f.login(t, "root", "pw-root").Value
	loggedIn := func() bool {
		t.Helper()
		_, body := f.do(t, who, "GET", "/builders", "", "", "Accept", "text/html")
		return strings.Contains(body, `<span id="auth-user">root</span>`)
	}
	if !loggedIn() {
		t.Fatal("root is not logged in")
	}

	resp, body := f.do(t, who, "GET", "/logout", "", "")
	if resp.StatusCode != 200 || len(resp.Cookies()) != 0 || !strings.Contains(body, `id="logout-form"`) {
		t.Errorf("GET /logout: %d %v\n%s", resp.StatusCode, resp.Cookies(), body)
	}
	if !loggedIn() {
		t.Fatal("GET /logout ended the session")
	}

	// The header's logout control is a form that posts, with the token.
	_, page := f.do(t, who, "GET", "/builders", "", "", "Accept", "text/html")
	form := page[strings.Index(page, `<form method="post" class="logout"`):]
	form = form[:strings.Index(form, "</form>")]
	m := csrfRE.FindStringSubmatch(form)
	if m == nil || !strings.Contains(form, `action="./logout"`) || !strings.Contains(form, `id="logout"`) {
		t.Fatalf("the header's logout form: %s", form)
	}

	ctype := "application/x-www-form-urlencoded"
	for _, bad := range []string{"", "csrf_token=" + strings.Repeat("0", 64)} {
		resp, body = f.do(t, who, "POST", "/logout", ctype, bad)
		if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 || !loggedIn() {
			t.Errorf("POST /logout with body %q: %d %v, want 403 and the session kept\n%s", bad, resp.StatusCode, resp.Cookies(), body)
		}
	}
	// From another site, even with the token.
	resp, _ = f.do(t, who, "POST", "/logout", ctype, "csrf_token="+m[1], "Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != http.StatusForbidden || !loggedIn() {
		t.Errorf("POST /logout from another origin: %d, want 403 and the session kept", resp.StatusCode)
	}

	resp, _ = f.do(t, who, "POST", "/logout", ctype, "csrf_token="+m[1])
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 {
		t.Errorf("POST /logout with the token: %d %v", resp.StatusCode, resp.Cookies())
	}
	if loggedIn() {
		t.Error("the session outlived its logout")
	}
	// Logged out, GET /logout says so.
	if _, body := f.do(t, "", "GET", "/logout", "", ""); !strings.Contains(body, `id="logged-out"`) {
		t.Errorf("GET /logout logged out:\n%s", body)
	}
}

// TestSecurityHeaders: every response, pages, API, static files and
// errors alike, forbids framing and content sniffing, with or without
// [www.auth].
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	open := newTestServer(t)
	withAuth := newAuthServer(t, testAuthz)
	want := map[string]string{
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": ContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "same-origin",
	}
	paths := []string{"/", "/builders", fmt.Sprintf("/builders/%d", open.runtests.ID), "/api/v2/builders", "/static/style.css", "/no/such/page", "/login", "/logout"}
	for name, base := range map[string]string{"open": open.srv.URL, "auth": withAuth.srv.URL} {
		for _, p := range paths {
			resp, err := http.Get(base + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s GET %s (%d): %s = %q, want %q", name, p, resp.StatusCode, k, got, v)
				}
			}
		}
	}
	// A POST too.
	resp, body := withAuth.do(t, "", "POST", "/login", "application/x-www-form-urlencoded", "username=x&password=y")
	if resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("POST /login: %d %v\n%s", resp.StatusCode, resp.Header, body)
	}
}
