package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gbb-ci/gbb/internal/backoff"
	"github.com/gbb-ci/gbb/internal/jsonreply"
	"github.com/gbb-ci/gbb/internal/logsample"
	"github.com/gbb-ci/gbb/pkg/config"
)

// Who is asking. With [www.auth] configured, every request but the change
// hooks' goes through authenticate, which finds its user:
//
//   - "Authorization: Basic" with a configured user's password, or
//     "Authorization: Bearer TOKEN" with a [[www.auth.tokens]] token (for
//     scripts; a wrong one is answered 401, never taken as anonymous);
//   - else the session cookie that POST /login sets (for browsers);
//   - else nobody: an anonymous visitor, sent to the login page (or
//     answered 401 on /api, /sse and /ws) when allow_anonymous_view is
//     false.
//
// Passwords and tokens go through a brake (see loginGuard): an address
// that fails too often is answered 429 without its guess being checked.
//
// A session carries a CSRF token that every POST made with its cookie
// must send back, as the form field csrf_token or the X-CSRF-Token header
// (see csrf.go and authorize in authz.go). The pages' forms get it as a
// hidden field added to each <form method="post"> of an HTML page, so no
// template needs to know about it.

// sessionCookie is the name of the session cookie.
const sessionCookie = "gbb_session"

// csrfField is the form field, and csrfHeader the header, that carry a
// session's CSRF token.
const (
	csrfField  = "csrf_token"
	csrfHeader = "X-CSRF-Token"
)

// verifiedTTL is how long a checked basic-auth password is remembered, so
// that a script's calls do not each pay for a bcrypt comparison;
// maxVerified bounds how many are.
const (
	verifiedTTL = 5 * time.Minute
	maxVerified = 1024
)

// user is who made a request.
type user struct {
	Name   string
	Groups []string
	// session is the login of a browser; nil for basic auth and tokens,
	// which need no CSRF token.
	session *session
}

// session is one login.
type session struct {
	id, csrf string
	user     user
	expires  time.Time
}

type userKey struct{}

// userOf returns who made r, or nil for an anonymous visitor (and for
// everyone when no [www.auth] is configured).
func userOf(r *http.Request) *user {
	u, _ := r.Context().Value(userKey{}).(*user)
	return u
}

// authenticator checks passwords, tokens and sessions. It is safe for
// concurrent use.
type authenticator struct {
	users  map[string]config.User
	tokens map[[sha256.Size]byte]config.Token
	// timeout is how long a session lasts.
	timeout time.Duration
	now     func() time.Time
	// dummyHash is what the password of a user name that does not exist is
	// compared with: a bcrypt hash at the median cost of the users', so
	// that the time a refusal takes does not tell which names exist; nil
	// when there are no users.
	dummyHash []byte

	mu       sync.Mutex
	sessions map[string]*session             // guarded by mu; by id
	verified map[[sha256.Size]byte]time.Time // guarded by mu; sha256(user, password) of basic-auth logins checked, until when
}

// newAuthenticator returns nil when a is not enabled.
func newAuthenticator(a config.Auth) *authenticator {
	if !a.Enabled() {
		return nil
	}
	au := &authenticator{
		users:    map[string]config.User{},
		tokens:   map[[sha256.Size]byte]config.Token{},
		timeout:  a.SessionTimeout,
		now:      time.Now,
		sessions: map[string]*session{},
		verified: map[[sha256.Size]byte]time.Time{},
	}
	if au.timeout <= 0 {
		au.timeout = config.DefaultSessionTimeout
	}
	var costs []int
	for _, u := range a.Users {
		au.users[u.Username] = u
		if c, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil {
			costs = append(costs, c)
		}
	}
	if len(costs) > 0 {
		slices.Sort(costs)
		// The password of no one: random, so that no guess matches it.
		h, err := bcrypt.GenerateFromPassword([]byte(randomID()[:64]), costs[len(costs)/2])
		if err == nil {
			au.dummyHash = h
		}
	}
	for _, t := range a.Tokens {
		var h [sha256.Size]byte
		if b, err := hex.DecodeString(t.SHA256); err == nil && len(b) == len(h) {
			copy(h[:], b)
			au.tokens[h] = t
		}
	}
	return au
}

// checkPassword returns the user name and password's user, or nil.
func (a *authenticator) checkPassword(name, password string) *user {
	cu, ok := a.users[name]
	if !ok {
		// Spend the time a real comparison would, so that timing does not
		// tell which user names exist.
		if a.dummyHash != nil {
			bcrypt.CompareHashAndPassword(a.dummyHash, []byte(password))
		}
		return nil
	}
	key := sha256.Sum256([]byte(cu.PasswordHash + "\x00" + name + "\x00" + password))
	now := a.now()
	a.mu.Lock()
	until, ok := a.verified[key]
	a.mu.Unlock()
	if !ok || now.After(until) {
		if bcrypt.CompareHashAndPassword([]byte(cu.PasswordHash), []byte(password)) != nil {
			return nil
		}
		a.mu.Lock()
		if len(a.verified) >= maxVerified {
			clear(a.verified)
		}
		a.verified[key] = now.Add(verifiedTTL)
		a.mu.Unlock()
	}
	return &user{Name: cu.Username, Groups: cu.Groups}
}

// checkToken returns the user of an API token, or nil.
func (a *authenticator) checkToken(token string) *user {
	h := sha256.Sum256([]byte(token))
	// The map lookup compares hashes of a secret, which tells an attacker
	// nothing useful about the token itself.
	t, ok := a.tokens[h]
	if !ok {
		return nil
	}
	return &user{Name: t.Name, Groups: t.Groups}
}

// newSession starts a login for u.
func (a *authenticator) newSession(u *user) *session {
	now := a.now()
	s := &session{id: randomID(), csrf: randomID(), user: *u, expires: now.Add(a.timeout)}
	s.user.session = s
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, old := range a.sessions {
		if now.After(old.expires) {
			delete(a.sessions, id)
		}
	}
	a.sessions[s.id] = s
	return s
}

// session returns the live session with the given id, or nil.
func (a *authenticator) session(id string) *session {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[id]
	if !ok {
		return nil
	}
	if a.now().After(s.expires) {
		delete(a.sessions, id)
		return nil
	}
	return s
}

func (a *authenticator) endSession(id string) {
	a.mu.Lock()
	delete(a.sessions, id)
	a.mu.Unlock()
}

// sessionCookie returns the session cookie of value (expired when ""):
// for buildbot_url's path prefix, and Secure when the site is https.
func (st *site) sessionCookie(value string, expires time.Time) *http.Cookie {
	c := &http.Cookie{
		Name: sessionCookie, Value: value, Path: st.cookiePath,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: st.secure,
	}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires
	}
	return c
}

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// authenticate finds the request's user (see the comment at the top) and
// keeps anonymous visitors out when allow_anonymous_view is false.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := s.acc().auth
		if a == nil || strings.HasPrefix(r.URL.Path, "/change_hook/") {
			// The change hooks check their own secrets, which come as
			// "Authorization: Bearer" too.
			next.ServeHTTP(w, r)
			return
		}
		var u *user
		if h := r.Header.Get("Authorization"); h != "" {
			err := errBadCredentials
			if name, pw, ok := r.BasicAuth(); ok {
				u, err = s.guard.try(s.clientAddr(r), "basic auth", name, func() *user { return a.checkPassword(name, pw) })
			} else if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
				u, err = s.guard.try(s.clientAddr(r), "token", "", func() *user { return a.checkToken(strings.TrimSpace(tok)) })
			}
			if tm, ok := errors.AsType[*tooManyFailures](err); ok {
				w.Header().Set("Retry-After", tm.retryAfter())
				jsonreply.Error(w, http.StatusTooManyRequests, tm.Error())
				return
			}
			if u == nil {
				w.Header().Set("WWW-Authenticate", `Basic realm="gbb"`)
				jsonreply.Error(w, http.StatusUnauthorized, "wrong user name, password or token")
				return
			}
		} else if c, err := r.Cookie(sessionCookie); err == nil {
			if sess := a.session(c.Value); sess != nil {
				u = &sess.user
			}
		}
		if u == nil && s.acc().authz.NoAnonymousView && !publicPath(r.URL.Path) {
			if apiPath(r.URL.Path) {
				w.Header().Set("WWW-Authenticate", `Basic realm="gbb"`)
				jsonreply.Error(w, http.StatusUnauthorized, "log in first (basic auth, a bearer token, or a session)")
				return
			}
			s.seeOther(w, r, "login?next="+url.QueryEscape(strings.TrimPrefix(r.URL.Path, "/")))
			return
		}
		if u != nil {
			r = r.WithContext(context.WithValue(r.Context(), userKey{}, u))
		}
		next.ServeHTTP(w, r)
	})
}

// publicPath reports whether path is open to anonymous visitors even when
// allow_anonymous_view is false.
func publicPath(path string) bool {
	return path == "/login" || path == "/logout" || strings.HasPrefix(path, "/static/")
}

// apiPath reports whether path is for programs rather than people.
func apiPath(path string) bool {
	return strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/sse/") || path == "/ws"
}

// postFormRE finds the opening tag of a form that posts.
var postFormRE = regexp.MustCompile(`(?i)<form\b[^>]*\bmethod="post"[^>]*>`)

// csrfWriter adds a CSRF token as a hidden field to every form that posts
// of an HTML page, and as <meta name="csrf-token"> to its head, and sets
// cookie, when not nil, on such a page; any other response goes through
// unchanged (see csrfTokens in csrf.go).
type csrfWriter struct {
	http.ResponseWriter
	token   string
	cookie  *http.Cookie
	status  int
	decided bool // whether the response is known to be HTML or not
	html    bool
	buf     bytes.Buffer
}

func (c *csrfWriter) decide() {
	if !c.decided {
		c.decided = true
		c.html = strings.HasPrefix(c.Header().Get("Content-Type"), "text/html")
	}
}

func (c *csrfWriter) WriteHeader(status int) {
	c.decide()
	if !c.html {
		c.ResponseWriter.WriteHeader(status)
		return
	}
	c.status = status
}

func (c *csrfWriter) Write(p []byte) (int, error) {
	if !c.decided {
		c.WriteHeader(http.StatusOK)
	}
	if !c.html {
		return c.ResponseWriter.Write(p)
	}
	return c.buf.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (c *csrfWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// finish writes a buffered HTML page with the token added.
func (c *csrfWriter) finish() {
	if !c.html {
		return
	}
	field := []byte(`<input type="hidden" name="` + csrfField + `" value="` + c.token + `">`)
	added := 0
	out := postFormRE.ReplaceAllFunc(c.buf.Bytes(), func(tag []byte) []byte {
		added++
		return append(append([]byte(nil), tag...), field...)
	})
	// For the page's scripts (a WebSocket of another origin than the
	// site's own, behind a proxy, sends it; see wsOriginOK).
	if i := bytes.Index(out, []byte("<head>")); i >= 0 {
		added++
		meta := `<meta name="csrf-token" content="` + c.token + `">`
		out = slices.Insert(out, i+len("<head>"), []byte(meta)...)
	}
	if added > 0 && c.cookie != nil {
		http.SetCookie(c.ResponseWriter, c.cookie)
	}
	c.Header().Del("Content-Length")
	c.ResponseWriter.WriteHeader(c.status)
	c.ResponseWriter.Write(out)
}

// authView is what a page's header shows about the login.
type authView struct {
	Open  bool   // no [www.auth]: everyone may do everything
	User  string // the logged-in user, or ""
	Login string // the login page's URL, relative to the page, coming back to it
}

func (s *Server) authView(r *http.Request) authView {
	if s.acc().auth == nil {
		return authView{Open: true}
	}
	v := authView{Login: rootOf(r.URL.Path) + "login"}
	if p := strings.TrimPrefix(r.URL.Path, "/"); p != "" && p != "login" && p != "logout" {
		v.Login += "?next=" + url.QueryEscape(p)
	}
	if u := userOf(r); u != nil {
		v.User = u.Name
	}
	return v
}

// loginTemplate is the login page, in the pages' layout.
var loginTemplate = template.Must(template.Must(pages.Clone()).New("login").Parse(`{{template "head" .}}
<h1>Log in</h1>
{{if .Error}}<p class="error" id="login-error">{{.Error}}</p>{{end}}
<form method="post" id="login-form" action="{{.Root}}login">
<input type="hidden" name="next" value="{{.Next}}">
<p><label>User name: <input name="username" autocomplete="username" value="{{.Username}}" required autofocus></label></p>
<p><label>Password: <input type="password" name="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Log in</button></p>
</form>
{{template "foot" .}}`))

type loginPage struct {
	pageBase
	Next, Username, Error string
}

// loginNext returns a form's or query's "next" page if it is a path from
// the site's root, else "".
func loginNext(v string) string {
	if !nextRE.MatchString(v) || strings.Contains(v, "..") {
		return ""
	}
	return v
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	if s.acc().auth == nil {
		s.errorPage(w, r, http.StatusNotFound, "no login is configured: everyone may do everything")
		return
	}
	s.renderLogin(w, r, http.StatusOK, loginPage{Next: loginNext(r.URL.Query().Get("next"))})
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, p loginPage) {
	p.pageBase = s.base(r, "", "Log in", "")
	var buf bytes.Buffer
	if err := loginTemplate.ExecuteTemplate(&buf, "login", p); err != nil {
		s.log.Error("render page", "page", "login", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// login checks a login form and starts a session.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	a := s.acc().auth // one, whatever a reconfig does meanwhile
	if a == nil {
		s.errorPage(w, r, http.StatusNotFound, "no login is configured: everyone may do everything")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRPCBody)
	if err := r.ParseForm(); err != nil {
		status, msg := formError(err)
		s.errorPage(w, r, status, msg)
		return
	}
	name, next, pw := r.PostForm.Get("username"), loginNext(r.PostForm.Get("next")), r.PostForm.Get("password")
	u, err := s.guard.try(s.clientAddr(r), "login form", name, func() *user { return a.checkPassword(name, pw) })
	if tm, ok := errors.AsType[*tooManyFailures](err); ok {
		w.Header().Set("Retry-After", tm.retryAfter())
		s.renderLogin(w, r, http.StatusTooManyRequests, loginPage{Next: next, Username: name, Error: tm.Error() + "."})
		return
	}
	if u == nil {
		s.renderLogin(w, r, http.StatusUnauthorized, loginPage{Next: next, Username: name, Error: "Wrong user name or password."})
		return
	}
	sess := a.newSession(u)
	http.SetCookie(w, s.site().sessionCookie(sess.id, sess.expires))
	s.log.Info("login", "user", u.Name, "remote", s.clientAddr(r))
	s.seeOther(w, r, next)
}

// logoutTemplate is the page of GET /logout: a GET never ends a session
// (another site's page could make a browser load it), so it offers the
// form that posts, with the session's CSRF token.
var logoutTemplate = template.Must(template.Must(pages.Clone()).New("logout").Parse(`{{template "head" .}}
<h1>Log out</h1>
{{if .Auth.User}}<form method="post" id="logout-form" action="{{.Root}}logout">
<p>Logged in as {{.Auth.User}}. <button type="submit">Log out</button></p>
</form>{{else}}<p id="logged-out">You are not logged in. <a href="{{.Auth.Login}}">Log in</a></p>{{end}}
{{template "foot" .}}`))

// logoutForm serves GET /logout: the form that logs out.
func (s *Server) logoutForm(w http.ResponseWriter, r *http.Request) {
	if s.acc().auth == nil {
		s.errorPage(w, r, http.StatusNotFound, "no login is configured: everyone may do everything")
		return
	}
	var buf bytes.Buffer
	if err := logoutTemplate.ExecuteTemplate(&buf, "logout", s.base(r, "", "Log out", "")); err != nil {
		s.log.Error("render page", "page", "logout", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// logout serves POST /logout, which sameOrigin and authorize let through
// only with the session's CSRF token: it ends the session, if any, and
// goes to the front page.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if a := s.acc().auth; a != nil {
		if c, err := r.Cookie(sessionCookie); err == nil {
			a.endSession(c.Value)
		}
		http.SetCookie(w, s.site().sessionCookie("", time.Time{}))
	}
	w.Header().Set("Cache-Control", "no-store")
	s.seeOther(w, r, "")
}

// checkCSRF reports whether tok, sent with a session's cookie, is the
// session's CSRF token.
func checkCSRF(tok string, sess *session) bool {
	return subtle.ConstantTimeCompare([]byte(tok), []byte(sess.csrf)) == 1
}

// errBadCredentials is returned by loginGuard.try for a wrong user name,
// password or token.
var errBadCredentials = errors.New("wrong user name, password or token")

// tooManyFailures is returned by loginGuard.try when the client's address
// failed too often: its guess was not checked.
type tooManyFailures struct {
	wait time.Duration // until the address may try again
}

func (e *tooManyFailures) Error() string {
	return "too many failed logins from your address: try again in " + e.retryAfter() + "s"
}

// retryAfter is the wait in whole seconds, rounded up, for Retry-After.
func (e *tooManyFailures) retryAfter() string {
	return strconv.Itoa(max(1, int(math.Ceil(e.wait.Seconds()))))
}

// loginGuard brakes the guessing of passwords and tokens, by client
// address (see internal/backoff): the burst of failures a person makes is
// free, then an address may fail once every few seconds. It outlives
// reconfigs, so that a reconfig gives no attacker a fresh start, and
// samples its log lines, so that an attack cannot flood the log.
type loginGuard struct {
	brake *backoff.Limiter
	logs  *logsample.Sampler
	log   *slog.Logger
}

// Brake settings: loginBurst failures in a row are free, then one more
// every loginEvery: 1,200 guesses an hour from one address, rather than
// the 35 a second bcrypt allowed on two cores. loginKeys bounds the table
// of addresses (about 200 bytes each).
const (
	loginBurst = 10
	loginEvery = 3 * time.Second
	loginKeys  = 10_000
)

func newLoginGuard(log *slog.Logger) loginGuard {
	return loginGuard{
		brake: backoff.New(backoff.Config{Burst: loginBurst, Every: loginEvery, MaxKeys: loginKeys}),
		logs:  logsample.New(10*time.Second, 10),
		log:   log,
	}
}

// try runs check, the check of a password or token sent by the client at
// addr (see clientAddr), through the brake of that address. It returns
// check's user, or errBadCredentials when check found none, or a
// *tooManyFailures without calling check. via names the way in ("login
// form", "basic auth", "token") and name the user name given, for the log.
func (g loginGuard) try(addr, via, name string, check func() *user) (*user, error) {
	at, wait, ok := g.brake.Begin(backoff.AddrKey(addr))
	if !ok {
		g.logRefusal("login refused: too many failures from the address", via, name, addr)
		return nil, &tooManyFailures{wait: wait}
	}
	u := check()
	if u == nil {
		at.Failed()
		g.logRefusal("login refused", via, name, addr)
		return nil, errBadCredentials
	}
	at.Succeeded()
	return u, nil
}

func (g loginGuard) logRefusal(msg, via, name, remote string) {
	ok, dropped := g.logs.Sample()
	if !ok {
		return
	}
	args := []any{"via", via, "remote", remote}
	if name != "" {
		args = append(args, "user", name)
	}
	if dropped > 0 {
		args = append(args, "unlogged", fmt.Sprintf("%d refusals before this one", dropped))
	}
	g.log.Warn(msg, args...)
}
