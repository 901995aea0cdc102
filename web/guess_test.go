package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/web/auth"
)

// withFormCookie gives a form the anonymous CSRF cookie whose value
// testFormToken the form carries, as gbb's own login page does.
func withFormCookie(r *http.Request) {
	r.AddCookie(&http.Cookie{Name: auth.AnonCSRFCookie, Value: testFormToken})
}

// clientFrom returns a client whose connections come from the loopback
// address ip, so that a test can be two clients at two addresses.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{
		Transport:     &http.Transport{DialContext: d.DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// send makes a request with client c and returns its status, Retry-After
// and body.
func send(t *testing.T, c *http.Client, method, u string, body string, set func(*http.Request)) (int, string, string) {
	t.Helper()
	req := must(http.NewRequest(method, u, strings.NewReader(body)))(t)
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if set != nil {
		set(req)
	}
	resp := must(c.Do(req))(t)
	defer resp.Body.Close()
	data := must(io.ReadAll(resp.Body))(t)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(data)
}

// TestGuessingBrake: an address that keeps guessing passwords or tokens is
// answered 429 without its guesses being checked, whichever way it comes
// in (basic auth, the login form, a bearer token); a user at another
// address logs in all the same; and the refusals are logged sampled.
func TestGuessingBrake(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	logs := &syncBuffer{}
	f.s.guard = auth.NewGuard(slog.New(slog.NewTextHandler(logs, nil)))
	attacker, user := clientFrom("127.0.0.1"), clientFrom("127.0.0.2")
	api := f.srv.URL + "/api/v2/builders"
	basic := func(name, pw string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth(name, pw) }
	}

	// The first failures are answered as wrong, as a person mistyping
	// would see them.
	for i := range auth.LoginBurst {
		if status, _, body := send(t, attacker, "GET", api, "", basic("bob", "guess"+strconv.Itoa(i))); status != 401 {
			t.Fatalf("guess %d: %d %s, want 401", i, status, body)
		}
	}
	// Then every way in is braked, the right password included: the
	// guess is not even checked.
	for _, tt := range []struct {
		name         string
		method, path string
		body         string
		set          func(*http.Request)
	}{
		{"basic auth", "GET", "/api/v2/builders", "", basic("bob", "guess")},
		{"right password", "GET", "/api/v2/builders", "", basic("bob", "pw-bob")},
		{"bearer token", "GET", "/api/v2/builders", "", func(r *http.Request) { r.Header.Set("Authorization", "Bearer guess") }},
		{"login form", "POST", "/login", url.Values{"username": {"bob"}, "password": {"guess"}, auth.CSRFField: {testFormToken}}.Encode(), withFormCookie},
	} {
		status, retry, body := send(t, attacker, tt.method, f.srv.URL+tt.path, tt.body, tt.set)
		secs, err := strconv.Atoi(retry)
		if status != http.StatusTooManyRequests || err != nil || secs < 1 || secs > int(auth.LoginEvery/time.Second) || !strings.Contains(body, "too many failed logins") {
			t.Errorf("%s after %d failures: %d, Retry-After %q\n%s", tt.name, auth.LoginBurst, status, retry, body)
		}
	}

	// Guessing on does not lock out bob at another address, nor anyone
	// there: their failures are their own.
	for i := range 200 {
		if status, _, _ := send(t, attacker, "GET", api, "", basic("bob", "guess"+strconv.Itoa(i))); status != 429 {
			t.Fatalf("guess %d: %d, want 429", auth.LoginBurst+4+i, status)
		}
	}
	if status, _, body := send(t, user, "GET", api, "", basic("bob", "pw-bob")); status != 200 {
		t.Errorf("bob at another address: %d %s", status, body)
	}
	if status, _, body := send(t, user, "GET", api, "", basic("bob", "typo")); status != 401 {
		t.Errorf("bob's typo at another address: %d %s, want 401", status, body)
	}
	status, _, body := send(t, user, "POST", f.srv.URL+"/login", url.Values{"username": {"bob"}, "password": {"pw-bob"}, auth.CSRFField: {testFormToken}}.Encode(), withFormCookie)
	if status != http.StatusSeeOther {
		t.Errorf("bob's login form at another address: %d %s", status, body)
	}

	// Some 215 refusals, a sample of them logged (the sampler's burst,
	// and one more each 10s of the test's run).
	lines := strings.Count(logs.String(), "login refused")
	if lines < 10 || lines > 20 {
		t.Errorf("%d log lines for some 215 refusals, want a sample of 10 to 20:\n%s", lines, logs)
	}
	// Each names the way in, the user name given and the address.
	if !strings.Contains(logs.String(), `level=WARN msg="login refused" via="basic auth" remote=127.0.0.1 user=bob`) {
		t.Errorf("no refusal logged with its way in, address and user:\n%s", logs)
	}
}

// Many addresses guessing at once keep the table of addresses bounded.
func TestGuessingTableBounded(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// 300 addresses, each one wrong guess.
	for i := range 300 {
		c := clientFrom("127.0.1." + strconv.Itoa(i%250+1))
		if i >= 250 {
			c = clientFrom("127.0.2." + strconv.Itoa(i-249))
		}
		req := must(http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/api/v2/builders", nil))(t)
		req.SetBasicAuth("bob", "guess")
		resp := must(c.Do(req))(t)
		resp.Body.Close()
		c.CloseIdleConnections()
		if resp.StatusCode != 401 {
			t.Fatalf("guess from address %d: %d", i, resp.StatusCode)
		}
	}
	if n := f.s.guard.Addresses(); n != 300 {
		t.Errorf("table after 300 failing addresses: %d, want 300", n)
	}
	// Successes leave nothing behind.
	for i := range 20 {
		c := clientFrom("127.0.3." + strconv.Itoa(i+1))
		if status, _, _ := send(t, c, "GET", f.srv.URL+"/api/v2/builders", "", func(r *http.Request) { r.SetBasicAuth("bob", "pw-bob") }); status != 200 {
			t.Fatalf("bob from a new address: %d", status)
		}
		c.CloseIdleConnections()
	}
	if n := f.s.guard.Addresses(); n != 300 {
		t.Errorf("table after 20 successes: %d, want still 300", n)
	}
}

// Behind a trusted proxy, the brake holds the guesser's address, as the
// proxy's X-Forwarded-For names it, and not the proxy's, which every user
// shares; what a client writes into that header itself is not believed,
// and from a peer that is not a trusted proxy the header is ignored.
func TestGuessingBehindProxy(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	// The proxy is 127.0.0.1, as a reconfig sets it.
	f.s.SetSite(f.s.cfg.BuildbotURL, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
	proxy, direct := clientFrom("127.0.0.1"), clientFrom("127.0.0.2")
	api := f.srv.URL + "/api/v2/builders"
	as := func(xff, pw string) func(*http.Request) {
		return func(r *http.Request) {
			r.SetBasicAuth("bob", pw)
			r.Header.Set("X-Forwarded-For", xff)
		}
	}
	for i := range auth.LoginBurst {
		if status, _, _ := send(t, proxy, "GET", api, "", as("127.0.0.50", "guess")); status != 401 {
			t.Fatalf("guess %d: %d, want 401", i, status)
		}
	}
	for _, tt := range []struct {
		name, xff, pw string
		want          int
	}{
		{"the guesser", "127.0.0.50", "guess", 429},
		{"the guesser, naming another client first", "127.0.0.61, 127.0.0.50", "guess", 429},
		{"the guesser through two proxies", "127.0.0.50, 127.0.0.1", "guess", 429},
		{"another user through the proxy", "127.0.0.60", "pw-bob", 200},
		{"another user's typo", "127.0.0.60", "typo", 401},
	} {
		if status, _, body := send(t, proxy, "GET", api, "", as(tt.xff, tt.pw)); status != tt.want {
			t.Errorf("%s (X-Forwarded-For: %s): %d, want %d\n%s", tt.name, tt.xff, status, tt.want, body)
		}
	}
	// A peer that is no proxy: its X-Forwarded-For, new each time, changes
	// nothing.
	for i := range auth.LoginBurst + 3 {
		status, _, _ := send(t, direct, "GET", api, "", as(fmt.Sprintf("127.0.1.%d", i+1), "guess"))
		want := 401
		if i >= auth.LoginBurst {
			want = 429
		}
		if status != want {
			t.Errorf("direct guess %d: %d, want %d", i, status, want)
		}
	}
}

func TestClientAddr(t *testing.T) {
	t.Parallel()
	s := New(Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}})
	for _, tt := range []struct {
		peer string
		xff  []string
		want string
	}{
		{"127.0.0.2:4000", []string{"127.0.0.9"}, "127.0.0.2"},
		{"127.0.0.1:4000", nil, "127.0.0.1"},
		{"127.0.0.1:4000", []string{"127.0.0.9"}, "127.0.0.9"},
		{"[::1]:4000", []string{"127.0.0.7, 127.0.0.9"}, "127.0.0.9"},
		{"127.0.0.1:4000", []string{"127.0.0.7", "127.0.0.9, ::1"}, "127.0.0.9"},
		{"127.0.0.1:4000", []string{"::1, 127.0.0.1"}, "::1"},
		{"127.0.0.1:4000", []string{"unknown"}, "unknown"},
		{"127.0.0.1:4000", []string{" , "}, "127.0.0.1"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.peer
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := s.clientAddr(r); got != tt.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %q, want %q", tt.peer, tt.xff, got, tt.want)
		}
	}
}

// TestRefusedUnknownNameNotLogged: a token sent as the basic-auth user
// name (curl -u "$TOKEN:") is refused, and master.log says that the name
// is no user's, never the name itself; a known user's name is logged.
func TestRefusedUnknownNameNotLogged(t *testing.T) {
	t.Parallel()
	f := newAuthServer(t, testAuthz)
	logs := &syncBuffer{}
	f.s.guard = auth.NewGuard(slog.New(slog.NewTextHandler(logs, nil)))
	c := clientFrom("127.0.0.1")
	api := f.srv.URL + "/api/v2/builders"
	const token = "gbb_0123456789abcdefghijklmnopqrstuv"
	for _, tt := range []struct{ name, pw string }{{token, ""}, {"bob", "typo"}} {
		if status, _, body := send(t, c, "GET", api, "", func(r *http.Request) { r.SetBasicAuth(tt.name, tt.pw) }); status != 401 {
			t.Fatalf("basic auth %q: %d %s, want 401", tt.name, status, body)
		}
	}
	if strings.Contains(logs.String(), "gbb_") {
		t.Errorf("the token sent as a user name is in the log:\n%s", logs)
	}
	for _, want := range []string{`via="basic auth" remote=127.0.0.1 user_known=false`, `via="basic auth" remote=127.0.0.1 user=bob`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
}
