package web

import (
	"net/http"
	"strings"

	"github.com/gbb-ci/gbb/web/auth"
)

// The defence against cross-site requests is web/auth's (csrf.go there);
// the server sets the cookie and adds the token to the pages' forms.

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
		} else if c, err := r.Cookie(auth.AnonCSRFCookie); err == nil && auth.ValidToken(c.Value) {
			cw.token = c.Value
		} else {
			cw.token = auth.RandomID()
			cw.cookie = &http.Cookie{
				Name: auth.AnonCSRFCookie, Value: cw.token,
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
