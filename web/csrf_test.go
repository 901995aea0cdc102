package web

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/gbb-ci/gbb/pkg/events"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/gbb-ci/gbb/web/auth"
)

// testFormToken is a double-submit token as a page gives a browser with no
// session: the value of its gbb_csrf cookie, sent back in each form.
var testFormToken = strings.Repeat("ab", 32)

// anonCookie is the header pair of f.do that sends testFormToken's cookie.
var anonCookie = []string{"Cookie", auth.AnonCSRFCookie + "=" + testFormToken}

// formRequest is a POST of form to u as a browser sends it from one of the
// site's pages: with the form's CSRF token and its cookie.
func formRequest(t *testing.T, u string, form url.Values) *http.Request {
	t.Helper()
	v := url.Values{auth.CSRFField: {testFormToken}}
	for k, vs := range form {
		v[k] = vs
	}
	req := must(http.NewRequest("POST", u, strings.NewReader(v.Encode())))(t)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: auth.AnonCSRFCookie, Value: testFormToken})
	return req
}

// syncBuffer is a log destination that tests read while the server
// writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestAnonymousFormToken: without [www.auth] anyone may force, from gbb's
// own page only: the page gives the browser a gbb_csrf cookie and puts its
// value in the form; a form posted without it (another site's page cannot
// read it) is refused with a reason, and so is one a browser says comes
// from another site. The Origin and Host play no part: behind a proxy
// that sets neither, the form works.
func TestAnonymousFormToken(t *testing.T) {
	t.Parallel()
	f := newTestServer(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp := must(client.Get(f.srv.URL + "/"))(t)
	page := readAll(t, resp)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == auth.AnonCSRFCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || !auth.ValidToken(cookie.Value) {
		t.Fatalf("home page's CSRF cookie: %+v", cookie)
	}
	m := csrfRE.FindAllStringSubmatch(page, -1)
	if len(m) == 0 || len(m) != strings.Count(page, `method="post"`) {
		t.Fatalf("%d CSRF fields for %d forms", len(m), strings.Count(page, `method="post"`))
	}
	for _, mm := range m {
		if mm[1] != cookie.Value {
			t.Fatalf("form token %s, cookie %s", mm[1], cookie.Value)
		}
	}
	// A page seen again with the cookie keeps it, and sets none.
	req := must(http.NewRequest("GET", f.srv.URL+"/", nil))(t)
	req.AddCookie(cookie)
	resp = must(client.Do(req))(t)
	if page := readAll(t, resp); len(resp.Cookies()) != 0 || csrfRE.FindStringSubmatch(page)[1] != cookie.Value {
		t.Errorf("second visit: cookies %v", resp.Cookies())
	}
	// A page without forms has the token for its scripts; the API sets
	// no cookie.
	resp = must(client.Get(f.srv.URL + "/changes"))(t)
	if page := readAll(t, resp); len(resp.Cookies()) != 1 || !strings.Contains(page, `<meta name="csrf-token" content="`+resp.Cookies()[0].Value+`">`) {
		t.Errorf("GET /changes: cookies %v, page:\n%s", resp.Cookies(), page)
	}
	if resp := must(client.Get(f.srv.URL + "/api/v2/builders"))(t); len(resp.Cookies()) != 0 {
		t.Errorf("GET /api/v2/builders sets %v", resp.Cookies())
	}

	before := len(must(f.db.Buildsets(nil))(t))
	post := func(name string, form url.Values, c *http.Cookie, hdr ...string) int {
		t.Helper()
		req := must(http.NewRequest("POST", f.srv.URL+"/force/force-runtests", strings.NewReader(form.Encode())))(t)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		// As behind buildbot's nginx recipe: Origin is the browser's
		// site, which is neither the Host nor buildbot_url's.
		req.Header.Set("Origin", "http://localhost:8999")
		if c != nil {
			req.AddCookie(c)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp := must(client.Do(req))(t)
		body := readAll(t, resp)
		if resp.StatusCode == http.StatusForbidden && !strings.Contains(body, "CSRF") && !strings.Contains(body, "cross-site") {
			t.Errorf("%s: refused without saying why:\n%s", name, body)
		}
		return resp.StatusCode
	}
	other := &http.Cookie{Name: auth.AnonCSRFCookie, Value: strings.Repeat("0", 64)}
	for _, tt := range []struct {
		name   string
		form   url.Values
		cookie *http.Cookie
		hdr    []string
		want   int
	}{
		{"another site's form: no token, no cookie", url.Values{"reason": {"csrf"}}, nil, nil, 403},
		{"no token", url.Values{"reason": {"csrf"}}, cookie, nil, 403},
		{"token without its cookie", url.Values{"reason": {"csrf"}, auth.CSRFField: {cookie.Value}}, nil, nil, 403},
		{"another cookie's token", url.Values{"reason": {"csrf"}, auth.CSRFField: {cookie.Value}}, other, nil, 403},
		{"empty token and cookie", url.Values{"reason": {"csrf"}, auth.CSRFField: {""}}, &http.Cookie{Name: auth.AnonCSRFCookie, Value: ""}, nil, 403},
		{"cross-site", url.Values{"reason": {"csrf"}, auth.CSRFField: {cookie.Value}}, cookie, []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"the page's form", url.Values{"reason": {"mine"}, auth.CSRFField: {cookie.Value}}, cookie, []string{"Sec-Fetch-Site", "same-origin"}, 303},
		{"the token in the header", url.Values{"reason": {"mine"}}, cookie, []string{auth.CSRFHeader, cookie.Value}, 303},
	} {
		if got := post(tt.name, tt.form, tt.cookie, tt.hdr...); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
	if got := len(must(f.db.Buildsets(nil))(t)) - before; got != 2 {
		t.Errorf("%d forces done, want the 2 with the token", got)
	}
}

// TestLoginFormToken: the login form is a form like the others: another
// site's page cannot log a browser in (to the attacker's account).
func TestLoginFormToken(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	form := url.Values{"username": {"bob"}, "password": {"pw-bob"}}.Encode()
	resp, body := f.do(t, "", "POST", "/login", "application/x-www-form-urlencoded", form)
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 || !strings.Contains(body, "CSRF") {
		t.Errorf("login without a token: %d %v\n%s", resp.StatusCode, resp.Cookies(), body)
	}
	resp, body = f.do(t, "", "GET", "/login", "", "")
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == auth.AnonCSRFCookie {
			cookie = c
		}
	}
	m := csrfRE.FindStringSubmatch(body)
	if cookie == nil || m == nil || m[1] != cookie.Value {
		t.Fatalf("login page: cookie %v, token %v", cookie, m)
	}
	resp, body = f.do(t, "", "POST", "/login", "application/x-www-form-urlencoded", form+"&"+auth.CSRFField+"="+m[1], "Cookie", cookie.String())
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("login with the page's token: %d\n%s", resp.StatusCode, body)
	}
}

// TestRPCContentType: a JSON-RPC call is taken as application/json only,
// which another site's page cannot send without a preflight; the refusal
// tells a curl user what to add. A call with a session cookie needs the
// session's token too; with basic auth it does not.
func TestRPCContentType(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	call := rpcBody("force", `{"reason":"ct"}`)
	for _, ct := range []string{"", "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b", "application/jsonx", "application/json-patch+json"} {
		resp, body := f.do(t, "bob", "POST", "/api/v2/forceschedulers/force-runtests", ct, call)
		if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(body, `-H 'Content-Type: application/json'`) {
			t.Errorf("Content-Type %q: %d %s, want 415 with what to send", ct, resp.StatusCode, body)
		}
	}
	if resp, body := f.do(t, "bob", "POST", "/api/v2/forceschedulers/force-runtests", "Application/JSON; charset=utf-8", call); resp.StatusCode != http.StatusOK {
		t.Errorf("application/json: %d %s", resp.StatusCode, body)
	}
	sess := "cookie=" + f.login(t, "bob", "pw-bob").Value
	if resp, body := f.do(t, sess, "POST", "/api/v2/forceschedulers/force-runtests", "application/json", call); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, auth.CSRFHeader) {
		t.Errorf("a session's call without its token: %d %s", resp.StatusCode, body)
	}
	// The preflight that application/json from another site needs is
	// never granted.
	resp, _ := f.do(t, "", "OPTIONS", "/api/v2/forceschedulers/force-runtests", "", "",
		"Origin", "http://evil.example", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type")
	if resp.StatusCode < 400 || resp.Header.Get("Access-Control-Allow-Origin") != "" || resp.Header.Get("Access-Control-Allow-Headers") != "" {
		t.Errorf("CORS preflight: %d %v, want refused without Access-Control-Allow-*", resp.StatusCode, resp.Header)
	}
	if n := len(must(f.db.Buildsets(nil))(t)); n != 5 {
		t.Errorf("%d buildsets, want the fixture's 4 and one force", n)
	}
}

// TestWSOriginTrustedProxy: X-Forwarded-Host and X-Forwarded-Proto are
// believed from the trusted_proxies only (as X-Forwarded-For), and the
// Origin's scheme must be the one the browser used: the request's, or the
// one a trusted proxy's X-Forwarded-Proto names.
func TestWSOriginTrustedProxy(t *testing.T) {
	t.Parallel()
	bus := events.New(events.Config{FirstID: 1})
	db := must(store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{Events: bus}))(t)
	t.Cleanup(func() { db.Close() })
	s := New(Config{Store: db, Events: bus, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, tt := range []struct {
		name string
		hdr  http.Header
		ok   bool
	}{
		{"the proxy's X-Forwarded-Host", http.Header{"Origin": {"http://localhost:8999"}, "X-Forwarded-Host": {"localhost:8999"}}, true},
		{"the proxy's X-Forwarded-Host over https", http.Header{"Origin": {"https://ci.example.org"}, "X-Forwarded-Host": {"ci.example.org"}, "X-Forwarded-Proto": {"https"}}, true},
		{"the proxy's X-Forwarded-Host, http where the browser used https", http.Header{"Origin": {"http://ci.example.org"}, "X-Forwarded-Host": {"ci.example.org"}, "X-Forwarded-Proto": {"https"}}, false},
		{"the proxy's X-Forwarded-Host, https where the browser used http", http.Header{"Origin": {"https://ci.example.org"}, "X-Forwarded-Host": {"ci.example.org"}}, false},
		{"the Host over https, says the proxy", http.Header{"Origin": {"https://" + host}, "X-Forwarded-Proto": {"https"}}, true},
		{"the Host over https, the proxy says nothing", http.Header{"Origin": {"https://" + host}}, false},
		{"another site", http.Header{"Origin": {"https://evil.example"}, "X-Forwarded-Host": {"ci.example.org"}, "X-Forwarded-Proto": {"https"}}, false},
	} {
		conn, resp, err := websocket.DefaultDialer.Dial(wsURL, tt.hdr)
		switch {
		case tt.ok && err != nil:
			t.Errorf("%s: refused: %v %v", tt.name, err, resp)
		case !tt.ok && err == nil:
			t.Errorf("%s: accepted", tt.name)
		case !tt.ok && (resp == nil || resp.StatusCode != http.StatusForbidden):
			t.Errorf("%s: %v %v, want 403", tt.name, err, resp)
		}
		if conn != nil {
			conn.Close()
		}
	}
}

// TestWSOriginBehindProxy: a browser's WebSocket is accepted from
// buildbot_url's origin, from the host it was sent to (Host, or a proxy's
// X-Forwarded-Host when it is trusted), over the same scheme, and,
// behind a proxy that sets no Host, when the
// browser says it is same-origin or the URL has the page's token with its
// cookie; one from another site is refused 403, and the refusal logged
// with its reason.
func TestWSOriginBehindProxy(t *testing.T) {
	t.Parallel()
	bus := events.New(events.Config{FirstID: 1})
	db := must(store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{Events: bus}))(t)
	t.Cleanup(func() { db.Close() })
	var logs syncBuffer
	s := New(Config{Store: db, Events: bus, BuildbotURL: "http://ci.example.org:8010/buildbot/",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	host := strings.TrimPrefix(srv.URL, "http://")
	tok := strings.Repeat("cd", 32)
	cookie := auth.AnonCSRFCookie + "=" + tok
	for _, tt := range []struct {
		name  string
		hdr   http.Header
		ok    bool
		query string
	}{
		{"the page's token and cookie", http.Header{"Origin": {"http://localhost:8999"}, "Cookie": {cookie}}, true, "?csrf_token=" + tok},
		{"a token without its cookie", http.Header{"Origin": {"http://evil.example"}}, false, "?csrf_token=" + tok},
		{"another token than the cookie's", http.Header{"Origin": {"http://evil.example"}, "Cookie": {cookie}}, false, "?csrf_token=" + strings.Repeat("0", 64)},
		{"the cookie without the token", http.Header{"Origin": {"http://evil.example"}, "Cookie": {cookie}}, false, ""},
		{"no Origin (not a browser)", nil, true, ""},
		{"buildbot_url's origin", http.Header{"Origin": {"http://ci.example.org:8010"}}, true, ""},
		{"the Host", http.Header{"Origin": {"http://" + host}}, true, ""},
		{"X-Forwarded-Host from no trusted proxy", http.Header{"Origin": {"http://localhost:8999"}, "X-Forwarded-Host": {"localhost:8999"}}, false, ""},
		{"the Host over another scheme", http.Header{"Origin": {"https://" + host}}, false, ""},
		{"the Host over https, says an untrusted X-Forwarded-Proto", http.Header{"Origin": {"https://" + host}, "X-Forwarded-Proto": {"https"}}, false, ""},
		{"same-origin behind a proxy that keeps no Host", http.Header{"Origin": {"http://localhost:8999"}, "Sec-Fetch-Site": {"same-origin"}}, true, ""},
		{"another site", http.Header{"Origin": {"http://evil.example"}}, false, ""},
		{"another site, says the browser", http.Header{"Origin": {"http://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}, false, ""},
		{"buildbot_url's host on another port", http.Header{"Origin": {"http://ci.example.org:8011"}}, false, ""},
		{"a sibling site", http.Header{"Origin": {"http://www.example.org"}, "Sec-Fetch-Site": {"same-site"}}, false, ""},
		{"null", http.Header{"Origin": {"null"}}, false, ""},
	} {
		conn, resp, err := websocket.DefaultDialer.Dial(wsURL+tt.query, tt.hdr)
		if tt.ok {
			if err != nil {
				t.Errorf("%s: refused: %v %v", tt.name, err, resp)
				continue
			}
			conn.Close()
			continue
		}
		if err == nil {
			conn.Close()
			t.Errorf("%s: accepted", tt.name)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %v %v, want 403", tt.name, err, resp)
		}
		if o := tt.hdr.Get("Origin"); !strings.Contains(logs.String(), "websocket refused") || !strings.Contains(logs.String(), "origin "+o+" is neither buildbot_url's") {
			t.Errorf("%s: not logged with its reason:\n%s", tt.name, logs.String())
		}
	}
}
