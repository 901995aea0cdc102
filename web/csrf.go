package web

import (
	"bytes"
	"net/http"
	"regexp"
	"slices"
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
				Secure: s.secure(r),
			}
		}
		next.ServeHTTP(cw, r)
		cw.finish()
	})
}

// postFormRE finds the opening tag of a form that posts.
var postFormRE = regexp.MustCompile(`(?i)<form\b[^>]*\bmethod="post"[^>]*>`)

// csrfWriter adds a CSRF token as a hidden field to every form that posts
// of an HTML page, and as <meta name="csrf-token"> to its head, and sets
// cookie, when not nil, on such a page; any other response goes through
// unchanged (see csrfTokens).
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
