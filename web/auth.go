package web

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/internal/jsonreply"
	"github.com/gbb-ci/gbb/web/auth"
	"github.com/gbb-ci/gbb/web/ui"
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
// Passwords and tokens go through a brake (auth.Guard): an address that
// fails too often is answered 429 without its guess being checked.
//
// A session carries a CSRF token that every POST made with its cookie
// must send back, as the form field csrf_token or the X-CSRF-Token header
// (see csrf.go and Authorize in web/api). The pages' forms get it as a
// hidden field added to each <form method="post"> of an HTML page, so no
// template needs to know about it.

// sessionCookie returns the session cookie of value (expired when "") in
// answer to r: for buildbot_url's path prefix, HttpOnly, SameSite=Lax, and
// Secure when the site is reached over https (see secure in tls.go).
func (s *Server) sessionCookie(r *http.Request, value string, expires time.Time) *http.Cookie {
	c := &http.Cookie{
		Name: auth.SessionCookie, Value: value, Path: s.site().cookiePath,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.secure(r),
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
				u, err = s.guard.Try(s.clientAddr(r), "basic auth", a.LogName(name), func() *auth.User { return a.CheckPassword(name, pw) })
			} else if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
				u, err = s.guard.Try(s.clientAddr(r), "token", auth.LogName{}, func() *auth.User { return a.CheckToken(strings.TrimSpace(tok)) })
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
			s.ui.SeeOther(w, r, "login?next="+url.QueryEscape(strings.TrimPrefix(r.URL.Path, "/")))
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
	return path == "/login" || path == "/logout" || path == "/healthz" || path == "/readyz" || strings.HasPrefix(path, "/static/") || path == "/favicon.ico" ||
		// buildbot's UI: its login, and its page, which asks to log in.
		path == "/auth/login" || path == "/auth/logout" || strings.HasPrefix(path, "/buildbot-ui/") || path == "/buildbot-ui"
}

// apiPath reports whether path is for programs rather than people.
func apiPath(path string) bool {
	return strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/sse/") || path == "/ws" || path == "/metrics"
}

// login checks a login form and starts a session.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	a := s.acc().auth // one, whatever a reconfig does meanwhile
	if a == nil {
		s.ui.ErrorPage(w, r, http.StatusNotFound, "no login is configured: everyone may do everything")
		return
	}
	c, ok := s.api.CallOf(w, r) // the form, as api.Authorize read and checked it
	if !ok {
		return
	}
	name, next, pw := c.Form.Get("username"), ui.LoginNext(c.Form.Get("next")), c.Form.Get("password")
	u, err := s.guard.Try(s.clientAddr(r), "login form", a.LogName(name), func() *auth.User { return a.CheckPassword(name, pw) })
	if tm, ok := errors.AsType[*auth.TooManyFailures](err); ok {
		w.Header().Set("Retry-After", tm.RetryAfter())
		s.ui.RenderLogin(w, r, http.StatusTooManyRequests, ui.LoginPage{Next: next, Username: name, Error: tm.Error() + "."})
		return
	}
	if u == nil {
		s.ui.RenderLogin(w, r, http.StatusUnauthorized, ui.LoginPage{Next: next, Username: name, Error: "Wrong user name or password."})
		return
	}
	sess := a.NewSession(u)
	http.SetCookie(w, s.sessionCookie(r, sess.ID, sess.Expires()))
	s.log.Info("login", "user", u.Name, "remote", s.clientAddr(r))
	s.ui.SeeOther(w, r, next)
}

// logout serves POST /logout, which sameOrigin and api.Authorize let through
// only with the session's CSRF token: it ends the session, if any, and
// goes to the front page.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if a := s.acc().auth; a != nil {
		if c, err := r.Cookie(auth.SessionCookie); err == nil {
			a.EndSession(c.Value)
		}
		http.SetCookie(w, s.sessionCookie(r, "", time.Time{}))
	}
	w.Header().Set("Cache-Control", "no-store")
	s.ui.SeeOther(w, r, "")
}
