package web

import (
	"bytes"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/internal/jsonreply"
	"github.com/gbb-ci/gbb/web/api"
	"github.com/gbb-ci/gbb/web/auth"
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
// (see csrf.go and Authorize in web/api). The pages' forms get it as a
// hidden field added to each <form method="post"> of an HTML page, so no
// template needs to know about it.

// sessionCookie returns the session cookie of value (expired when ""):
// for buildbot_url's path prefix, and Secure when the site is https.
func (st *site) sessionCookie(value string, expires time.Time) *http.Cookie {
	c := &http.Cookie{
		Name: auth.SessionCookie, Value: value, Path: st.cookiePath,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: st.secure,
	}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires
	}
	return c
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
		var u *auth.User
		if h := r.Header.Get("Authorization"); h != "" {
			err := auth.ErrBadCredentials
			if name, pw, ok := r.BasicAuth(); ok {
				u, err = s.guard.Try(s.clientAddr(r), "basic auth", name, func() *auth.User { return a.CheckPassword(name, pw) })
			} else if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
				u, err = s.guard.Try(s.clientAddr(r), "token", "", func() *auth.User { return a.CheckToken(strings.TrimSpace(tok)) })
			}
			if tm, ok := errors.AsType[*auth.TooManyFailures](err); ok {
				w.Header().Set("Retry-After", tm.RetryAfter())
				jsonreply.Error(w, http.StatusTooManyRequests, tm.Error())
				return
			}
			if u == nil {
				w.Header().Set("WWW-Authenticate", `Basic realm="gbb"`)
				jsonreply.Error(w, http.StatusUnauthorized, "wrong user name, password or token")
				return
			}
		} else if c, err := r.Cookie(auth.SessionCookie); err == nil {
			if sess := a.Session(c.Value); sess != nil {
				u = &sess.User
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
			r = r.WithContext(auth.WithUser(r.Context(), u))
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
	field := []byte(`<input type="hidden" name="` + auth.CSRFField + `" value="` + c.token + `">`)
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
	if u := auth.UserOf(r); u != nil {
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
	r.Body = http.MaxBytesReader(w, r.Body, api.MaxRPCBody)
	if err := r.ParseForm(); err != nil {
		status, msg := api.FormError(err)
		s.errorPage(w, r, status, msg)
		return
	}
	name, next, pw := r.PostForm.Get("username"), loginNext(r.PostForm.Get("next")), r.PostForm.Get("password")
	u, err := s.guard.Try(s.clientAddr(r), "login form", name, func() *auth.User { return a.CheckPassword(name, pw) })
	if tm, ok := errors.AsType[*auth.TooManyFailures](err); ok {
		w.Header().Set("Retry-After", tm.RetryAfter())
		s.renderLogin(w, r, http.StatusTooManyRequests, loginPage{Next: next, Username: name, Error: tm.Error() + "."})
		return
	}
	if u == nil {
		s.renderLogin(w, r, http.StatusUnauthorized, loginPage{Next: next, Username: name, Error: "Wrong user name or password."})
		return
	}
	sess := a.NewSession(u)
	http.SetCookie(w, s.site().sessionCookie(sess.ID, sess.Expires()))
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

// logout serves POST /logout, which sameOrigin and api.Authorize let through
// only with the session's CSRF token: it ends the session, if any, and
// goes to the front page.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if a := s.acc().auth; a != nil {
		if c, err := r.Cookie(auth.SessionCookie); err == nil {
			a.EndSession(c.Value)
		}
		http.SetCookie(w, s.site().sessionCookie("", time.Time{}))
	}
	w.Header().Set("Cache-Control", "no-store")
	s.seeOther(w, r, "")
}
