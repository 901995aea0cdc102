package web

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"

	"github.com/gbb-ci/gbb/web/auth"
)

// Defence against cross-site requests (CSRF), which must not depend on the
// Host header matching the browser's URL: behind buildbot's documented
// nginx recipe the master sees nginx's upstream address as the Host, and
// buildbot_url may not be the URL the browser uses either.
//
//   - Every POST from a browser that says it comes from another site
//     (Sec-Fetch-Site: cross-site or same-site) is refused.
//   - A page's form carries a token: the session's, for a logged-in
//     browser; else the value of the gbb_csrf cookie (a double-submit
//     token), which another site's page can neither read nor send (the
//     cookie is SameSite=Lax). The pages get the field added to each form
//     that posts (csrfWriter in auth.go).
//   - A JSON-RPC call is taken only as application/json (decodeRPC), which
//     another site's page can send only after a CORS preflight that gbb
//     never grants; a call made with a session cookie also carries the
//     session's token in the X-CSRF-Token header. Scripts (curl, basic
//     auth, bearer tokens) need nothing else.
//   - A WebSocket from a browser is accepted from buildbot_url's origin,
//     the request's Host or X-Forwarded-Host, or with the page's token in
//     its URL (wsOriginOK); the change hooks check their own secrets.

// anonCSRFCookie is the cookie of the double-submit token of a browser
// that has no session.
const anonCSRFCookie = "gbb_csrf"

// crossSite returns why r is a browser's request made by another site's
// page, or "" when it is not one.
func crossSite(r *http.Request) string {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
		return ""
	default:
		return "cross-site request refused (Sec-Fetch-Site: " + site + "): use gbb's own pages"
	}
}

// originOK reports whether a browser's Origin header o is the site's own:
// buildbot_url's origin, or the host the request was sent to (Host, or
// X-Forwarded-Host as a proxy sets it).
func (s *Server) originOK(r *http.Request, o string) bool {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	if origin := s.site().origin; origin != "" && strings.EqualFold(u.Scheme+"://"+u.Host, origin) {
		return true
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	fwd, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Host"), ",")
	return fwd != "" && strings.EqualFold(u.Host, strings.TrimSpace(fwd))
}

// checkFormToken returns why a form posted by u (nil for anonymous) does
// not carry a valid CSRF token, or "" when it does. The token comes as the
// csrf_token field or the X-CSRF-Token header.
func (s *Server) checkFormToken(r *http.Request, u *auth.User) string {
	tok := r.PostForm.Get(auth.CSRFField)
	if tok == "" {
		tok = r.Header.Get(auth.CSRFHeader)
	}
	if u != nil && u.Session != nil {
		if !auth.CheckCSRF(tok, u.Session) {
			return "missing or stale CSRF token: reload the page and try again"
		}
		return ""
	}
	c, err := r.Cookie(anonCSRFCookie)
	if err != nil || !auth.ValidToken(c.Value) {
		return "no CSRF cookie: send this form from gbb's own page (reload it, with cookies enabled)"
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(c.Value)) != 1 {
		return "missing or stale CSRF token: reload the page and try again"
	}
	return ""
}

// checkQueryToken reports whether r's URL carries, as csrf_token, the
// token of its session or of its gbb_csrf cookie: the page that opened it
// is one of the site's (another site's page can read neither).
func (s *Server) checkQueryToken(r *http.Request) bool {
	tok := r.URL.Query().Get(auth.CSRFField)
	if tok == "" {
		return false
	}
	if u := auth.UserOf(r); u != nil && u.Session != nil && auth.CheckCSRF(tok, u.Session) {
		return true
	}
	c, err := r.Cookie(anonCSRFCookie)
	return err == nil && auth.ValidToken(c.Value) && subtle.ConstantTimeCompare([]byte(tok), []byte(c.Value)) == 1
}

// csrfTokens adds the CSRF token to the forms of the pages it serves: the
// session's for a logged-in browser, else the gbb_csrf cookie's, which it
// sets when the browser has none. The API, /sse/ and /ws are left alone.
func (s *Server) csrfTokens(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || apiPath(r.URL.Path) || strings.HasPrefix(r.URL.Path, "/static/") {
			next.ServeHTTP(w, r)
			return
		}
		cw := &csrfWriter{ResponseWriter: w}
		if u := auth.UserOf(r); u != nil && u.Session != nil {
			cw.token = u.Session.CSRF
		} else if c, err := r.Cookie(anonCSRFCookie); err == nil && auth.ValidToken(c.Value) {
			cw.token = c.Value
		} else {
			cw.token = auth.RandomID()
			cw.cookie = &http.Cookie{
				Name: anonCSRFCookie, Value: cw.token,
				// "/" rather than buildbot_url's path, which may not be the
				// one the browser sees (the cookie is no secret to the
				// site's other pages, only to other sites).
				Path:     "/",
				HttpOnly: true, SameSite: http.SameSiteLaxMode,
				Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
			}
		}
		next.ServeHTTP(cw, r)
		cw.finish()
	})
}
